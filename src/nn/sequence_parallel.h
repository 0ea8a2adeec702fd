#pragma once
// Sequence parallelism's autograd operations (nn.h's SequenceParallel), each over the model
// axis' group along the sequence dimension.
#include <kdist/nn.h>

namespace kdist::nn::detail {

// A column-parallel layer's input: the whole sequence, all-gathered from this rank's piece
// (checked against the length scatter_sequence recorded); backward reduce-scatters (sums) the
// gradient back to the piece. Layers that take the same input (q, k and v) share one gather.
at::Tensor gather_sequence(const at::Tensor& piece, SequenceParallel& sequence, const std::string& layer);
// A row-parallel layer's output: the partial sums reduce-scattered to this rank's piece of
// the sequence (instead of all-reduced); backward all-gathers the gradient.
at::Tensor reduce_scatter_sequence(const at::Tensor& partial, SequenceParallel& sequence);

}  // namespace kdist::nn::detail
