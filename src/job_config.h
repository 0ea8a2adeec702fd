#pragma once
// Where a process finds its job: initialize()'s arguments, else the environment.
#include <functional>
#include <optional>
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
  std::string source;  // which variables or arguments said so, for messages
};

using EnvLookup = std::function<const char*(const char*)>;

// Fills what the arguments leave empty from KERAS_DISTRIBUTION_*, then torchrun's
// MASTER_ADDR/MASTER_PORT/WORLD_SIZE/RANK/LOCAL_RANK, then Slurm's or Open MPI's rank and
// size (the coordinator still comes from the first two), else a single process; and
// GLOO_SOCKET_IFNAME (its first name, if it lists several).
// Throws std::invalid_argument for inconsistent or malformed values.
JobConfig resolve_job_config(const std::optional<std::string>& job_addresses,
                             std::optional<int> num_processes, std::optional<int> process_id,
                             const EnvLookup& env);

// Seconds a rendezvous or collective may take: KDIST_TIMEOUT_S, default 300.
double timeout_seconds(const EnvLookup& env);

}  // namespace kdist::detail
