// SharedMemoryBackend: every collective through one segment per group, Gloo as the fallback.
#include "shared_memory_backend.h"

#include <ATen/ATen.h>

#include "../debug_log.h"
#include "../errors.h"
#include "gloo_backend.h"
#include "pieces.h"
#include "shared_memory.h"

namespace kdist::comm {
namespace {
constexpr int64_t kFirstSegmentBytes = 1 << 20;
}  // namespace

SharedMemoryBackend::SharedMemoryBackend(std::shared_ptr<GlooBackend> gloo, bool required,
                                         std::chrono::milliseconds timeout, std::string directory)
    : gloo_(std::move(gloo)), required_(required), timeout_(timeout), directory_(std::move(directory)) {
  segment_for("creating the group", kFirstSegmentBytes);
}

SharedMemoryBackend::~SharedMemoryBackend() = default;

int SharedMemoryBackend::group_rank() const { return gloo_->identity().group_rank; }

Transport SharedMemoryBackend::transport() const {
  return fell_back_ ? Transport::kGloo : Transport::kSharedMemory;
}

std::shared_ptr<SharedMemorySegment> SharedMemoryBackend::make_segment(const char* op, int64_t bytes) {
  const auto& who = gloo_->identity();
  std::string why_not;
  std::shared_ptr<SharedMemorySegment> segment;
  try {
    segment = SharedMemorySegment::create(*gloo_, bytes, timeout_, directory_, &why_not);
  } catch (const std::exception& e) {  // a peer missing or dead while the segment is agreed
    kdist::detail::failure("comm", op, " on ", who.group_name, " failed on rank ", who.global_rank,
                           " (setting up shared memory): ", std::string(e.what()).substr(0, 400));
  }
  if (!segment && required_)
    kdist::detail::failure("comm", "shared memory was asked for, but the processes of ",
                           who.group_name, " cannot share ", bytes, " bytes each: ", why_not);
  if (!segment)
    kdist::detail::debug_log("comm: " + who.group_name + " uses Gloo: no shared memory (" + why_not + ")");
  return segment;
}

SharedMemorySegment* SharedMemoryBackend::segment_for(const char* op, int64_t bytes) {
  if (fell_back_) return nullptr;
  if (staging_ && staging_->capacity() >= bytes) return staging_.get();
  const int64_t old = staging_ ? staging_->capacity() : 0;
  staging_.reset();
  staging_ = make_segment(op, std::max<int64_t>({bytes, 2 * old, kFirstSegmentBytes}));
  if (!staging_) {
    fell_back_ = true;
    return nullptr;
  }
  kdist::detail::debug_log("comm: " + gloo_->identity().group_name + " uses shared memory (" +
                           std::to_string(staging_->capacity()) + " bytes per process)");
  return staging_.get();
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
  if (auto* buffer = buffer_holding(tensor)) return buffer->reduce(tensor, op);  // allocate_buffer's: where it lies
  if (auto* shm = segment_for("all_reduce", detail::nbytes(tensor))) return shm->all_reduce(tensor, op);
  gloo_->all_reduce(tensor, op);
}

void SharedMemoryBackend::all_reduce_around(at::Tensor& tensor, ReduceOp op, int root, const Between& between) {
  if (auto* buffer = buffer_holding(tensor)) return buffer->all_reduce_around(tensor, op, root, between);
  if (auto* shm = segment_for("all_reduce", detail::nbytes(tensor)))
    return shm->all_reduce_around(tensor, op, root, between);
  Backend::all_reduce_around(tensor, op, root, between);
}

at::Tensor SharedMemoryBackend::all_reduce_copy(const at::Tensor& tensor, ReduceOp op) {
  if (auto* shm = segment_for("all_reduce", detail::nbytes(tensor))) return shm->all_reduce_copy(tensor, op);
  return Backend::all_reduce_copy(tensor, op);
}

at::Tensor SharedMemoryBackend::all_gather_around(const at::Tensor& local, int64_t dim,
                                                  const std::vector<int64_t>& sizes, int64_t full_size,
                                                  int64_t offset, int root, const Between& between) {
  // From the sizes, alike on every process (an empty block says nothing of the others').
  const int64_t full_bytes =
      detail::block_counts(local.sizes(), dim, {full_size})[0] * static_cast<int64_t>(local.element_size());
  if (auto* shm = segment_for("all_gather", full_bytes))
    return shm->all_gather_around(local, dim, sizes, full_size, offset, root, between);
  return Backend::all_gather_around(local, dim, sizes, full_size, offset, root, between);
}

at::Tensor SharedMemoryBackend::all_gather(const at::Tensor& local, int64_t dim, const std::vector<int64_t>& sizes) {
  const int64_t widest = *std::max_element(sizes.begin(), sizes.end());
  const int64_t widest_block = detail::block_counts(local.sizes(), dim, {widest})[0];
  if (auto* shm = segment_for("all_gather", widest_block * static_cast<int64_t>(local.element_size())))
    return shm->all_gather(local, dim, sizes);
  return gloo_->all_gather(local, dim, sizes);
}

at::Tensor SharedMemoryBackend::reduce_scatter(const at::Tensor& full, int64_t dim, ReduceOp op) {
  if (auto* shm = segment_for("reduce_scatter", detail::nbytes(full))) return shm->reduce_scatter(full, dim, op);
  return gloo_->reduce_scatter(full, dim, op);
}

at::Tensor SharedMemoryBackend::reduce(const at::Tensor& tensor, ReduceOp op, int root) {
  if (auto* shm = segment_for("reduce", detail::nbytes(tensor))) return shm->reduce_to(tensor, op, root);
  return Backend::reduce(tensor, op, root);
}

at::Tensor SharedMemoryBackend::scatter(const at::Tensor& whole, int64_t dim, const std::vector<int64_t>& sizes,
                                        int root) {
  if (auto* shm = segment_for("scatter", detail::nbytes(whole))) return shm->scatter(whole, dim, sizes, root);
  return Backend::scatter(whole, dim, sizes, root);
}

at::Tensor SharedMemoryBackend::all_to_all(const at::Tensor& local, int64_t split_dim, int64_t concat_dim,
                                           int64_t concat_full_size) {
  const int k = gloo_->identity().group_size;
  if (auto* shm = segment_for("all_to_all", SharedMemorySegment::all_to_all_bytes(local, concat_dim, concat_full_size, k)))
    return shm->all_to_all(local, split_dim, concat_dim, concat_full_size);
  return gloo_->all_to_all(local, split_dim, concat_dim, concat_full_size);
}

void SharedMemoryBackend::broadcast(at::Tensor& tensor, int root) {
  if (auto* shm = segment_for("broadcast", detail::nbytes(tensor))) return shm->broadcast(tensor, root);
  gloo_->broadcast(tensor, root);
}

void SharedMemoryBackend::barrier() {
  if (auto* shm = segment_for("barrier", 0)) return shm->barrier();
  gloo_->barrier();
}

// Shared memory runs on the caller's thread: the sum waits for wait(), so a caller that
// launches while it computes (GradientSync during backward) is not held up by its peers.
PendingCollective SharedMemoryBackend::all_reduce_async(const at::Tensor& tensor, ReduceOp op) {
  if (fell_back_) return gloo_->all_reduce_async(tensor, op);
  return deferred([this, tensor, op] {
    at::Tensor t = tensor;
    all_reduce(t, op);
  });
}

at::Tensor SharedMemoryBackend::allocate_buffer(int64_t bytes) {
  if (fell_back_) return Backend::allocate_buffer(bytes);
  auto segment = make_segment("allocate_buffer", std::max<int64_t>(bytes, 1));
  if (!segment) return Backend::allocate_buffer(bytes);  // this buffer only: the group keeps its segment
  buffers_.push_back(segment);
  return segment->region(0, bytes, at::kByte).zero_();
}

}  // namespace kdist::comm
