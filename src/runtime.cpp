#include <kdist/runtime.h>

#include <torch/cuda.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>

#include "comm/context.h"
#include "debug_log.h"
#include "errors.h"
#include "job_config.h"

namespace kdist {
namespace {
std::mutex g_mutex;
std::atomic<bool> g_initialized{false};
std::atomic<int> g_num_processes{1};
std::atomic<int> g_process_id{0};
}  // namespace

void initialize(std::optional<std::string> job_addresses, std::optional<int> num_processes,
                std::optional<int> process_id) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto env = [](const char* name) { return std::getenv(name); };
  auto config = detail::resolve_job_config(job_addresses, num_processes, process_id, env);
  if (g_initialized)
    detail::invalid("runtime", "initialize() was already called (", g_num_processes.load(),
                    " processes); call shutdown() first");
  auto timeout = std::chrono::milliseconds(
      static_cast<int64_t>(detail::timeout_seconds(env) * 1000));
  // The rendezvous lives in comm, the one layer that talks to c10d. The identity is set
  // first, so that comm's debug lines during the rendezvous name this process.
  g_num_processes = config.num_processes;
  g_process_id = config.process_id;
  try {
    comm::detail::start(config, timeout);
  } catch (...) {
    g_num_processes = 1;
    g_process_id = 0;
    throw;
  }
  g_initialized = true;
  detail::debug_log("initialize: " + std::to_string(config.num_processes) + " processes from " +
                    config.source + (config.coordinator_host.empty()
                                         ? std::string()
                                         : ", coordinator " + config.coordinator_host + ":" +
                                               std::to_string(config.coordinator_port)));
}

bool is_initialized() { return g_initialized; }
int num_processes() { return g_num_processes; }
int process_id() { return g_process_id; }

std::vector<std::string> list_devices(const std::string& device_type) {
  std::string type = device_type == "gpu" ? "cuda" : device_type;
  if (type.empty()) type = torch::cuda::is_available() ? "cuda" : "cpu";
  if (type != "cpu" && type != "cuda")
    detail::invalid("runtime", "device_type '", device_type, "' is not one of cpu, cuda, gpu");
  if (type == "cuda" && !torch::cuda::is_available()) return {};
  std::vector<std::string> devices;
  for (int r = 0; r < num_processes(); ++r) devices.push_back(type + ":" + std::to_string(r));
  return devices;
}

int64_t get_device_count(const std::string& device_type) {
  return static_cast<int64_t>(list_devices(device_type).size());
}

void shutdown() {
  std::lock_guard<std::mutex> lock(g_mutex);
  comm::detail::stop();
  g_initialized = false;
  g_num_processes = 1;
  g_process_id = 0;
}

}  // namespace kdist
