#pragma once
// The job this process belongs to: which process it is, how many there are, their devices.
// kdist keeps it in this one place, below every layer that needs it: runtime's initialize()
// makes it the current job before the processes meet, and shutdown() ends it; comm's groups
// take this process's rank from it, a DeviceMesh built without devices its devices, a
// Distribution its data shard (as Keras's reads process_id()), the debug log its prefix.
// A process that never initialized is alone: process 0 of 1, device "cpu:0".
//
//   kdist::initialize();
//   kdist::Job job = kdist::current_job();   // {process_id 2, num_processes 4, cpu:0..cpu:3}
#include <string>
#include <vector>

namespace kdist {

struct Job {
  int process_id = 0;
  int num_processes = 1;
  std::vector<std::string> devices{"cpu:0"};  // device r belongs to the process of rank r
};

// A copy of the current job; safe from any thread.
Job current_job();

namespace detail {
// runtime's initialize() and shutdown() (and tests that stand in for a job) alone.
void set_current_job(Job job);
}  // namespace detail

}  // namespace kdist
