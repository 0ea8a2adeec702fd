#include "comm/transport_choice.h"

#include <algorithm>

namespace kdist::comm {

// The group's ranks by host (HostLayout), from the labels the rendezvous collected.
HostLayout host_layout(const std::vector<std::string>& host_of, const std::vector<int>& ranks, int rank) {
  HostLayout layout;
  std::vector<std::string> labels;
  for (int g = 0; g < static_cast<int>(ranks.size()); ++g) {
    const auto& label = host_of[ranks[g]];
    auto it = std::find(labels.begin(), labels.end(), label);
    if (it == labels.end()) {
      labels.push_back(label);
      layout.hosts.emplace_back();
      it = labels.end() - 1;
    }
    const int h = static_cast<int>(it - labels.begin());
    if (g == rank) {
      layout.host = h;
      layout.local_rank = static_cast<int>(layout.hosts[h].size());
    }
    layout.hosts[h].push_back(g);
  }
  return layout;
}

Transport choose_transport(const std::string& forced, const HostLayout& layout, Transport asked) {
  if (asked == Transport::kAuto) {
    asked = forced == "gloo"  ? Transport::kGloo
            : forced == "shm" ? Transport::kSharedMemory
                              : Transport::kAuto;
  }
  const bool one_host = layout.hosts.size() == 1;
  const bool some_host_shared =
      std::any_of(layout.hosts.begin(), layout.hosts.end(), [](const auto& h) { return h.size() > 1; });
  switch (asked) {
    case Transport::kAuto:
      return one_host           ? Transport::kSharedMemory
             : some_host_shared ? Transport::kHierarchical
                                : Transport::kGloo;
    case Transport::kSharedMemory:  // over hosts: shared memory where it can be, on each host
      return one_host ? Transport::kSharedMemory : Transport::kHierarchical;
    default:
      return asked;
  }
}

}  // namespace kdist::comm
