// LayerPlan::collectives: what a kdist layer's forward and backward send, from the
// configuration distribute_module gives it. A Linear's and an Embedding's activation traffic
// comes from the same route and step table their forward runs (src/nn/route.h); what is added
// here is the FSDP traffic of their gathered parameters (batch_shard_ops.cpp) and the
// SyncBatchNorm and FullyShard units' fixed patterns.
#include <kdist/nn.h>

#include "base/errors.h"
#include "nn/route.h"
namespace kdist {
namespace {

class Collectives {
 public:
  explicit Collectives(const LayerPlan& layer) : layer_(layer) {}

  // Over the tensor-parallel axis.
  void model(const std::string& phase, const std::string& kind, int64_t bytes, const std::string& what) {
    add(phase, kind, layer_.axis, layer_.axis_size, bytes, what, false);
  }
  void gather(const LayerPlan::Gathered& g, const std::string& phase, bool again) {
    add(phase, "all_gather", g.axis, g.axis_size, g.shard_bytes, g.parameter + (again ? " (again)" : ""),
        false);
  }
  void reduce_scatter(const LayerPlan::Gathered& g) {
    add("backward", "reduce_scatter", g.axis, g.axis_size, g.gradient_bytes,
        g.parameter + " (gradient, averaged)", true);
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
    if (g.parameter.size() >= leaf.size() &&
        g.parameter.compare(g.parameter.size() - leaf.size(), leaf.size(), leaf) == 0)
      return &g;
  return nullptr;
}

// This rank's rows of the sequence-sharded activations around a sequence-parallel layer.
int64_t piece_rows(const LayerPlan& layer, const LayerInput& input) {
  if (input.sequence_length <= 0 || input.rows % input.sequence_length != 0)
    detail::invalid("nn", "the plan of sequence-parallel ", layer.layer, " needs the sequence's length: got ",
                    input.sequence_length, " for ", input.rows, " rows");
  return input.rows / input.sequence_length *
         chunk_size(input.sequence_length, layer.axis_size, layer.axis_rank);
}

// What a route step sends in one direction, in bytes of the layer's activations.
int64_t elements(const nn::detail::Traffic& t, const LayerPlan& layer, const LayerInput& input) {
  const int64_t rows = t.rows == nn::detail::Rows::kAll   ? input.rows
                       : t.rows == nn::detail::Rows::kOne ? 1
                                                          : piece_rows(layer, input);
  const int64_t width = t.width == nn::detail::Width::kIn ? layer.in_features
                        : t.width == nn::detail::Width::kOut
                            ? layer.out_features
                            : chunk_size(layer.out_features, layer.axis_size, layer.axis_rank);
  return rows * width * layer.activation_bytes;
}

void step_forward(Collectives& c, const nn::detail::StepTraffic& t, const LayerPlan& layer,
                  const LayerInput& input) {
  if (t.forward.kind && !(t.shared_by_siblings && input.gathered_by_sibling))
    c.model("forward", t.forward.kind, elements(t.forward, layer, input), layer.layer + t.forward.what);
}

void step_backward(Collectives& c, const nn::detail::StepTraffic& t, const LayerPlan& layer,
                   const LayerInput& input) {
  if (t.backward.kind && !(t.shared_by_siblings && input.gathered_by_sibling))
    c.model("backward", t.backward.kind, elements(t.backward, layer, input), layer.layer + t.backward.what);
}

// FSDP around the steps: the weight (and a bias) gathered for forward, the weight again for
// backward where it was released, both gradients reduce-scattered.
std::vector<PlannedCollective> linear(const LayerPlan& layer, const LayerInput& input) {
  Collectives c(layer);
  const auto* weight = gathered(layer, ".weight");
  const auto* bias = gathered(layer, ".bias");
  const auto route =
      nn::detail::linear_route(layer.style, layer.sequence_parallel, layer.gather_output, layer.bias);
  const auto& in = nn::detail::traffic(route.input);
  const auto& out = nn::detail::traffic(route.output);
  const auto& added = nn::detail::traffic(route.bias);
  step_forward(c, in, layer, input);
  if (weight) c.gather(*weight, "forward", false);
  if (bias) c.gather(*bias, "forward", false);
  step_forward(c, out, layer, input);
  step_forward(c, added, layer, input);
  step_backward(c, added, layer, input);
  step_backward(c, out, layer, input);
  if (weight && weight->again_in_backward) c.gather(*weight, "backward", true);
  if (weight) c.reduce_scatter(*weight);
  if (bias) c.reduce_scatter(*bias);
  if (input.requires_grad) step_backward(c, in, layer, input);
  return c.take();
}

std::vector<PlannedCollective> embedding(const LayerPlan& layer, const LayerInput& input) {
  Collectives c(layer);
  const auto* weight = gathered(layer, ".weight");
  const auto& out = nn::detail::traffic(nn::detail::embedding_route(layer.style, layer.gather_output));
  if (weight) c.gather(*weight, "forward", false);
  step_forward(c, out, layer, input);
  step_backward(c, out, layer, input);
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

std::string to_string(LayerKind kind) {
  switch (kind) {
    case LayerKind::kLinear:
      return "Linear";
    case LayerKind::kEmbedding:
      return "Embedding";
    case LayerKind::kSyncBatchNorm:
      return "SyncBatchNorm";
    case LayerKind::kFullyShard:
      break;
  }
  return "FullyShard";
}

std::string ParameterPlan::style_text() const {
  if (!batch_sharded) return nn::to_string(style);
  return style == nn::ParallelStyle::kReplicated ? "fsdp" : nn::to_string(style) + "+fsdp";
}

std::vector<PlannedCollective> LayerPlan::collectives(const LayerInput& input) const {
  switch (kind) {
    case LayerKind::kLinear:
      return linear(*this, input);
    case LayerKind::kEmbedding:
      return embedding(*this, input);
    case LayerKind::kSyncBatchNorm:
      return batch_norm(*this, input);
    case LayerKind::kFullyShard:
      break;
  }
  return unit(*this);
}

}  // namespace kdist
