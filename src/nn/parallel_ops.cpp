#include "nn/parallel_ops.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "nn/autograd_state.h"

namespace kdist::nn::detail {
namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What a backward needs of a forward: the group, and the size of the gathered dimension.
struct GroupState {
  comm::GroupPtr group;
  int64_t full_size = 0;
};

void save(AutogradContext* ctx, const comm::GroupPtr& group, int64_t full_size = 0) {
  stash(ctx, "group", GroupState{group, full_size});
}

GroupState& saved(AutogradContext* ctx) { return stashed<GroupState>(ctx, "group"); }

at::Tensor slice_last(const at::Tensor& x, const comm::Group& group) {
  return comm::chunk_piece(x, -1, group.size(), group.rank()).contiguous();
}

at::Tensor gather_last(const at::Tensor& x, const comm::Group& group, int64_t full_size) {
  return comm::all_gather(x, -1, group, comm::chunk_sizes(full_size, group.size()));
}

struct CopyToParallel : torch::autograd::Function<CopyToParallel> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, comm::GroupPtr group) {
    save(ctx, group);
    return x;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto grad = grads[0].contiguous().clone();
    comm::all_reduce(grad, comm::ReduceOp::kSum, *saved(ctx).group);
    return {grad, at::Tensor()};
  }
};

struct ReduceFromParallel : torch::autograd::Function<ReduceFromParallel> {
  static at::Tensor forward(AutogradContext* ctx, at::Tensor x, comm::GroupPtr group) {
    comm::all_reduce(x, comm::ReduceOp::kSum, *group);
    ctx->mark_dirty({x});
    return x;
  }
  static variable_list backward(AutogradContext*, variable_list grads) { return {grads[0], at::Tensor()}; }
};

struct SumOverGroup : torch::autograd::Function<SumOverGroup> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, comm::GroupPtr group) {
    save(ctx, group);
    auto sum = x.contiguous().clone();
    comm::all_reduce(sum, comm::ReduceOp::kSum, *group);
    return sum;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto grad = grads[0].contiguous().clone();
    comm::all_reduce(grad, comm::ReduceOp::kSum, *saved(ctx).group);
    return {grad, at::Tensor()};
  }
};

struct GatherLastDim : torch::autograd::Function<GatherLastDim> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, comm::GroupPtr group,
                            int64_t full_size) {
    save(ctx, group, full_size);
    return gather_last(x, *group, full_size);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {slice_last(grads[0], *saved(ctx).group), at::Tensor(), at::Tensor()};
  }
};

struct ScatterLastDim : torch::autograd::Function<ScatterLastDim> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, comm::GroupPtr group) {
    save(ctx, group, x.size(-1));
    return slice_last(x, *group).clone();
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto& s = saved(ctx);
    return {gather_last(grads[0].contiguous(), *s.group, s.full_size), at::Tensor()};
  }
};

}  // namespace

at::Tensor copy_to_parallel(const at::Tensor& x, const comm::GroupPtr& group) {
  return x.requires_grad() ? CopyToParallel::apply(x, group) : x;
}

at::Tensor reduce_from_parallel(const at::Tensor& x, const comm::GroupPtr& group) {
  return ReduceFromParallel::apply(x, group);
}

at::Tensor sum_over_group(const at::Tensor& x, const comm::GroupPtr& group) {
  return SumOverGroup::apply(x, group);
}

at::Tensor gather_last_dim(const at::Tensor& x, const comm::GroupPtr& group, int64_t full_size) {
  return GatherLastDim::apply(x, group, full_size);
}

at::Tensor scatter_last_dim(const at::Tensor& x, const comm::GroupPtr& group) {
  return ScatterLastDim::apply(x, group);
}

}  // namespace kdist::nn::detail
