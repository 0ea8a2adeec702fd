#pragma once
// The training loop of `kdist train`, the same for the distributed run and the
// single-process reference of --verify.
#include <kdist/comm.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <functional>
#include <vector>

#include "workload.h"

namespace kdist::tools {

struct StepRecord {
  int64_t step;     // 1-based
  double loss;      // the global batch's mean loss
  double seconds;   // this step's wall time
};

struct DataShard {
  int64_t count = 1;  // how many shards the global batch is cut into
  int64_t id = 0;     // which one this process trains on
};

// options.optimizer over the model's parameters; throws std::invalid_argument if unknown.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(torch::nn::Module& model, const TrainOptions& options);

// Trains `model` from step `first_step` to options.steps on its shard of each global batch.
// With `loss_group`, the reported loss is averaged over it (the batch axis), so every process
// reports the global batch's loss. Gradient averaging is the caller's (a GradientSync on the
// model). `on_step` runs on every process after every step.
std::vector<StepRecord> train(const Workload& workload, torch::nn::Module& model,
                              torch::optim::Optimizer& optimizer, const TrainOptions& options,
                              DataShard shard, comm::GroupPtr loss_group, int64_t first_step = 1,
                              const std::function<void(const StepRecord&)>& on_step = {});

// The bytes this process holds to train: its parameters (local shards), their gradients and
// the optimizer's per-parameter tensors (SGD's momentum, Adam's moments), read off the tensors.
struct TrainingState {
  int64_t parameters = 0, gradients = 0, optimizer = 0;
  int64_t total() const { return parameters + gradients + optimizer; }
};
TrainingState measure_training_state(torch::nn::Module& model, torch::optim::Optimizer& optimizer);

}  // namespace kdist::tools
