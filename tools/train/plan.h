#pragma once
// The sharding plan of a training job as text: what `kdist plan` prints and what
// `kdist train` shows before it starts.
#include <kdist/nn.h>

#include <string>

#include "job.h"

namespace kdist::tools {

// Mesh, distribution, model, and per parameter its layout, placements and local shape on
// the first device (the largest shards), with the bytes per device of parameters, gradients
// and optimizer state.
std::string sharding_report(const TrainJob& job, const DistributionSummary& summary);

// The collectives one training step runs on a device, from the layer rules (column, row,
// vocab and embedding-dim parallel layers; gradient averaging over the batch axis), with
// their byte counts and a per-step total.
std::string collectives_report(const TrainJob& job, const DistributionSummary& summary,
                               torch::nn::Module& model);

}  // namespace kdist::tools
