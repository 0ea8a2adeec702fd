#pragma once
// The sharding plan of a training job as text: what `kdist plan` prints and what
// `kdist train` shows before it starts.
#include <kdist/nn.h>

#include <map>
#include <string>
#include <vector>

#include "job.h"

namespace kdist::tools {

// Mesh, distribution, model, and per parameter its layout, placements and local shape on
// the planned rank (rank 0's are the largest shards), with the bytes per device of parameters, gradients
// and optimizer state.
std::string sharding_report(const TrainJob& job, const DistributionSummary& summary);

// The collectives one training step issues on one process, as values: the layers' plans
// (summary.layers, from plan_module or distribute_module), the model's own (its loss, sequence
// parallelism's scatter; Workload::model_collectives), GradientSync's buckets
// (plan_gradient_sync) and the trainer's (clipping, the reported loss). Counted in
// comm::CollectiveCounter's units, so `kdist train --count-collectives` can be held against it.
struct StepPlan {
  std::vector<PlannedCollective> collectives;  // forward, backward, gradient sync, step end
  int64_t micro_batches = 1;
  int64_t rows = 0;  // rows of activations per micro-batch
  int64_t times(const PlannedCollective& c) const { return c.once_per_step ? 1 : micro_batches; }
  std::map<std::string, std::pair<int64_t, int64_t>> by_kind() const;  // kind -> count, bytes per step
};
StepPlan plan_step(const TrainJob& job, const DistributionSummary& summary, torch::nn::Module& model);

// "all_gather 12 (3456 B); all_reduce 26 (2228224 B)": kinds in name order, or "none". The
// one format of both `kdist plan`'s "by kind:" line and `kdist train --count-collectives`.
std::string counts_text(const std::map<std::string, std::pair<int64_t, int64_t>>& by_kind);

// The step plan as a table (phase, collective, group, what, bytes), its total and its counts by kind.
std::string collectives_report(const TrainJob& job, const StepPlan& plan, int rank);

}  // namespace kdist::tools
