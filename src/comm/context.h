#pragma once
// The c10d state of a running job: the rendezvous store, the Gloo device, where each process
// runs, the world group and the cache of per-axis groups (context.cpp starts and stops it,
// group_cache.cpp makes groups). Only src/comm/ and runtime's initialize() see this header.
#include <kdist/comm.h>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "comm/job_config.h"

namespace gloo::transport {
class Device;
}

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
  // NCCL, for the group's CUDA tensors (transports/nccl.h): null in a CPU build, without a
  // GPU, or for a group of one.
  std::shared_ptr<Backend> cuda;
};

// The Impl of a public Group, for comm's own files.
struct GroupAccess {
  static Group::Impl& impl(const Group& group) { return *group.impl_; }
};

struct Context {
  kdist::detail::JobConfig config;
  std::chrono::milliseconds timeout{0};
  c10::intrusive_ptr<c10d::Store> store;
  std::shared_ptr<::gloo::transport::Device> device;
  // Where each global rank runs, as far as transports go: processes with one label share
  // memory (host_identity(), or KDIST_HOST's label).
  std::vector<std::string> hosts;
  GroupPtr world;
  std::map<std::pair<std::vector<int>, Transport>, GroupPtr> groups;  // by global ranks, transport asked
};

// The job's context, under context_mutex(); throws std::runtime_error before start().
std::mutex& context_mutex();
Context& context();

// A group of `ranks` (global, in group order) named `name`, its transport chosen from `asked`
// (group_cache.cpp). Collective over those ranks.
GroupPtr make_group(Context& ctx, const std::vector<int>& ranks, const std::string& name, Transport asked);

namespace detail {

// Rendezvous with the other processes and create the world group. Throws
// std::runtime_error naming the coordinator when peers do not arrive within `timeout`.
void start(const kdist::detail::JobConfig& config, std::chrono::milliseconds timeout);
void stop();
bool started();
std::chrono::milliseconds timeout();
std::string shared_memory_dir();  // the job's (JobConfig::shared_memory_dir)

}  // namespace detail
}  // namespace kdist::comm
