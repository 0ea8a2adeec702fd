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

#include <algorithm>
#include <cstdio>
#include <map>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>

#include "../debug_log.h"
#include "../errors.h"
#include "gloo_backend.h"
#include "hierarchical_backend.h"
#include "listen.h"
#include "shared_memory_backend.h"

namespace kdist::comm {
namespace {
using detail::listen_on;

struct Context {
  kdist::detail::JobConfig config;
  std::chrono::milliseconds timeout{0};
  c10::intrusive_ptr<c10d::Store> store;
  std::shared_ptr<::gloo::transport::Device> device;
  // Where each global rank runs, as far as transports go: processes with one label share
  // memory (host_identity(), or KDIST_HOST's label).
  std::vector<std::string> hosts;
  GroupPtr world;
  std::map<std::pair<std::vector<int>, Transport>, GroupPtr> groups;  // by global ranks, transport asked
};

std::mutex g_mutex;
std::unique_ptr<Context> g_context;
// The identity, readable without the mutex (error messages, debug lines).
std::atomic<int> g_process_id{0};
std::atomic<int> g_num_processes{1};

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

// What each process announces at the rendezvous.
struct Announcement {
  std::string host;     // host_identity()
  std::string address;  // its Gloo address
  std::string label;    // KDIST_HOST, empty when unset
};

// Every process announces itself and waits for all the others, so a missing process is named
// rather than left to a timeout deep inside Gloo. Returns each rank's announcement. A job on
// several hosts where some process would advertise a loopback address is refused: its peers
// could never connect to it.
std::vector<Announcement> rendezvous(c10d::Store& store,
                                                             const kdist::detail::JobConfig& config,
                                                             const std::string& address,
                                                             std::chrono::milliseconds timeout) {
  const int n = config.num_processes;
  const std::string prefix = "kdist/rendezvous/";
  const std::string mine = host_identity() + "\n" + address + "\n" + config.host_label;
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
  std::vector<Announcement> all;
  for (int r = 0; r < n; ++r) {
    auto bytes = store.get(prefix + std::to_string(r));
    std::string text(bytes.begin(), bytes.end());
    const auto first = text.find('\n'), second = text.find('\n', first + 1);
    all.push_back({text.substr(0, first), text.substr(first + 1, second - first - 1), text.substr(second + 1)});
  }
  for (int r = 0; r < n; ++r)
    if (all[r].host != all[0].host && (is_loopback(all[r].address) || is_loopback(all[0].address))) {
      const int bad = is_loopback(all[r].address) ? r : 0;
      kdist::detail::failure("runtime", "rank ", bad, " would be reached at the loopback address ",
                             all[bad].address, " but the job spans several hosts; give --master-addr "
                             "(MASTER_ADDR) an address the other hosts reach, or set GLOO_SOCKET_IFNAME");
    }
  return all;
}

// Gloo among `ranks` (global, in group order; this process among them), its store keys
// under `prefix`.
std::shared_ptr<GlooBackend> make_gloo(Context& ctx, const std::vector<int>& ranks, const std::string& prefix,
                                       const std::string& name) {
  const int self = ctx.config.process_id;
  const int rank = static_cast<int>(std::find(ranks.begin(), ranks.end(), self) - ranks.begin());
  auto options = c10d::ProcessGroupGloo::Options::create(ctx.timeout);
  options->devices.push_back(ctx.device);
  auto store = c10::make_intrusive<c10d::PrefixStore>(prefix, ctx.store);
  c10::intrusive_ptr<c10d::Backend> gloo;
  try {
    gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, static_cast<int>(ranks.size()), options);
  } catch (const std::exception& e) {
    kdist::detail::failure("comm", "creating group ", name, " failed on rank ", self, ": ", e.what());
  }
  return std::make_shared<GlooBackend>(gloo, BackendIdentity{name, rank, static_cast<int>(ranks.size()), self},
                                       ctx.timeout);
}

// The group's ranks by host (HostLayout), from the labels the rendezvous collected.
HostLayout host_layout(const Context& ctx, const std::vector<int>& ranks, int rank) {
  HostLayout layout;
  std::vector<std::string> labels;
  for (int g = 0; g < static_cast<int>(ranks.size()); ++g) {
    const auto& label = ctx.hosts[ranks[g]];
    auto it = std::find(labels.begin(), labels.end(), label);
    if (it == labels.end()) {
      labels.push_back(label);
      layout.hosts.emplace_back();
      it = labels.end() - 1;
    }
    const int h = static_cast<int>(it - labels.begin());
    if (g == rank) {
      layout.host = h;
      layout.local_rank = static_cast<int>(layout.hosts[h].size());
    }
    layout.hosts[h].push_back(g);
  }
  return layout;
}

// DESIGN.md, Transports: all on one host, shared memory; over hosts with several processes
// on some, hierarchical; one process per host, Gloo. KDIST_TRANSPORT (the job's default) and
// GroupOptions override.
Transport choose(const Context& ctx, const HostLayout& layout, Transport asked) {
  if (asked == Transport::kAuto) {
    const auto& forced = ctx.config.transport;
    asked = forced == "gloo" ? Transport::kGloo : forced == "shm" ? Transport::kSharedMemory : Transport::kAuto;
  }
  const bool one_host = layout.hosts.size() == 1;
  const bool some_host_shared = std::any_of(layout.hosts.begin(), layout.hosts.end(),
                                            [](const auto& h) { return h.size() > 1; });
  switch (asked) {
    case Transport::kAuto:
      return one_host ? Transport::kSharedMemory : some_host_shared ? Transport::kHierarchical : Transport::kGloo;
    case Transport::kSharedMemory:  // over hosts: shared memory where it can be, on each host
      return one_host ? Transport::kSharedMemory : Transport::kHierarchical;
    default:
      return asked;
  }
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string out;
  for (size_t i = 0; i < ranks.size(); ++i) out += (i ? "," : "") + std::to_string(ranks[i]);
  return out;
}

std::shared_ptr<Backend> make_backend(Context& ctx, Group::Impl& impl, Transport asked) {
  const auto layout = host_layout(ctx, impl.ranks, impl.rank);
  const Transport transport = choose(ctx, layout, asked);
  const bool required = asked == Transport::kSharedMemory || ctx.config.transport == "shm";
  // Groups of one rank set may exist once per transport asked (the cache's key): so do keys.
  const std::string prefix = "kdist/group/" + to_string(asked) + "/" + rank_list(impl.ranks);
  impl.gloo = make_gloo(ctx, impl.ranks, prefix, impl.name);
  switch (transport) {
    case Transport::kSharedMemory:
      return std::make_shared<SharedMemoryBackend>(impl.gloo, required, ctx.timeout, ctx.config.shared_memory_dir);
    case Transport::kHierarchical: {
      if (layout.hosts.size() < 2)
        kdist::detail::invalid("comm", "a hierarchical transport for ", impl.name,
                               " needs processes on two hosts or more; all of them run on one");
      auto global = [&](const std::vector<int>& group_ranks) {
        std::vector<int> out;
        for (int g : group_ranks) out.push_back(impl.ranks[g]);
        return out;
      };
      const auto& mine = layout.hosts[layout.host];
      std::unique_ptr<Backend> local;
      if (mine.size() > 1) {
        const auto ranks = global(mine);
        auto local_gloo = make_gloo(ctx, ranks, prefix + "/host/" + rank_list(ranks),
                                    impl.name + " on host " + std::to_string(layout.host));
        local = std::make_unique<SharedMemoryBackend>(local_gloo, required, ctx.timeout, ctx.config.shared_memory_dir);
      }
      std::shared_ptr<GlooBackend> leaders;
      if (layout.leader()) {
        std::vector<int> ranks;
        for (const auto& host : layout.hosts) ranks.push_back(impl.ranks[host.front()]);
        leaders = make_gloo(ctx, ranks, prefix + "/leaders", impl.name + " between hosts");
      }
      return std::make_shared<HierarchicalBackend>(impl.gloo, std::move(local), leaders, layout);
    }
    default:
      return impl.gloo;
  }
}

GroupPtr make_group(Context& ctx, const std::vector<int>& ranks, const std::string& name, Transport asked) {
  auto impl = std::make_shared<Group::Impl>();
  impl->ranks = ranks;
  impl->name = name;
  const int self = ctx.config.process_id;
  impl->rank = static_cast<int>(std::find(ranks.begin(), ranks.end(), self) - ranks.begin());
  if (ranks.size() > 1) impl->backend = make_backend(ctx, *impl, asked);
  kdist::detail::debug_log("process group " + name + " created (size " + std::to_string(ranks.size()) +
                           (impl->backend ? ", " + to_string(impl->backend->transport()) : std::string()) + ")");
  return std::make_shared<const Group>(impl);
}

Context& context() {
  if (!g_context)
    kdist::detail::failure("comm", "no process group: call kdist::initialize() first");
  return *g_context;
}

}  // namespace

Group::Group(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
int Group::rank() const { return impl_->rank; }
int Group::size() const { return static_cast<int>(impl_->ranks.size()); }
const std::vector<int>& Group::ranks() const { return impl_->ranks; }
const std::string& Group::name() const { return impl_->name; }

std::string to_string(Transport transport) {
  switch (transport) {
    case Transport::kAuto: return "auto";
    case Transport::kGloo: return "gloo";
    case Transport::kSharedMemory: return "shared memory";
    case Transport::kHierarchical: return "hierarchical";
  }
  return "?";
}

Transport transport(const Group& group) {
  return group.impl().backend ? group.impl().backend->transport() : Transport::kGloo;
}

GroupPtr world() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return context().world;
}

GroupPtr axis_group(const DeviceMesh& mesh, const std::string& axis, GroupOptions options) {
  return axis_group(mesh, mesh.axis_index(axis), options);
}

GroupPtr axis_group(const DeviceMesh& mesh, int64_t axis, GroupOptions options) {
  std::lock_guard<std::mutex> lock(g_mutex);
  Context& ctx = context();
  for (int64_t p = 0; p < mesh.size(); ++p)
    if (mesh.rank_at(p) >= ctx.config.num_processes)
      kdist::detail::invalid("comm", mesh.to_string(), " names rank ", mesh.rank_at(p),
                             " but the job has ", ctx.config.num_processes, " processes");
  auto ranks = mesh.ranks_along(axis, ctx.config.process_id);
  if (auto it = ctx.groups.find({ranks, options.transport}); it != ctx.groups.end()) return it->second;
  auto group = make_group(ctx, ranks, mesh.axis_names()[axis] + " (ranks " + rank_list(ranks) + ")",
                          options.transport);
  ctx.groups.emplace(std::make_pair(ranks, options.transport), group);
  return group;
}

namespace detail {

void start(const kdist::detail::JobConfig& config, std::chrono::milliseconds timeout) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_context)
    kdist::detail::invalid("runtime", "initialize() was already called (", g_num_processes.load(),
                           " processes); call shutdown() first");
  g_process_id = config.process_id;
  g_num_processes = config.num_processes;
  struct ResetOnThrow {
    ~ResetOnThrow() {
      if (std::uncaught_exceptions() > 0) g_process_id = 0, g_num_processes = 1;
    }
  } reset_on_throw;
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
    kdist::detail::debug_log("Gloo address " + address + " on host " + announced[config.process_id].host);
    for (const auto& a : announced) ctx->hosts.push_back(a.label.empty() ? a.host : a.host + "/" + a.label);
  } else {
    ctx->hosts.push_back(host_identity());
  }
  ctx->world = make_group(*ctx, all, "world (ranks " + rank_list(all) + ")", Transport::kAuto);
  ctx->groups.emplace(std::make_pair(all, Transport::kAuto), ctx->world);
  g_context = std::move(ctx);
}

void stop() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_context.reset();
  g_process_id = 0;
  g_num_processes = 1;
}

int process_id() { return g_process_id; }
int num_processes() { return g_num_processes; }

bool started() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_context != nullptr;
}

std::chrono::milliseconds timeout() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return context().timeout;
}

std::string shared_memory_dir() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return context().config.shared_memory_dir;
}

}  // namespace detail
}  // namespace kdist::comm
