#pragma once
// The launcher's verdict: which failure was the root cause and which followed from it.
//
//   std::vector<Failure> seen{{t0 + 0.002, "rank 1", "was killed by signal 6 (Aborted)", 134},
//                             {t0, "rank 2", "exited with code 3", 3}};
//   Verdict v = judge(seen);
//   // v.lines: "failed: rank 2 exited with code 3",
//   //          "  then rank 1 was killed by signal 6 (Aborted), after rank 2 failed"
//   // v.exit_code: 3
//
// The root cause is the earliest failure in time that the launchers did not cause themselves
// (a rank they stopped after another failed is a consequence, whatever its status). Equal
// times prefer an exit code to a signal: a rank that dies of a signal is usually reacting.
#include <optional>
#include <string>
#include <vector>

namespace kdist::tools {

struct Failure {
  double wall_time = 0;    // seconds since the epoch when it was seen
  std::string who;         // "rank 2", "rank 3 (node 1)", "node 1 (ranks 2, 3)"
  std::string what;        // "exited with code 3", "stopped responding"
  int exit_code = 1;       // the launcher's exit code if this is the root cause
  bool by_signal = false;  // ended by a signal (prefer others at equal times)
  bool stopped_by_launcher = false;
  // An exit with code 0 that is a failure only if the job fails: a rank that left while the
  // others still needed it. Alone (no real failure) the job succeeded.
  bool clean_exit = false;

  std::string serialize() const;  // one line, for the job's store
  static std::optional<Failure> parse(const std::string& text);
};

struct Verdict {
  std::vector<std::string> lines;  // the first names the root cause
  std::string root_cause;          // "rank 2 exited with code 3"; empty on success
  int exit_code = 0;
};

// `failures` may be empty (then the verdict is success, exit code 0).
Verdict judge(std::vector<Failure> failures);

}  // namespace kdist::tools
