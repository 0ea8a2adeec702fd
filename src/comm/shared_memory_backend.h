#pragma once
// SharedMemoryBackend: the transport of a group whose processes all run on one host. Every
// collective goes through the group's SharedMemorySegment (shared_memory.h), made when the
// group is created and grown (collectively: every process asks for the same size) when a
// call needs more. The segment is agreed through the group's Gloo backend. Where the
// processes cannot share a segment after all (a private /dev/shm, no room), every process
// learns so at the same call and the group runs on Gloo from then on, with a debug line
// saying why; when shared memory was asked for by name, that is an error instead.
#include <memory>
#include <string>
#include <vector>

#include "backend.h"

namespace kdist::comm {

class GlooBackend;
class SharedMemorySegment;

class SharedMemoryBackend final : public Backend {
 public:
  // Collective over the group: makes the first segment.
  // Segments are files in `directory` (the job's KDIST_SHM_DIR, or /dev/shm).
  SharedMemoryBackend(std::shared_ptr<GlooBackend> gloo, bool required, std::chrono::milliseconds timeout,
                      std::string directory);
  ~SharedMemoryBackend() override;
  Transport transport() const override;
  int group_rank() const override;

  void all_reduce(at::Tensor& tensor, ReduceOp op) override;
  at::Tensor all_reduce_copy(const at::Tensor& tensor, ReduceOp op) override;
  at::Tensor all_gather(const at::Tensor& local, int64_t dim, const std::vector<int64_t>& sizes) override;
  at::Tensor reduce_scatter(const at::Tensor& full, int64_t dim, ReduceOp op) override;
  at::Tensor reduce(const at::Tensor& tensor, ReduceOp op, int root) override;
  at::Tensor scatter(const at::Tensor& whole, int64_t dim, const std::vector<int64_t>& sizes, int root) override;
  void all_reduce_around(at::Tensor& tensor, ReduceOp op, int root, const Between& between) override;
  at::Tensor all_gather_around(const at::Tensor& local, int64_t dim, const std::vector<int64_t>& sizes,
                               int64_t full_size, int64_t offset, int root, const Between& between) override;
  at::Tensor all_to_all(const at::Tensor& local, int64_t split_dim, int64_t concat_dim,
                        int64_t concat_full_size) override;
  void broadcast(at::Tensor& tensor, int root) override;
  void barrier() override;
  PendingCollective all_reduce_async(const at::Tensor& tensor, ReduceOp op) override;
  at::Tensor allocate_buffer(int64_t bytes) override;

 private:
  // The segment with room for `bytes`, or null when the group has fallen back to Gloo.
  SharedMemorySegment* segment_for(const char* op, int64_t bytes);
  std::shared_ptr<SharedMemorySegment> make_segment(const char* op, int64_t bytes);
  // The allocate_buffer segment `tensor` lies in, or null.
  SharedMemorySegment* buffer_holding(const at::Tensor& tensor);

  std::shared_ptr<GlooBackend> gloo_;
  bool required_;
  std::chrono::milliseconds timeout_;
  std::string directory_;
  std::shared_ptr<SharedMemorySegment> staging_;
  bool fell_back_ = false;
  std::vector<std::weak_ptr<SharedMemorySegment>> buffers_;  // allocate_buffer's segments
};

}  // namespace kdist::comm
