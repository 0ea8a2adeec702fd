#pragma once
#include <ATen/core/Tensor.h>
#include <kdist/nn/parallel.h>

namespace kdist::nn {

// The mean cross-entropy of logits whose last dimension, the vocabulary, is sharded as
// `vocabulary` says: loss parallel (torchtitan's loss_parallel). Pass a column-parallel head's
// `parallel` with gather_output off; each rank then holds 1/model of the logits and of their
// softmax, and the loss comes from two all_reduces of per-row scalars (the maximum, then the
// sum of exp and the target's logit) over the head's group, never a gather of the logits.
// Loss and gradients equal at::cross_entropy_loss of the gathered logits within rounding.
// For logits that are whole (a replicated head, gather_output on, a group of one) it is
// at::cross_entropy_loss itself, so the same program runs on one process.
//
//   model->head->parallel.gather_output = false;   // column parallel over "model"
//   auto loss = kdist::nn::parallel_cross_entropy(model->forward(x), targets, model->head->parallel);
//
// logits (..., local vocabulary), targets (...) of global vocabulary indices (int64). Throws
// std::invalid_argument for mismatched shapes, logits that are not this rank's shard, or a
// target outside the vocabulary. Collective over the head's group when sharded.
at::Tensor parallel_cross_entropy(const at::Tensor& logits, const at::Tensor& targets,
                                  const TensorParallel& vocabulary);

}  // namespace kdist::nn
