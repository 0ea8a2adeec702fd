// `kdist info`: versions, BLAS, collective backends and devices of this build.
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <kdist/runtime.h>
#include <kdist/version.h>
#include <torch/headeronly/version.h>

#include <iostream>
#include <regex>
#include <string>

#include "commands.h"

namespace kdist::tools {
namespace {

// LibTorch's build settings line ("USE_GLOO=ON, BLAS_INFO=mkl, ...") holds what we report.
std::string build_setting(const std::string& config, const std::string& name) {
  std::smatch m;
  if (std::regex_search(config, m, std::regex(name + "=([^,\\s]+)"))) return m[1];
  return "unknown";
}

// "2 (CUDA runtime 13.0)", or why there are none.
std::string gpu_line() {
  const auto& cuda = at::detail::getCUDAHooks();
  if (!cuda.hasCUDA()) return "none (this LibTorch has no CUDA, or no GPU is visible)";
  const long v = cuda.versionCUDART();
  return std::to_string(cuda.getNumGPUs()) + " (CUDA runtime " + std::to_string(v / 1000) + "." +
         std::to_string(v % 1000 / 10) + ")";
}

void print_info() {
  const std::string config = at::show_config();
  auto on = [&](const char* flag) { return build_setting(config, flag) == "ON"; };
  std::cout << "kdist " << KDIST_VERSION << "\n"
            << "LibTorch " << TORCH_VERSION << "\n"
            << "BLAS " << build_setting(config, "BLAS_INFO") << ", oneDNN "
            << (on("USE_MKLDNN") ? "yes" : "no") << ", OpenMP threads " << at::get_num_threads() << "\n"
            << "collective backends: gloo " << (on("USE_GLOO") ? "yes" : "no") << ", nccl "
            << (on("USE_NCCL") ? "yes" : "no") << ", mpi " << (on("USE_MPI") ? "yes" : "no") << "\n";
  std::cout << "GPUs: " << gpu_line() << "\n";
  auto devices = list_devices();
  std::cout << "devices (" << devices.size() << "):";
  for (const auto& d : devices) std::cout << " " << d;
  std::cout << "\n";
}

}  // namespace

void add_info_command(CLI::App& app, int& /*exit_code: always 0*/) {
  auto* info = app.add_subcommand("info", "Print kdist and LibTorch versions, backends, devices");
  info->callback(print_info);
}

}  // namespace kdist::tools
