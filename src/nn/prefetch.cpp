#include "nn/prefetch.h"

#include "nn/batch_shard_ops.h"

#include <ATen/ATen.h>

namespace kdist::nn::detail {

at::Tensor take_prefetched(BatchShard& shard) {
  if (!shard.prefetch || !shard.prefetch->pending.valid()) return at::Tensor();
  Prefetch& p = *shard.prefetch;
  // Waited for even when stale: every rank launched it, and every rank judges it alike (the
  // same optimizer steps change the same shards).
  at::Tensor gathered = p.pending.wait();
  return p.param._version() == p.version ? gathered : at::Tensor();
}

void prefetch_next(const BatchShard& shard, Pass pass) {
  if (!shard.prefetch) return;
  auto next = (pass == Pass::kForward ? shard.prefetch->next_forward : shard.prefetch->next_backward).lock();
  if (!next || !next->prefetch || next->prefetch->pending.valid()) return;
  Prefetch& p = *next->prefetch;
  const at::Tensor shard_data = in_param_dtype(p.param.variable_data(), next->precision);
  p.version = p.param._version();
  p.pending = comm::all_gather_async(shard_data, next->dim, *next->group,
                                     comm::chunk_sizes(next->full_size, next->group->size()));
}

void link_prefetch(const std::vector<PrefetchEntry>& order) {
  for (const auto& entry : order) {
    entry.shard->prefetch = std::make_shared<Prefetch>();
    entry.shard->prefetch->param = entry.weight;
  }
  for (size_t i = 0; i + 1 < order.size(); ++i) order[i].shard->prefetch->next_forward = order[i + 1].shard;
  BatchShardPtr later;  // the regathered one after, in forward order
  for (size_t i = order.size(); i-- > 0;) {
    if (!order[i].regathered) continue;
    if (later) later->prefetch->next_backward = order[i].shard;
    later = order[i].shard;
  }
}

}  // namespace kdist::nn::detail
