// GlooBackend: comm's collectives on ProcessGroupGloo.
#include "comm/transports/gloo.h"

#include <ATen/ATen.h>
#include <c10/util/accumulate.h>

#include <numeric>

#include "base/errors.h"
#include "comm/pieces.h"
#include "comm/transports/c10d_reduce_op.h"

namespace kdist::comm {
namespace {
using detail::nbytes;

using detail::to_c10d;

// One alltoall_base of flat pieces: pieces[j] goes to group rank j, and rank i's elements
// (recv_counts[i] of them) arrive in arrived[i], a view of the receive half of the memory.
// Every message carries one spare element: Gloo's alltoallv mis-sizes messages when a rank's
// whole send or receive buffer is empty (a rank with no rows under the chunk rule), and
// padding every message keeps all ranks' counts consistent.
struct Exchange {
  at::Tensor send, received;
  std::vector<int64_t> send_counts, recv_counts;  // padded
  std::vector<at::Tensor> arrived;

  // `buffer(dtype, numel)` gives the flat memory for both halves (the group's staging
  // buffer, or a fresh one where the exchange outlives the call).
  template <typename Buffer>
  Exchange(const std::vector<at::Tensor>& pieces, const std::vector<int64_t>& counts, Buffer buffer) {
    for (const auto& p : pieces) send_counts.push_back(p.numel() + 1);
    for (int64_t c : counts) recv_counts.push_back(c + 1);
    const int64_t send_total = std::accumulate(send_counts.begin(), send_counts.end(), int64_t{0});
    const int64_t recv_total = std::accumulate(recv_counts.begin(), recv_counts.end(), int64_t{0});
    at::Tensor memory = buffer(pieces.front().scalar_type(), send_total + recv_total);
    send = memory.narrow(0, 0, send_total);
    received = memory.narrow(0, send_total, recv_total);
    int64_t offset = 0;
    for (size_t j = 0; j < pieces.size(); ++j) {
      send.narrow(0, offset, pieces[j].numel()).view(pieces[j].sizes()).copy_(pieces[j]);
      offset += send_counts[j];
    }
    offset = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
      arrived.push_back(received.narrow(0, offset, counts[i]));
      offset += recv_counts[i];
    }
  }
  c10::intrusive_ptr<c10d::Work> launch(c10d::Backend& backend) {
    // alltoall_base takes the split sizes by reference and moves from them: it gets copies.
    std::vector<int64_t> out_counts = recv_counts, in_counts = send_counts;
    return backend.alltoall_base(received, send, out_counts, in_counts);
  }
};

}  // namespace

GlooBackend::GlooBackend(c10::intrusive_ptr<c10d::Backend> gloo, BackendIdentity identity,
                         std::chrono::milliseconds timeout)
    : gloo_(std::move(gloo)), identity_(std::move(identity)), timeout_(timeout) {}

void GlooBackend::failed(const char* op, const std::exception& e) const {
  kdist::detail::failure("comm", op, " on ", identity_.group_name, " failed on rank ", identity_.global_rank,
                         " (timeout ", timeout_.count() / 1000.0,
                         " s): ", std::string(e.what()).substr(0, 400));
}

template <typename Launch>
void GlooBackend::run(const char* op, Launch launch) {
  try {
    c10::intrusive_ptr<c10d::Work> work = launch(*gloo_);
    work->wait(timeout_);
  } catch (const std::exception& e) {
    failed(op, e);
  }
}

at::Tensor GlooBackend::staging(c10::ScalarType dtype, int64_t numel) {
  auto& buffer = workspace_[dtype];
  if (!buffer.defined() || buffer.numel() < numel)
    buffer = at::empty({numel}, at::TensorOptions().dtype(dtype));
  return buffer.narrow(0, 0, numel);
}

// An Exchange through the staging buffer, waited for: the views are valid until the next
// collective on the group.
std::vector<at::Tensor> GlooBackend::exchange(const char* op, const std::vector<at::Tensor>& pieces,
                                              const std::vector<int64_t>& recv_counts) {
  Exchange e(pieces, recv_counts,
             [&](c10::ScalarType dtype, int64_t numel) { return staging(dtype, numel); });
  run(op, [&](c10d::Backend& b) { return e.launch(b); });
  return e.arrived;
}

void GlooBackend::all_reduce(at::Tensor& tensor, ReduceOp op) {
  std::vector<at::Tensor> buffer{tensor};
  c10d::AllreduceOptions options;
  options.reduceOp = to_c10d(op);
  run("all_reduce", [&](c10d::Backend& b) { return b.allreduce(buffer, options); });
}

at::Tensor GlooBackend::all_gather(const at::Tensor& local, int64_t dim, const std::vector<int64_t>& sizes) {
  const int k = identity_.group_size;
  const int64_t widest = *std::max_element(sizes.begin(), sizes.end());
  if (widest == 0) {
    auto shape = local.sizes().vec();
    shape[dim] = 0;
    return at::empty(shape, local.options());
  }
  // Every rank's block travels as it is (not transposed) and the blocks are concatenated
  // along `dim` once, as PyTorch's functional all_gather does. (Gloo's own allgather of rows
  // padded to the widest measured slower: docs/PERFORMANCE.md.)
  auto arrived = exchange("all_gather", std::vector<at::Tensor>(k, local),
                          detail::block_counts(local.sizes(), dim, sizes));
  return detail::concat_blocks(arrived, local.sizes(), dim, sizes);
}

// On all_to_all (reduce_scatter_pieces): Gloo's own reduce_scatter and an all_reduce and a
// slice measured slower (docs/PERFORMANCE.md).
at::Tensor GlooBackend::reduce_scatter(const at::Tensor& full, int64_t dim, ReduceOp op) {
  return reduce_scatter_pieces(full, dim, op, chunk_sizes(full.size(dim), identity_.group_size));
}

// Each rank receives every rank's copy of its own piece (the bytes a ring reduce_scatter
// moves) and reduces locally, ranks in order.
at::Tensor GlooBackend::reduce_scatter_pieces(const at::Tensor& full, int64_t dim, ReduceOp op,
                                              const std::vector<int64_t>& sizes) {
  const int k = identity_.group_size, me = identity_.group_rank;
  std::vector<at::Tensor> pieces;
  int64_t offset = 0;
  for (int64_t size : sizes) {
    pieces.push_back(full.narrow(dim, offset, size));
    offset += size;
  }
  auto mine_shape = pieces[me].sizes().vec();
  auto arrived = exchange("reduce_scatter", pieces, std::vector<int64_t>(k, pieces[me].numel()));
  auto result = arrived[0].clone();  // out of the staging buffer: it is the caller's
  for (int i = 1; i < k; ++i) detail::accumulate(result, arrived[i], op == ReduceOp::kMax);
  if (op == ReduceOp::kAvg) result.div_(k);
  return result.view(mine_shape);
}

at::Tensor GlooBackend::all_to_all(const at::Tensor& local, int64_t split_dim, int64_t concat_dim,
                                   int64_t concat_full_size) {
  const int k = identity_.group_size, me = identity_.group_rank;
  auto pieces = detail::split_by_chunk_rule(local, split_dim, k);
  std::vector<std::vector<int64_t>> shapes;
  std::vector<int64_t> recv_counts;
  for (int i = 0; i < k; ++i) {
    shapes.push_back(
        detail::all_to_all_piece_shape(local, split_dim, concat_dim, concat_full_size, k, i, me));
    recv_counts.push_back(c10::multiply_integers(shapes.back()));
  }
  auto arrived = exchange("all_to_all", pieces, recv_counts);
  std::vector<at::Tensor> parts;
  for (int i = 0; i < k; ++i) parts.push_back(arrived[i].view(shapes[i]));
  return at::cat(parts, concat_dim);  // a fresh tensor: the staging buffer is reused
}

void GlooBackend::broadcast(at::Tensor& tensor, int root) {
  std::vector<at::Tensor> buffer{tensor};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  run("broadcast", [&](c10d::Backend& b) { return b.broadcast(buffer, options); });
}

// One tag for every message: Gloo keeps the order of messages between two ranks.
void GlooBackend::send(const at::Tensor& tensor, int dst) {
  std::vector<at::Tensor> buffer{tensor};
  run("send", [&](c10d::Backend& b) { return b.send(buffer, dst, /*tag=*/0); });
}

void GlooBackend::recv(at::Tensor& tensor, int src) {
  std::vector<at::Tensor> buffer{tensor};
  run("recv", [&](c10d::Backend& b) { return b.recv(buffer, src, /*tag=*/0); });
}

void GlooBackend::barrier() {
  run("barrier", [&](c10d::Backend& b) { return b.barrier(); });
}

namespace {
struct GlooPending final : PendingCollective::Impl {
  c10::intrusive_ptr<c10d::Work> work;
  GlooBackend* backend;
  std::chrono::milliseconds timeout;
  void wait() override {
    try {
      work->wait(timeout);
    } catch (const std::exception& e) {
      backend->failed("all_reduce", e);
    }
  }
};

struct GlooPendingGather final : PendingGather::Impl {
  Exchange exchange;
  c10::intrusive_ptr<c10d::Work> work;
  GlooBackend* backend;
  std::chrono::milliseconds timeout;
  std::vector<int64_t> local_shape;
  int64_t dim;
  std::vector<int64_t> sizes;
  GlooPendingGather(Exchange e) : exchange(std::move(e)) {}
  at::Tensor wait() override {
    try {
      work->wait(timeout);
    } catch (const std::exception& e) {
      backend->failed("all_gather", e);
    }
    return detail::concat_blocks(exchange.arrived, local_shape, dim, sizes);
  }
};
}  // namespace

PendingCollective GlooBackend::all_reduce_async(const at::Tensor& tensor, ReduceOp op) {
  auto pending = std::make_shared<GlooPending>();
  pending->backend = this;
  pending->timeout = timeout_;
  std::vector<at::Tensor> buffer{tensor};
  c10d::AllreduceOptions options;
  options.reduceOp = to_c10d(op);
  try {
    pending->work = gloo_->allreduce(buffer, options);
  } catch (const std::exception& e) {
    failed("all_reduce", e);
  }
  return PendingCollective(pending);
}

PendingGather GlooBackend::all_gather_async(const at::Tensor& local, int64_t dim,
                                            const std::vector<int64_t>& sizes) {
  // The exchange's own memory, not the staging buffer: other collectives run on the group
  // before this one is waited for.
  Exchange exchange(
      std::vector<at::Tensor>(identity_.group_size, local), detail::block_counts(local.sizes(), dim, sizes),
      [&](c10::ScalarType dtype, int64_t numel) { return at::empty({numel}, local.options().dtype(dtype)); });
  auto pending = std::make_shared<GlooPendingGather>(std::move(exchange));
  pending->backend = this;
  pending->timeout = timeout_;
  pending->local_shape = local.sizes().vec();
  pending->dim = dim;
  pending->sizes = sizes;
  try {
    pending->work = pending->exchange.launch(*gloo_);
  } catch (const std::exception& e) {
    failed("all_gather", e);
  }
  return PendingGather(pending);
}

}  // namespace kdist::comm
