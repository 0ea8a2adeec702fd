#include "runtime/supervision.h"

#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

namespace kdist::detail {
namespace {

std::mutex g_mutex;
std::atomic<bool> g_member{false};
int g_heartbeat_fd = -1;
bool g_started = false;

int pipe_fd(const EnvLookup& env, const char* name) {
  const char* text = env(name);
  if (text == nullptr || *text == '\0') return -1;
  char* end = nullptr;
  const long fd = std::strtol(text, &end, 10);
  struct stat info {};
  if (*end != '\0' || fd < 0 || fd > 65535 || ::fstat(static_cast<int>(fd), &info) != 0 ||
      !S_ISFIFO(info.st_mode))
    return -1;
  return static_cast<int>(fd);
}

void say(char what) {
  if (g_heartbeat_fd < 0) return;
  [[maybe_unused]] auto n = ::write(g_heartbeat_fd, &what, 1);  // a full pipe drops a beat: harmless
}

// Beats once a second while a member; ends the process group when the launcher hangs up.
void watch(int launcher_fd) {
  for (;;) {
    pollfd fd{launcher_fd, POLLIN, 0};
    const int ready = ::poll(&fd, 1, 1000);
    if (ready > 0 && (fd.revents & (POLLHUP | POLLERR | POLLIN))) {
      char byte;
      if (::read(launcher_fd, &byte, 1) <= 0) {  // end of file: the launcher is gone
        static const char message[] =
            "[kdist.runtime] the launcher that started this rank is gone: ending the rank\n";
        [[maybe_unused]] auto n = ::write(STDERR_FILENO, message, sizeof message - 1);
        ::kill(0, SIGKILL);  // the rank's process group, which the launcher made for it
        ::_exit(137);
      }
    }
    if (g_member) say('B');
  }
}

}  // namespace

void start_supervision(const EnvLookup& env) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_started) {
    const int heartbeat = pipe_fd(env, "KDIST_HEARTBEAT_FD"), launcher = pipe_fd(env, "KDIST_LAUNCHER_FD");
    if (heartbeat < 0 || launcher < 0) return;
    g_heartbeat_fd = heartbeat;
    g_started = true;
    std::thread(watch, launcher).detach();  // for the life of the process: a rank never outlives its launcher
  }
  g_member = true;
  say('B');
}

void tell_progress(char kind, int64_t step) {
  if (g_heartbeat_fd < 0) return;
  const std::string line = kind + std::to_string(step) + "\n";
  [[maybe_unused]] auto n = ::write(g_heartbeat_fd, line.data(), line.size());  // < PIPE_BUF: atomic
}

void leave_supervision() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_started || !g_member) return;
  g_member = false;
  say('D');
}

}  // namespace kdist::detail
