// Rendezvous over c10d::TCPStore and creation of Gloo process groups.
#include "context.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <mutex>

#include "../debug_log.h"
#include "../errors.h"

namespace kdist::comm {
namespace {

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

// The coordinator listens on the address it was given, not on every interface.
int listen_on(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); rc != 0)
    kdist::detail::failure("runtime", "cannot resolve coordinator host '", host,
                           "': ", gai_strerror(rc));
  std::string last_error = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 128) == 0) {
      freeaddrinfo(found);
      return fd;
    }
    last_error = std::strerror(errno);
    close(fd);
  }
  freeaddrinfo(found);
  kdist::detail::failure("runtime", "coordinator cannot listen on ", host, ":", port, ": ",
                         last_error);
}

GroupPtr make_group(Context& ctx, const std::vector<int>& ranks, const std::string& name) {
  auto impl = std::make_shared<Group::Impl>();
  impl->ranks = ranks;
  impl->name = name;
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
    options.numWorkers = config.num_processes;
    options.waitWorkers = true;
    options.timeout = timeout;
    if (options.isServer) options.masterListenFd = listen_on(config.coordinator_host, config.coordinator_port);
    try {
      ctx->store = c10::make_intrusive<c10d::TCPStore>(config.coordinator_host, options);
    } catch (const std::exception& e) {
      kdist::detail::failure(
          "runtime", "rank ", config.process_id, " could not rendezvous with ",
          config.num_processes, " processes at ", config.coordinator_host, ":",
          config.coordinator_port, " within ", timeout.count() / 1000.0,
          " s (KDIST_TIMEOUT_S): ", std::string(e.what()).substr(0, 300));
    }
    ctx->device = is_loopback(config.coordinator_host)
                      ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                      : c10d::ProcessGroupGloo::createDefaultDevice();
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
