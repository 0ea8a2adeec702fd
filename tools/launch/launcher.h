#pragma once
// The process supervisor behind `kdist launch`.
#include <string>
#include <vector>

namespace kdist::tools {

struct LaunchOptions {
  int nproc_per_node = 1;
  int nnodes = 1;      // the most nodes (MAX of --nnodes MIN:MAX)
  int min_nnodes = 0;  // elastic when below nnodes: an attempt may run with this many; 0: nnodes
  int node_rank = 0;   // this node's rank among nnodes
  // Elastic: once min_nnodes have joined an attempt, how long node 0 waits for the others.
  double join_timeout_seconds = 30;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;                   // 0: a free port (single node only)
  double grace_seconds = 3.0;            // SIGTERM, then SIGKILL after this long
  double connect_timeout_seconds = 300;  // nodes > 0: how long to try reaching node 0's store
  // A rank that beats (src/supervision.h) and then stays silent this long stopped responding
  // (0: not watched).
  double heartbeat_timeout_seconds = 5;
  // After a failure, start every node's ranks again this many times at most (a new attempt:
  // its own keys in the store, KDIST_RESTART_COUNT and TORCHELASTIC_RESTART_COUNT = 1, 2, ...).
  int max_restarts = 0;
  // The job's secret: every key of the job's store lives under it, so a process that does not
  // know it can neither read nor steer the job. Empty: a random one on a single node; a job
  // on several nodes needs the same token given to every launcher (--job-token or
  // KDIST_JOB_TOKEN), else its keys are unprotected (the launcher says so).
  std::string job_token;
  std::vector<std::string> command;
};

// Starts the ranks of this node with torchrun's environment (MASTER_ADDR, MASTER_PORT,
// WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK) and prefixes each output line
// with "[rank r] ". The launcher of node 0 serves the job's store on master_addr:master_port
// (TORCHELASTIC_USE_AGENT_STORE=True tells the ranks, as torchrun's agent does), so the
// store outlives any rank.
//
// Liveness: each rank gets two pipes (src/supervision.h). A kdist rank beats every second
// while it is a job member; one silent for heartbeat_timeout_seconds (stopped by SIGSTOP,
// frozen) is the failure, named first ("rank 2 stopped responding: no heartbeat for 5.1 s (its
// process is stopped ...)"), not the ranks that time out waiting for it. No rank outlives the
// launcher: the direct child has PR_SET_PDEATHSIG, and a kdist rank under a wrapper ends its
// process group when the launcher's pipe hangs up. A kdist rank that exits 0 without
// kdist::shutdown() while others still run is named as the root cause should the job then fail.
//
// When a rank fails, the others get SIGTERM (SIGKILL after grace_seconds). With nnodes > 1
// the launchers watch each other through the store (launch/job_watch.h): a failure on any
// node, or a node whose launcher vanished, stops every node's ranks within a few seconds.
// The verdict names the root cause first, the earliest failure in time ("failed: rank 2
// exited with code 3"), then the ranks that ended after it ("then rank 1 was killed by
// signal 6 (Aborted), after rank 2 failed"), and launch() returns the root cause's exit
// code (128 + signal for a signal); 0 only if every rank of every node exits 0. SIGINT and
// SIGTERM sent to the launcher are forwarded to every rank (return 128 + that signal).
//
// Restarts (max_restarts > 0): when an attempt fails, every node's launcher names the failure
// as above, prints "restart 1 of 2 after rank 2 was killed by signal 9 (Killed)", and starts
// its ranks again; the job's exit code is its last attempt's. A signal sent to the launcher,
// or node 0's store gone (unless elastic, below), ends the job without a restart. At the end, a job that
// restarted prints a summary of its attempts.
//
// Elastic (min_nnodes < nnodes): each attempt starts with the launchers agreeing on its
// members (launch/membership.h): node 0 waits for every node, or for min_nnodes and then
// join_timeout_seconds more, and the attempt runs on the nodes that joined, renumbered in
// order (WORLD_SIZE, RANK and GROUP_RANK are the attempt's). A job that lost a host restarts
// on the others; the program sizes its mesh from WORLD_SIZE (`kdist train --mesh
// batch=*,model=2`). Node 0 serves the store; when it is lost, the next member of the last
// attempt serves a new one at its own address (the members' addresses came with their joins),
// and the job goes on there.
int launch(const LaunchOptions& options);

}  // namespace kdist::tools
