#include "debug_log.h"

#include <kdist/mesh.h>

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
  const auto place = job_place();  // pushed down by runtime: every layer logs, none calls up
  std::ostringstream line;
  line << "DEBUG | [Rank " << place.process_id << "/" << place.num_processes << "] " << event << "\n";
  // One write per line, so lines of different threads do not interleave.
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  std::cerr << line.str() << std::flush;
}

}  // namespace kdist::detail
