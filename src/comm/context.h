#pragma once
// The c10d state of a running job: the rendezvous store, the Gloo device, the world group,
// the cache of per-axis groups, and this process's identity (comm owns it: runtime resolves
// the job and hands it here). Only src/comm/ and runtime's initialize() see this header.
#include <kdist/comm.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "../job_config.h"

namespace kdist::comm {

class Backend;
class GlooBackend;

struct Group::Impl {
  std::vector<int> ranks;  // global ranks, in group order
  int rank = 0;
  std::string name;
  // Gloo among the group's processes: every group of two or more has it, whatever its
  // transport (shared memory agrees on its segment through it).
  std::shared_ptr<GlooBackend> gloo;
  // The transport comm chose when it made the group (null for a group of one).
  std::shared_ptr<Backend> backend;
};

namespace detail {

// Rendezvous with the other processes and create the world group. Throws
// std::runtime_error naming the coordinator when peers do not arrive within `timeout`.
void start(const kdist::detail::JobConfig& config, std::chrono::milliseconds timeout);
void stop();
bool started();
std::chrono::milliseconds timeout();
std::string shared_memory_dir();  // the job's (JobConfig::shared_memory_dir)
// This process's place in the job: 0 of 1 before start().
int process_id();
int num_processes();

}  // namespace detail
}  // namespace kdist::comm
