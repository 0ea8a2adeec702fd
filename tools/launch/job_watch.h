#pragma once
// JobWatch: how the launchers of a job on several nodes learn of each other's failures.
//
// The launcher of node 0 serves the job's store (comm::JobStore), so the store outlives every
// rank; every launcher, node 0's included, runs a JobWatch on it:
//   - a heartbeat key per node, rewritten every `interval`;
//   - a node whose heartbeat has not changed for `stale_after` is lost (its host or launcher
//     died), and so is node 0 when the store stops answering;
//   - report() publishes this node's first failure and raises the job's failure count, which
//     every other watch sees within `interval`: their launchers stop their ranks.
// At the end, finish() says this node is done and waits (at most `linger`) for every other
// node to be done or lost, so that each launcher can name the job's first failure, and node 0
// keeps the store up until the others have read it.
//
//   JobWatch watch(options);                 // starts its thread
//   if (watch.job_failed()) stop_ranks();     // polled by the launcher's loop
//   watch.report(failure);                    // this node's first failure
//   auto everywhere = watch.finish();         // every node's first failure, and lost nodes
#include <kdist/comm.h>

#include "comm/job_store.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "verdict.h"

namespace kdist::tools {

struct JobWatchOptions {
  std::shared_ptr<comm::JobStore> store;  // node 0: the store it serves; others: null
  std::string host;                       // where to connect when `store` is null
  int port = 0;
  std::string key_prefix;  // this attempt's keys: "<token>/attempt-<n>/"
  int node_rank = 0;
  int nnodes = 1;
  int nproc_per_node = 1;
  std::chrono::milliseconds connect_timeout{300000};
  std::chrono::milliseconds interval{250};
  std::chrono::milliseconds stale_after{4000};
  std::chrono::milliseconds linger{6000};
};

class JobWatch {
 public:
  explicit JobWatch(JobWatchOptions options);
  ~JobWatch();
  JobWatch(const JobWatch&) = delete;
  JobWatch& operator=(const JobWatch&) = delete;

  // Some node failed or was lost, as far as this watch has seen.
  bool job_failed() const { return job_failed_; }
  // What this watch saw fail elsewhere first (a lost node or node 0's store), if anything.
  std::optional<Failure> first_remote_failure() const;
  // Node 0's store stopped answering (or was never reached): no attempt can follow.
  bool store_lost() const { return store_lost_; }
  // Publishes this node's first failure (only the first call counts).
  void report(const Failure& failure);
  // Stops the heartbeat, says this node is done, waits for the others, and returns every
  // node's published first failure plus the nodes found lost.
  std::vector<Failure> finish();

 private:
  void run();
  bool step();             // one round; false when the store is gone
  bool publish_pending();  // this node's first failure, once
  // Reads node's heartbeat; true once it has not changed for stale_after (never seen: false).
  double lost_since(int node) const;
  bool heartbeat_stopped(int node, std::chrono::steady_clock::time_point now);
  std::string node_ranks(int node) const;
  std::string key(const std::string& what, int node) const;
  std::string failures_key() const;

  JobWatchOptions options_;
  std::shared_ptr<comm::JobStore> store_;
  std::atomic<bool> job_failed_{false};
  std::atomic<bool> store_lost_{false};
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::optional<Failure> to_publish_;
  bool published_ = false;
  std::vector<Failure> remote_;         // lost nodes, node 0's store gone
  std::vector<std::string> last_beat_;  // per node: the heartbeat value last seen
  std::vector<std::chrono::steady_clock::time_point> beat_changed_;
  std::vector<double> beat_changed_wall_;
  std::vector<bool> lost_;
  double last_contact_wall_ = 0;
  double started_wall_;  // a node that never joined has been missing since then
  int64_t beats_ = 0;
  std::thread thread_;
};

}  // namespace kdist::tools
