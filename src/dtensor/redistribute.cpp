// redistribute: one function per single-mesh-dimension transition, looked up from a table,
// and a planner that orders the transitions of a multi-dimensional change.
#include "dtensor/redistribute.h"

#include <ATen/ATen.h>
#include <kdist/comm.h>
#include <kdist/runtime.h>
#include <torch/csrc/autograd/custom_function.h>

#include <array>

#include "base/errors.h"

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
  return comm::all_gather(local, d, s.group, comm::chunk_sizes(level_extent(s, d), s.group.size()));
}

at::Tensor replicate_to_shard(const at::Tensor& local, const Step& s) {
  const int64_t d = shard_dim(s.after.placements[s.mesh_dim]);
  return comm::chunk_piece(local, d, s.group.size(), s.coordinate[s.mesh_dim]).contiguous();
}

at::Tensor shard_to_shard(const at::Tensor& local, const Step& s) {
  const int64_t from = shard_dim(s.before.placements[s.mesh_dim]);
  const int64_t to = shard_dim(s.after.placements[s.mesh_dim]);
  return comm::all_to_all(local, /*split_dim=*/to, /*concat_dim=*/from, level_extent(s, from), s.group);
}

at::Tensor partial_to_replicate(const at::Tensor& local, const Step& s) {
  return comm::all_reduce_copy(local, comm::ReduceOp::kSum, s.group);
}

at::Tensor partial_to_shard(const at::Tensor& local, const Step& s) {
  return comm::reduce_scatter(local, shard_dim(s.after.placements[s.mesh_dim]), comm::ReduceOp::kSum,
                              s.group);
}

// One transition: the function that runs it and the collective it issues (empty: none).
// Nothing turns into Partial: the planner refuses it before any step runs.
struct Transition {
  at::Tensor (*run)(const at::Tensor&, const Step&);
  const char* collective;
};
// kTransitions[from][to], indexed by Placement's variant index: Replicate, Shard, Partial.
constexpr std::array<std::array<Transition, 3>, 3> kTransitions{{
    {{{nullptr, ""}, {replicate_to_shard, ""}, {nullptr, ""}}},
    {{{shard_to_replicate, "all_gather"}, {shard_to_shard, "all_to_all"}, {nullptr, ""}}},
    {{{partial_to_replicate, "all_reduce"}, {partial_to_shard, "reduce_scatter"}, {nullptr, ""}}},
}};

const Transition& transition(const Placement& from, const Placement& to) {
  return kTransitions[from.index()][to.index()];
}

bool shards(const Placement& p, int64_t d) {
  auto* s = std::get_if<Shard>(&p);
  return s && s->dim == d;
}

// The transitions of a redistribution, in order: mesh dimension `mesh_dim` goes from
// before's placement to after's; the planner works on specs alone, no data.
struct PlannedStep {
  DTensorSpec before, after;
  int64_t mesh_dim;
};

struct Planner {
  DTensorSpec current;
  std::vector<PlannedStep> steps;

  // One step of mesh dimension `mesh_dim` to `target`, if it is not there yet.
  void apply(int64_t mesh_dim, const Placement& target) {
    if (current.placements[mesh_dim] == target) return;
    DTensorSpec next = current;
    next.placements[mesh_dim] = target;
    if (std::holds_alternative<Partial>(target))
      invalid("dtensor", "cannot redistribute ", current.to_string(), " to ", next.to_string(),
              ": Partial placements exist only inside computations");
    steps.push_back({current, next, mesh_dim});
    current = std::move(next);
  }

  // Before mesh dimension i works on tensor dimensions `dims`, the inner mesh dimensions that
  // shard one of them are gathered back (innermost first): nesting means their pieces are
  // pieces of i's piece, and they are re-sharded later, outer to inner.
  void unshard_inner(int64_t i, const std::vector<int64_t>& dims) {
    for (int64_t j = current.mesh->ndim() - 1; j > i; --j)
      for (int64_t d : dims)
        if (shards(current.placements[j], d)) apply(j, Replicate{});
  }
};

std::vector<PlannedStep> plan_steps(const DTensorSpec& from, const DTensorSpec& to) {
  to.validate();
  if (from.global_shape != to.global_shape || !(*from.mesh == *to.mesh))
    invalid("dtensor", "redistribute keeps the mesh and global shape: ", from.to_string(), " -> ",
            to.to_string());
  const int64_t n = from.mesh->ndim();
  Planner plan{from, {}};
  const auto& target = to.placements;

  // 1. Inner to outer: shards that change. A shard moves to another dimension by all_to_all,
  //    unless an outer mesh dimension will change that dimension too (then it would be
  //    gathered again): then it is gathered now and re-sliced in phase 3.
  for (int64_t i = n - 1; i >= 0; --i) {
    const auto& cur = plan.current.placements[i];
    if (!std::holds_alternative<Shard>(cur) || cur == target[i]) continue;
    const int64_t d = shard_dim(cur);
    if (auto* e = std::get_if<Shard>(&target[i])) {
      bool outer_changes = false;
      for (int64_t j = 0; j < i; ++j)
        if (plan.current.placements[j] != target[j] &&
            (shards(plan.current.placements[j], d) || shards(plan.current.placements[j], e->dim) ||
             shards(target[j], d) || shards(target[j], e->dim)))
          outer_changes = true;
      if (!outer_changes) {
        plan.unshard_inner(i, {d, e->dim});
        plan.apply(i, target[i]);
        continue;
      }
    }
    plan.unshard_inner(i, {d});
    plan.apply(i, Replicate{});
  }
  // 2. Pending sums: all_reduce, or reduce_scatter straight into a shard.
  for (int64_t i = n - 1; i >= 0; --i) {
    if (!std::holds_alternative<Partial>(plan.current.placements[i]) ||
        target[i] == plan.current.placements[i])
      continue;
    if (auto* e = std::get_if<Shard>(&target[i])) plan.unshard_inner(i, {e->dim});
    plan.apply(i, target[i]);
  }
  // 3. Outer to inner: slice what is replicated and should be sharded (no communication).
  for (int64_t i = 0; i < n; ++i) {
    if (plan.current.placements[i] == target[i]) continue;
    if (auto* e = std::get_if<Shard>(&target[i])) plan.unshard_inner(i, {e->dim});
    plan.apply(i, target[i]);
  }
  return std::move(plan.steps);
}

}  // namespace

std::vector<int64_t> my_coordinate(const DeviceMesh& mesh) {
  if (!mesh.contains_rank(process_id()))
    invalid("dtensor", "this process (rank ", process_id(), ") is not in ", mesh.to_string());
  return mesh.coordinate_of(process_id());
}

at::Tensor redistribute_local(const at::Tensor& local, const DTensorSpec& from, const DTensorSpec& to) {
  const auto steps = plan_steps(from, to);
  const auto coordinate = my_coordinate(*from.mesh);
  at::Tensor out = local;
  for (const auto& step : steps) {
    auto group = comm::axis_group(*step.before.mesh, step.mesh_dim);
    const auto& t = transition(step.before.placements[step.mesh_dim], step.after.placements[step.mesh_dim]);
    out = t.run(out, Step{step.before, step.after, step.mesh_dim, coordinate, *group});
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

at::Tensor redistribute_autograd(const at::Tensor& local, const DTensorSpec& from, const DTensorSpec& to) {
  if (from.placements == to.placements && from.global_shape == to.global_shape) return local;
  if (!local.requires_grad()) return redistribute_local(local, from, to);
  return RedistributeFunction::apply(local, c10::make_intrusive<SpecPair>(from, to));
}

}  // namespace kdist::detail

namespace kdist {

RedistributePlan plan_redistribute(const DTensorSpec& from, const DTensorSpec& to, c10::ScalarType dtype) {
  const auto coordinate = detail::my_coordinate(*from.mesh);
  const int rank = process_id();
  RedistributePlan plan;
  for (const auto& step : detail::plan_steps(from, to)) {
    RedistributeStep out;
    out.mesh_dim = step.mesh_dim;
    out.before = step.before.placements[step.mesh_dim];
    out.after = step.after.placements[step.mesh_dim];
    out.ranks = step.before.mesh->ranks_along(step.mesh_dim, rank);
    // What comm counts: the bytes this process puts in, which is its block before the step
    // for every transition here; nothing on a group of one.
    if (out.ranks.size() > 1) out.collective = detail::transition(out.before, out.after).collective;
    if (!out.collective.empty()) {
      int64_t numel = 1;
      for (int64_t s : step.before.local_shape(coordinate)) numel *= s;
      out.bytes = numel * static_cast<int64_t>(c10::elementSize(dtype));
    }
    plan.steps.push_back(std::move(out));
  }
  return plan;
}

RedistributePlan DTensor::plan_redistribute(const std::vector<Placement>& placements) const {
  DTensorSpec to = spec();
  to.placements = placements;
  return kdist::plan_redistribute(spec(), to, local_.scalar_type());
}

int64_t RedistributePlan::count(const std::string& collective) const {
  int64_t n = 0;
  for (const auto& s : steps) n += s.collective == collective ? 1 : 0;
  return n;
}

int64_t RedistributePlan::bytes(const std::string& collective) const {
  int64_t n = 0;
  for (const auto& s : steps) n += s.collective == collective ? s.bytes : 0;
  return n;
}

std::string RedistributePlan::to_string() const {
  std::string out;
  for (const auto& s : steps) {
    std::string ranks;
    for (int r : s.ranks) ranks += (ranks.empty() ? "" : ",") + std::to_string(r);
    out += "mesh dim " + std::to_string(s.mesh_dim) + ": " + kdist::to_string(s.before) + " -> " +
           kdist::to_string(s.after) + "  " +
           (s.collective.empty()
                ? std::string("local")
                : s.collective + " over ranks " + ranks + ", " + std::to_string(s.bytes) + " bytes") +
           "\n";
  }
  return out;
}

}  // namespace kdist
