#include "checkpoints.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <stdexcept>
#include <vector>

namespace kdist::tools {
namespace {
namespace fs = std::filesystem;

[[noreturn]] void bad_directory(const std::string& message) {
  throw std::invalid_argument("[kdist.train] " + message);
}

// step-N entries of `directory`, complete or not.
std::vector<std::pair<SavedStep, bool>> step_entries(const std::string& directory) {
  std::vector<std::pair<SavedStep, bool>> found;
  std::error_code error;
  if (!fs::is_directory(directory, error)) return found;
  static const std::regex name("step-([0-9]{1,18})");
  for (const auto& entry : fs::directory_iterator(directory, error)) {
    std::smatch m;
    const std::string file = entry.path().filename().string();
    if (std::regex_match(file, m, name))
      found.push_back(
          {{std::stoll(m[1]), entry.path().string()}, fs::exists(entry.path() / "metadata.json", error)});
  }
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.first.step < b.first.step; });
  return found;
}

std::string names_of(const std::vector<SavedStep>& steps) {
  std::string text;
  for (const auto& s : steps) text += (text.empty() ? "" : ", ") + fs::path(s.path).filename().string();
  return text;
}

}  // namespace

std::string checkpoint_path(const std::string& directory, int64_t step) {
  return (fs::path(directory) / ("step-" + std::to_string(step))).string();
}

std::vector<SavedStep> complete_checkpoints(const std::string& directory) {
  std::vector<SavedStep> found;
  for (const auto& [step, complete] : step_entries(directory))
    if (complete) found.push_back(step);
  return found;
}

std::optional<SavedStep> latest_checkpoint(const std::string& directory) {
  auto found = complete_checkpoints(directory);
  if (found.empty()) return std::nullopt;
  return found.back();
}

void check_checkpoint_dir(const std::string& directory, bool resume, int process) {
  std::error_code error;
  fs::create_directories(directory, error);
  if (error) bad_directory("cannot create --checkpoint-dir '" + directory + "': " + error.message());
  const std::string probe = (fs::path(directory) / (".kdist-write-test-" + std::to_string(process))).string();
  {
    std::ofstream out(probe);
    if (!(out << "kdist" << std::flush))
      bad_directory("cannot write in --checkpoint-dir '" + directory + "': " + std::strerror(errno));
  }
  fs::remove(probe, error);
  const auto complete = complete_checkpoints(directory);
  if (!resume && !complete.empty())
    bad_directory("--checkpoint-dir '" + directory + "' holds checkpoints of an earlier run (" +
                  names_of(complete) +
                  "): pass --resume to continue it, or give this run a directory of its own");
  const auto entries = step_entries(directory);
  if (resume && complete.empty() && !entries.empty()) {
    std::vector<SavedStep> incomplete;
    for (const auto& [step, done] : entries) incomplete.push_back(step);
    bad_directory("--resume: --checkpoint-dir '" + directory + "' holds " + names_of(incomplete) +
                  ", none of them complete (no metadata.json): there is nothing to resume from");
  }
}

void prune_checkpoints(const std::string& directory, int keep) {
  auto found = complete_checkpoints(directory);
  for (size_t i = 0; i + keep < found.size(); ++i) fs::remove_all(found[i].path);
}

}  // namespace kdist::tools
