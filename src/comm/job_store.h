#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace kdist::comm {

// The job's key-value store (c10d's TCPStore), as the processes of a job and their launchers
// share it. kdist launch serves it from the launcher of node 0, so that it outlives any rank,
// and the launchers coordinate through it (a failure on one host stops every host).
//
//   auto store = kdist::comm::JobStore::serve("10.0.0.1", 29500, std::chrono::seconds(30));
//   store->set("kdist/launch/heartbeat/0", "17");
//   auto seen = store->get("kdist/launch/heartbeat/1");  // std::nullopt until someone set it
//
// Every call throws std::runtime_error naming the store's address when it cannot be reached
// (its server is gone) within the timeout given at creation.
class JobStore {
 public:
  struct Impl;
  // Serves a store on host:port from this process (port 0: a free port; port() says which)
  // and connects to it. Binds that address only, not every interface.
  static std::shared_ptr<JobStore> serve(const std::string& host, int port,
                                         std::chrono::milliseconds timeout);
  // Connects to the store at host:port, retrying until `timeout` passes.
  static std::shared_ptr<JobStore> connect(const std::string& host, int port,
                                           std::chrono::milliseconds timeout);
  explicit JobStore(std::shared_ptr<Impl> impl);
  int port() const;
  const std::string& address() const;  // "host:port"
  void set(const std::string& key, const std::string& value);
  std::optional<std::string> get(const std::string& key);  // never waits for the key
  int64_t add(const std::string& key, int64_t delta);

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace kdist::comm
