#pragma once
// What comm starts a job from (comm::detail::start): where the coordinator is, which process
// this is, and the transport settings. runtime resolves it from initialize()'s arguments and
// the environment (runtime/resolve_job_config.h) and hands it down.
#include <string>

namespace kdist::detail {

struct JobConfig {
  std::string coordinator_host;  // empty for a single process
  int coordinator_port = 0;
  int num_processes = 1;
  int process_id = 0;
  int local_rank = 0;
  // torchrun's agent already serves the store at the coordinator address
  // (TORCHELASTIC_USE_AGENT_STORE=True): every rank connects as a client.
  bool store_served_by_launcher = false;
  // The network interface Gloo binds (GLOO_SOCKET_IFNAME, PyTorch's variable); empty: the one
  // that routes to the coordinator.
  std::string socket_interface;
  // KDIST_TRANSPORT: the transport of groups made with Transport::kAuto (comm.h): "auto"
  // (by where the processes run), "gloo" (Gloo everywhere), "shm" (shared memory wherever
  // processes share a host, and an error where they cannot share a segment).
  std::string transport = "auto";
  // KDIST_HOST: a label added to this process's host identity, so that processes of one
  // machine count as several hosts for comm's transports (tests of the hierarchical one).
  std::string host_label;
  // KDIST_SHM_DIR: where shared-memory segments live, a tmpfs every process of a host sees
  // (another than /dev/shm where a container's is too small).
  std::string shared_memory_dir = "/dev/shm";
  // Where this attempt's keys live in the store: "<job token>/attempt-<n>/" (KDIST_JOB_TOKEN,
  // KDIST_RESTART_COUNT or TORCHELASTIC_RESTART_COUNT), so that a restarted job never reads an
  // earlier attempt's keys, and a process without the job's token cannot name any of them.
  // Empty: the store's root (a job started without kdist launch).
  std::string store_scope;
  std::string source;  // which variables or arguments said so, for messages
};

}  // namespace kdist::detail
