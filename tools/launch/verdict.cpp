#include "verdict.h"

#include <algorithm>
#include <sstream>

namespace kdist::tools {

std::string Failure::serialize() const {
  std::ostringstream out;
  out.precision(17);
  out << wall_time << '\t' << exit_code << '\t' << by_signal << '\t' << stopped_by_launcher << '\t'
      << clean_exit << '\t' << who << '\t' << what;
  return out.str();
}

std::optional<Failure> Failure::parse(const std::string& text) {
  std::istringstream in(text);
  Failure f;
  std::string field;
  try {
    std::getline(in, field, '\t');
    f.wall_time = std::stod(field);
    std::getline(in, field, '\t');
    f.exit_code = std::stoi(field);
    std::getline(in, field, '\t');
    f.by_signal = field == "1";
    std::getline(in, field, '\t');
    f.stopped_by_launcher = field == "1";
    std::getline(in, field, '\t');
    f.clean_exit = field == "1";
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (!std::getline(in, f.who, '\t') || !std::getline(in, f.what)) return std::nullopt;
  return f;
}

Verdict judge(std::vector<Failure> failures) {
  Verdict verdict;
  if (std::all_of(failures.begin(), failures.end(), [](const Failure& f) { return f.clean_exit; }))
    return verdict;
  // Earliest first; among equal times, the ones the launchers did not cause, then exit codes.
  std::stable_sort(failures.begin(), failures.end(), [](const Failure& a, const Failure& b) {
    if (a.stopped_by_launcher != b.stopped_by_launcher) return !a.stopped_by_launcher;
    if (a.wall_time != b.wall_time) return a.wall_time < b.wall_time;
    return !a.by_signal && b.by_signal;
  });
  const Failure& root = failures.front();
  verdict.exit_code = root.exit_code == 0 ? 1 : root.exit_code;
  verdict.root_cause = root.who + " " + root.what;
  verdict.lines.push_back("failed: " + verdict.root_cause);
  std::stable_sort(failures.begin() + 1, failures.end(),
                   [](const Failure& a, const Failure& b) { return a.wall_time < b.wall_time; });
  const std::string root_name = root.who.substr(0, root.who.find(" ("));
  for (size_t i = 1; i < failures.size(); ++i)
    verdict.lines.push_back("  then " + failures[i].who + " " + failures[i].what + ", after " + root_name +
                            " failed");
  return verdict;
}

}  // namespace kdist::tools
