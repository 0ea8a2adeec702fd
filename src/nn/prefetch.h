#pragma once
// FSDP's prefetch for kdist layers' batch-sharded weights (DistributeModuleOptions::prefetch):
// a gather started early for the layer that will use it next.
#include <kdist/nn.h>

#include "nn/batch_shard.h"

#include <vector>

namespace kdist::nn::detail {

enum class Pass { kForward, kBackward };

struct Prefetch {
  at::Tensor param;  // the layer's weight: its data is the shard to gather
  // The batch shards whose gather to start once this one's is done, per pass.
  std::weak_ptr<BatchShard> next_forward, next_backward;
  comm::PendingGather pending;  // a gather started for this shard
  int64_t version = 0;          // param's version counter when it started
};

// The gathered weight a prefetch produced, waited for, if one is pending and the shard has not
// changed since it started; undefined otherwise (the caller gathers).
at::Tensor take_prefetched(BatchShard& shard);
// Starts the gather of the shard that follows `shard` in `pass`, unless one is pending.
void prefetch_next(const BatchShard& shard, Pass pass);

// One weight in the order the layers run forward. regathered: backward gathers it again.
struct PrefetchEntry {
  at::Tensor weight;
  BatchShardPtr shard;
  bool regathered;
};
// Chains the shards: forward in `order`, backward in reverse among the regathered ones.
void link_prefetch(const std::vector<PrefetchEntry>& order);

}  // namespace kdist::nn::detail
