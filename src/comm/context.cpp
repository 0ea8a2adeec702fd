// The c10d state of a running job: the store, the Gloo device, where each process runs, and
// the world group.
#include "comm/context.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <exception>
#include <mutex>

#include "base/errors.h"
#include "comm/addresses.h"
#include "comm/backend_factory.h"
#include "comm/listen.h"
#include "comm/rendezvous.h"
#include "job/debug_log.h"

namespace kdist::comm {
namespace {
std::unique_ptr<Context> g_context;
}  // namespace

std::mutex& context_mutex() {
  static std::mutex mutex;
  return mutex;
}

Context& context() {
  if (!g_context) kdist::detail::failure("comm", "no process group: call kdist::initialize() first");
  return *g_context;
}

namespace detail {

void start(const kdist::detail::JobConfig& config, std::chrono::milliseconds timeout) {
  std::lock_guard<std::mutex> lock(context_mutex());
  if (g_context)
    kdist::detail::invalid("runtime", "initialize() was already called (", g_context->config.num_processes,
                           " processes); call shutdown() first");
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
    if (options.isServer)
      options.masterListenFd = listen_on(config.coordinator_host, config.coordinator_port);
    try {
      ctx->store = c10::make_intrusive<c10d::TCPStore>(config.coordinator_host, options);
    } catch (const std::exception& e) {
      kdist::detail::failure("runtime", "rank ", config.process_id, " could not reach the coordinator of ",
                             config.num_processes, " processes at ", config.coordinator_host, ":",
                             config.coordinator_port, " within ", timeout.count() / 1000.0,
                             " s (KDIST_TIMEOUT_S): ", std::string(e.what()).substr(0, 300));
    }
    if (!config.store_scope.empty())
      ctx->store = c10::make_intrusive<c10d::PrefixStore>(config.store_scope, ctx->store);
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
  std::lock_guard<std::mutex> lock(context_mutex());
  g_context.reset();
}

bool started() {
  std::lock_guard<std::mutex> lock(context_mutex());
  return g_context != nullptr;
}

std::chrono::milliseconds timeout() {
  std::lock_guard<std::mutex> lock(context_mutex());
  return context().timeout;
}

std::string shared_memory_dir() {
  std::lock_guard<std::mutex> lock(context_mutex());
  return context().config.shared_memory_dir;
}

}  // namespace detail
}  // namespace kdist::comm
