#include <kdist/job.h>
#include <kdist/runtime.h>

#include <torch/cuda.h>

#include <chrono>
#include <cstdlib>
#include <mutex>

#include "base/errors.h"
#include "comm/context.h"
#include "job/debug_log.h"
#include "runtime/resolve_job_config.h"
#include "runtime/supervision.h"

namespace kdist {
namespace {
std::mutex g_mutex;

std::string default_device_type() { return torch::cuda::is_available() ? "cuda" : "cpu"; }

std::vector<std::string> devices_of(const std::string& type, int num_processes) {
  std::vector<std::string> devices;
  for (int r = 0; r < num_processes; ++r) devices.push_back(type + ":" + std::to_string(r));
  return devices;
}
}  // namespace

// runtime resolves where the job is; comm keeps the identity and is asked for it.
void initialize(std::optional<std::string> job_addresses, std::optional<int> num_processes,
                std::optional<int> process_id) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto env = [](const char* name) { return std::getenv(name); };
  auto config = detail::resolve_job_config(job_addresses, num_processes, process_id, env);
  auto timeout = std::chrono::milliseconds(static_cast<int64_t>(detail::timeout_seconds(env) * 1000));
  // The job, current before the processes meet (so that comm's debug lines during the
  // rendezvous name this process); a failed start (one refused because a job is running, too)
  // leaves what was there.
  const Job previous = current_job();
  if (comm::detail::started())
    detail::invalid("runtime", "initialize() was already called (", previous.num_processes,
                    " processes); call shutdown() first");
  detail::set_current_job(
      {config.process_id, config.num_processes, devices_of(default_device_type(), config.num_processes)});
  detail::start_supervision(env);  // before the rendezvous: a rank stuck in it is watched too
  try {
    comm::detail::start(config, timeout);
  } catch (...) {
    detail::set_current_job(previous);
    detail::leave_supervision();
    throw;
  }
  detail::debug_log(
      "initialize: " + std::to_string(config.num_processes) + " processes from " + config.source +
      (config.coordinator_host.empty()
           ? std::string()
           : ", coordinator " + config.coordinator_host + ":" + std::to_string(config.coordinator_port)));
}

bool is_initialized() { return comm::detail::started(); }
int num_processes() { return current_job().num_processes; }
int process_id() { return current_job().process_id; }

std::vector<std::string> list_devices(const std::string& device_type) {
  std::string type = device_type == "gpu" ? "cuda" : device_type;
  if (type.empty()) type = default_device_type();
  if (type != "cpu" && type != "cuda")
    detail::invalid("runtime", "device_type '", device_type, "' is not one of cpu, cuda, gpu");
  if (type == "cuda" && !torch::cuda::is_available()) return {};
  return devices_of(type, current_job().num_processes);
}

int64_t get_device_count(const std::string& device_type) {
  return static_cast<int64_t>(list_devices(device_type).size());
}

void shutdown() {
  std::lock_guard<std::mutex> lock(g_mutex);
  comm::detail::stop();
  detail::set_current_job({});
  detail::leave_supervision();
}

}  // namespace kdist

namespace kdist {

void report_resumed(int64_t step) { detail::tell_progress('R', step); }
void report_step(int64_t step) { detail::tell_progress('S', step); }

}  // namespace kdist
