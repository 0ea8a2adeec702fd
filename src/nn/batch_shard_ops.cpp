#include "nn/batch_shard_ops.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "nn/autograd_state.h"

namespace kdist::nn::detail {
namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void save(AutogradContext* ctx, const BatchShardPtr& state) { stash(ctx, "shard", state); }

BatchShard& saved(AutogradContext* ctx) { return *stashed<BatchShardPtr>(ctx, "shard"); }

// The gradient for the shard itself: in its dtype (the reduction may have run in another).
at::Tensor in_dtype_of(const at::Tensor& grad, c10::ScalarType dtype) {
  return grad.defined() && grad.scalar_type() != dtype ? grad.to(dtype) : grad;
}

struct GatherBatchShard : torch::autograd::Function<GatherBatchShard> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& shard, BatchShardPtr state) {
    save(ctx, state);
    stash(ctx, "dtype", shard.scalar_type());
    return gather(shard, *state);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {in_dtype_of(shard_gradient(grads[0], saved(ctx)), stashed<c10::ScalarType>(ctx, "dtype")),
            at::Tensor()};
  }
};

struct LinearWithBatchShard : torch::autograd::Function<LinearWithBatchShard> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& shard,
                            BatchShardPtr state) {
    save(ctx, state);
    stash(ctx, "dtype", shard.scalar_type());
    auto weight = gather(shard, *state);
    ctx->save_for_backward({x, state->reshard_after_forward ? shard : weight});
    return at::linear(x, weight);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto& s = saved(ctx);
    auto saved_tensors = ctx->get_saved_variables();
    const auto& x = saved_tensors[0];
    auto weight = s.reshard_after_forward ? gather(saved_tensors[1], s, Pass::kBackward) : saved_tensors[1];
    const auto& dy = grads[0];
    at::Tensor dx;
    if (ctx->needs_input_grad(0)) dx = at::matmul(dy, weight);
    const int64_t out = dy.size(-1), in = x.size(-1);
    auto dw = dy.reshape({-1, out}).t().mm(x.reshape({-1, in}));
    return {dx, in_dtype_of(shard_gradient(dw, s), stashed<c10::ScalarType>(ctx, "dtype")), at::Tensor()};
  }
};

}  // namespace

at::Tensor gather(const at::Tensor& shard, BatchShard& s, Pass pass) {
  at::Tensor full = take_prefetched(s);
  if (!full.defined())
    full = comm::all_gather(in_param_dtype(shard, s.precision), s.dim, *s.group,
                            comm::chunk_sizes(s.full_size, s.group->size()));
  prefetch_next(s, pass);
  return full;
}

at::Tensor in_param_dtype(const at::Tensor& t, const std::optional<MixedPrecision>& precision) {
  return precision && t.defined() ? t.to(precision->param_dtype) : t;  // to() keeps t if it is already
}

at::Tensor shard_gradient(at::Tensor full, BatchShard& s) {
  if (s.precision) full = full.to(s.precision->reduce_dtype);
  if (s.unsynced_grad.defined()) {
    full = full + s.unsynced_grad;
    s.unsynced_grad = at::Tensor();
  }
  if (!s.sync) {
    s.unsynced_grad = full.detach().clone();
    return at::Tensor();
  }
  return comm::reduce_scatter(full.contiguous(), s.dim, comm::ReduceOp::kAvg, *s.group);
}

at::Tensor gather_batch_shard(const at::Tensor& shard, const BatchShardPtr& state) {
  return GatherBatchShard::apply(shard, state);
}

at::Tensor linear_with_batch_shard(const at::Tensor& x, const at::Tensor& weight_shard,
                                   const BatchShardPtr& state) {
  if (!state->reshard_after_forward) return at::linear(x, GatherBatchShard::apply(weight_shard, state));
  return LinearWithBatchShard::apply(x, weight_shard, state);
}

}  // namespace kdist::nn::detail

namespace kdist::nn {

BatchSharding* batch_sharding_of(torch::nn::Module& module) {
  if (auto* linear = dynamic_cast<LinearImpl*>(&module)) return &linear->batch;
  if (auto* embedding = dynamic_cast<EmbeddingImpl*>(&module)) return &embedding->batch;
  return nullptr;
}

std::vector<BatchShardPtr> batch_shards_of(torch::nn::Module& module) {
  if (auto* unit = dynamic_cast<FullyShardImpl*>(&module)) return unit->batch_shards();
  std::vector<BatchShardPtr> shards;
  if (auto* batch = batch_sharding_of(module))
    for (const auto& shard : {batch->weight, batch->bias})
      if (shard) shards.push_back(shard);
  return shards;
}

}  // namespace kdist::nn
