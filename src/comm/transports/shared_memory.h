#pragma once
// SharedMemoryBackend: the transport of a group whose processes all run on one host. Every
// collective, and every host step (host_steps.h), goes through the group's SharedMemorySegment
// (shared_memory_segment.h), made when the group is created and grown (collectively: every
// process asks for the same size) when a call needs more. The segment is agreed through the
// group's Gloo backend. Where the processes cannot share a segment of the size a call needs
// (a private /dev/shm, no room), every process learns so at the same call, and the call
// throws NoSharedMemory before anything moved: SharedMemoryOrGloo (fallback.h) then runs it,
// and every later call, on Gloo.
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/backend.h"
#include "comm/host_steps.h"

namespace kdist::comm {

class GlooBackend;
class SharedMemorySegment;

// The processes of a group cannot share the segment a call needs; what() says why.
struct NoSharedMemory : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class SharedMemoryBackend final : public Backend, public HostSteps {
 public:
  // Collective over the group: makes the first segment (or throws NoSharedMemory). Segments
  // are files in `directory` (the job's KDIST_SHM_DIR, or /dev/shm).
  SharedMemoryBackend(std::shared_ptr<GlooBackend> gloo, std::chrono::milliseconds timeout,
                      std::string directory);
  ~SharedMemoryBackend() override;
  Transport transport() const override { return Transport::kSharedMemory; }
  int group_rank() const override;

  void all_reduce(at::Tensor& tensor, ReduceOp op) override;
  at::Tensor all_reduce_copy(const at::Tensor& tensor, ReduceOp op) override;
  at::Tensor all_gather(const at::Tensor& local, int64_t dim, const std::vector<int64_t>& sizes) override;
  at::Tensor reduce_scatter(const at::Tensor& full, int64_t dim, ReduceOp op) override;
  at::Tensor all_to_all(const at::Tensor& local, int64_t split_dim, int64_t concat_dim,
                        int64_t concat_full_size) override;
  void broadcast(at::Tensor& tensor, int root) override;
  void barrier() override;
  // Run when waited for, on the caller's thread: a caller that launches while it computes
  // (GradientSync during backward) is not held up by its peers.
  PendingCollective all_reduce_async(const at::Tensor& tensor, ReduceOp op) override;
  // A segment of its own (ordinary memory where that one cannot be had: the group keeps its
  // segment).
  at::Tensor allocate_buffer(int64_t bytes) override;

  void all_reduce_around(at::Tensor& tensor, ReduceOp op, int root, const Between& between) override;
  at::Tensor all_gather_around(const at::Tensor& local, int64_t dim, const std::vector<int64_t>& sizes,
                               int64_t full_size, int64_t offset, int root, const Between& between) override;

 private:
  // The segment with room for `bytes`; throws NoSharedMemory.
  SharedMemorySegment& segment_for(const char* op, int64_t bytes);
  // A new segment, or null with `why_not` said.
  std::shared_ptr<SharedMemorySegment> make_segment(const char* op, int64_t bytes, std::string& why_not);
  // The allocate_buffer segment `tensor` lies in, or null.
  SharedMemorySegment* buffer_holding(const at::Tensor& tensor);

  std::shared_ptr<GlooBackend> gloo_;
  std::chrono::milliseconds timeout_;
  std::string directory_;
  std::shared_ptr<SharedMemorySegment> staging_;
  std::vector<std::weak_ptr<SharedMemorySegment>> buffers_;  // allocate_buffer's segments
};

}  // namespace kdist::comm
