// kdist::nn::Embedding: torch::nn::Embedding that runs vocab- or dim-parallel when sharded.
#include <ATen/ATen.h>
#include <kdist/dtensor.h>
#include <kdist/nn.h>
#include <torch/nn/functional/embedding.h>
#include <torch/nn/init.h>

#include "base/errors.h"
#include "nn/batch_shard_ops.h"
#include "nn/route.h"

namespace kdist::nn {

EmbeddingImpl::EmbeddingImpl(const torch::nn::EmbeddingOptions& options_) : options(options_) { reset(); }

EmbeddingImpl::EmbeddingImpl(torch::nn::EmbeddingImpl& stock) : options(stock.options) {
  weight = register_parameter("weight", stock.weight, stock.weight.requires_grad());
  train(stock.is_training());
}

void EmbeddingImpl::reset() {
  weight = register_parameter("weight", at::empty({options.num_embeddings(), options.embedding_dim()}));
  reset_parameters();
}

void EmbeddingImpl::reset_parameters() {
  // torch::nn::Embedding's: normal(0, 1), the padding row zeroed.
  torch::nn::init::normal_(weight);
  if (auto padding = options.padding_idx()) {
    torch::NoGradGuard no_grad;
    int64_t row = *padding < 0 ? *padding + options.num_embeddings() : *padding;
    weight[row].fill_(0);
  }
}

void EmbeddingImpl::pretty_print(std::ostream& stream) const {
  stream << "kdist::nn::Embedding(num_embeddings=" << options.num_embeddings()
         << ", embedding_dim=" << options.embedding_dim() << ", parallel=" << to_string(parallel.style)
         << ")";
}

// The rows of `weight` the ids select, as this rank's style holds them; the route's step
// (src/nn/route.h) then combines them across the model axis.
at::Tensor EmbeddingImpl::lookup(const at::Tensor& indices, const at::Tensor& weight) const {
  if (parallel.style == ParallelStyle::kVocab) {
    // Ids outside this rank's rows [offset, offset + rows) look up row 0 and are zeroed, so
    // the all_reduce adds each id's row exactly once.
    const int64_t rows = weight.size(0), first = parallel.local_offset;
    if (rows == 0) {
      // An empty shard (fewer rows than ranks, by the chunk rule) looks nothing up: it adds
      // zeros to the all_reduce. The zero-element sum keeps the (empty) weight in the graph.
      auto shape = indices.sizes().vec();
      shape.push_back(weight.size(1));
      return at::zeros(shape, weight.options()) + weight.sum();
    }
    auto outside = (indices < first).logical_or(indices >= first + rows);
    auto local_ids = (indices - first).masked_fill(outside, 0);
    return at::embedding(weight, local_ids).masked_fill(outside.unsqueeze(-1), 0);
  }
  if (parallel.style == ParallelStyle::kEmbeddingDim) return at::embedding(weight, indices);
  namespace F = torch::nn::functional;
  return F::embedding(indices, weight,
                      F::EmbeddingFuncOptions()
                          .padding_idx(options.padding_idx())
                          .max_norm(options.max_norm())
                          .norm_type(options.norm_type())
                          .scale_grad_by_freq(options.scale_grad_by_freq())
                          .sparse(options.sparse()));
}

at::Tensor EmbeddingImpl::forward(const at::Tensor& indices) {
  if (parallel.style != ParallelStyle::kReplicated)
    if (auto ids = as_dtensor(indices))
      for (const auto& p : ids->placements())
        if (!std::holds_alternative<Replicate>(p))
          kdist::detail::invalid("nn",
                                 "a parallel Embedding needs its ids replicated over the "
                                 "model axis, got ",
                                 to_string(ids->placements()));
  // Sharded over the batch axis: the lookup needs the (tensor-parallel) whole of it. The
  // lookup's backward keeps only the ids, so the gathered copy goes when forward ends.
  // Under mixed precision the gather moves param_dtype, and a local weight is cast.
  const at::Tensor weight = batch.weight ? detail::gather_batch_shard(this->weight, batch.weight)
                                         : detail::in_param_dtype(this->weight, precision);
  const auto step = detail::embedding_route(parallel.style, parallel.gather_output);
  const detail::StepContext context{parallel, 0, 0, "Embedding"};
  const auto out = detail::run(step, lookup(indices, weight), context);
  return precision && precision->output_dtype ? out.to(*precision->output_dtype) : out;
}

}  // namespace kdist::nn
