// The activation steps of kdist's layers, each beside what it sends (src/nn/route.h).
#include "nn/route.h"

#include <array>

#include "base/errors.h"
#include "nn/parallel_ops.h"
#include "nn/sequence_parallel.h"

namespace kdist::nn::detail {
namespace {

using InputRunner = at::Tensor (*)(const at::Tensor&, const StepContext&);
using BiasRunner = at::Tensor (*)(const at::Tensor&, const at::Tensor&, const StepContext&);

struct InputEntry {
  InputStep step;
  InputRunner run;
  StepTraffic traffic;
};
struct OutputEntry {
  OutputStep step;
  InputRunner run;
  StepTraffic traffic;
};
struct BiasEntry {
  BiasStep step;
  BiasRunner run;
  StepTraffic traffic;
};

at::Tensor as_is(const at::Tensor& x, const StepContext&) { return x; }

at::Tensor shard_if_whole(const at::Tensor& x, const StepContext& c) {
  if (x.size(-1) == c.local_in) return x;
  if (x.size(-1) != c.full_in)
    kdist::detail::invalid("nn", "row-parallel Linear expects inputs of last dimension ", c.local_in,
                           " (sharded) or ", c.full_in, " (whole), got ", x.size(-1));
  return scatter_last_dim(x, c.parallel.group);
}

const std::array<InputEntry, 4> kInputSteps = {{
    {InputStep::kAsIs, as_is, {}},
    {InputStep::kCopyToParallel,
     [](const at::Tensor& x, const StepContext& c) { return copy_to_parallel(x, c.parallel.group); },
     {{}, {"all_reduce", Rows::kAll, Width::kIn, " (input gradient)"}}},
    {InputStep::kGatherSequence,
     [](const at::Tensor& x, const StepContext& c) {
       return gather_sequence(x, *c.parallel.sequence, c.layer);
     },
     {{"all_gather", Rows::kPiece, Width::kIn, " (the sequence)"},
      {"reduce_scatter", Rows::kAll, Width::kIn, " (input gradient, to pieces of the sequence)"},
      /*shared_by_siblings=*/true}},
    // The plan counts nothing here: a row-parallel layer is fed its shard by the column-parallel
    // layer before it, and a whole input is sliced locally.
    {InputStep::kShardIfWhole, shard_if_whole, {}},
}};

const std::array<OutputEntry, 4> kOutputSteps = {{
    {OutputStep::kAsIs, as_is, {}},
    {OutputStep::kGatherLastDim,
     [](const at::Tensor& y, const StepContext& c) {
       return gather_last_dim(y, c.parallel.group, c.parallel.full_size);
     },
     {{"all_gather", Rows::kAll, Width::kLocalOut, " (output)"}, {}}},
    {OutputStep::kAllReduce,
     [](const at::Tensor& y, const StepContext& c) { return reduce_from_parallel(y, c.parallel.group); },
     {{"all_reduce", Rows::kAll, Width::kOut, " (partial sums)"}, {}}},
    {OutputStep::kReduceScatterSequence,
     [](const at::Tensor& y, const StepContext& c) {
       return reduce_scatter_sequence(y, *c.parallel.sequence);
     },
     {{"reduce_scatter", Rows::kAll, Width::kOut, " (to pieces of the sequence)"},
      {"all_gather", Rows::kPiece, Width::kOut, " (output gradient)"}}},
}};

at::Tensor unchanged(const at::Tensor& y, const at::Tensor&, const StepContext&) { return y; }

const std::array<BiasEntry, 4> kBiasSteps = {{
    {BiasStep::kNone, unchanged, {}},
    {BiasStep::kInMatmul, unchanged, {}},
    {BiasStep::kAfterOutput,
     [](const at::Tensor& y, const at::Tensor& b, const StepContext&) { return y + b; },
     {}},
    {BiasStep::kAfterOutputOnPiece,
     [](const at::Tensor& y, const at::Tensor& b, const StepContext& c) {
       return y + copy_to_parallel(b, c.parallel.group);
     },
     {{}, {"all_reduce", Rows::kOne, Width::kOut, ".bias (gradient, summed over pieces)"}}},
}};

// The table's entry for `step`; the tables list their steps in the enums' order.
template <typename Table, typename Step>
const auto& entry(const Table& table, Step step) {
  const auto& found = table[static_cast<size_t>(step)];
  if (found.step != step) kdist::detail::failure("nn", "route table out of the enum's order");
  return found;
}

}  // namespace

LinearRoute linear_route(ParallelStyle style, bool sequence_parallel, bool gather_output, bool has_bias) {
  LinearRoute route;
  route.bias = has_bias ? BiasStep::kInMatmul : BiasStep::kNone;
  if (style == ParallelStyle::kColumn) {
    route.input = sequence_parallel ? InputStep::kGatherSequence : InputStep::kCopyToParallel;
    route.output = gather_output ? OutputStep::kGatherLastDim : OutputStep::kAsIs;
  } else if (style == ParallelStyle::kRow) {
    route.input = InputStep::kShardIfWhole;
    route.output = sequence_parallel ? OutputStep::kReduceScatterSequence : OutputStep::kAllReduce;
    if (has_bias) route.bias = sequence_parallel ? BiasStep::kAfterOutputOnPiece : BiasStep::kAfterOutput;
  }
  return route;
}

OutputStep embedding_route(ParallelStyle style, bool gather_output) {
  if (style == ParallelStyle::kVocab) return OutputStep::kAllReduce;
  if (style == ParallelStyle::kEmbeddingDim && gather_output) return OutputStep::kGatherLastDim;
  return OutputStep::kAsIs;
}

at::Tensor run(InputStep step, const at::Tensor& input, const StepContext& context) {
  return entry(kInputSteps, step).run(input, context);
}
at::Tensor run(OutputStep step, const at::Tensor& output, const StepContext& context) {
  return entry(kOutputSteps, step).run(output, context);
}
at::Tensor run(BiasStep step, const at::Tensor& output, const at::Tensor& bias, const StepContext& context) {
  return entry(kBiasSteps, step).run(output, bias, context);
}

const StepTraffic& traffic(InputStep step) { return entry(kInputSteps, step).traffic; }
const StepTraffic& traffic(OutputStep step) { return entry(kOutputSteps, step).traffic; }
const StepTraffic& traffic(BiasStep step) { return entry(kBiasSteps, step).traffic; }

}  // namespace kdist::nn::detail
