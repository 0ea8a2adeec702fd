#include <kdist/job.h>

#include <mutex>

namespace kdist {
namespace {
std::mutex g_mutex;
Job g_job;
}  // namespace

Job current_job() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_job;
}

namespace detail {
void set_current_job(Job job) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_job = std::move(job);
}
}  // namespace detail

}  // namespace kdist
