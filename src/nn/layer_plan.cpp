// LayerPlan::collectives: what a kdist layer's forward and backward send, from the
// configuration distribute_module gives it. Each case mirrors the layer's code path in
// linear.cpp, embedding.cpp, sequence_parallel.cpp, batch_shard_ops.cpp and fully_shard.cpp;
// the plan tests (tests/nn/layer_plan_test.cpp, `kdist plan` against `kdist train
// --count-collectives`) hold the two together.
#include <kdist/nn.h>

#include "../errors.h"

namespace kdist {
namespace {

using comm::PlannedCollective;

class Collectives {
 public:
  explicit Collectives(const LayerPlan& layer) : layer_(layer) {}

  // Over the tensor-parallel axis.
  void model(const std::string& phase, const std::string& kind, int64_t bytes, const std::string& what) {
    add(phase, kind, layer_.axis, layer_.axis_size, bytes, what, false);
  }
  void gather(const LayerPlan::Gathered& g, const std::string& phase, bool again) {
    add(phase, "all_gather", g.axis, g.axis_size, g.shard_bytes, g.parameter + (again ? " (again)" : ""), false);
  }
  void reduce_scatter(const LayerPlan::Gathered& g) {
    add("backward", "reduce_scatter", g.axis, g.axis_size, g.gradient_bytes, g.parameter + " (gradient, averaged)", true);
  }
  std::vector<PlannedCollective> take() { return std::move(out_); }

 private:
  void add(const std::string& phase, const std::string& kind, const std::string& axis, int64_t size,
           int64_t bytes, const std::string& what, bool once_per_step) {
    if (size <= 1) return;  // comm runs nothing on a group of one
    out_.push_back(PlannedCollective{phase, kind, axis, size, bytes, what, once_per_step});
  }
  const LayerPlan& layer_;
  std::vector<PlannedCollective> out_;
};

// The gathered parameters of a layer: its weight, then its bias (as BatchSharding holds them).
const LayerPlan::Gathered* gathered(const LayerPlan& layer, const std::string& leaf) {
  for (const auto& g : layer.gathered)
    if (g.parameter.size() >= leaf.size() && g.parameter.compare(g.parameter.size() - leaf.size(), leaf.size(), leaf) == 0)
      return &g;
  return nullptr;
}

// This rank's rows of the sequence-sharded activations around a sequence-parallel layer.
int64_t piece_rows(const LayerPlan& layer, const LayerInput& input) {
  if (input.sequence_length <= 0 || input.rows % input.sequence_length != 0)
    detail::invalid("nn", "the plan of sequence-parallel ", layer.layer, " needs the sequence's length: got ",
                    input.sequence_length, " for ", input.rows, " rows");
  return input.rows / input.sequence_length * chunk_size(input.sequence_length, layer.axis_size, layer.axis_rank);
}

std::vector<PlannedCollective> linear(const LayerPlan& layer, const LayerInput& input) {
  Collectives c(layer);
  const int64_t e = layer.activation_bytes, rows = input.rows;
  const auto* weight = gathered(layer, ".weight");
  const auto* bias = gathered(layer, ".bias");
  const bool sequence = layer.sequence_parallel;
  const int64_t local_out = chunk_size(layer.out_features, layer.axis_size, layer.axis_rank);
  if (layer.style == nn::ParallelStyle::kColumn) {
    if (sequence && !input.gathered_by_sibling)
      c.model("forward", "all_gather", piece_rows(layer, input) * layer.in_features * e, layer.layer + " (the sequence)");
    if (bias) c.gather(*bias, "forward", false);
    if (weight) c.gather(*weight, "forward", false);
    if (layer.gather_output) c.model("forward", "all_gather", rows * local_out * e, layer.layer + " (output)");
    if (weight && weight->again_in_backward) c.gather(*weight, "backward", true);
    if (weight) c.reduce_scatter(*weight);
    if (bias) c.reduce_scatter(*bias);
    if (input.requires_grad && !(sequence && input.gathered_by_sibling))
      c.model("backward", sequence ? "reduce_scatter" : "all_reduce", rows * layer.in_features * e,
              layer.layer + " (input gradient" + (sequence ? ", to pieces of the sequence)" : ")"));
  } else if (layer.style == nn::ParallelStyle::kRow) {
    if (weight) c.gather(*weight, "forward", false);
    c.model("forward", sequence ? "reduce_scatter" : "all_reduce", rows * layer.out_features * e,
            layer.layer + (sequence ? " (to pieces of the sequence)" : " (partial sums)"));
    if (bias) c.gather(*bias, "forward", false);
    if (sequence) {
      c.model("backward", "all_gather", piece_rows(layer, input) * layer.out_features * e, layer.layer + " (output gradient)");
      if (layer.bias) c.model("backward", "all_reduce", layer.out_features * e, layer.layer + ".bias (gradient, summed over pieces)");
    }
    if (weight && weight->again_in_backward) c.gather(*weight, "backward", true);
    if (weight) c.reduce_scatter(*weight);
    if (bias) c.reduce_scatter(*bias);
  } else {
    if (bias) c.gather(*bias, "forward", false);
    if (weight) c.gather(*weight, "forward", false);
    if (weight && weight->again_in_backward) c.gather(*weight, "backward", true);
    if (weight) c.reduce_scatter(*weight);
    if (bias) c.reduce_scatter(*bias);
  }
  return c.take();
}

std::vector<PlannedCollective> embedding(const LayerPlan& layer, const LayerInput& input) {
  Collectives c(layer);
  const int64_t e = layer.activation_bytes, ids = input.rows;
  const auto* weight = gathered(layer, ".weight");
  if (weight) c.gather(*weight, "forward", false);
  if (layer.style == nn::ParallelStyle::kVocab)
    c.model("forward", "all_reduce", ids * layer.out_features * e, layer.layer + " (rows of its vocabulary)");
  if (layer.style == nn::ParallelStyle::kEmbeddingDim && layer.gather_output)
    c.model("forward", "all_gather", ids * chunk_size(layer.out_features, layer.axis_size, layer.axis_rank) * e,
            layer.layer + " (output)");
  if (weight) c.reduce_scatter(*weight);
  return c.take();
}

// Forward sums [per-channel sum, count], then the squared deviations; backward their gradients,
// in reverse, where the input needs one.
std::vector<PlannedCollective> batch_norm(const LayerPlan& layer, const LayerInput& input) {
  Collectives c(layer);
  const int64_t e = layer.activation_bytes, channels = layer.in_features;
  c.model("forward", "all_reduce", (channels + 1) * e, layer.layer + " (sum and count)");
  c.model("forward", "all_reduce", channels * e, layer.layer + " (sum of squared deviations)");
  if (input.requires_grad) {
    c.model("backward", "all_reduce", channels * e, layer.layer + " (gradient of the squared deviations)");
    c.model("backward", "all_reduce", (channels + 1) * e, layer.layer + " (gradient of the sum)");
  }
  return c.take();
}

std::vector<PlannedCollective> unit(const LayerPlan& layer) {
  Collectives c(layer);
  for (const auto& g : layer.gathered) c.gather(g, "forward", false);
  for (const auto& g : layer.gathered)
    if (g.again_in_backward) c.gather(g, "backward", true);
  for (const auto& g : layer.gathered) c.reduce_scatter(g);
  return c.take();
}

}  // namespace

std::vector<comm::PlannedCollective> LayerPlan::collectives(const LayerInput& input) const {
  if (kind == "Linear") return linear(*this, input);
  if (kind == "Embedding") return embedding(*this, input);
  if (kind == "SyncBatchNorm") return batch_norm(*this, input);
  return unit(*this);
}

}  // namespace kdist
