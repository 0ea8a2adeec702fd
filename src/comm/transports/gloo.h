#pragma once
// GlooBackend: comm's collectives on c10d's ProcessGroupGloo (TCP between the processes of a
// group, wherever they run). Every group of two or more processes has one: it is the
// transport of groups that cannot share memory, and the others set themselves up through it.
//
// ProcessGroupGloo in LibTorch 2.13 has all_reduce (sum, avg, max), even all_gather,
// reduce_scatter, all_to_all with uneven splits, broadcast and barrier; the uneven
// all_gather is built here on all_to_all (docs/comm.md).
#include <torch/csrc/distributed/c10d/Backend.hpp>

#include <chrono>
#include <map>

#include "comm/backend.h"

namespace kdist::comm {

class GlooBackend final : public Backend {
 public:
  GlooBackend(c10::intrusive_ptr<c10d::Backend> gloo, BackendIdentity identity,
              std::chrono::milliseconds timeout);
  Transport transport() const override { return Transport::kGloo; }
  int group_rank() const override { return identity_.group_rank; }

  void all_reduce(at::Tensor& tensor, ReduceOp op) override;
  at::Tensor all_gather(const at::Tensor& local, int64_t dim, const std::vector<int64_t>& sizes) override;
  at::Tensor reduce_scatter(const at::Tensor& full, int64_t dim, ReduceOp op) override;
  at::Tensor all_to_all(const at::Tensor& local, int64_t split_dim, int64_t concat_dim,
                        int64_t concat_full_size) override;
  void broadcast(at::Tensor& tensor, int root) override;
  void barrier() override;
  PendingCollective all_reduce_async(const at::Tensor& tensor, ReduceOp op) override;
  PendingGather all_gather_async(const at::Tensor& local, int64_t dim,
                                 const std::vector<int64_t>& sizes) override;
  void send(const at::Tensor& tensor, int dst) override;
  void recv(at::Tensor& tensor, int src) override;

  // reduce_scatter into pieces of the given sizes along dim (one per rank; they sum to
  // full's size there) instead of the chunk rule's: the hierarchical one's exchange of hosts.
  at::Tensor reduce_scatter_pieces(const at::Tensor& full, int64_t dim, ReduceOp op,
                                   const std::vector<int64_t>& sizes);

  const BackendIdentity& identity() const { return identity_; }

  // Runs one c10d collective and waits for it, within the timeout; a failure names `op`.
  template <typename Launch>
  void run(const char* op, Launch launch);
  [[noreturn]] void failed(const char* op, const std::exception& e) const;

 private:
  // Staging memory for all_to_all-based collectives, kept between calls: fresh large buffers
  // cost page faults on every call (bench/collectives_bench.cpp). One collective runs on a
  // group at a time, so one workspace per dtype suffices.
  at::Tensor staging(c10::ScalarType dtype, int64_t numel);
  std::vector<at::Tensor> exchange(const char* op, const std::vector<at::Tensor>& pieces,
                                   const std::vector<int64_t>& recv_counts);

  c10::intrusive_ptr<c10d::Backend> gloo_;
  BackendIdentity identity_;
  std::chrono::milliseconds timeout_;
  std::map<c10::ScalarType, at::Tensor> workspace_;
};

}  // namespace kdist::comm
