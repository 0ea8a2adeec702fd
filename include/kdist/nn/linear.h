#pragma once
// kdist::nn::Linear: torch::nn::Linear, which runs in parallel as distribute_module configures it
// (kdist/nn/distribute_module.h), from the placement of its weight on the one mesh axis that
// shards it:
//   weight Shard(0)  column parallel: input replicated, output sharded on its last dim (or
//                    gathered with parallel.gather_output); backward all-reduces the input
//                    gradient. The bias follows the output features.
//   weight Shard(1)  row parallel: input sharded on its last dim (sliced if it arrives whole);
//                    one all_reduce forward; bias (replicated) added once after it; no
//                    collective in backward.
//   replicated       exactly torch::nn::Linear's computation.
// A dimension sharded over the batch axis is gathered before use (FSDP, kdist/nn/fully_shard.h
// says how); under sequence parallelism (kdist/nn/sequence_parallel.h) the column layer gathers
// the sequence and the row layer reduce-scatters it.
//
//   struct MlpImpl : torch::nn::Module {
//     kdist::nn::Linear fc1{nullptr}, fc2{nullptr};   // drop-in for torch::nn::Linear
//   };
//
// Throws std::invalid_argument for inputs of the wrong width, naming the layer's style and what
// to change (a column layer's shard fed to a layer that needs the whole input).
#include <ATen/core/Tensor.h>
#include <kdist/nn/mixed_precision.h>
#include <kdist/nn/parallel.h>
#include <kdist/path_adapter.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <optional>
#include <ostream>
#include <string>

namespace kdist::nn {

// The path adapter's interface: kdist's layers carry the Keras names of torch's.
class LinearImpl : public torch::nn::Cloneable<LinearImpl>, public KerasNamed {
 public:
  LinearImpl(int64_t in_features, int64_t out_features)
      : LinearImpl(torch::nn::LinearOptions(in_features, out_features)) {}
  explicit LinearImpl(const torch::nn::LinearOptions& options);
  // kdist's layer over a stock layer's own parameters: the same at::Tensor objects, with their
  // dtype, device and requires_grad, and the stock layer's training flag. Draws no random
  // numbers. distribute_module puts it in a Sequential in place of a torch::nn::Linear, so an
  // optimizer, a freeze or a dtype move made before still applies.
  explicit LinearImpl(torch::nn::LinearImpl& stock);
  void reset() override;
  void reset_parameters();  // torch::nn::Linear's initialisation
  void pretty_print(std::ostream& stream) const override;
  at::Tensor forward(const at::Tensor& input);
  const char* keras_kind() const override { return "Linear"; }
  // x @ weight^T (+ bias), gathering batch-sharded parameters first.
  at::Tensor matmul(const at::Tensor& x, bool add_bias) const;
  std::string describe() const;                          // "column Linear(64, 256)", for messages
  at::Tensor forward_in_style(const at::Tensor& input);  // forward before output_dtype

  torch::nn::LinearOptions options;
  at::Tensor weight;  // (out, in), or this rank's shard of it
  at::Tensor bias;    // (out), or this rank's shard; undefined without bias
  TensorParallel parallel;
  BatchSharding batch;
  std::optional<MixedPrecision> precision;
};
TORCH_MODULE(Linear);

}  // namespace kdist::nn
