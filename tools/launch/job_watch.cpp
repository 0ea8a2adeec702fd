#include "job_watch.h"

#include <iostream>

namespace kdist::tools {
namespace {

using Clock = std::chrono::steady_clock;

double wall_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::string JobWatch::key(const std::string& what, int node) const {
  return options_.key_prefix + "kdist/launch/" + what + "/" + std::to_string(node);
}
std::string JobWatch::failures_key() const { return options_.key_prefix + "kdist/launch/failures"; }

JobWatch::JobWatch(JobWatchOptions options)
    : options_(std::move(options)),
      store_(options_.store),
      last_beat_(options_.nnodes),
      beat_changed_(options_.nnodes, Clock::now()),
      beat_changed_wall_(options_.nnodes, wall_now()),
      lost_(options_.nnodes, false),
      started_wall_(wall_now()) {
  thread_ = std::thread([this] { run(); });
}

JobWatch::~JobWatch() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string JobWatch::node_ranks(int node) const {
  const int first = node * options_.nproc_per_node, last = first + options_.nproc_per_node - 1;
  return "node " + std::to_string(node) + " (rank" +
         (first == last ? " " + std::to_string(first)
                        : "s " + std::to_string(first) + "-" + std::to_string(last)) +
         ")";
}

std::optional<Failure> JobWatch::first_remote_failure() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (remote_.empty()) return std::nullopt;
  return remote_.front();
}

void JobWatch::report(const Failure& failure) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (published_ || to_publish_) return;
    to_publish_ = failure;
  }
  wake_.notify_all();
}

void JobWatch::run() {
  const auto connect_deadline = Clock::now() + options_.connect_timeout;
  while (!store_) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
    }
    try {
      store_ = comm::JobStore::connect(options_.host, options_.port, std::chrono::seconds(2));
    } catch (const std::exception&) {
      if (Clock::now() > connect_deadline) {
        std::lock_guard<std::mutex> lock(mutex_);
        remote_.push_back(
            {wall_now(), node_ranks(0),
             "never served the job's store at " + options_.host + ":" + std::to_string(options_.port), 1});
        job_failed_ = true;
        store_lost_ = true;
        return;
      }
    }
  }
  last_contact_wall_ = wall_now();
  while (true) {
    if (!step()) return;
    std::unique_lock<std::mutex> lock(mutex_);
    wake_.wait_for(lock, options_.interval, [this] { return stopping_ || (to_publish_ && !published_); });
    if (stopping_) return;
  }
}

bool JobWatch::publish_pending() {
  std::optional<Failure> publish;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (to_publish_ && !published_) publish = to_publish_;
  }
  if (!publish) return false;
  store_->set(key("first_failure", options_.node_rank), publish->serialize());
  store_->add(failures_key(), 1);
  std::lock_guard<std::mutex> lock(mutex_);
  published_ = true;
  return true;
}

// When a node that stopped beating may have died: its last beat was written up to one
// interval before this launcher saw it, and seen up to one interval after it was written. So
// a rank here that failed because that node died (a Gloo peer reset) fails after this time,
// and the verdict names the node first, as the cause it is.
double JobWatch::lost_since(int node) const {
  return beat_changed_wall_.at(node) - 2 * std::chrono::duration<double>(options_.interval).count();
}

bool JobWatch::heartbeat_stopped(int node, Clock::time_point now) {
  auto beat = store_->get(key("heartbeat", node));
  if (beat && *beat != last_beat_[node]) {
    last_beat_[node] = *beat;
    beat_changed_[node] = now;
    beat_changed_wall_[node] = wall_now();
    return false;
  }
  return !last_beat_[node].empty() && now - beat_changed_[node] > options_.stale_after;
}

bool JobWatch::step() {
  try {
    publish_pending();
    store_->set(key("heartbeat", options_.node_rank), std::to_string(++beats_));
    if (store_->add(failures_key(), 0) > 0) job_failed_ = true;
    const auto now = Clock::now();
    for (int node = 0; node < options_.nnodes; ++node) {
      if (node == options_.node_rank || lost_[node]) continue;
      if (store_->get(key("done", node))) continue;  // finished: its heartbeat stops
      if (heartbeat_stopped(node, now)) {
        std::lock_guard<std::mutex> lock(mutex_);
        lost_[node] = true;
        remote_.push_back({lost_since(node), node_ranks(node),
                           "stopped responding (no heartbeat from its launcher for " +
                               std::to_string(options_.stale_after.count() / 1000.0).substr(0, 3) + " s)",
                           1});
        job_failed_ = true;
      }
    }
    last_contact_wall_ = wall_now();
    return true;
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return false;
    remote_.push_back({last_contact_wall_, node_ranks(0),
                       "is gone: its launcher served the job's store at " + options_.host + ":" +
                           std::to_string(options_.port) + ", which stopped answering",
                       1});
    job_failed_ = true;
    store_lost_ = true;
    return false;
  }
}

std::vector<Failure> JobWatch::finish() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::vector<Failure> found;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    found = remote_;
  }
  if (!store_) return found;
  try {
    publish_pending();
    store_->set(key("done", options_.node_rank), "1");
    // Wait for the other nodes to be done or lost. After a failure, at most `linger`: long
    // enough for their first failures to arrive. Node 0 also keeps its store up for as long
    // as any other node is alive, so a node that ends later still reads it.
    const bool failed = published_ || job_failed_;
    const auto finishing = Clock::now();
    const auto deadline = finishing + (failed ? options_.linger : std::chrono::milliseconds(0));
    while (true) {
      bool waiting_for_report = false, keeping_store = false;
      const auto now = Clock::now();
      for (int node = 0; node < options_.nnodes; ++node) {
        if (node == options_.node_rank || lost_[node] || store_->get(key("done", node))) continue;
        if (heartbeat_stopped(node, now)) {
          lost_[node] = true;
          found.push_back(
              {lost_since(node), node_ranks(node), "stopped responding (its launcher is gone)", 1});
          continue;
        }
        if (now < deadline) waiting_for_report = true;
        // A node not yet seen beating may still be starting (its ranks ended at once, say):
        // it gets stale_after to connect before the store goes.
        if (options_.node_rank == 0 && (!last_beat_[node].empty() || now - finishing < options_.stale_after))
          keeping_store = true;
        if (now >= deadline && last_beat_[node].empty() && failed)
          found.push_back({started_wall_, node_ranks(node), "never joined the job", 1}), lost_[node] = true;
      }
      if (!waiting_for_report && !keeping_store) break;
      std::this_thread::sleep_for(options_.interval);
    }
    for (int node = 0; node < options_.nnodes; ++node) {
      if (node == options_.node_rank) continue;
      if (auto text = store_->get(key("first_failure", node)))
        if (auto failure = Failure::parse(*text)) found.push_back(*failure);
    }
  } catch (const std::exception&) {
    store_lost_ = true;  // node 0's store is gone: what was seen before is all there is
  }
  return found;
}

}  // namespace kdist::tools
