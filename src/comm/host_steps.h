#pragma once
// HostSteps: the steps a hierarchical backend composes on each host, which only it uses: an
// all_reduce or all_gather with a step of the caller's in its middle (the exchange between
// hosts, which the host's leader runs on the reduced or gathered data where it lies). Shared memory runs them
// in its segment, in place; any other backend composes them of its collectives (ComposedHostSteps: what Gloo
// does).
#include <ATen/core/Tensor.h>
#include <kdist/comm.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace kdist::comm {

class Backend;

class HostSteps {
 public:
  virtual ~HostSteps() = default;
  using Between = std::function<void(at::Tensor&)>;
  // The group's reduction reaches `root`, which runs `between` on it in place, and every
  // process ends with what `between` left.
  virtual void all_reduce_around(at::Tensor& tensor, ReduceOp op, int root, const Between& between) = 0;
  // The group's blocks (`sizes` along `dim`, in rank order) reach `root` in their place in a
  // tensor `full_size` long along `dim`, from `offset` on; `root` runs `between` on it (it
  // fills the rest), and every process returns what `between` left.
  virtual at::Tensor all_gather_around(const at::Tensor& local, int64_t dim,
                                       const std::vector<int64_t>& sizes, int64_t full_size, int64_t offset,
                                       int root, const Between& between) = 0;
};

// The steps of any backend's collectives: the collective, `between` on the root, a broadcast.
class ComposedHostSteps final : public HostSteps {
 public:
  explicit ComposedHostSteps(Backend& backend) : backend_(backend) {}
  void all_reduce_around(at::Tensor& tensor, ReduceOp op, int root, const Between& between) override;
  at::Tensor all_gather_around(const at::Tensor& local, int64_t dim, const std::vector<int64_t>& sizes,
                               int64_t full_size, int64_t offset, int root, const Between& between) override;

 private:
  Backend& backend_;
};

}  // namespace kdist::comm
