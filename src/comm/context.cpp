// Rendezvous over c10d::TCPStore and creation of Gloo process groups.
#include "context.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <sys/stat.h>

#include <cstdio>
#include <mutex>
#include <thread>

#include "../debug_log.h"
#include "../errors.h"
#include "listen.h"

namespace kdist::comm {
namespace {
using detail::listen_on;

struct Context {
  kdist::detail::JobConfig config;
  std::chrono::milliseconds timeout{0};
  c10::intrusive_ptr<c10d::Store> store;
  std::shared_ptr<::gloo::transport::Device> device;
  GroupPtr world;
  std::map<std::vector<int>, GroupPtr> groups;  // by global rank list
};

std::mutex g_mutex;
std::unique_ptr<Context> g_context;

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

// An IPv4 or IPv6 socket address as text ("10.233.0.1"); empty for another family.
std::string address_text(const sockaddr* address) {
  if (address->sa_family != AF_INET && address->sa_family != AF_INET6) return "";
  char text[INET6_ADDRSTRLEN] = {0};
  const void* raw = address->sa_family == AF_INET6
                        ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr)
                        : static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(address)->sin_addr);
  return inet_ntop(address->sa_family, raw, text, sizeof(text)) ? text : "";
}

// The local address of the interface that routes to host:port (a UDP connect sends nothing).
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
    kdist::detail::failure("runtime", "no network interface routes to the coordinator ", host, ":",
                           port, "; set GLOO_SOCKET_IFNAME to the interface to use");
  return local;
}

// The IPv4 (else IPv6) address of a network interface, for messages and the loopback check.
std::string interface_address(const std::string& name) {
  ifaddrs* all = nullptr;
  std::string found;
  if (getifaddrs(&all) != 0) return found;
  for (int family : {AF_INET, AF_INET6})
    for (ifaddrs* a = all; a != nullptr && found.empty(); a = a->ifa_next)
      if (a->ifa_addr && a->ifa_addr->sa_family == family && name == a->ifa_name) found = address_text(a->ifa_addr);
  freeifaddrs(all);
  return found;
}

// The Gloo device every group of this process uses (DESIGN.md, "Multi-host addresses"): the
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

// What makes two processes "on one host": hostname, boot id and the shared-memory device
// (network namespaces share a kernel, so the last tells their private /dev/shm apart).
std::string host_identity() {
  char name[256] = {0};
  gethostname(name, sizeof(name) - 1);
  std::string boot;
  if (FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "r")) {
    char line[64] = {0};
    if (std::fgets(line, sizeof(line), f)) boot = line;
    std::fclose(f);
    if (!boot.empty() && boot.back() == '\n') boot.pop_back();
  }
  struct stat shm {};
  const long shm_device = stat("/dev/shm", &shm) == 0 ? static_cast<long>(shm.st_dev) : -1;
  return std::string(name) + "/" + boot + "/" + std::to_string(shm_device);
}

// Every process announces itself (host and Gloo address) and waits for all the others, so a
// missing process is named rather than left to a timeout deep inside Gloo. Returns each
// rank's announcement. A job on several hosts where some process would advertise a loopback
// address is refused: its peers could never connect to it.
std::vector<std::pair<std::string, std::string>> rendezvous(c10d::Store& store,
                                                             const kdist::detail::JobConfig& config,
                                                             const std::string& address,
                                                             std::chrono::milliseconds timeout) {
  const int n = config.num_processes;
  const std::string prefix = "kdist/rendezvous/";
  const std::string mine = host_identity() + "\n" + address;
  store.set(prefix + std::to_string(config.process_id), std::vector<uint8_t>(mine.begin(), mine.end()));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<bool> arrived(n, false);
  while (true) {
    std::vector<int> missing;
    for (int r = 0; r < n; ++r)
      if (!arrived[r] && !(arrived[r] = store.check({prefix + std::to_string(r)}))) missing.push_back(r);
    if (missing.empty()) break;
    if (std::chrono::steady_clock::now() > deadline) {
      std::string list;
      for (size_t i = 0; i < missing.size(); ++i) list += (i ? ", " : "") + std::to_string(missing[i]);
      kdist::detail::failure("runtime", "rank ", config.process_id, ": rank", missing.size() > 1 ? "s " : " ",
                             list, " of ", n, " did not arrive at the coordinator ", config.coordinator_host,
                             ":", config.coordinator_port, " within ", timeout.count() / 1000.0,
                             " s (KDIST_TIMEOUT_S): is every host's launcher running?");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::vector<std::pair<std::string, std::string>> all;
  for (int r = 0; r < n; ++r) {
    auto bytes = store.get(prefix + std::to_string(r));
    std::string text(bytes.begin(), bytes.end());
    const auto newline = text.find('\n');
    all.emplace_back(text.substr(0, newline), text.substr(newline + 1));
  }
  for (int r = 0; r < n; ++r)
    if (all[r].first != all[0].first && (is_loopback(all[r].second) || is_loopback(all[0].second))) {
      const int bad = is_loopback(all[r].second) ? r : 0;
      kdist::detail::failure("runtime", "rank ", bad, " would be reached at the loopback address ",
                             all[bad].second, " but the job spans several hosts; give --master-addr "
                             "(MASTER_ADDR) an address the other hosts reach, or set GLOO_SOCKET_IFNAME");
    }
  return all;
}

GroupPtr make_group(Context& ctx, const std::vector<int>& ranks, const std::string& name) {
  auto impl = std::make_shared<Group::Impl>();
  impl->ranks = ranks;
  impl->name = name;
  impl->transport = ctx.config.transport;
  int self = ctx.config.process_id;
  impl->rank = static_cast<int>(std::find(ranks.begin(), ranks.end(), self) - ranks.begin());
  if (ranks.size() > 1) {
    std::string prefix = "kdist/group/";
    for (size_t i = 0; i < ranks.size(); ++i) prefix += (i ? "," : "") + std::to_string(ranks[i]);
    auto options = c10d::ProcessGroupGloo::Options::create(ctx.timeout);
    options->devices.push_back(ctx.device);
    auto store = c10::make_intrusive<c10d::PrefixStore>(prefix, ctx.store);
    try {
      impl->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(
          store, impl->rank, static_cast<int>(ranks.size()), options);
    } catch (const std::exception& e) {
      kdist::detail::failure("comm", "creating group ", name, " failed on rank ", self, ": ",
                             e.what());
    }
  }
  kdist::detail::debug_log("process group " + name + " created (size " +
                           std::to_string(ranks.size()) + ")");
  return std::make_shared<const Group>(impl);
}

Context& context() {
  if (!g_context)
    kdist::detail::failure("comm", "no process group: call kdist::initialize() first");
  return *g_context;
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string out;
  for (size_t i = 0; i < ranks.size(); ++i) out += (i ? "," : "") + std::to_string(ranks[i]);
  return out;
}

}  // namespace

at::Tensor Group::Impl::staging(c10::ScalarType dtype, int64_t numel) {
  auto& buffer = workspace[dtype];
  if (!buffer.defined() || buffer.numel() < numel)
    buffer = at::empty({numel}, at::TensorOptions().dtype(dtype));
  return buffer.narrow(0, 0, numel);
}

Group::Group(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
int Group::rank() const { return impl_->rank; }
int Group::size() const { return static_cast<int>(impl_->ranks.size()); }
const std::vector<int>& Group::ranks() const { return impl_->ranks; }
const std::string& Group::name() const { return impl_->name; }

GroupPtr world() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return context().world;
}

GroupPtr axis_group(const DeviceMesh& mesh, const std::string& axis) {
  return axis_group(mesh, mesh.axis_index(axis));
}

GroupPtr axis_group(const DeviceMesh& mesh, int64_t axis) {
  std::lock_guard<std::mutex> lock(g_mutex);
  Context& ctx = context();
  for (int64_t p = 0; p < mesh.size(); ++p)
    if (mesh.rank_at(p) >= ctx.config.num_processes)
      kdist::detail::invalid("comm", mesh.to_string(), " names rank ", mesh.rank_at(p),
                             " but the job has ", ctx.config.num_processes, " processes");
  auto ranks = mesh.ranks_along(axis, ctx.config.process_id);
  if (auto it = ctx.groups.find(ranks); it != ctx.groups.end()) return it->second;
  auto group = make_group(ctx, ranks,
                          mesh.axis_names()[axis] + " (ranks " + rank_list(ranks) + ")");
  ctx.groups.emplace(ranks, group);
  return group;
}

namespace detail {

void start(const kdist::detail::JobConfig& config, std::chrono::milliseconds timeout) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto ctx = std::make_unique<Context>();
  ctx->config = config;
  ctx->timeout = timeout;
  std::vector<int> all(config.num_processes);
  for (int r = 0; r < config.num_processes; ++r) all[r] = r;
  if (config.num_processes > 1) {
    c10d::TCPStoreOptions options;
    options.port = static_cast<uint16_t>(config.coordinator_port);
    options.isServer = config.process_id == 0 && !config.store_served_by_launcher;
    options.waitWorkers = false;  // rendezvous() waits, and names who is missing
    options.timeout = timeout;
    if (options.isServer) options.masterListenFd = listen_on(config.coordinator_host, config.coordinator_port);
    try {
      ctx->store = c10::make_intrusive<c10d::TCPStore>(config.coordinator_host, options);
    } catch (const std::exception& e) {
      kdist::detail::failure(
          "runtime", "rank ", config.process_id, " could not reach the coordinator of ",
          config.num_processes, " processes at ", config.coordinator_host, ":",
          config.coordinator_port, " within ", timeout.count() / 1000.0,
          " s (KDIST_TIMEOUT_S): ", std::string(e.what()).substr(0, 300));
    }
    std::string address;
    ctx->device = gloo_device(config, address);
    auto announced = rendezvous(*ctx->store, config, address, timeout);
    kdist::detail::debug_log("Gloo address " + address + " on host " + announced[config.process_id].first);
  }
  ctx->world = make_group(*ctx, all, "world (ranks " + rank_list(all) + ")");
  ctx->groups.emplace(all, ctx->world);
  g_context = std::move(ctx);
}

void stop() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_context.reset();
}

bool started() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_context != nullptr;
}

std::chrono::milliseconds timeout() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return context().timeout;
}

}  // namespace detail
}  // namespace kdist::comm
