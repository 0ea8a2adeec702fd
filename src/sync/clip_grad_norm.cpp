// clip_grad_norm_ over parameters of any layout (sync.h).
//
// Each process adds up |g|^p of its own gradient elements, each parameter's sum divided by
// how many processes hold that same piece (its replication over the mesh), and one all_reduce
// over the job sums them: every element of the model counted once. The infinity norm is a
// max, where copies do not matter.
#include <ATen/ATen.h>
#include <kdist/dtensor.h>
#include <kdist/runtime.h>
#include <kdist/sync.h>

#include <cmath>

#include "base/errors.h"

namespace kdist {
namespace {

// How many processes of the job hold the same elements as this one's piece of `param`.
int64_t copies_of(const at::Tensor& param, int64_t world) {
  auto d = as_dtensor(param);
  if (!d) return world;  // replicated everywhere
  const auto& mesh = *d->device_mesh();
  if (mesh.size() != world)
    detail::invalid("sync", "clip_grad_norm_: a parameter's mesh ", mesh.to_string(), " has ", mesh.size(),
                    " devices, the job ", world, " processes; clipping needs a mesh over the whole job");
  int64_t pieces = 1;
  for (size_t axis = 0; axis < d->placements().size(); ++axis) {
    if (std::holds_alternative<Partial>(d->placements()[axis]))
      detail::invalid("sync", "clip_grad_norm_: a gradient placed ", to_string(d->placements()),
                      " is Partial; reduce it first");
    if (std::holds_alternative<Shard>(d->placements()[axis])) pieces *= mesh.shape()[axis];
  }
  return world / pieces;
}

}  // namespace

double clip_grad_norm_(torch::nn::Module& module, double max_norm, double norm_type) {
  if (!(norm_type > 0))
    detail::invalid("sync", "clip_grad_norm_: norm_type ", norm_type, " must be positive (or infinity)");
  const bool infinity = std::isinf(norm_type);
  const int64_t world = num_processes();
  std::vector<at::Tensor> grads;
  auto total = at::zeros({1}, at::kDouble);
  for (const auto& p : module.parameters()) {
    const auto& g = p.grad();
    if (!g.defined()) continue;
    grads.push_back(g);
    if (g.numel() == 0) continue;
    auto magnitude = g.detach().abs().to(at::kDouble);
    if (infinity)
      total = at::maximum(total, magnitude.max().reshape({1}));
    else
      total += magnitude.pow(norm_type).sum() / static_cast<double>(copies_of(p, world));
  }
  if (world > 1)
    comm::all_reduce(total, infinity ? comm::ReduceOp::kMax : comm::ReduceOp::kSum, *comm::world());
  const double norm = infinity ? total.item<double>() : std::pow(total.item<double>(), 1.0 / norm_type);
  const double coefficient = max_norm / (norm + 1e-6);
  if (coefficient < 1) {
    at::NoGradGuard no_grad;
    for (auto& g : grads) g.mul_(coefficient);
  }
  return norm;
}

}  // namespace kdist
