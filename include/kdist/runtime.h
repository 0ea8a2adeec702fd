#pragma once
// The process runtime: which process this is, how many there are, and their devices.
//
//   kdist::initialize();               // from the environment, or a single process
//   kdist::num_processes();            // 1 before initialize
//   kdist::list_devices();             // {"cpu:0", ..., "cpu:N-1"}: one device per process
//
// Devices are global: "cpu:r" (or "cuda:r" on a CUDA build with GPUs) is the device of
// the process with global rank r.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kdist {

// Starts the multi-process runtime. Arguments left empty are taken from the environment
// (KERAS_DISTRIBUTION_*, torchrun's, Slurm's or Open MPI's variables); with none, this is
// a single process. Throws std::invalid_argument for inconsistent arguments and
// std::runtime_error when peers cannot be reached within the timeout.
void initialize(std::optional<std::string> job_addresses = std::nullopt,
                std::optional<int> num_processes = std::nullopt,
                std::optional<int> process_id = std::nullopt);
bool is_initialized();
int num_processes();  // 1 before initialize
int process_id();     // 0 before initialize
// device_type: "" (the default type: "cuda" when CUDA devices are in use, else "cpu"),
// "cpu", "cuda" or its alias "gpu". Throws std::invalid_argument for any other type.
std::vector<std::string> list_devices(const std::string& device_type = "");
int64_t get_device_count(const std::string& device_type = "");
void shutdown();

// Training progress for the launcher, so that a job that restarts can say what a failure cost:
// report_resumed(k) once an attempt knows it continues after step k (0: from the start), and
// report_step(n) after each step n. `kdist launch` then prints "attempt 2 resumed from step
// 20: steps 21-27 run again" and the steps lost in its summary. They tell a kdist launcher
// only (through the pipe it gave the rank); elsewhere they do nothing, and never throw.
void report_resumed(int64_t step);
void report_step(int64_t step);

}  // namespace kdist
