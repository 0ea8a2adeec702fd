#pragma once
// kdist::nn::Embedding: torch::nn::Embedding, which runs in parallel as distribute_module
// configures it, from the placement of its weight:
//   weight Shard(0)  vocab parallel: out-of-range ids masked, local lookup, all_reduce.
//   weight Shard(1)  embedding-dim parallel: output sharded on its last dim (or gathered).
//   replicated       exactly torch::nn::Embedding's computation (padding_idx, max_norm, ...).
// A sharded Embedding with padding_idx, max_norm, scale_grad_by_freq or sparse is refused by
// distribute_module (its parallel lookup does not apply them), and so is max_norm over a batch
// axis of several processes. Shards may be empty (Embedding(9, 4) vocab-parallel on 4 ranks:
// 3, 3, 3, 0 rows); every style still computes the single-process result.
#include <ATen/core/Tensor.h>
#include <kdist/nn/mixed_precision.h>
#include <kdist/nn/parallel.h>
#include <kdist/path_adapter.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include <optional>
#include <ostream>

namespace kdist::nn {

class EmbeddingImpl : public torch::nn::Cloneable<EmbeddingImpl>, public KerasNamed {
 public:
  EmbeddingImpl(int64_t num_embeddings, int64_t embedding_dim)
      : EmbeddingImpl(torch::nn::EmbeddingOptions(num_embeddings, embedding_dim)) {}
  explicit EmbeddingImpl(const torch::nn::EmbeddingOptions& options);
  // Over a stock layer's own weight, as LinearImpl's (torch::nn::LinearImpl&) constructor.
  explicit EmbeddingImpl(torch::nn::EmbeddingImpl& stock);
  void reset() override;
  void reset_parameters();
  void pretty_print(std::ostream& stream) const override;
  at::Tensor forward(const at::Tensor& indices);
  const char* keras_kind() const override { return "Embedding"; }

  torch::nn::EmbeddingOptions options;
  at::Tensor weight;  // (num_embeddings, embedding_dim), or this rank's shard
  TensorParallel parallel;
  BatchSharding batch;
  std::optional<MixedPrecision> precision;

 private:
  at::Tensor lookup(const at::Tensor& indices, const at::Tensor& weight) const;
};
TORCH_MODULE(Embedding);

}  // namespace kdist::nn
