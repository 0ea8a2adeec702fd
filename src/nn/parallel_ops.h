#pragma once
// The autograd operations of tensor parallelism (Megatron's f and g, and the gather and
// scatter of a last dimension), each over one mesh-axis group.
#include <kdist/comm.h>

namespace kdist::nn::detail {

// f: forward identity; backward all_reduce (sum) of the gradient.
at::Tensor copy_to_parallel(const at::Tensor& x, const comm::GroupPtr& group);
// g: forward all_reduce (sum), in place on x (a fresh activation); backward identity.
at::Tensor reduce_from_parallel(const at::Tensor& x, const comm::GroupPtr& group);
// A sum over the group's processes of per-process partial sums that each process then computes
// its own loss terms from (SyncBatchNorm's statistics): forward all_reduce (sum) into a new
// tensor; backward all_reduce (sum) of the gradient, since every process's loss depends on it.
at::Tensor sum_over_group(const at::Tensor& x, const comm::GroupPtr& group);
// Forward all_gather of the last dimension (global size full_size); backward this rank's slice.
at::Tensor gather_last_dim(const at::Tensor& x, const comm::GroupPtr& group, int64_t full_size);
// Forward this rank's torch.chunk slice of the last dimension; backward all_gather.
at::Tensor scatter_last_dim(const at::Tensor& x, const comm::GroupPtr& group);

}  // namespace kdist::nn::detail
