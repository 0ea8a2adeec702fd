#pragma once
#include <c10/core/ScalarType.h>
#include <torch/nn/module.h>

#include <optional>

namespace kdist::nn {

// Mixed precision in the shape of FSDP2's MixedPrecisionPolicy: parameters (and the optimizer
// state on them) stay in their own dtype, fp32, as master weights; a kdist layer computes with
// its weights and input cast to param_dtype, so its activations are param_dtype; weights
// sharded over the batch axis are cast before their all_gather, which moves param_dtype
// bytes; their gradient is reduce-scattered in reduce_dtype and lands on the shard in the
// shard's dtype. Gradients of other parameters come back in the parameter's dtype through
// the cast's backward, so GradientSync averages them in fp32 whatever reduce_dtype says.
// output_dtype, where set, casts the layer's output (the head's, for the loss).
// DistributeModuleOptions::mixed_precision sets it on every kdist layer;
// set_mixed_precision() does so for a model that is not distributed (one process).
struct MixedPrecision {
  c10::ScalarType param_dtype = c10::kBFloat16;
  c10::ScalarType reduce_dtype = c10::kFloat;
  std::optional<c10::ScalarType> output_dtype;
};

// `policy` on every kdist::nn layer of `module` (a model not given to distribute_module: the
// one-process reference of a mixed-precision run); changes no parameter.
void set_mixed_precision(torch::nn::Module& module, const MixedPrecision& policy);

}  // namespace kdist::nn
