#pragma once
// The c10d state of a running job: the rendezvous store, the Gloo device, the world group
// and the cache of per-axis groups. Only src/comm/ and runtime's initialize() see it.
#include <kdist/comm.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "../job_config.h"

namespace kdist::comm {

class SharedMemoryAllReduce;

struct Group::Impl {
  c10::intrusive_ptr<c10d::Backend> backend;  // null for a group of one
  // Shared memory for all_reduce, all_gather and reduce_scatter where every process of the
  // group can map one segment (one host), made on first use and grown when a call needs more;
  // "gloo" never tries, "shm" fails where it cannot be had (KDIST_TRANSPORT, JobConfig).
  std::string transport = "auto";
  std::shared_ptr<SharedMemoryAllReduce> shared_memory;
  bool shared_memory_unavailable = false;
  std::vector<int> ranks;
  int rank = 0;
  std::string name;
  // Staging memory for all_to_all-based collectives, kept between calls: fresh large
  // buffers cost page faults on every call (measured in bench/collectives_bench.cpp).
  // Collectives on one group run one at a time, so one workspace per dtype suffices.
  std::map<c10::ScalarType, at::Tensor> workspace;
  at::Tensor staging(c10::ScalarType dtype, int64_t numel);
};

namespace detail {

// Rendezvous with the other processes and create the world group. Throws
// std::runtime_error naming the coordinator when peers do not arrive within `timeout`.
void start(const kdist::detail::JobConfig& config, std::chrono::milliseconds timeout);
void stop();
bool started();
std::chrono::milliseconds timeout();
// Counts a collective for the CollectiveCounters alive (transports outside collectives.cpp).
void record_collective(const std::string& kind, int64_t bytes);
// While one lives on this thread, collectives are not counted: a transport's own set-up
// (a shared-memory segment's agreement) is not what the caller asked for.
struct UncountedScope {
  UncountedScope();
  ~UncountedScope();
};

}  // namespace detail
}  // namespace kdist::comm
