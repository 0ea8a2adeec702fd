#include "train/step_checkpoints.h"

#include <kdist/runtime.h>

#include "train/checkpoints.h"

namespace kdist::tools {

StepCheckpoints::StepCheckpoints(const TrainOptions& options)
    : directory_(options.checkpoint_dir),
      every_(options.checkpoint_every),
      last_step_(options.steps),
      async_(options.checkpoint_async) {}

void StepCheckpoints::after_step(int64_t step, torch::nn::Module& model, torch::optim::Optimizer& optimizer) {
  if (directory_.empty()) return;
  if (async_ && saver_.poll()) published();
  if (!((every_ > 0 && step % every_ == 0) || step == last_step_)) return;
  const std::string path = checkpoint_path(directory_, step);
  if (!async_) {
    save(path, model, &optimizer);
    published();
    return;
  }
  if (saver_.wait()) published();  // the save before, still writing: published and pruned here
  saver_.save(path, model, &optimizer);
}

void StepCheckpoints::finish() {
  if (saver_.wait()) published();
}

// Pruning after publishing keeps two complete checkpoints at every moment.
void StepCheckpoints::published() {
  if (process_id() == 0) prune_checkpoints(directory_, 2);
}

}  // namespace kdist::tools
