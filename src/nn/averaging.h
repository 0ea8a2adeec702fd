#pragma once
// How distribute_module (nn) and GradientSync (sync, the layer above) see each other without nn
// depending on sync: GradientSync's hook on each parameter's gradient accumulator is an
// AveragingHook. distribute_module refuses a module whose parameters already carry one (a sync
// built before it was built for other shards and layers), and puts on every parameter whose
// gradient must be averaged over the batch axis a check that throws in backward when no
// AveragingHook is there to average it.
#include <kdist/mesh.h>
#include <torch/csrc/autograd/function_hook.h>

#include <string>

namespace kdist::nn::detail {

struct AveragingHook : torch::autograd::FunctionPostHook {};

// Whether a live AveragingHook is on the gradient accumulator of `param`.
bool is_averaged(const at::Tensor& param);

// From now on, a gradient of `param` reaching its accumulator with no AveragingHook there
// throws std::invalid_argument naming `name` and the batch axis (of `processes` processes).
// The check lapses once param is distributed again onto another mesh than `mesh`.
void require_averaging(const at::Tensor& param, const std::string& name, DeviceMeshPtr mesh,
                       const std::string& batch_axis);

}  // namespace kdist::nn::detail
