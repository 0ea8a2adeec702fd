#pragma once
// The checkpoint directory of `kdist train`: DIR/step-N/, each a kdist::save checkpoint.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kdist::tools {

std::string checkpoint_path(const std::string& directory, int64_t step);

struct SavedStep {
  int64_t step;
  std::string path;
};
// The complete checkpoints (those with metadata.json: published ones) in `directory`, oldest
// first; none where it does not exist.
std::vector<SavedStep> complete_checkpoints(const std::string& directory);
// The newest of them.
std::optional<SavedStep> latest_checkpoint(const std::string& directory);

// Before step 1, on every process: `directory` exists or can be made, and this process can
// write a file there (not merely the permission bits: a read-only mount says no too). Without
// `resume` it must hold no checkpoints, which would be another run's: pruning would then keep
// whichever two step numbers are highest, and a later --resume would load that run. With it, a
// directory that has step-N entries must have a complete one. Throws std::invalid_argument
// naming the directory and what is there.
void check_checkpoint_dir(const std::string& directory, bool resume, int process);

// Removes all but the `keep` newest complete checkpoints.
void prune_checkpoints(const std::string& directory, int keep);

}  // namespace kdist::tools
