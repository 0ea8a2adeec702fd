#pragma once
// Plans as values: what distribute_module does to each parameter (ParameterPlan), and what each
// kdist layer and FullyShard unit sends in one forward and backward (LayerPlan), computed by
// plan_module and distribute_module (kdist/nn/distribute_module.h) from the same decisions the
// layers run with; and the plans of the nn functions a model calls itself. `kdist plan` prints
// them, and `kdist train --count-collectives` is held equal to them.
#include <kdist/layout.h>
#include <kdist/nn/parallel.h>
#include <kdist/path_adapter.h>

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kdist {

// One collective as a plan says it will run: nn's layer plans
// (LayerPlan), sync's gradient-sync plan (plan_gradient_sync) and `kdist plan` are lists of
// these, in CollectiveCounter's units, so that a plan can be checked against what ran.
struct PlannedCollective {
  std::string phase;       // "forward", "backward" or "step end"
  std::string kind;        // CollectiveCounter's kind: "all_reduce", "all_gather", "reduce_scatter", ...
  std::string axis;        // the mesh axis whose group runs it
  int64_t group_size = 1;  // never 1: a group of one runs nothing, and plans leave it out
  int64_t bytes = 0;       // as CollectiveCounter records it (the tensor this rank hands in)
  std::string what;        // what moves: "blocks.0.attn.o (input gradient)"
  // A gradient reduction: under gradient accumulation (GradientSync::no_sync) it runs once
  // per step, where forward and backward collectives run once per micro-batch.
  bool once_per_step = false;
};

// What distribute_module did to one parameter.
struct ParameterPlan {
  ParameterPath path;
  std::vector<int64_t> global_shape;
  TensorLayout layout;
  std::vector<Placement> placements;
  std::vector<int64_t> local_shape;                          // this rank's
  nn::ParallelStyle style = nn::ParallelStyle::kReplicated;  // its layer's, over the model axis
  bool batch_sharded = false;                                // sharded over the batch axis too (FSDP)
  std::optional<std::string> key;                            // the LayoutMap key that asked for it
  c10::ScalarType dtype = c10::ScalarType::Float;
  bool requires_grad = true;
  bool keras_transposed = false;  // `layout` is the transpose of what a Keras kernel key gave
  // "column", "row", "vocab", "embedding-dim" or "replicated"; "+fsdp" where batch_sharded
  // ("fsdp" alone for a replicated one): the style column of the summary's table.
  std::string style_text() const;
};

// What a layer's input is, for its plan: activation bytes depend on it.
struct LayerInput {
  int64_t rows = 0;  // the input's elements over its last dimension; an Embedding's id count
  // Under sequence parallelism: the sequence's length (rows = batch x length), whose piece
  // of this rank the layer's neighbours hold.
  int64_t sequence_length = 0;
  bool requires_grad = true;         // false (the model's data): backward sends nothing for it
  bool gathered_by_sibling = false;  // sequence parallelism: q, k and v share one gather
};

// The collectives one kdist layer or FullyShard unit issues in one forward and the backward
// through it, computed from the configuration distribute_module gives the layer. A Linear's and
// an Embedding's activation collectives come from the table of steps their forward runs
// (src/nn/route.h), so the plan follows the code path the layer takes.
//
//   auto summary = kdist::plan_module(*model, distribution, /*rank=*/0);
//   for (const auto& layer : summary.layers)
//     for (const auto& c : layer.collectives({/*rows=*/batch * time}))
//       std::cout << c.phase << " " << c.kind << " over " << c.axis << ": " << c.bytes << " B\n";
//
// A row-parallel Linear is planned for inputs sharded by the column-parallel layer before it
// (one that gets whole inputs slices them, and backward gathers their gradient once more).
enum class LayerKind { kLinear, kEmbedding, kSyncBatchNorm, kFullyShard };
std::string to_string(LayerKind kind);  // "Linear", "Embedding", "SyncBatchNorm", "FullyShard"

struct LayerPlan {
  std::string layer;  // the module's path, "blocks.0.attn.q"
  LayerKind kind = LayerKind::kLinear;
  nn::ParallelStyle style = nn::ParallelStyle::kReplicated;
  std::string axis;  // the tensor-parallel axis ("" when replicated)
  int64_t axis_size = 1;
  int64_t axis_rank = 0;    // this rank's index along it
  int64_t in_features = 0;  // Linear: in, out; Embedding: num_embeddings, embedding_dim
  int64_t out_features = 0;
  bool bias = false;  // a Linear's
  bool gather_output = false;
  bool sequence_parallel = false;
  int64_t activation_bytes = 4;  // per element: the parameters' dtype, or param_dtype's under mixed precision
  // A parameter sharded over the batch axis (FSDP): gathered before use, its gradient
  // reduce-scattered back.
  struct Gathered {
    std::string parameter;
    std::string axis;
    int64_t axis_size = 1;
    int64_t shard_bytes = 0;         // what the gather hands in (param_dtype under mixed precision)
    int64_t gradient_bytes = 0;      // the gathered gradient the reduce_scatter hands in (reduce_dtype)
    bool again_in_backward = false;  // released after forward and gathered again
  };
  std::vector<Gathered> gathered;
  // In the order the layer issues them: forward, then backward.
  std::vector<PlannedCollective> collectives(const LayerInput& input) const;
};

struct DistributionSummary {
  std::vector<ParameterPlan> parameters;
  std::vector<LayerPlan> layers;  // each kdist layer and FullyShard unit, in module order
  int64_t local_bytes = 0;        // parameter bytes this rank holds
  int64_t sharded_bytes = 0;      // of which in sharded parameters
  int64_t replicated_bytes = 0;   // of which in replicated parameters
  int64_t global_bytes = 0;       // the whole model
  std::string to_string() const;  // a table: parameter, global shape, layout, placements, local shape
};

// Plans of the nn functions a model calls itself, beside its layers' (LayerPlan): what each
// sends in one forward and backward, in CollectiveCounter's units, so that a step's plan
// (kdist plan's, or a user's own held against a CollectiveCounter) covers the whole model.
// `layer` is the plan of a layer on the model axis they run over (the head, or any
// sequence-parallel Linear): its axis, size and rank. Each is empty on an axis of size one.
// Throw std::invalid_argument for a layer whose rank is outside its axis, a negative row
// count or a dimension out of range.
//
//   auto summary = kdist::plan_module(*model, distribution, rank, options);
//   auto plan = kdist::plan_parallel_cross_entropy(batch * time, head_plan);
//   auto more = kdist::plan_scatter_sequence({batch, time, width}, 1, 4, head_plan);
//
// parallel_cross_entropy over `rows` rows (the targets' element count): two all_reduces of
// per-row fp32 scalars where the head's logits are sharded, none where they are whole.
std::vector<PlannedCollective> plan_parallel_cross_entropy(int64_t rows, const LayerPlan& head);
// scatter_sequence of an activation of `shape` along `dim` (elements of `element_bytes`):
// backward all-gathers the gradient of this rank's piece.
std::vector<PlannedCollective> plan_scatter_sequence(const std::vector<int64_t>& shape, int64_t dim,
                                                     int64_t element_bytes, const LayerPlan& layer);
// sum_gradients_over_sequence of a module with these parameters (from the summary): one
// all_reduce of each gradient that requires one.
std::vector<PlannedCollective> plan_sum_gradients_over_sequence(const std::vector<ParameterPlan>& parameters,
                                                                const LayerPlan& layer);

}  // namespace kdist
