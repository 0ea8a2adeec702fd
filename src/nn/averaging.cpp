#include "nn/averaging.h"

#include <kdist/dtensor.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>

#include "base/errors.h"

namespace kdist::nn::detail {

bool is_averaged(const at::Tensor& param) {
  auto accumulator = torch::autograd::impl::try_get_grad_accumulator(param);
  if (!accumulator) return false;
  for (const auto& hook : accumulator->post_hooks())
    if (dynamic_cast<const AveragingHook*>(hook.get())) return true;
  return false;
}

void require_averaging(const at::Tensor& param, const std::string& name, DeviceMeshPtr mesh,
                       const std::string& batch_axis) {
  // Weakly: a hook that held its own tensor would keep it alive forever.
  c10::weak_intrusive_ptr<c10::TensorImpl> weak(param.getIntrusivePtr());
  const int64_t processes = mesh->axis_size(batch_axis);
  param.register_hook([weak, name, mesh, batch_axis, processes](const at::Tensor& grad) {
    auto impl = weak.lock();
    if (!impl) return grad;
    const at::Tensor self(std::move(impl));
    auto spec = as_dtensor(self);
    if (!spec || spec->device_mesh() != mesh || is_averaged(self)) return grad;
    kdist::detail::invalid(
        "nn", "the gradient of '", name, "' is not averaged over the batch axis '", batch_axis, "' (",
        processes,
        " processes): each process would step its replica with its own rows' gradient and the "
        "replicas would drift apart. Build a kdist::GradientSync(module, distribution) after "
        "distribute_module and keep it alive while training");
  });
}

}  // namespace kdist::nn::detail
