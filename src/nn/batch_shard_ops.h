#pragma once
// The autograd operations of parameters sharded over the batch axis (nn.h's BatchShard).
#include <kdist/nn.h>

#include "nn/batch_shard.h"
#include "nn/prefetch.h"

namespace kdist::nn::detail {

// The whole tensor of a batch shard (no autograd): all_gather over its group along its dim,
// or the prefetched one; then the prefetch of the shard after it in `pass`.
at::Tensor gather(const at::Tensor& shard, BatchShard& state, Pass pass = Pass::kForward);

// `t` in the precision's param_dtype, if there is one (a cast autograd undoes for the
// gradient): a layer's weight and input, a batch shard as it travels.
at::Tensor in_param_dtype(const at::Tensor& t, const std::optional<MixedPrecision>& precision);

// The shard's gradient from the whole tensor's (in the precision's reduce_dtype, if any): the batch average,
// reduce-scattered. Under no_sync (state.sync false) it is kept, unsharded, in state.unsynced_grad for the
// next synchronised backward, and the result is undefined.
at::Tensor shard_gradient(at::Tensor full, BatchShard& state);

// The whole parameter: forward all_gather of `shard` over the batch group along its dim;
// backward reduce-scatter (average) of the gradient back onto the shard. The gathered
// tensor lives as long as the caller's graph holds it: use it where backward does not save
// it (an Embedding's lookup, an added bias), or when the shard keeps it until backward.
at::Tensor gather_batch_shard(const at::Tensor& shard, const BatchShardPtr& state);

// x @ gathered(weight_shard)^T with the gathered weight released after forward and gathered
// again in backward (FSDP's reshard_after_forward); backward as gather_batch_shard's.
at::Tensor linear_with_batch_shard(const at::Tensor& x, const at::Tensor& weight_shard,
                                   const BatchShardPtr& state);

}  // namespace kdist::nn::detail
