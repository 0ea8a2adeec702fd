#pragma once
// How a kdist layer moves its activations over the model axis: the steps, chosen once from the
// layer's configuration by linear_route or embedding_route. Each step's entry in route.cpp's
// table holds both the function the layer's forward runs and what that function sends, forward
// and backward; LinearImpl and EmbeddingImpl run the steps, LayerPlan::collectives lists their
// traffic. A plan therefore cannot describe a path the layer does not take.
#include <kdist/nn/parallel.h>

namespace kdist::nn::detail {

enum class InputStep {
  kAsIs,            // replicated: the whole input, nothing sent
  kCopyToParallel,  // column: forward identity, backward all_reduce of the input's gradient
  kGatherSequence,  // column under sequence parallelism: all_gather the pieces of the sequence
  kShardIfWhole,    // row: take this rank's slice of a whole input, use a sharded one as it is
};
enum class OutputStep {
  kAsIs,                   // local output
  kGatherLastDim,          // column / embedding-dim with gather_output
  kAllReduce,              // row (partial sums), vocab (each id's row from its owner)
  kReduceScatterSequence,  // row under sequence parallelism: to this rank's piece
};
enum class BiasStep {
  kNone,
  kInMatmul,            // added by at::linear before any output step
  kAfterOutput,         // added to the reduced output (row parallel)
  kAfterOutputOnPiece,  // added to a piece of the sequence: its gradient summed over the axis
};

struct LinearRoute {
  InputStep input = InputStep::kAsIs;
  OutputStep output = OutputStep::kAsIs;
  BiasStep bias = BiasStep::kNone;
};
LinearRoute linear_route(ParallelStyle style, bool sequence_parallel, bool gather_output, bool has_bias);
// An Embedding looks up (its vocabulary's rows, or its columns), then runs this step.
OutputStep embedding_route(ParallelStyle style, bool gather_output);

// What the layer's inputs and outputs are, for running a step.
struct StepContext {
  const TensorParallel& parallel;
  int64_t local_in = 0;  // a row-parallel weight's shard of in_features
  int64_t full_in = 0;
  std::string layer;  // for errors: "column Linear(32, 64)"
};
at::Tensor run(InputStep step, const at::Tensor& input, const StepContext& context);
at::Tensor run(OutputStep step, const at::Tensor& output, const StepContext& context);
// The output with `bias` added as the step says (kNone and kInMatmul: unchanged).
at::Tensor run(BiasStep step, const at::Tensor& output, const at::Tensor& bias, const StepContext& context);

// What a step sends in one direction: nothing where kind is null. The elements it moves are
// the rows (or this rank's piece of the sequence's rows) times a width.
enum class Rows { kAll, kPiece, kOne };
enum class Width { kIn, kOut, kLocalOut };
struct Traffic {
  const char* kind = nullptr;  // "all_reduce", "all_gather", "reduce_scatter"
  Rows rows = Rows::kAll;
  Width width = Width::kIn;
  const char* what = "";  // appended to the layer's name: " (output)"
};
struct StepTraffic {
  Traffic forward;
  Traffic backward;  // an InputStep's backward is the input's gradient: sent only if it needs one
  bool shared_by_siblings = false;  // q, k and v share one gather of their common input
};
const StepTraffic& traffic(InputStep step);
const StepTraffic& traffic(OutputStep step);
const StepTraffic& traffic(BiasStep step);

}  // namespace kdist::nn::detail
