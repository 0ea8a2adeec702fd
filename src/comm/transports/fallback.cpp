#include "comm/transports/fallback.h"

#include "base/errors.h"
#include "comm/transports/gloo.h"
#include "comm/transports/shared_memory.h"
#include "job/debug_log.h"

namespace kdist::comm {

SharedMemoryOrGloo::SharedMemoryOrGloo(std::shared_ptr<GlooBackend> gloo, bool required,
                                       std::chrono::milliseconds timeout, std::string directory)
    : gloo_(std::move(gloo)), gloo_steps_(std::make_unique<ComposedHostSteps>(*gloo_)), required_(required) {
  try {
    shared_ = std::make_unique<SharedMemoryBackend>(gloo_, timeout, std::move(directory));
  } catch (const NoSharedMemory& e) {
    fall_back(e.what());
  }
}

SharedMemoryOrGloo::~SharedMemoryOrGloo() = default;

void SharedMemoryOrGloo::fall_back(const std::string& why) {
  shared_.reset();
  if (required_) kdist::detail::failure("comm", "shared memory was asked for, but ", why);
  kdist::detail::debug_log("comm: " + gloo_->identity().group_name + " uses Gloo: no shared memory (" + why +
                           ")");
}

template <typename Run>
decltype(auto) SharedMemoryOrGloo::either(Run run) {
  if (shared_) {
    try {
      return run(static_cast<Backend&>(*shared_), static_cast<HostSteps&>(*shared_));
    } catch (const NoSharedMemory& e) {  // thrown on every process at this call, before anything moved
      fall_back(e.what());
    }
  }
  return run(static_cast<Backend&>(*gloo_), *gloo_steps_);
}

Transport SharedMemoryOrGloo::transport() const {
  return shared_ ? Transport::kSharedMemory : Transport::kGloo;
}
int SharedMemoryOrGloo::group_rank() const { return gloo_->group_rank(); }

void SharedMemoryOrGloo::all_reduce(at::Tensor& tensor, ReduceOp op) {
  either([&](Backend& b, HostSteps&) { b.all_reduce(tensor, op); });
}
at::Tensor SharedMemoryOrGloo::all_reduce_copy(const at::Tensor& tensor, ReduceOp op) {
  return either([&](Backend& b, HostSteps&) { return b.all_reduce_copy(tensor, op); });
}
at::Tensor SharedMemoryOrGloo::all_gather(const at::Tensor& local, int64_t dim,
                                          const std::vector<int64_t>& sizes) {
  return either([&](Backend& b, HostSteps&) { return b.all_gather(local, dim, sizes); });
}
at::Tensor SharedMemoryOrGloo::reduce_scatter(const at::Tensor& full, int64_t dim, ReduceOp op) {
  return either([&](Backend& b, HostSteps&) { return b.reduce_scatter(full, dim, op); });
}
at::Tensor SharedMemoryOrGloo::all_to_all(const at::Tensor& local, int64_t split_dim, int64_t concat_dim,
                                          int64_t concat_full_size) {
  return either(
      [&](Backend& b, HostSteps&) { return b.all_to_all(local, split_dim, concat_dim, concat_full_size); });
}
void SharedMemoryOrGloo::broadcast(at::Tensor& tensor, int root) {
  either([&](Backend& b, HostSteps&) { b.broadcast(tensor, root); });
}
void SharedMemoryOrGloo::barrier() {
  either([&](Backend& b, HostSteps&) { b.barrier(); });
}
// On shared memory the sum runs when waited for (SharedMemoryBackend's reason), through this
// wrapper, so that a segment that cannot grow then falls back too.
PendingCollective SharedMemoryOrGloo::all_reduce_async(const at::Tensor& tensor, ReduceOp op) {
  if (!shared_) return gloo_->all_reduce_async(tensor, op);
  return deferred([this, tensor, op] {
    at::Tensor t = tensor;
    all_reduce(t, op);
  });
}
at::Tensor SharedMemoryOrGloo::allocate_buffer(int64_t bytes) {
  return shared_ ? shared_->allocate_buffer(bytes) : gloo_->allocate_buffer(bytes);
}

void SharedMemoryOrGloo::all_reduce_around(at::Tensor& tensor, ReduceOp op, int root,
                                           const Between& between) {
  either([&](Backend&, HostSteps& s) { s.all_reduce_around(tensor, op, root, between); });
}
at::Tensor SharedMemoryOrGloo::all_gather_around(const at::Tensor& local, int64_t dim,
                                                 const std::vector<int64_t>& sizes, int64_t full_size,
                                                 int64_t offset, int root, const Between& between) {
  return either([&](Backend&, HostSteps& s) {
    return s.all_gather_around(local, dim, sizes, full_size, offset, root, between);
  });
}

}  // namespace kdist::comm
