#pragma once
// SharedMemoryOrGloo: the transport of a group on one host. Shared memory
// (SharedMemoryBackend) until its processes cannot share the segment a call needs, then Gloo
// for that call and every later one: the one place that decision is made. Every process
// learns it at the same call, so the group never runs half on each. With `required` (shared
// memory asked for by name: GroupOptions, KDIST_TRANSPORT=shm) it is an error instead, and
// KERAS_DISTRIBUTION_DEBUG=1 says why when it falls back.
#include <chrono>
#include <memory>
#include <string>

#include "comm/backend.h"
#include "comm/host_steps.h"

namespace kdist::comm {

class GlooBackend;
class SharedMemoryBackend;

class SharedMemoryOrGloo final : public Backend, public HostSteps {
 public:
  // Collective over the group: makes the first segment, or falls back at once.
  SharedMemoryOrGloo(std::shared_ptr<GlooBackend> gloo, bool required, std::chrono::milliseconds timeout,
                     std::string directory);
  ~SharedMemoryOrGloo() override;
  Transport transport() const override;  // kSharedMemory, or kGloo once it fell back
  int group_rank() const override;

  void all_reduce(at::Tensor& tensor, ReduceOp op) override;
  at::Tensor all_reduce_copy(const at::Tensor& tensor, ReduceOp op) override;
  at::Tensor all_gather(const at::Tensor& local, int64_t dim, const std::vector<int64_t>& sizes) override;
  at::Tensor reduce_scatter(const at::Tensor& full, int64_t dim, ReduceOp op) override;
  at::Tensor all_to_all(const at::Tensor& local, int64_t split_dim, int64_t concat_dim,
                        int64_t concat_full_size) override;
  void broadcast(at::Tensor& tensor, int root) override;
  void barrier() override;
  PendingCollective all_reduce_async(const at::Tensor& tensor, ReduceOp op) override;
  at::Tensor allocate_buffer(int64_t bytes) override;

  void all_reduce_around(at::Tensor& tensor, ReduceOp op, int root, const Between& between) override;
  at::Tensor all_gather_around(const at::Tensor& local, int64_t dim, const std::vector<int64_t>& sizes,
                               int64_t full_size, int64_t offset, int root, const Between& between) override;

 private:
  // `run(backend, steps)` on shared memory while the group has it, else on Gloo.
  template <typename Run>
  decltype(auto) either(Run run);
  void fall_back(const std::string& why);

  std::unique_ptr<SharedMemoryBackend> shared_;  // null once fallen back
  std::shared_ptr<GlooBackend> gloo_;
  std::unique_ptr<HostSteps> gloo_steps_;
  bool required_;
};

}  // namespace kdist::comm
