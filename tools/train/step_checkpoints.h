#pragma once
// When `kdist train` saves: every --checkpoint-every steps and after the last, into
// --checkpoint-dir, keeping the two newest complete checkpoints. Under --checkpoint-async a
// save returns after copying the shards to host memory and is published at a later step
// boundary, so a step pays for the copy and one small all-reduce, not for the write.
#include <kdist/checkpoint.h>

#include <cstdint>
#include <string>

#include "train/options.h"

namespace kdist::tools {

class StepCheckpoints {
 public:
  explicit StepCheckpoints(const TrainOptions& options);

  // After each step, on every process (collective when checkpointing).
  void after_step(int64_t step, torch::nn::Module& model, torch::optim::Optimizer& optimizer);
  // After the last step: publishes the save in flight.
  void finish();

 private:
  void published();
  std::string directory_;
  int64_t every_;
  int64_t last_step_;
  bool async_;
  AsyncSaver saver_;
};

}  // namespace kdist::tools
