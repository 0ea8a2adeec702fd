#include <ATen/ATen.h>
#include <kdist/comm.h>
#include <kdist/distribution.h>
#include <kdist/dtensor.h>
#include <kdist/runtime.h>

#include <c10/core/GradMode.h>

#include <algorithm>
#include <mutex>
#include <unordered_map>

#include "base/errors.h"
#include "base/text.h"
#include "dtensor/redistribute.h"
#include "job/debug_log.h"

namespace kdist {
using detail::invalid;

namespace {

std::string shape_string(c10::IntArrayRef shape) { return detail::tuple_string(shape); }

// This rank's block of `full` under `spec`.
at::Tensor slice_block(const at::Tensor& full, const DTensorSpec& spec,
                       const std::vector<int64_t>& coordinate) {
  auto size = spec.local_shape(coordinate);
  auto offset = spec.local_offset(coordinate);
  at::Tensor out = full;
  for (size_t d = 0; d < size.size(); ++d) out = out.narrow(d, offset[d], size[d]);
  return out;
}

}  // namespace

DTensor::DTensor(at::Tensor local, std::shared_ptr<const DTensorSpec> spec)
    : local_(std::move(local)), spec_(std::move(spec)) {}

DTensor DTensor::from_local(const at::Tensor& local, DeviceMeshPtr mesh, std::vector<Placement> placements,
                            std::optional<std::vector<int64_t>> global_shape) {
  if (!local.defined()) invalid("dtensor", "from_local: the local tensor is undefined");
  auto spec = std::make_shared<DTensorSpec>();
  spec->mesh = std::move(mesh);
  spec->placements = std::move(placements);
  if (!spec->mesh) invalid("dtensor", "from_local needs a device mesh");
  if (global_shape) {
    spec->global_shape = *global_shape;
  } else {
    spec->global_shape = local.sizes().vec();
    for (size_t i = 0; i < spec->placements.size(); ++i)
      if (auto* s = std::get_if<Shard>(&spec->placements[i]); s && s->dim >= 0 && s->dim < local.dim())
        spec->global_shape[s->dim] *= spec->mesh->shape()[i];
  }
  spec->validate();
  if (static_cast<int64_t>(spec->global_shape.size()) != local.dim())
    invalid("dtensor", "from_local: local tensor of shape ", shape_string(local.sizes()),
            " and global shape ", detail::tuple_string(spec->global_shape), " differ in rank");
  auto expected = spec->local_shape(detail::my_coordinate(*spec->mesh));
  if (global_shape && local.sizes().vec() != expected)
    invalid("dtensor", "from_local: this rank (", process_id(), ") holds a block of shape ",
            shape_string(local.sizes()), ", but ", spec->to_string(), " gives it ",
            detail::tuple_string(expected));
  return DTensor(local, std::move(spec));
}

at::Tensor DTensor::full_tensor() const {
  return redistribute(std::vector<Placement>(spec_->placements.size(), Replicate{})).to_local();
}

DTensor DTensor::redistribute(const std::vector<Placement>& placements) const {
  auto to = std::make_shared<DTensorSpec>(*spec_);
  to->placements = placements;
  at::Tensor local = detail::redistribute_autograd(local_, *spec_, *to);
  return DTensor(std::move(local), std::move(to));
}

std::vector<int64_t> DTensor::local_offset() const {
  return spec_->local_offset(detail::my_coordinate(*spec_->mesh));
}

DTensor distribute_tensor(const at::Tensor& full, DeviceMeshPtr mesh, std::vector<Placement> placements,
                          DistributeOptions options) {
  if (!full.defined()) invalid("dtensor", "distribute_tensor: the tensor is undefined");
  auto spec =
      std::make_shared<DTensorSpec>(DTensorSpec{std::move(mesh), std::move(placements), full.sizes().vec()});
  spec->validate();
  if (spec->has_partial())
    invalid("dtensor", "distribute_tensor to ", spec->to_string(),
            ": Partial placements exist only inside computations");
  const auto coordinate = detail::my_coordinate(*spec->mesh);
  at::Tensor source = full;
  if (!options.assume_identical) {
    // Mesh coordinate (0, ..., 0) is the source: broadcasting along each axis in turn
    // reaches every coordinate.
    source = full.detach().contiguous().clone();
    for (int64_t i = 0; i < spec->mesh->ndim(); ++i)
      comm::broadcast(source, 0, *comm::axis_group(*spec->mesh, i));
  }
  auto local = slice_block(source, *spec, coordinate).contiguous();
  if (local.is_alias_of(full)) local = local.clone();
  return DTensor::from_local(local, spec->mesh, spec->placements, spec->global_shape);
}

DTensor distribute_tensor(const at::Tensor& full, const TensorLayout& layout, DistributeOptions options) {
  return distribute_tensor(full, layout.device_mesh(), to_placements(layout, full.dim()), options);
}

// ---- the spec registry behind as_dtensor ----------------------------------------------------

namespace {
struct Recorded {
  c10::weak_intrusive_ptr<c10::TensorImpl> tensor;
  std::shared_ptr<const DTensorSpec> spec;
};
std::mutex g_registry_mutex;
std::unordered_map<const c10::TensorImpl*, Recorded> g_registry;
size_t g_sweep_at = 64;  // entries at which dead tensors are next forgotten
}  // namespace

void record_spec(const at::Tensor& local, DTensorSpec spec) {
  spec.validate();
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  // Forget dead tensors once the table has doubled since the last sweep: O(1) amortized per
  // record, where sweeping on every insert made sharding a model of P parameters O(P^2).
  if (g_registry.size() >= g_sweep_at) {
    for (auto it = g_registry.begin(); it != g_registry.end();)
      it = it->second.tensor.expired() ? g_registry.erase(it) : std::next(it);
    g_sweep_at = std::max<size_t>(64, 2 * g_registry.size());
  }
  g_registry.insert_or_assign(local.unsafeGetTensorImpl(),
                              Recorded{c10::weak_intrusive_ptr<c10::TensorImpl>(local.getIntrusivePtr()),
                                       std::make_shared<const DTensorSpec>(std::move(spec))});
}

std::optional<DTensor> as_dtensor(const at::Tensor& distributed_variable) {
  if (!distributed_variable.defined()) return std::nullopt;
  std::shared_ptr<const DTensorSpec> spec;
  {
    std::lock_guard<std::mutex> lock(g_registry_mutex);
    auto it = g_registry.find(distributed_variable.unsafeGetTensorImpl());
    if (it == g_registry.end() || it->second.tensor.expired()) return std::nullopt;
    spec = it->second.spec;
  }
  return DTensor::from_local(distributed_variable, spec->mesh, spec->placements, spec->global_shape);
}

namespace {
// Shards `value` and traces what seed 000 needed to see: the distribution in effect, the
// layout, the placements, the shapes.
DTensor shard_traced(const at::Tensor& value, const TensorLayout& layout, DistributeOptions options) {
  if (detail::debug_enabled()) {
    auto current = distribution();
    detail::debug_log("distribute_variable: distribution()=" +
                      (current ? current->to_string() : std::string("None")));
  }
  auto dtensor = distribute_tensor(value.detach(), layout, options);
  bool sharded = false;
  for (const auto& p : dtensor.placements()) sharded |= std::holds_alternative<Shard>(p);
  detail::debug_log(
      "distribute_variable: layout=" + layout.to_string() + " placements=" + to_string(dtensor.placements()) +
      " global=" + shape_string(value.sizes()) + " local=" + shape_string(dtensor.to_local().sizes()) +
      (sharded ? " sharded" : " replicated"));
  return dtensor;
}
}  // namespace

at::Tensor distribute_variable(const at::Tensor& value, const TensorLayout& layout,
                               DistributeOptions options) {
  auto dtensor = shard_traced(value, layout, options);
  at::Tensor local = dtensor.to_local();
  local.set_requires_grad(value.requires_grad());
  record_spec(local, dtensor.spec());
  return local;
}

void distribute_parameter(at::Tensor& param, const TensorLayout& layout, DistributeOptions options) {
  auto dtensor = shard_traced(param, layout, options);
  {
    c10::NoGradGuard no_grad;
    param.set_data(dtensor.to_local());
  }
  record_spec(param, dtensor.spec());
}

}  // namespace kdist
