// HierarchicalBackend: shared memory on each host, Gloo between the hosts' leaders.
#include "comm/transports/hierarchical.h"

#include <ATen/ATen.h>

#include <numeric>

#include "comm/pieces.h"
#include "comm/transports/fallback.h"
#include "comm/transports/gloo.h"

namespace kdist::comm {
namespace {
// What the hosts' partial results are combined with: sums for kSum and kAvg (divided once,
// at the end), maxima for kMax.
ReduceOp combining(ReduceOp op) { return op == ReduceOp::kMax ? ReduceOp::kMax : ReduceOp::kSum; }
}  // namespace

HierarchicalBackend::HierarchicalBackend(std::shared_ptr<GlooBackend> flat,
                                         std::unique_ptr<SharedMemoryOrGloo> local,
                                         std::shared_ptr<GlooBackend> leaders, HostLayout layout)
    : flat_(std::move(flat)),
      local_(std::move(local)),
      leaders_(std::move(leaders)),
      layout_(std::move(layout)) {
  int next = 0;
  for (const auto& host : layout_.hosts) {
    size_ += static_cast<int>(host.size());
    for (int g : host) hosts_in_order_ = hosts_in_order_ && g == next++;
  }
}

HierarchicalBackend::~HierarchicalBackend() = default;

void HierarchicalBackend::all_reduce(at::Tensor& tensor, ReduceOp op) {
  const ReduceOp combine = combining(op);
  // The host's sum reaches its leader (local rank 0), which combines it with the other
  // leaders' in place, and the host's processes copy the result out.
  if (local_)
    local_->all_reduce_around(tensor, combine, 0, [&](at::Tensor& host_sum) {
      if (leaders_) leaders_->all_reduce(host_sum, combine);
    });
  else if (leaders_)
    leaders_->all_reduce(tensor, combine);
  if (op == ReduceOp::kAvg) tensor.div_(size_);
}

at::Tensor HierarchicalBackend::all_gather(const at::Tensor& local, int64_t dim,
                                           const std::vector<int64_t>& sizes) {
  const auto& hosts = layout_.hosts;
  auto sizes_of = [&](const std::vector<int>& ranks) {
    std::vector<int64_t> out;
    for (int g : ranks) out.push_back(sizes[g]);
    return out;
  };
  std::vector<int64_t> host_totals;  // each host's blocks together, hosts in order
  for (const auto& host : hosts) {
    auto s = sizes_of(host);
    host_totals.push_back(std::accumulate(s.begin(), s.end(), int64_t{0}));
  }
  const auto mine = sizes_of(hosts[layout_.host]);
  auto full_shape = local.sizes().vec();
  full_shape[dim] = std::accumulate(host_totals.begin(), host_totals.end(), int64_t{0});
  if (hosts_in_order_ && local_) return all_gather_in_place(local, dim, mine, host_totals, full_shape[dim]);
  // 1. This host's blocks, in the host's order.
  auto block = local_ ? local_->all_gather(local, dim, mine) : local;
  at::Tensor result;
  if (leaders_) {
    // 2. Every host's blocks, hosts in order; 3. the pieces put in group order.
    std::vector<int> order;
    for (const auto& host : hosts) order.insert(order.end(), host.begin(), host.end());
    auto by_host = leaders_->all_gather(block.contiguous(), dim, host_totals);
    if (hosts_in_order_) {
      result = by_host;
    } else {
      std::vector<at::Tensor> pieces(order.size());
      int64_t offset = 0;
      for (int g : order) {
        pieces[g] = by_host.narrow(dim, offset, sizes[g]);
        offset += sizes[g];
      }
      result = at::cat(pieces, dim);
    }
  } else {
    result = at::empty(full_shape, local.options());
  }
  if (local_) local_->broadcast(result, 0);
  return result;
}

// Hosts of consecutive ranks: the host's blocks go straight into their place in the leader's
// shared memory, the leaders all-gather the host ranges on Gloo and the leader puts the
// other hosts' in place there, and each process copies the whole out once.
at::Tensor HierarchicalBackend::all_gather_in_place(const at::Tensor& local, int64_t dim,
                                                    const std::vector<int64_t>& mine,
                                                    const std::vector<int64_t>& host_totals,
                                                    int64_t full_size) {
  const size_t h = layout_.host;
  auto host_range = [&](const at::Tensor& t, size_t host) {
    return t.narrow(dim, detail::offset_of(host_totals, host), host_totals[host]);
  };
  auto between_hosts = [&](at::Tensor& full) {  // on the leader, in its shared memory
    if (!leaders_) return;
    auto by_host = leaders_->all_gather(host_range(full, h).contiguous(), dim, host_totals);
    for (size_t other = 0; other < host_totals.size(); ++other)
      if (other != h) host_range(full, other).copy_(host_range(by_host, other));
  };
  return local_->all_gather_around(local, dim, mine, full_size, detail::offset_of(host_totals, h), 0,
                                   between_hosts);
}

// Flat Gloo: in two levels (the host's sum to its leader, a reduce_scatter by host between
// the leaders, a scatter to the host's processes) it measured 0.81-0.91x flat Gloo's speed at
// every size across two namespace hosts (docs/PERFORMANCE.md).
at::Tensor HierarchicalBackend::reduce_scatter(const at::Tensor& full, int64_t dim, ReduceOp op) {
  return flat_->reduce_scatter(full, dim, op);
}

at::Tensor HierarchicalBackend::all_to_all(const at::Tensor& local, int64_t split_dim, int64_t concat_dim,
                                           int64_t concat_full_size) {
  return flat_->all_to_all(local, split_dim, concat_dim, concat_full_size);
}

void HierarchicalBackend::broadcast(at::Tensor& tensor, int root) { flat_->broadcast(tensor, root); }
void HierarchicalBackend::barrier() { flat_->barrier(); }

PendingCollective HierarchicalBackend::all_reduce_async(const at::Tensor& tensor, ReduceOp op) {
  return deferred([this, tensor, op] {
    at::Tensor t = tensor;
    all_reduce(t, op);
  });
}

at::Tensor HierarchicalBackend::allocate_buffer(int64_t bytes) {
  return local_ ? local_->allocate_buffer(bytes) : Backend::allocate_buffer(bytes);
}

}  // namespace kdist::comm
