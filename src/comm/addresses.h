#pragma once
// Which network address a process of a job advertises and binds: the interface that routes to
// the coordinator, or the one GLOO_SOCKET_IFNAME names, never what the hostname resolves to
// (containers often map it to 127.0.0.1).
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <memory>
#include <string>

#include "comm/job_config.h"

namespace kdist::comm::detail {

bool is_loopback(const std::string& host);
// The local address of the interface that routes to host:port (a UDP connect sends nothing;
// host may be a name). Throws std::runtime_error when host does not resolve or nothing routes.
std::string address_routing_to(const std::string& host, int port);
// The Gloo device every group of this process uses; `address` is set to what it advertises.
// Throws std::runtime_error naming the interface or coordinator that cannot be used.
std::shared_ptr<::gloo::transport::Device> gloo_device(const kdist::detail::JobConfig& config,
                                                       std::string& address);

}  // namespace kdist::comm::detail
