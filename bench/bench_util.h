#pragma once
// Timing for the multi-rank benchmarks: interleaved rounds, median of the slowest rank.
#include <ATen/ATen.h>
#include <kdist/comm.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace kdist::bench {

struct Op {
  std::string name;
  double bus_factor;  // bytes on the wire per rank, as a multiple of the tensor's size
  std::function<void()> run;
  double median_ms = 0;
};

// Rounds of every op once each, so that drift on a busy machine hits all ops alike; each op's
// time is its median over rounds on the slowest rank.
inline void measure(std::vector<Op>& ops, int rounds) {
  auto& world = *comm::world();
  for (auto& op : ops)
    for (int i = 0; i < 2; ++i) op.run();  // warm-up: connections, allocations
  std::vector<std::vector<double>> times(ops.size());
  for (int r = 0; r < rounds; ++r)
    for (size_t i = 0; i < ops.size(); ++i) {
      comm::barrier(world);
      auto start = std::chrono::steady_clock::now();
      ops[i].run();
      times[i].push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
  for (size_t i = 0; i < ops.size(); ++i) {
    auto& t = times[i];
    std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
    auto median = at::full({1}, t[t.size() / 2], at::kDouble);
    comm::all_reduce(median, comm::ReduceOp::kMax, world);
    ops[i].median_ms = median.item<double>();
  }
}

// Resident set, from /proc: the peak so far ("VmHWM") and now ("VmRSS"), in bytes.
inline int64_t proc_status_bytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1)) * 1024;
  return 0;
}
// Starts VmHWM again from the current resident set.
inline void reset_peak_resident() { std::ofstream("/proc/self/clear_refs") << "5"; }

inline int rounds_from_args(int argc, char** argv, int fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--rounds") return std::stoi(argv[i + 1]);
  return fallback;
}

}  // namespace kdist::bench
