#pragma once
// The process supervisor behind `kdist launch`.
#include <string>
#include <vector>

namespace kdist::tools {

struct LaunchOptions {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // 0: a free port (single node only)
  double grace_seconds = 3.0;  // SIGTERM, then SIGKILL after this long
  std::vector<std::string> command;
};

// Starts the ranks of this node with torchrun's environment (MASTER_ADDR, MASTER_PORT,
// WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK), prefixes each output line
// with "[rank r] ", and returns 0 only if every rank exits 0. When a rank fails, the others
// get SIGTERM (SIGKILL after grace_seconds) and the failing rank is reported. SIGINT and
// SIGTERM sent to the launcher are forwarded to every rank.
int launch(const LaunchOptions& options);

}  // namespace kdist::tools
