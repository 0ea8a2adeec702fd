#include "comm/addresses.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/errors.h"

namespace kdist::comm::detail {
namespace {

// An IPv4 or IPv6 socket address as text ("10.233.0.1"); empty for another family.
std::string address_text(const sockaddr* address) {
  if (address->sa_family != AF_INET && address->sa_family != AF_INET6) return "";
  char text[INET6_ADDRSTRLEN] = {0};
  const void* raw = address->sa_family == AF_INET6
                        ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr)
                        : static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(address)->sin_addr);
  return inet_ntop(address->sa_family, raw, text, sizeof(text)) ? text : "";
}

}  // namespace

std::string address_routing_to(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); rc != 0)
    kdist::detail::failure("runtime", "cannot resolve coordinator host '", host, "': ", gai_strerror(rc));
  std::string local;
  for (addrinfo* a = found; a != nullptr && local.empty(); a = a->ai_next) {
    int fd = socket(a->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    sockaddr_storage mine{};
    socklen_t length = sizeof(mine);
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&mine), &length) == 0)
      local = address_text(reinterpret_cast<const sockaddr*>(&mine));
    close(fd);
  }
  freeaddrinfo(found);
  if (local.empty())
    kdist::detail::failure("runtime", "no network interface routes to the coordinator ", host, ":", port,
                           "; set GLOO_SOCKET_IFNAME to the interface to use");
  return local;
}

namespace {

// The IPv4 (else IPv6) address of a network interface, for messages and the loopback check.
std::string interface_address(const std::string& name) {
  ifaddrs* all = nullptr;
  std::string found;
  if (getifaddrs(&all) != 0) return found;
  for (int family : {AF_INET, AF_INET6})
    for (ifaddrs* a = all; a != nullptr && found.empty(); a = a->ifa_next)
      if (a->ifa_addr && a->ifa_addr->sa_family == family && name == a->ifa_name)
        found = address_text(a->ifa_addr);
  freeifaddrs(all);
  return found;
}

}  // namespace

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

// The Gloo device every group of this process uses: the
// interface GLOO_SOCKET_IFNAME names, else the one that routes to the coordinator. Never the
// address the hostname resolves to, which containers often map to 127.0.0.1.
std::shared_ptr<::gloo::transport::Device> gloo_device(const kdist::detail::JobConfig& config,
                                                       std::string& address) {
  if (!config.socket_interface.empty()) {
    // The interface's own address is what the rendezvous publishes: the loopback check below
    // then sees GLOO_SOCKET_IFNAME=lo for what it is.
    address = interface_address(config.socket_interface);
    if (address.empty())
      kdist::detail::failure("runtime", "GLOO_SOCKET_IFNAME='", config.socket_interface,
                             "' names no interface with an address here");
    try {
      return c10d::ProcessGroupGloo::createDeviceForInterface(config.socket_interface);
    } catch (const std::exception& e) {
      kdist::detail::failure("runtime", "GLOO_SOCKET_IFNAME='", config.socket_interface,
                             "' cannot be used: ", std::string(e.what()).substr(0, 200));
    }
  }
  address = is_loopback(config.coordinator_host)
                ? "127.0.0.1"
                : address_routing_to(config.coordinator_host, config.coordinator_port);
  return c10d::ProcessGroupGloo::createDeviceForHostname(address);
}

}  // namespace kdist::comm::detail
