#pragma once
// A parameter stored sharded over the batch axis (FSDP, ZeRO-3): what its layer or unit needs to
// gather it and reduce-scatter its gradient (kdist/nn/fully_shard.h describes the step).
#include <ATen/core/Tensor.h>
#include <kdist/comm.h>
#include <kdist/nn/mixed_precision.h>
#include <kdist/nn/parallel.h>
#include <torch/nn/module.h>

#include <memory>
#include <optional>
#include <vector>

namespace kdist::nn {

namespace detail {
struct Prefetch;  // nn/prefetch.h
}
struct BatchShard {
  comm::GroupPtr group;   // the batch axis' group of this process
  int64_t dim = 0;        // the sharded dimension, in torch orientation
  int64_t full_size = 0;  // its size once gathered
  bool reshard_after_forward = true;
  bool sync = true;
  at::Tensor unsynced_grad;
  // Set by distribute_module with DistributeModuleOptions::prefetch: which layer's gather
  // this one's starts, in forward and in backward, and a gather started for this one.
  std::shared_ptr<detail::Prefetch> prefetch;
  std::optional<MixedPrecision> precision;  // gathered in param_dtype, reduced in reduce_dtype
};
// The BatchSharding of a kdist::nn layer; null for any other module.
BatchSharding* batch_sharding_of(torch::nn::Module& module);
// Every BatchShard `module` itself keeps (a kdist layer's weight and bias, a FullyShard unit's
// parameters); GradientSync::no_sync() turns their `sync` off.
std::vector<BatchShardPtr> batch_shards_of(torch::nn::Module& module);

}  // namespace kdist::nn
