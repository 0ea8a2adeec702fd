#pragma once
// The checkpoint directory of `kdist train`: DIR/step-N/, each a kdist::save checkpoint.
#include <cstdint>
#include <optional>
#include <string>

namespace kdist::tools {

std::string checkpoint_path(const std::string& directory, int64_t step);

struct SavedStep {
  int64_t step;
  std::string path;
};
// The newest complete checkpoint (one with metadata.json: a published one) in `directory`.
std::optional<SavedStep> latest_checkpoint(const std::string& directory);

// Removes all but the `keep` newest complete checkpoints.
void prune_checkpoints(const std::string& directory, int keep);

}  // namespace kdist::tools
