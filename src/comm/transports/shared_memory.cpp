// SharedMemoryBackend: every collective through one segment per group.
#include "comm/transports/shared_memory.h"

#include <ATen/ATen.h>

#include "base/errors.h"
#include "comm/pieces.h"
#include "comm/transports/gloo.h"
#include "comm/transports/shared_memory_segment.h"
#include "job/debug_log.h"

namespace kdist::comm {
namespace {
constexpr int64_t kFirstSegmentBytes = 1 << 20;
}  // namespace

SharedMemoryBackend::SharedMemoryBackend(std::shared_ptr<GlooBackend> gloo, std::chrono::milliseconds timeout,
                                         std::string directory)
    : gloo_(std::move(gloo)), timeout_(timeout), directory_(std::move(directory)) {
  segment_for("creating the group", kFirstSegmentBytes);
}

SharedMemoryBackend::~SharedMemoryBackend() = default;

int SharedMemoryBackend::group_rank() const { return gloo_->identity().group_rank; }

std::shared_ptr<SharedMemorySegment> SharedMemoryBackend::make_segment(const char* op, int64_t bytes,
                                                                       std::string& why_not) {
  const auto& who = gloo_->identity();
  try {
    return SharedMemorySegment::create(*gloo_, bytes, timeout_, directory_, &why_not);
  } catch (const std::exception& e) {  // a peer missing or dead while the segment is agreed
    kdist::detail::failure("comm", op, " on ", who.group_name, " failed on rank ", who.global_rank,
                           " (setting up shared memory): ", std::string(e.what()).substr(0, 400));
  }
}

SharedMemorySegment& SharedMemoryBackend::segment_for(const char* op, int64_t bytes) {
  if (staging_ && staging_->capacity() >= bytes) return *staging_;
  const int64_t old = staging_ ? staging_->capacity() : 0;
  staging_.reset();
  std::string why_not;
  staging_ = make_segment(op, std::max<int64_t>({bytes, 2 * old, kFirstSegmentBytes}), why_not);
  if (!staging_)
    throw NoSharedMemory("the processes of " + gloo_->identity().group_name + " cannot share " +
                         std::to_string(std::max<int64_t>(bytes, kFirstSegmentBytes)) +
                         " bytes each: " + why_not);
  kdist::detail::debug_log("comm: " + gloo_->identity().group_name + " uses shared memory (" +
                           std::to_string(staging_->capacity()) + " bytes per process)");
  return *staging_;
}

SharedMemorySegment* SharedMemoryBackend::buffer_holding(const at::Tensor& tensor) {
  for (auto it = buffers_.begin(); it != buffers_.end();) {
    auto buffer = it->lock();
    if (!buffer) {
      it = buffers_.erase(it);
      continue;
    }
    if (buffer->holds(tensor)) return buffer.get();  // buffers_ are weak: the tensor keeps it alive
    ++it;
  }
  return nullptr;
}

void SharedMemoryBackend::all_reduce(at::Tensor& tensor, ReduceOp op) {
  if (auto* buffer = buffer_holding(tensor))
    return buffer->reduce(tensor, op);  // allocate_buffer's: where it lies
  segment_for("all_reduce", detail::nbytes(tensor)).all_reduce(tensor, op);
}

void SharedMemoryBackend::all_reduce_around(at::Tensor& tensor, ReduceOp op, int root,
                                            const Between& between) {
  if (auto* buffer = buffer_holding(tensor)) return buffer->all_reduce_around(tensor, op, root, between);
  segment_for("all_reduce", detail::nbytes(tensor)).all_reduce_around(tensor, op, root, between);
}

at::Tensor SharedMemoryBackend::all_reduce_copy(const at::Tensor& tensor, ReduceOp op) {
  return segment_for("all_reduce", detail::nbytes(tensor)).all_reduce_copy(tensor, op);
}

at::Tensor SharedMemoryBackend::all_gather_around(const at::Tensor& local, int64_t dim,
                                                  const std::vector<int64_t>& sizes, int64_t full_size,
                                                  int64_t offset, int root, const Between& between) {
  // From the sizes, alike on every process (an empty block says nothing of the others').
  const int64_t full_bytes =
      detail::block_counts(local.sizes(), dim, {full_size})[0] * static_cast<int64_t>(local.element_size());
  return segment_for("all_gather", full_bytes)
      .all_gather_around(local, dim, sizes, full_size, offset, root, between);
}

at::Tensor SharedMemoryBackend::all_gather(const at::Tensor& local, int64_t dim,
                                           const std::vector<int64_t>& sizes) {
  const int64_t widest = *std::max_element(sizes.begin(), sizes.end());
  const int64_t widest_block = detail::block_counts(local.sizes(), dim, {widest})[0];
  return segment_for("all_gather", widest_block * static_cast<int64_t>(local.element_size()))
      .all_gather(local, dim, sizes);
}

at::Tensor SharedMemoryBackend::reduce_scatter(const at::Tensor& full, int64_t dim, ReduceOp op) {
  return segment_for("reduce_scatter", detail::nbytes(full)).reduce_scatter(full, dim, op);
}

at::Tensor SharedMemoryBackend::all_to_all(const at::Tensor& local, int64_t split_dim, int64_t concat_dim,
                                           int64_t concat_full_size) {
  const int k = gloo_->identity().group_size;
  return segment_for("all_to_all",
                     SharedMemorySegment::all_to_all_bytes(local, concat_dim, concat_full_size, k))
      .all_to_all(local, split_dim, concat_dim, concat_full_size);
}

void SharedMemoryBackend::broadcast(at::Tensor& tensor, int root) {
  segment_for("broadcast", detail::nbytes(tensor)).broadcast(tensor, root);
}

void SharedMemoryBackend::barrier() { segment_for("barrier", 0).barrier(); }

PendingCollective SharedMemoryBackend::all_reduce_async(const at::Tensor& tensor, ReduceOp op) {
  return deferred([this, tensor, op] {
    at::Tensor t = tensor;
    all_reduce(t, op);
  });
}

at::Tensor SharedMemoryBackend::allocate_buffer(int64_t bytes) {
  std::string why_not;
  auto segment = make_segment("allocate_buffer", std::max<int64_t>(bytes, 1), why_not);
  if (!segment) return Backend::allocate_buffer(bytes);
  buffers_.push_back(segment);
  return segment->region(0, bytes, at::kByte).zero_();
}

}  // namespace kdist::comm
