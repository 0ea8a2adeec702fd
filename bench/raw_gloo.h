#pragma once
// c10d's ProcessGroupGloo among the job's processes, built here from kdist launch's environment
// (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE; the launcher serves the store), beside kdist and
// independent of it: the "raw c10d" peer the benchmarks measure kdist against. Call it on every
// rank, after kdist::initialize(), once per process.
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace kdist::bench {

// The local address of the interface that routes to host (a UDP connect sends nothing).
inline std::string address_routing_to(const std::string& host, int port) {
  if (const char* name = std::getenv("GLOO_SOCKET_IFNAME")) return std::string("if:") + name;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0)
    throw std::runtime_error("raw gloo: cannot resolve " + host);
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in mine{};
  socklen_t length = sizeof mine;
  const bool ok = ::connect(fd, found->ai_addr, found->ai_addrlen) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&mine), &length) == 0;
  close(fd);
  freeaddrinfo(found);
  char text[INET_ADDRSTRLEN] = {0};
  if (!ok || !inet_ntop(AF_INET, &mine.sin_addr, text, sizeof text))
    throw std::runtime_error("raw gloo: no route to " + host);
  return text;
}

inline c10::intrusive_ptr<c10d::Backend> raw_gloo() {
  auto env = [](const char* name) {
    const char* value = std::getenv(name);
    if (!value)
      throw std::runtime_error(std::string("raw gloo: ") + name + " is not set (run under kdist launch)");
    return std::string(value);
  };
  const std::string host = env("MASTER_ADDR");
  const int port = std::stoi(env("MASTER_PORT")), rank = std::stoi(env("RANK")),
            size = std::stoi(env("WORLD_SIZE"));
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(port);
  store_options.isServer = false;
  store_options.waitWorkers = false;
  store_options.timeout = std::chrono::seconds(120);
  auto store = c10::make_intrusive<c10d::PrefixStore>(
      "bench/raw_gloo", c10::make_intrusive<c10d::TCPStore>(host, store_options));
  auto options = c10d::ProcessGroupGloo::Options::create(std::chrono::seconds(300));
  const std::string address = address_routing_to(host, port);
  options->devices.push_back(address.rfind("if:", 0) == 0
                                 ? c10d::ProcessGroupGloo::createDeviceForInterface(address.substr(3))
                                 : c10d::ProcessGroupGloo::createDeviceForHostname(address));
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
}

}  // namespace kdist::bench
