#pragma once
// Where a process finds its job: initialize()'s arguments, else the environment.
#include <functional>
#include <optional>
#include <string>

#include "comm/job_config.h"

namespace kdist::detail {

using EnvLookup = std::function<const char*(const char*)>;

// Fills what the arguments leave empty from KERAS_DISTRIBUTION_*, then torchrun's
// MASTER_ADDR/MASTER_PORT/WORLD_SIZE/RANK/LOCAL_RANK, then Slurm's or Open MPI's rank and
// size (the coordinator still comes from the first two), else a single process; and
// GLOO_SOCKET_IFNAME (its first name, if it lists several); and the store scope of the job and
// attempt from KDIST_JOB_TOKEN and KDIST_RESTART_COUNT (or TORCHELASTIC_RESTART_COUNT).
// Throws std::invalid_argument for inconsistent or malformed values.
JobConfig resolve_job_config(const std::optional<std::string>& job_addresses,
                             std::optional<int> num_processes, std::optional<int> process_id,
                             const EnvLookup& env);

// Seconds a rendezvous or collective may take: KDIST_TIMEOUT_S, default 300.
double timeout_seconds(const EnvLookup& env);

}  // namespace kdist::detail
