#include "comm/rendezvous.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

#include "base/errors.h"
#include "comm/addresses.h"

namespace kdist::comm::detail {

// What makes two processes "on one host": hostname, boot id and the shared-memory device
// (network namespaces share a kernel, so the last tells their private /dev/shm apart).
std::string host_identity() {
  char name[256] = {0};
  gethostname(name, sizeof(name) - 1);
  std::string boot;
  if (FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "r")) {
    char line[64] = {0};
    if (std::fgets(line, sizeof(line), f)) boot = line;
    std::fclose(f);
    if (!boot.empty() && boot.back() == '\n') boot.pop_back();
  }
  struct stat shm {};
  const long shm_device = stat("/dev/shm", &shm) == 0 ? static_cast<long>(shm.st_dev) : -1;
  return std::string(name) + "/" + boot + "/" + std::to_string(shm_device);
}

// Every process announces itself and waits for all the others, so a missing process is named
// rather than left to a timeout deep inside Gloo. Returns each rank's announcement. A job on
// several hosts where some process would advertise a loopback address is refused: its peers
// could never connect to it.
std::vector<Announcement> rendezvous(c10d::Store& store, const kdist::detail::JobConfig& config,
                                     const std::string& address, std::chrono::milliseconds timeout) {
  const int n = config.num_processes;
  const std::string prefix = "kdist/rendezvous/";
  const std::string mine = host_identity() + "\n" + address + "\n" + config.host_label;
  store.set(prefix + std::to_string(config.process_id), std::vector<uint8_t>(mine.begin(), mine.end()));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<bool> arrived(n, false);
  while (true) {
    std::vector<int> missing;
    for (int r = 0; r < n; ++r)
      if (!arrived[r] && !(arrived[r] = store.check({prefix + std::to_string(r)}))) missing.push_back(r);
    if (missing.empty()) break;
    if (std::chrono::steady_clock::now() > deadline) {
      std::string list;
      for (size_t i = 0; i < missing.size(); ++i) list += (i ? ", " : "") + std::to_string(missing[i]);
      kdist::detail::failure("runtime", "rank ", config.process_id, ": rank", missing.size() > 1 ? "s " : " ",
                             list, " of ", n, " did not arrive at the coordinator ", config.coordinator_host,
                             ":", config.coordinator_port, " within ", timeout.count() / 1000.0,
                             " s (KDIST_TIMEOUT_S): is every host's launcher running?");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::vector<Announcement> all;
  for (int r = 0; r < n; ++r) {
    auto bytes = store.get(prefix + std::to_string(r));
    std::string text(bytes.begin(), bytes.end());
    const auto first = text.find('\n'), second = text.find('\n', first + 1);
    all.push_back(
        {text.substr(0, first), text.substr(first + 1, second - first - 1), text.substr(second + 1)});
  }
  for (int r = 0; r < n; ++r)
    if (all[r].host != all[0].host && (is_loopback(all[r].address) || is_loopback(all[0].address))) {
      const int bad = is_loopback(all[r].address) ? r : 0;
      kdist::detail::failure("runtime", "rank ", bad, " would be reached at the loopback address ",
                             all[bad].address,
                             " but the job spans several hosts; give --master-addr "
                             "(MASTER_ADDR) an address the other hosts reach, or set GLOO_SOCKET_IFNAME");
    }
  return all;
}

}  // namespace kdist::comm::detail
