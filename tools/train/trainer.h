#pragma once
// The training loop of `kdist train`, the same for the distributed run and the
// single-process reference of --verify.
#include <kdist/comm.h>
#include <kdist/sync.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <functional>
#include <map>
#include <vector>

#include "workload.h"

namespace kdist::tools {

struct StepRecord {
  int64_t step;    // 1-based
  double loss;     // the global batch's mean loss
  double seconds;  // this step's wall time
  // --count-collectives: what this process issued in the step, kind -> (count, bytes).
  std::map<std::string, std::pair<int64_t, int64_t>> collectives;
};

struct DataShard {
  int64_t count = 1;  // how many shards the global batch is cut into
  int64_t id = 0;     // which one this process trains on
};

// options.optimizer over the model's parameters; throws std::invalid_argument if unknown.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(torch::nn::Module& model,
                                                        const TrainOptions& options);

// What a distributed process synchronises; empty for one process.
struct Synchronisation {
  GradientSync* gradients = nullptr;  // averages gradients over the batch axis
  comm::GroupPtr loss_group;          // the batch axis: the reported loss is averaged over it
};

// Trains `model` from step `first_step` to options.steps on its shard of each global batch,
// in options.accumulate micro-batches (each loss divided by their number, so the gradients
// add up to the shard's mean loss's); the micro-batches before the last run under the
// GradientSync's no_sync(). Every process reports the global batch's loss. `on_step` runs on
// every process after every step.
std::vector<StepRecord> train(const Workload& workload, torch::nn::Module& model,
                              torch::optim::Optimizer& optimizer, const TrainOptions& options,
                              DataShard shard, Synchronisation sync = {}, int64_t first_step = 1,
                              const std::function<void(const StepRecord&)>& on_step = {});

// The bytes this process holds to train: its parameters (local shards), their gradients and
// the optimizer's per-parameter tensors (SGD's momentum, Adam's moments), read off the tensors.
struct TrainingState {
  int64_t parameters = 0, gradients = 0, optimizer = 0;
  int64_t total() const { return parameters + gradients + optimizer; }
};
TrainingState measure_training_state(torch::nn::Module& model, torch::optim::Optimizer& optimizer);

}  // namespace kdist::tools
