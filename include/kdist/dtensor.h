#pragma once
// DTensor: a tensor sharded or replicated over a DeviceMesh, as PyTorch's DTensor, for C++.
//
//   auto mesh = std::make_shared<kdist::DeviceMesh>(std::vector<int64_t>{2, 2},
//                                                   std::vector<std::string>{"batch", "model"});
//   kdist::DTensor x = kdist::distribute_tensor(full, kdist::TensorLayout({"batch", "model"}, mesh));
//   x.to_local();                                      // this rank's block
//   auto y = x.redistribute({kdist::Replicate{}, kdist::Shard{0}});
//   y.full_tensor();                                   // the whole tensor, on every rank
//
// A DTensor is this rank's local tensor plus a DTensorSpec (mesh, one placement per mesh
// dimension, global shape). Shard(d) splits dimension d by torch.chunk's rule (pieces of
// ceil(n/k), the last non-empty one the rest, trailing ones empty); several mesh dimensions
// sharding the same tensor dimension nest in mesh-dimension order. Uneven shapes work
// everywhere.
//
// Autograd: the local tensor carries the graph. from_local and to_local are the identity;
// redistribute's backward redistributes the gradient back (Shard->Replicate's gradient is a
// local slice, Replicate->Shard's an all_gather, Partial->Replicate's nothing: a replicated
// gradient is never turned back into Partial).
//
// Collectives: every rank of the mesh must make the same calls in the same order. Errors:
// std::invalid_argument for placements that do not fit the mesh or tensor.
#include <ATen/core/Tensor.h>
#include <kdist/layout.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kdist {

struct DTensorSpec {
  DeviceMeshPtr mesh;
  std::vector<Placement> placements;  // one per mesh dimension
  std::vector<int64_t> global_shape;

  // Throws std::invalid_argument naming the problem (count, dims out of range, this rank
  // outside the mesh).
  void validate() const;
  // The block that the rank at `coordinate` holds: per tensor dimension its size and offset.
  std::vector<int64_t> local_shape(const std::vector<int64_t>& coordinate) const;
  std::vector<int64_t> local_offset(const std::vector<int64_t>& coordinate) const;
  bool has_partial() const;
  std::string to_string() const;  // "DTensorSpec(global=(8, 4), placements=[S(0), R])"
};

// A redistribution as a value (plans are values, docs/architecture.md): the single-mesh-dimension
// transitions redistribute runs on this process, in order, each with the collective it
// issues, the ranks that run it and the bytes this process puts in (as
// comm::CollectiveCounter counts them). redistribute() computes exactly this plan and runs
// it; plan_redistribute gives it without communicating.
//
//   auto plan = x.plan_redistribute({kdist::Replicate{}, kdist::Shard{1}});
//   plan.count("all_gather");  // 1
//   std::cout << plan.to_string();
//   // mesh dim 0: S(0) -> R  all_gather over ranks 0,2, 8192 bytes
//   // mesh dim 1: R -> S(1)  local
struct RedistributeStep {
  int64_t mesh_dim = 0;
  Placement before, after;  // mesh_dim's placement around the step
  // "all_gather", "all_to_all", "all_reduce" or "reduce_scatter"; empty where nothing is sent
  // (a local slice, or a group of one).
  std::string collective;
  std::vector<int> ranks;  // the group along mesh_dim, global ranks in group order
  int64_t bytes = 0;
};
struct RedistributePlan {
  std::vector<RedistributeStep> steps;
  int64_t count(const std::string& collective) const;
  int64_t bytes(const std::string& collective) const;
  std::string to_string() const;  // one line per step
};
// Throws std::invalid_argument where redistribute would (another mesh or shape, a Partial
// target), before anything runs.
RedistributePlan plan_redistribute(const DTensorSpec& from, const DTensorSpec& to,
                                   c10::ScalarType dtype = c10::ScalarType::Float);

class DTensor {
 public:
  // Wraps this rank's `local` piece. global_shape empty: inferred as if every shard were the
  // size of this one (exact for even sharding; pass it when shards are uneven).
  static DTensor from_local(const at::Tensor& local, DeviceMeshPtr mesh, std::vector<Placement> placements,
                            std::optional<std::vector<int64_t>> global_shape = std::nullopt);

  const at::Tensor& to_local() const { return local_; }
  // The whole tensor on every rank (all_gathers / all_reduces as needed).
  at::Tensor full_tensor() const;
  DTensor redistribute(const std::vector<Placement>& placements) const;
  // What redistribute(placements) will run (RedistributePlan above); communicates nothing.
  RedistributePlan plan_redistribute(const std::vector<Placement>& placements) const;

  const std::vector<Placement>& placements() const { return spec_->placements; }
  const DeviceMeshPtr& device_mesh() const { return spec_->mesh; }
  const std::vector<int64_t>& sizes() const { return spec_->global_shape; }  // global
  const DTensorSpec& spec() const { return *spec_; }
  // This rank's block within the global tensor.
  std::vector<int64_t> local_offset() const;

 private:
  DTensor(at::Tensor local, std::shared_ptr<const DTensorSpec> spec);
  at::Tensor local_;
  std::shared_ptr<const DTensorSpec> spec_;
};

struct DistributeOptions {
  // Every rank passes the same data: skip the broadcast from mesh coordinate (0, ..., 0).
  bool assume_identical = false;
};

// Every rank passes a tensor of the same shape; the one at mesh coordinate 0 of every axis
// is the source, so ranks holding different data still end up consistent.
DTensor distribute_tensor(const at::Tensor& full, const TensorLayout& layout, DistributeOptions options = {});
DTensor distribute_tensor(const at::Tensor& full, DeviceMeshPtr mesh, std::vector<Placement> placements,
                          DistributeOptions options = {});

// The local shard of `value` under `layout`, as a leaf tensor an optimizer can own (it
// keeps value's requires_grad). Its spec is recorded: as_dtensor(shard) finds it.
at::Tensor distribute_variable(const at::Tensor& value, const TensorLayout& layout,
                               DistributeOptions options = {});
// Shards a parameter in place: `param` (a module's own handle) becomes its local shard, keeps
// its identity and requires_grad, and its spec is recorded for as_dtensor. Collective.
void distribute_parameter(at::Tensor& param, const TensorLayout& layout, DistributeOptions options = {});
// The DTensor view of a tensor made by distribute_variable (or registered by kdist's
// layers); std::nullopt for any other tensor.
//
// How it finds the spec: record_spec keeps a process-wide table keyed by the tensor's
// identity (its TensorImpl), each entry holding a weak reference to the tensor, so a lookup
// is one hash probe and a dead tensor's entry is never returned (nor mistaken for a new
// tensor at the same address). Dead entries are swept when the table has doubled since the
// last sweep: recording is O(1) amortized. Identity means the very tensor: a view, a copy
// or `p.detach()` is another TensorImpl sharing p's memory, so as_dtensor(p.detach()) is
// std::nullopt; ask with the parameter itself (module.parameters() hands out the same
// handles) or keep the DTensor from_local returned.
std::optional<DTensor> as_dtensor(const at::Tensor& distributed_variable);
// Records `spec` for `local` so that as_dtensor finds it (for layers that shard in place).
void record_spec(const at::Tensor& local, DTensorSpec spec);

// A terminal picture of which ranks hold which block of a 1-D or 2-D tensor, like
// jax.debug.visualize_array_sharding. Local computation only.
std::string visualize_sharding(const DTensorSpec& spec);
inline std::string visualize_sharding(const DTensor& tensor) { return visualize_sharding(tensor.spec()); }
std::string visualize_sharding(const TensorLayout& layout, const std::vector<int64_t>& shape);

}  // namespace kdist
