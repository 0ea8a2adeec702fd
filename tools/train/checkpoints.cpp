#include "checkpoints.h"

#include <algorithm>
#include <filesystem>
#include <regex>
#include <vector>

namespace kdist::tools {
namespace {
namespace fs = std::filesystem;

std::vector<SavedStep> complete_checkpoints(const std::string& directory) {
  std::vector<SavedStep> found;
  std::error_code error;
  if (!fs::is_directory(directory, error)) return found;
  static const std::regex name("step-([0-9]+)");
  for (const auto& entry : fs::directory_iterator(directory)) {
    std::smatch m;
    const std::string file = entry.path().filename().string();
    if (std::regex_match(file, m, name) && fs::exists(entry.path() / "metadata.json"))
      found.push_back({std::stoll(m[1]), entry.path().string()});
  }
  std::sort(found.begin(), found.end(), [](const SavedStep& a, const SavedStep& b) { return a.step < b.step; });
  return found;
}

}  // namespace

std::string checkpoint_path(const std::string& directory, int64_t step) {
  return (fs::path(directory) / ("step-" + std::to_string(step))).string();
}

std::optional<SavedStep> latest_checkpoint(const std::string& directory) {
  auto found = complete_checkpoints(directory);
  if (found.empty()) return std::nullopt;
  return found.back();
}

void prune_checkpoints(const std::string& directory, int keep) {
  auto found = complete_checkpoints(directory);
  for (size_t i = 0; i + keep < found.size(); ++i) fs::remove_all(found[i].path);
}

}  // namespace kdist::tools
