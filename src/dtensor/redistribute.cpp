// redistribute: one function per single-mesh-dimension transition, looked up from a table,
// and a planner that orders the transitions of a multi-dimensional change.
#include "redistribute.h"

#include <ATen/ATen.h>
#include <kdist/comm.h>
#include <kdist/runtime.h>
#include <torch/csrc/autograd/custom_function.h>

#include <array>

#include "../errors.h"

namespace kdist::detail {
namespace {

// One step: mesh dimension `mesh_dim` goes from before.placements[mesh_dim] to
// after.placements[mesh_dim]; every other mesh dimension is the same in both.
struct Step {
  const DTensorSpec& before;
  const DTensorSpec& after;
  int64_t mesh_dim;
  const std::vector<int64_t>& coordinate;
  const comm::Group& group;  // this rank's group along mesh_dim
};

int64_t shard_dim(const Placement& p) { return std::get<Shard>(p).dim; }

// The extent of tensor dimension d that mesh dimension `mesh_dim` splits: what the outer
// mesh dimensions leave of it (mesh_dim itself replicated).
int64_t level_extent(const Step& s, int64_t d) {
  DTensorSpec unsplit = s.before;
  unsplit.placements[s.mesh_dim] = Replicate{};
  return unsplit.local_shape(s.coordinate)[d];
}

at::Tensor shard_to_replicate(const at::Tensor& local, const Step& s) {
  const int64_t d = shard_dim(s.before.placements[s.mesh_dim]);
  return comm::all_gather(local, d, s.group,
                          comm::chunk_sizes(level_extent(s, d), s.group.size()));
}

at::Tensor replicate_to_shard(const at::Tensor& local, const Step& s) {
  const int64_t d = shard_dim(s.after.placements[s.mesh_dim]);
  return comm::chunk_piece(local, d, s.group.size(), s.coordinate[s.mesh_dim]).contiguous();
}

at::Tensor shard_to_shard(const at::Tensor& local, const Step& s) {
  const int64_t from = shard_dim(s.before.placements[s.mesh_dim]);
  const int64_t to = shard_dim(s.after.placements[s.mesh_dim]);
  return comm::all_to_all(local, /*split_dim=*/to, /*concat_dim=*/from, level_extent(s, from),
                          s.group);
}

at::Tensor partial_to_replicate(const at::Tensor& local, const Step& s) {
  auto out = local.contiguous().clone();
  comm::all_reduce(out, comm::ReduceOp::kSum, s.group);
  return out;
}

at::Tensor partial_to_shard(const at::Tensor& local, const Step& s) {
  return comm::reduce_scatter(local, shard_dim(s.after.placements[s.mesh_dim]),
                              comm::ReduceOp::kSum, s.group);
}

at::Tensor to_partial(const at::Tensor&, const Step& s) {
  invalid("dtensor", "cannot redistribute ", s.before.to_string(), " to ", s.after.to_string(),
          ": Partial placements exist only inside computations");
}

using Transition = at::Tensor (*)(const at::Tensor&, const Step&);
// kTransitions[from][to], indexed by Placement's variant index: Replicate, Shard, Partial.
constexpr std::array<std::array<Transition, 3>, 3> kTransitions{{
    {nullptr, replicate_to_shard, to_partial},
    {shard_to_replicate, shard_to_shard, to_partial},
    {partial_to_replicate, partial_to_shard, nullptr},
}};

bool shards(const Placement& p, int64_t d) {
  auto* s = std::get_if<Shard>(&p);
  return s && s->dim == d;
}

// Applies one step to `local` and `current`.
void apply(at::Tensor& local, DTensorSpec& current, int64_t mesh_dim, const Placement& target,
           const std::vector<int64_t>& coordinate) {
  if (current.placements[mesh_dim] == target) return;
  DTensorSpec next = current;
  next.placements[mesh_dim] = target;
  auto group = comm::axis_group(*current.mesh, mesh_dim);
  Transition fn = kTransitions[current.placements[mesh_dim].index()][target.index()];
  local = fn(local, Step{current, next, mesh_dim, coordinate, *group});
  current = std::move(next);
}

// Before mesh dimension i works on tensor dimensions `dims`, the inner mesh dimensions that
// shard one of them are gathered back (innermost first): nesting means their pieces are
// pieces of i's piece, and they are re-sharded later, outer to inner.
void unshard_inner(at::Tensor& local, DTensorSpec& current, int64_t i,
                   const std::vector<int64_t>& dims, const std::vector<int64_t>& coordinate) {
  for (int64_t j = current.mesh->ndim() - 1; j > i; --j)
    for (int64_t d : dims)
      if (shards(current.placements[j], d)) apply(local, current, j, Replicate{}, coordinate);
}

}  // namespace

std::vector<int64_t> my_coordinate(const DeviceMesh& mesh) {
  if (!mesh.contains_rank(process_id()))
    invalid("dtensor", "this process (rank ", process_id(), ") is not in ", mesh.to_string());
  return mesh.coordinate_of(process_id());
}

at::Tensor redistribute_local(const at::Tensor& local, const DTensorSpec& from,
                              const DTensorSpec& to) {
  to.validate();
  if (from.global_shape != to.global_shape || !(*from.mesh == *to.mesh))
    invalid("dtensor", "redistribute keeps the mesh and global shape: ", from.to_string(),
            " -> ", to.to_string());
  const auto coordinate = my_coordinate(*from.mesh);
  const int64_t n = from.mesh->ndim();
  DTensorSpec current = from;
  at::Tensor out = local;
  const auto& target = to.placements;

  // 1. Inner to outer: shards that change. A shard moves to another dimension by all_to_all,
  //    unless an outer mesh dimension will change that dimension too (then it would be
  //    gathered again): then it is gathered now and re-sliced in phase 3.
  for (int64_t i = n - 1; i >= 0; --i) {
    const auto& cur = current.placements[i];
    if (!std::holds_alternative<Shard>(cur) || cur == target[i]) continue;
    const int64_t d = shard_dim(cur);
    if (auto* e = std::get_if<Shard>(&target[i])) {
      bool outer_changes = false;
      for (int64_t j = 0; j < i; ++j)
        if (current.placements[j] != target[j] &&
            (shards(current.placements[j], d) || shards(current.placements[j], e->dim) ||
             shards(target[j], d) || shards(target[j], e->dim)))
          outer_changes = true;
      if (!outer_changes) {
        unshard_inner(out, current, i, {d, e->dim}, coordinate);
        apply(out, current, i, target[i], coordinate);
        continue;
      }
    }
    unshard_inner(out, current, i, {d}, coordinate);
    apply(out, current, i, Replicate{}, coordinate);
  }
  // 2. Pending sums: all_reduce, or reduce_scatter straight into a shard.
  for (int64_t i = n - 1; i >= 0; --i) {
    if (!std::holds_alternative<Partial>(current.placements[i]) || target[i] == current.placements[i])
      continue;
    if (auto* e = std::get_if<Shard>(&target[i])) unshard_inner(out, current, i, {e->dim}, coordinate);
    apply(out, current, i, target[i], coordinate);
  }
  // 3. Outer to inner: slice what is replicated and should be sharded (no communication).
  for (int64_t i = 0; i < n; ++i) {
    if (current.placements[i] == target[i]) continue;
    if (auto* e = std::get_if<Shard>(&target[i])) unshard_inner(out, current, i, {e->dim}, coordinate);
    apply(out, current, i, target[i], coordinate);
  }
  return out;
}

namespace {

struct SpecPair : torch::CustomClassHolder {
  DTensorSpec from, to;
  SpecPair(DTensorSpec f, DTensorSpec t) : from(std::move(f)), to(std::move(t)) {}
};

// DTensor's gradient rule: the gradient goes back the way the value came, except that a
// Partial source receives a replicated gradient (never turned back into Partial).
struct RedistributeFunction : torch::autograd::Function<RedistributeFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& local,
                            c10::intrusive_ptr<SpecPair> specs) {
    auto out = redistribute_local(local, specs->from, specs->to);
    ctx->saved_data["specs"] = c10::IValue::make_capsule(std::move(specs));
    // A fresh tensor: autograd must not see the output as a view of the input.
    return out.is_alias_of(local) ? out.clone() : out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto specs = c10::static_intrusive_pointer_cast<SpecPair>(ctx->saved_data["specs"].toCapsule());
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor()};
    DTensorSpec back = specs->from;
    for (auto& p : back.placements)
      if (std::holds_alternative<Partial>(p)) p = Replicate{};
    auto grad = redistribute_local(grads[0], specs->to, back);
    return {grad.is_alias_of(grads[0]) ? grad.clone() : grad, at::Tensor()};
  }
};

}  // namespace

at::Tensor redistribute_autograd(const at::Tensor& local, const DTensorSpec& from,
                                 const DTensorSpec& to) {
  if (from.placements == to.placements && from.global_shape == to.global_shape) return local;
  if (!local.requires_grad()) return redistribute_local(local, from, to);
  return RedistributeFunction::apply(local, c10::make_intrusive<SpecPair>(from, to));
}

}  // namespace kdist::detail
