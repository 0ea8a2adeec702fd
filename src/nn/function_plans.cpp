// Plans of the nn functions a model calls itself (parallel_cross_entropy, scatter_sequence,
// sum_gradients_over_sequence): what each sends in one forward and backward, in
// CollectiveCounter's units, mirroring parallel_cross_entropy.cpp and sequence_parallel.cpp.
#include <c10/util/accumulate.h>
#include <kdist/nn.h>

#include "base/errors.h"
#include "base/text.h"

namespace kdist {
namespace {

void check_layer(const LayerPlan& layer, const char* function) {
  if (layer.axis_size < 1 || layer.axis_rank < 0 || layer.axis_rank >= layer.axis_size)
    kdist::detail::invalid("nn", function, ": layer '", layer.layer, "' is rank ", layer.axis_rank, " of ",
                           layer.axis_size, " along its axis; expected 0 <= rank < size");
}

}  // namespace

std::vector<PlannedCollective> plan_parallel_cross_entropy(int64_t rows, const LayerPlan& head) {
  check_layer(head, "plan_parallel_cross_entropy");
  if (rows < 0) kdist::detail::invalid("nn", "plan_parallel_cross_entropy: rows ", rows, " is negative");
  const bool sharded = head.style == nn::ParallelStyle::kColumn && !head.gather_output && head.axis_size > 1;
  if (!sharded) return {};  // whole logits: at::cross_entropy_loss, no collective
  return {
      {"forward", "all_reduce", head.axis, head.axis_size, rows * 4, "loss (max of each row's logits)"},
      {"forward", "all_reduce", head.axis, head.axis_size, 2 * rows * 4, "loss (sum of exp, target logit)"}};
}

std::vector<PlannedCollective> plan_scatter_sequence(const std::vector<int64_t>& shape, int64_t dim,
                                                     int64_t element_bytes, const LayerPlan& layer) {
  check_layer(layer, "plan_scatter_sequence");
  const int64_t rank = static_cast<int64_t>(shape.size());
  const int64_t d = dim < 0 ? dim + rank : dim;
  if (d < 0 || d >= rank)
    kdist::detail::invalid("nn", "plan_scatter_sequence: dim ", dim, " is out of range for shape ",
                           kdist::detail::tuple_string(shape));
  if (layer.axis_size <= 1) return {};
  auto piece = shape;
  piece[d] = comm::chunk_size(shape[d], layer.axis_size, layer.axis_rank);
  return {{"backward", "all_gather", layer.axis, layer.axis_size,
           c10::multiply_integers(piece) * element_bytes,
           "sequence (gradient of the scattered activations)"}};
}

std::vector<PlannedCollective> plan_sum_gradients_over_sequence(const std::vector<ParameterPlan>& parameters,
                                                                const LayerPlan& layer) {
  check_layer(layer, "plan_sum_gradients_over_sequence");
  std::vector<PlannedCollective> out;
  if (layer.axis_size <= 1) return out;
  for (const auto& p : parameters)
    if (p.requires_grad)
      out.push_back({"backward", "all_reduce", layer.axis, layer.axis_size,
                     c10::multiply_integers(p.local_shape) * static_cast<int64_t>(c10::elementSize(p.dtype)),
                     p.path.torch_name + " (gradient, summed over pieces)"});
  return out;
}

}  // namespace kdist
