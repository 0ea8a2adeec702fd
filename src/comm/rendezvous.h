#pragma once
// The rendezvous: every process of a job announces where it runs and how it is reached, and
// waits for all the others, so that a missing process is named rather than left to a timeout
// deep inside Gloo.
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "comm/job_config.h"

namespace kdist::comm::detail {

// What makes two processes "on one host": hostname, boot id and the shared-memory device.
std::string host_identity();

// What each process announces.
struct Announcement {
  std::string host;     // host_identity()
  std::string address;  // its Gloo address
  std::string label;    // KDIST_HOST, empty when unset
};

// Each rank's announcement. Throws std::runtime_error naming the ranks that did not arrive
// within `timeout`, and refuses a job on several hosts where some process would advertise a
// loopback address (its peers could never connect to it).
std::vector<Announcement> rendezvous(c10d::Store& store, const kdist::detail::JobConfig& config,
                                     const std::string& address, std::chrono::milliseconds timeout);

}  // namespace kdist::comm::detail
