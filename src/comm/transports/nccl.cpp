// NcclBackend: comm's collectives on c10d's ProcessGroupNCCL, for a group's CUDA tensors.
// Built only on a CUDA LibTorch (CMake's KDIST_CUDA); transports/nccl.h has the contract.
#include "comm/transports/nccl.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/util/accumulate.h>
#include <torch/csrc/distributed/c10d/NCCLUtils.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <algorithm>

#include "base/errors.h"
#include "comm/pieces.h"
#include "comm/transports/c10d_reduce_op.h"

namespace kdist::comm {
namespace {

using detail::to_c10d;

class NcclBackend final : public Backend {
 public:
  NcclBackend(c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl, BackendIdentity identity)
      : nccl_(std::move(nccl)), identity_(std::move(identity)) {}
  Transport transport() const override { return Transport::kNccl; }
  int group_rank() const override { return identity_.group_rank; }

  void all_reduce(at::Tensor& tensor, ReduceOp op) override {
    std::vector<at::Tensor> buffer{tensor};
    c10d::AllreduceOptions options;
    options.reduceOp = to_c10d(op);
    run("all_reduce", [&] { return nccl_->allreduce(buffer, options); });
  }

  // Uneven pieces travel padded to the widest (NCCL's all_gather is even), the gathered dim
  // moved to the front so that each rank's block is one contiguous run.
  at::Tensor all_gather(const at::Tensor& local, int64_t dim, const std::vector<int64_t>& sizes) override {
    const int64_t k = identity_.group_size, widest = *std::max_element(sizes.begin(), sizes.end());
    auto front = local.movedim(dim, 0);
    auto shape = front.sizes().vec();
    shape[0] = widest;
    auto padded = at::zeros(shape, local.options());
    padded.narrow(0, 0, front.size(0)).copy_(front);
    shape[0] = k * widest;
    auto gathered = at::empty(shape, local.options());
    run("all_gather", [&] { return nccl_->_allgather_base(gathered, padded); });
    std::vector<at::Tensor> blocks;
    for (int64_t i = 0; i < k; ++i) blocks.push_back(gathered.narrow(0, i * widest, sizes[i]));
    return at::cat(blocks, 0).movedim(0, dim).contiguous();
  }

  // The chunk rule's pieces, each padded to the widest, reduce-scattered as even pieces.
  at::Tensor reduce_scatter(const at::Tensor& full, int64_t dim, ReduceOp op) override {
    const int64_t k = identity_.group_size;
    const auto sizes = chunk_sizes(full.size(dim), k);
    const int64_t widest = *std::max_element(sizes.begin(), sizes.end());
    auto front = full.movedim(dim, 0);
    auto shape = front.sizes().vec();
    shape[0] = k * widest;
    auto staged = at::zeros(shape, full.options());
    for (int64_t i = 0, offset = 0; i < k; offset += sizes[i], ++i)
      staged.narrow(0, i * widest, sizes[i]).copy_(front.narrow(0, offset, sizes[i]));
    shape[0] = widest;
    auto mine = at::empty(shape, full.options());
    c10d::ReduceScatterOptions options;
    options.reduceOp = to_c10d(op);
    run("reduce_scatter", [&] { return nccl_->_reduce_scatter_base(mine, staged, options); });
    return mine.narrow(0, 0, sizes[identity_.group_rank]).movedim(0, dim).contiguous();
  }

  at::Tensor all_to_all(const at::Tensor& local, int64_t split_dim, int64_t concat_dim,
                        int64_t concat_full_size) override {
    const int k = identity_.group_size, me = identity_.group_rank;
    std::vector<at::Tensor> flat;
    std::vector<int64_t> send_counts, recv_counts;
    std::vector<std::vector<int64_t>> shapes;
    for (const auto& piece : detail::split_by_chunk_rule(local, split_dim, k)) {
      flat.push_back(piece.contiguous().view(-1));
      send_counts.push_back(piece.numel());
    }
    for (int i = 0; i < k; ++i) {
      shapes.push_back(
          detail::all_to_all_piece_shape(local, split_dim, concat_dim, concat_full_size, k, i, me));
      recv_counts.push_back(c10::multiply_integers(shapes.back()));
    }
    auto send = at::cat(flat);
    auto received = at::empty({c10::sum_integers(recv_counts)}, local.options());
    run("all_to_all", [&] { return nccl_->alltoall_base(received, send, recv_counts, send_counts); });
    std::vector<at::Tensor> parts;
    for (int i = 0, offset = 0; i < k; offset += recv_counts[i], ++i)
      parts.push_back(received.narrow(0, offset, recv_counts[i]).view(shapes[i]));
    return at::cat(parts, concat_dim);
  }

  void broadcast(at::Tensor& tensor, int root) override {
    std::vector<at::Tensor> buffer{tensor};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    run("broadcast", [&] { return nccl_->broadcast(buffer, options); });
  }

  // collectives.cpp runs a group's barrier on its CPU transport; this one is for completeness.
  void barrier() override {
    auto one = at::ones({1}, at::TensorOptions().device(at::kCUDA, c10::cuda::current_device()));
    all_reduce(one, ReduceOp::kSum);
  }

  PendingCollective all_reduce_async(const at::Tensor& tensor, ReduceOp op) override {
    std::vector<at::Tensor> buffer{tensor};
    c10d::AllreduceOptions options;
    options.reduceOp = to_c10d(op);
    struct Pending final : PendingCollective::Impl {
      c10::intrusive_ptr<c10d::Work> work;
      void wait() override { work->wait(); }  // the caller's stream waits on NCCL's
    };
    auto pending = std::make_shared<Pending>();
    pending->work = launch("all_reduce", [&] { return nccl_->allreduce(buffer, options); });
    return PendingCollective(pending);
  }

 private:
  [[noreturn]] void failed(const char* op, const std::exception& e) const {
    kdist::detail::failure("comm", op, " (nccl) on ", identity_.group_name, " failed on rank ",
                           identity_.global_rank, ": ", std::string(e.what()).substr(0, 400));
  }
  template <typename Launch>
  c10::intrusive_ptr<c10d::Work> launch(const char* op, Launch start) {
    try {
      return start();
    } catch (const std::exception& e) {
      failed(op, e);
    }
  }
  // Queued, and the caller's current stream made to wait for it.
  template <typename Launch>
  void run(const char* op, Launch start) {
    auto work = launch(op, start);
    try {
      work->wait();
    } catch (const std::exception& e) {
      failed(op, e);
    }
  }

  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl_;
  BackendIdentity identity_;
};

}  // namespace

std::shared_ptr<Backend> make_cuda_backend(Context& ctx, const std::vector<int>& ranks,
                                           const std::string& prefix, const std::string& name) {
  const int devices = c10::cuda::device_count();
  if (devices == 0) return nullptr;
  // One process per GPU: LOCAL_RANK picks it, before NCCL makes a communicator on it.
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(ctx.config.local_rank % devices));
  const int self = ctx.config.process_id;
  const int rank = static_cast<int>(std::find(ranks.begin(), ranks.end(), self) - ranks.begin());
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = ctx.timeout;
  auto store = c10::make_intrusive<c10d::PrefixStore>(prefix, ctx.store);
  try {
    auto nccl =
        c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, static_cast<int>(ranks.size()), options);
    return std::make_shared<NcclBackend>(nccl,
                                         BackendIdentity{name, rank, static_cast<int>(ranks.size()), self});
  } catch (const std::exception& e) {
    kdist::detail::failure("comm", "creating the NCCL group ", name, " failed on rank ", self, ": ",
                           e.what());
  }
}

std::string nccl_version() { return c10d::getNcclVersion(); }

}  // namespace kdist::comm
