#include "job/debug_log.h"

#include <kdist/job.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>
#include <sstream>

namespace kdist::detail {

bool debug_enabled() {
  const char* value = std::getenv("KERAS_DISTRIBUTION_DEBUG");
  return value != nullptr && *value != '\0' && std::strcmp(value, "0") != 0;
}

void debug_log(const std::string& event) {
  if (!debug_enabled()) return;
  const Job job = current_job();
  std::ostringstream line;
  line << "DEBUG | [Rank " << job.process_id << "/" << job.num_processes << "] " << event << "\n";
  // One write per line, so lines of different threads do not interleave.
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  std::cerr << line.str() << std::flush;
}

}  // namespace kdist::detail
