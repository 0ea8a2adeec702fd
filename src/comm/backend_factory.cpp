#include "comm/backend_factory.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <algorithm>

#include "base/errors.h"
#include "comm/transport_choice.h"
#include "comm/transports/fallback.h"
#include "comm/transports/gloo.h"
#include "comm/transports/hierarchical.h"

namespace kdist::comm {

// Gloo among `ranks` (global, in group order; this process among them), its store keys
// under `prefix`.
std::shared_ptr<GlooBackend> make_gloo(Context& ctx, const std::vector<int>& ranks, const std::string& prefix,
                                       const std::string& name) {
  const int self = ctx.config.process_id;
  const int rank = static_cast<int>(std::find(ranks.begin(), ranks.end(), self) - ranks.begin());
  auto options = c10d::ProcessGroupGloo::Options::create(ctx.timeout);
  options->devices.push_back(ctx.device);
  auto store = c10::make_intrusive<c10d::PrefixStore>(prefix, ctx.store);
  c10::intrusive_ptr<c10d::Backend> gloo;
  try {
    gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, static_cast<int>(ranks.size()), options);
  } catch (const std::exception& e) {
    kdist::detail::failure("comm", "creating group ", name, " failed on rank ", self, ": ", e.what());
  }
  return std::make_shared<GlooBackend>(
      gloo, BackendIdentity{name, rank, static_cast<int>(ranks.size()), self}, ctx.timeout);
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string out;
  for (size_t i = 0; i < ranks.size(); ++i) out += (i ? "," : "") + std::to_string(ranks[i]);
  return out;
}

std::shared_ptr<Backend> make_backend(Context& ctx, Group::Impl& impl, Transport asked) {
  const auto layout = host_layout(ctx.hosts, impl.ranks, impl.rank);
  const Transport transport = choose_transport(ctx.config.transport, layout, asked);
  const bool required = asked == Transport::kSharedMemory || ctx.config.transport == "shm";
  // Groups of one rank set may exist once per transport asked (the cache's key): so do keys.
  const std::string prefix = "kdist/group/" + to_string(asked) + "/" + rank_list(impl.ranks);
  impl.gloo = make_gloo(ctx, impl.ranks, prefix, impl.name);
  switch (transport) {
    case Transport::kSharedMemory:
      return std::make_shared<SharedMemoryOrGloo>(impl.gloo, required, ctx.timeout,
                                                  ctx.config.shared_memory_dir);
    case Transport::kHierarchical: {
      if (layout.hosts.size() < 2)
        kdist::detail::invalid("comm", "a hierarchical transport for ", impl.name,
                               " needs processes on two hosts or more; all of them run on one");
      auto global = [&](const std::vector<int>& group_ranks) {
        std::vector<int> out;
        for (int g : group_ranks) out.push_back(impl.ranks[g]);
        return out;
      };
      const auto& mine = layout.hosts[layout.host];
      std::unique_ptr<SharedMemoryOrGloo> local;
      if (mine.size() > 1) {
        const auto ranks = global(mine);
        auto local_gloo = make_gloo(ctx, ranks, prefix + "/host/" + rank_list(ranks),
                                    impl.name + " on host " + std::to_string(layout.host));
        local = std::make_unique<SharedMemoryOrGloo>(local_gloo, required, ctx.timeout,
                                                     ctx.config.shared_memory_dir);
      }
      std::shared_ptr<GlooBackend> leaders;
      if (layout.leader()) {
        std::vector<int> ranks;
        for (const auto& host : layout.hosts) ranks.push_back(impl.ranks[host.front()]);
        leaders = make_gloo(ctx, ranks, prefix + "/leaders", impl.name + " between hosts");
      }
      return std::make_shared<HierarchicalBackend>(impl.gloo, std::move(local), leaders, layout);
    }
    default:
      return impl.gloo;
  }
}

}  // namespace kdist::comm
