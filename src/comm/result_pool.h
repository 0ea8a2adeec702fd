#pragma once
// ResultPool: memory for the tensors collectives return, reused once the caller has let go.
// A fresh multi-megabyte tensor is fresh pages from the kernel (glibc maps large blocks and
// unmaps them on free), and faulting them in cost more than moving the bytes (the figures
// are in docs/PERFORMANCE.md). The pool keeps the last few large results; take() hands
// one out again only when nothing but the pool refers to its storage (no tensor, view or
// autograd graph of the caller's), so a result is never overwritten while anyone can see it.
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace kdist::comm {

class ResultPool {
 public:
  at::Tensor take(at::IntArrayRef shape, const at::TensorOptions& options) {
    int64_t numel = 1;
    for (int64_t s : shape) numel *= s;
    const int64_t bytes = numel * static_cast<int64_t>(options.dtype().itemsize());
    if (bytes < kSmallestKept) return at::empty(shape, options);
    for (auto& kept : kept_)
      if (kept.storage().use_count() == 1 && kept.numel() == numel && kept.dtype() == options.dtype())
        return kept.view(shape);
    auto fresh = at::empty({numel}, options);
    if (kept_.size() == kKept) kept_.erase(kept_.begin());  // the oldest: the pool lets go of it
    kept_.push_back(fresh);
    return fresh.view(shape);
  }

 private:
  static constexpr int64_t kSmallestKept = 1 << 20;  // smaller blocks come from malloc's heap
  static constexpr size_t kKept = 4;
  std::vector<at::Tensor> kept_;
};

}  // namespace kdist::comm
