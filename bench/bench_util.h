#pragma once
// Timing for the multi-rank benchmarks: interleaved rounds, median of the slowest rank.
#include <ATen/ATen.h>
#include <c10/core/CPUAllocator.h>
#include <kdist/comm.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace kdist::bench {

// What comm chose for a group the benchmark times, on stderr (rank 0): a figure is only
// comparable with one of the same transport.
inline void say_transport(const comm::Group& group) {
  if (group.rank() == 0)
    std::fprintf(stderr, "[bench] %s runs on %s\n", group.name().c_str(),
                 comm::to_string(comm::transport(group)).c_str());
}

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

// The bytes CPU tensors hold now and at most since reset_peak(): LibTorch's CPU allocator
// wrapped, so that a benchmark measures what tensors hold, whatever the heap keeps resident.
// TensorBytes::instance() installs it on first use; tensors allocated before are not counted.
class TensorBytes final : public c10::Allocator {
 public:
  static TensorBytes& instance() {
    static TensorBytes* counter = [] {
      auto* c = new TensorBytes(c10::GetCPUAllocator());
      c10::SetCPUAllocator(c, /*priority=*/100);
      return c;
    }();
    return *counter;
  }
  int64_t live() const { return live_.load(); }
  int64_t peak() const { return peak_.load(); }
  void reset_peak() { peak_.store(live_.load()); }

  // The context is the data pointer, as LibTorch's raw_allocate requires; sizes are kept
  // beside it.
  c10::DataPtr allocate(size_t n) override {
    c10::DataPtr inner = inner_->allocate(n);
    const auto device = inner.device();
    void* data = inner.release_context();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      sizes_[data] = static_cast<int64_t>(n);
    }
    const int64_t now = live_.fetch_add(static_cast<int64_t>(n)) + static_cast<int64_t>(n);
    for (int64_t seen = peak_.load(); now > seen && !peak_.compare_exchange_weak(seen, now);) {
    }
    return {data, data, &release, device};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

 private:
  explicit TensorBytes(c10::Allocator* inner) : inner_(inner), inner_delete_(inner->raw_deleter()) {}
  static void release(void* data) {
    auto& self = instance();
    int64_t bytes = 0;
    {
      std::lock_guard<std::mutex> lock(self.mutex_);
      auto it = self.sizes_.find(data);
      if (it != self.sizes_.end()) bytes = it->second, self.sizes_.erase(it);
    }
    self.live_.fetch_sub(bytes);
    self.inner_delete_(data);
  }
  c10::Allocator* inner_;
  c10::DeleterFnPtr inner_delete_;  // LibTorch's CPU allocator frees by the data pointer alone
  std::mutex mutex_;
  std::unordered_map<void*, int64_t> sizes_;
  std::atomic<int64_t> live_{0}, peak_{0};
};

inline int rounds_from_args(int argc, char** argv, int fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--rounds") return std::stoi(argv[i + 1]);
  return fallback;
}

}  // namespace kdist::bench
