#include <kdist/runtime.h>

#include <torch/cuda.h>

#include <atomic>

#include "error.h"

namespace kdist {
namespace {
std::atomic<bool> g_initialized{false};
std::atomic<int> g_num_processes{1};
std::atomic<int> g_process_id{0};
}  // namespace

void initialize(std::optional<std::string> job_addresses, std::optional<int> num_processes,
                std::optional<int> process_id) {
  int n = num_processes.value_or(1);
  int id = process_id.value_or(0);
  if (n < 1 || id < 0 || id >= n)
    detail::invalid("runtime", "initialize(num_processes=", n, ", process_id=", id,
                    "): expected num_processes >= 1 and 0 <= process_id < num_processes");
  if (n > 1 || job_addresses)
    detail::failure("runtime", "multi-process initialize (num_processes=", n,
                    ") is not available in this build yet: it comes with kdist's comm layer");
  g_num_processes = n;
  g_process_id = id;
  g_initialized = true;
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
  g_initialized = false;
  g_num_processes = 1;
  g_process_id = 0;
}

}  // namespace kdist
