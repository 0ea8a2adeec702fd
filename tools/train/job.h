#pragma once
// A training job as the options describe it: the workload, the mesh, the distribution and
// the model, built and checked before any training or communication happens.
#include <kdist/distribution.h>
#include <torch/nn/module.h>

#include <memory>
#include <string>

#include "options.h"
#include "workload.h"

namespace kdist {
struct DistributionSummary;      // kdist/nn.h
struct DistributeModuleOptions;  // kdist/nn.h
}  // namespace kdist

namespace kdist::tools {

struct TrainJob {
  TrainOptions options;
  std::unique_ptr<Workload> workload;
  DeviceMeshPtr mesh;
  std::shared_ptr<Distribution> distribution;
  std::string kind;        // "data" or "model"
  std::string batch_axis;  // the mesh axis the batch is sharded over
  int64_t data_shards;     // the batch axis' size: the global batch splits this many ways
};

// Builds and checks everything: the workload (reads --data), the mesh over `devices`, the
// distribution and its layout map (the model's default entries, then --layout's, which
// replace a default of the same key). Throws std::invalid_argument with one tagged line.
TrainJob prepare_job(const TrainOptions& options, const std::vector<std::string>& devices);

// What the options asked of the plan that the plan must show: --loss-parallel's head column
// parallel. Throws std::invalid_argument naming what the plan made of it instead.
void check_plan(const TrainJob& job, const DistributionSummary& summary);

// What distribute_module is given for these options (--sequence-parallel, --precision).
DistributeModuleOptions distribute_options(const TrainOptions& options);

// "cpu:0" ... "cpu:<count-1>": the devices of a mesh planned without processes.
std::vector<std::string> cpu_devices(int64_t count);

}  // namespace kdist::tools
