// Process groups: the world, and per mesh axis the ranks that differ from this one only there,
// made collectively on first request and cached by rank set and transport asked.
#include <algorithm>
#include <mutex>

#include "base/errors.h"
#include "comm/backend.h"
#include "comm/backend_factory.h"
#include "comm/context.h"
#include "comm/transports/nccl.h"
#include "job/debug_log.h"

namespace kdist::comm {

GroupPtr make_group(Context& ctx, const std::vector<int>& ranks, const std::string& name, Transport asked) {
  auto impl = std::make_shared<Group::Impl>();
  impl->ranks = ranks;
  impl->name = name;
  const int self = ctx.config.process_id;
  impl->rank = static_cast<int>(std::find(ranks.begin(), ranks.end(), self) - ranks.begin());
  if (ranks.size() > 1) {
    impl->backend = make_backend(ctx, *impl, asked);
    impl->cuda =
        make_cuda_backend(ctx, ranks, "kdist/group/nccl/" + to_string(asked) + "/" + rank_list(ranks), name);
  }
  kdist::detail::debug_log("process group " + name + " created (size " + std::to_string(ranks.size()) +
                           (impl->backend ? ", " + to_string(impl->backend->transport()) : std::string()) +
                           ")");
  return std::make_shared<const Group>(impl);
}

Group::Group(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
int Group::rank() const { return impl_->rank; }
int Group::size() const { return static_cast<int>(impl_->ranks.size()); }
const std::vector<int>& Group::ranks() const { return impl_->ranks; }
const std::string& Group::name() const { return impl_->name; }

std::string to_string(Transport transport) {
  switch (transport) {
    case Transport::kAuto:
      return "auto";
    case Transport::kGloo:
      return "gloo";
    case Transport::kSharedMemory:
      return "shared memory";
    case Transport::kHierarchical:
      return "hierarchical";
    case Transport::kNccl:
      return "nccl";
  }
  return "?";
}

Transport transport(const Group& group) {
  return GroupAccess::impl(group).backend ? GroupAccess::impl(group).backend->transport() : Transport::kGloo;
}

GroupPtr world() {
  std::lock_guard<std::mutex> lock(context_mutex());
  return context().world;
}

GroupPtr axis_group(const DeviceMesh& mesh, const std::string& axis, GroupOptions options) {
  return axis_group(mesh, mesh.axis_index(axis), options);
}

GroupPtr axis_group(const DeviceMesh& mesh, int64_t axis, GroupOptions options) {
  std::lock_guard<std::mutex> lock(context_mutex());
  Context& ctx = context();
  for (int64_t p = 0; p < mesh.size(); ++p)
    if (mesh.rank_at(p) >= ctx.config.num_processes)
      kdist::detail::invalid("comm", mesh.to_string(), " names rank ", mesh.rank_at(p), " but the job has ",
                             ctx.config.num_processes, " processes");
  auto ranks = mesh.ranks_along(axis, ctx.config.process_id);
  if (auto it = ctx.groups.find({ranks, options.transport}); it != ctx.groups.end()) return it->second;
  auto group = make_group(ctx, ranks, mesh.axis_names()[axis] + " (ranks " + rank_list(ranks) + ")",
                          options.transport);
  ctx.groups.emplace(std::make_pair(ranks, options.transport), group);
  return group;
}

}  // namespace kdist::comm
