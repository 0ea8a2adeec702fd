#pragma once
// Redistribution of a local tensor between two DTensorSpecs of the same mesh and shape.
#include <kdist/dtensor.h>

namespace kdist::detail {

// Without autograd: the local tensor of `to` from the local tensor of `from`.
at::Tensor redistribute_local(const at::Tensor& local, const DTensorSpec& from, const DTensorSpec& to);
// With autograd (the backward redistributes the gradient back, Partial read as Replicate).
at::Tensor redistribute_autograd(const at::Tensor& local, const DTensorSpec& from, const DTensorSpec& to);
// This process's coordinate in the spec's mesh; throws if the process is not in it.
std::vector<int64_t> my_coordinate(const DeviceMesh& mesh);

}  // namespace kdist::detail
