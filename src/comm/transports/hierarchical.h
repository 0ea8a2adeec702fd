#pragma once
// HierarchicalBackend: the transport of a group spread over several hosts with more than one
// of its processes on some host. all_reduce and all_gather run in three steps: the processes
// of each host combine through their host's shared memory (its host steps, host_steps.h), one
// leader per host (its first process in group order) runs the collective with the other hosts'
// leaders on Gloo, and the leader hands the result back through shared memory. Across hosts
// that moves each host's data once instead of once per process. The collectives where that
// does not pay run on the group's flat Gloo backend: reduce_scatter (measured 0.81-0.91x flat
// Gloo's speed in three levels, docs/PERFORMANCE.md), all_to_all, broadcast and barrier.
//
// Sums are taken in another order than flat Gloo's (per host first), so all_reduce agrees
// with it within rounding; all_gather returns the same bits.
#include <memory>
#include <vector>

#include "comm/backend.h"
#include "comm/transport_choice.h"

namespace kdist::comm {

class GlooBackend;
class SharedMemoryOrGloo;

class HierarchicalBackend final : public Backend {
 public:
  // `local`: the transport of this host's processes (null where a host holds only this one);
  // `leaders`: Gloo among the hosts' leaders (null off the leaders).
  HierarchicalBackend(std::shared_ptr<GlooBackend> flat, std::unique_ptr<SharedMemoryOrGloo> local,
                      std::shared_ptr<GlooBackend> leaders, HostLayout layout);
  ~HierarchicalBackend() override;
  Transport transport() const override { return Transport::kHierarchical; }
  int group_rank() const override { return layout_.hosts[layout_.host][layout_.local_rank]; }

  void all_reduce(at::Tensor& tensor, ReduceOp op) override;
  at::Tensor all_gather(const at::Tensor& local, int64_t dim, const std::vector<int64_t>& sizes) override;
  at::Tensor reduce_scatter(const at::Tensor& full, int64_t dim, ReduceOp op) override;
  at::Tensor all_to_all(const at::Tensor& local, int64_t split_dim, int64_t concat_dim,
                        int64_t concat_full_size) override;
  void broadcast(at::Tensor& tensor, int root) override;
  void barrier() override;
  PendingCollective all_reduce_async(const at::Tensor& tensor, ReduceOp op) override;
  at::Tensor allocate_buffer(int64_t bytes) override;

 private:
  // all_gather on hosts of consecutive ranks: `mine` are this host's block sizes,
  // `host_totals` each host's together.
  at::Tensor all_gather_in_place(const at::Tensor& local, int64_t dim, const std::vector<int64_t>& mine,
                                 const std::vector<int64_t>& host_totals, int64_t full_size);

  std::shared_ptr<GlooBackend> flat_;
  std::unique_ptr<SharedMemoryOrGloo> local_;
  std::shared_ptr<GlooBackend> leaders_;
  HostLayout layout_;
  int size_ = 0;
  bool hosts_in_order_ = true;  // each host's group ranks consecutive, hosts ascending
};

}  // namespace kdist::comm
