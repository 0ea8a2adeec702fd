#pragma once
#include <ATen/core/Tensor.h>
#include <kdist/comm.h>
#include <kdist/nn/parallel.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <memory>

namespace kdist::nn {

// Sequence parallelism (torchtitan's SequenceParallel; DistributeModuleOptions::
// sequence_parallel_dim): between tensor-parallel regions (the LayerNorms, the residual
// stream) the activations are sharded over the model axis along the sequence dimension, so
// each process holds 1/model of them. A column-parallel Linear all-gathers the sequence
// before it computes (q, k and v reuse one gather of the same input) and its backward
// reduce-scatters the input gradient; a row-parallel Linear reduce-scatters its output
// along the sequence instead of all-reducing it (its bias then added to the piece, its
// gradient summed over the axis). The model does two things itself:
//   - scatter_sequence() the activations entering the first tensor-parallel block (after the
//     embeddings); it records the sequence's length, which every layer checks its input
//     against;
//   - sum_gradients_over_sequence() for each module run on sequence pieces (the LayerNorms),
//     whose gradients are then partial sums over this rank's tokens.
// The last column-parallel layer (the head) gathers the whole sequence again.
//
//   DistributeModuleOptions options;
//   options.sequence_parallel_dim = 1;                     // (batch, time, features)
//   distribute_module(*model, distribution, options);
//   auto& sequence = *model->head->parallel.sequence;      // shared by the model's layers
//   for (auto* norm : model->norms()) kdist::nn::sum_gradients_over_sequence(*norm, sequence);
//   // forward: x = kdist::nn::scatter_sequence(tok(ids) + pos(t), sequence); blocks; head
//
// Sequences of any length: pieces follow the chunk rule.
struct SequenceParallel {
  comm::GroupPtr group;     // the model axis' group
  int64_t dim = 1;          // the sequence dimension of the activations
  int64_t full_length = 0;  // the sequence's length, recorded by scatter_sequence
  struct Gathered;          // the gather q, k and v share (src/nn/sequence_parallel.cpp)
  std::shared_ptr<Gathered> gathered;
};

// This rank's piece of the sequence (forward), the whole gradient all-gathered (backward).
// Records x's length along sequence.dim for the layers after it.
at::Tensor scatter_sequence(const at::Tensor& x, SequenceParallel& sequence);
// Makes backward sum `module`'s parameter gradients over the model axis (tensor hooks, so
// before they accumulate). Call once per module, after distribute_module.
void sum_gradients_over_sequence(torch::nn::Module& module, const SequenceParallel& sequence);

}  // namespace kdist::nn
