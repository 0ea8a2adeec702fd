#include "comm/host_steps.h"

#include <ATen/ATen.h>

#include "comm/backend.h"
#include "comm/pieces.h"

namespace kdist::comm {

void ComposedHostSteps::all_reduce_around(at::Tensor& tensor, ReduceOp op, int root, const Between& between) {
  auto reduced = backend_.all_reduce_copy(tensor, op);
  if (backend_.group_rank() == root) {
    between(reduced);
    tensor.copy_(reduced);
  }
  backend_.broadcast(tensor, root);
}

at::Tensor ComposedHostSteps::all_gather_around(const at::Tensor& local, int64_t dim,
                                                const std::vector<int64_t>& sizes, int64_t full_size,
                                                int64_t offset, int root, const Between& between) {
  auto block = backend_.all_gather(local, dim, sizes);
  auto shape = local.sizes().vec();
  shape[dim] = full_size;
  auto full = at::empty(shape, local.options());
  if (backend_.group_rank() == root) {
    full.narrow(dim, offset, block.size(dim)).copy_(block);
    between(full);
  }
  backend_.broadcast(full, root);
  return full;
}

}  // namespace kdist::comm
