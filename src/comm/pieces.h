#pragma once
// How comm's collectives cut tensors into the pieces each rank sends or receives, shared by
// the backends so that every transport returns the same bits.
#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#include <kdist/layout.h>

namespace kdist::comm::detail {

// The pieces of `t` along dim by torch.chunk's rule, k of them (trailing ones may be empty).
inline std::vector<at::Tensor> split_by_chunk_rule(const at::Tensor& t, int64_t dim, int64_t k) {
  std::vector<at::Tensor> pieces;
  int64_t offset = 0;
  for (int64_t size : chunk_sizes(t.size(dim), k)) {
    pieces.push_back(t.narrow(dim, offset, size));
    offset += size;
  }
  return pieces;
}

// Elements of each rank's block in an all_gather: sizes[i] indices along dim.
inline std::vector<int64_t> block_counts(at::IntArrayRef local_shape, int64_t dim,
                                         const std::vector<int64_t>& sizes) {
  int64_t inner = 1;
  for (int64_t d = 0; d < static_cast<int64_t>(local_shape.size()); ++d)
    if (d != dim) inner *= local_shape[d];
  std::vector<int64_t> counts;
  for (int64_t size : sizes) counts.push_back(size * inner);
  return counts;
}

// Flat blocks as they arrived, rank i's with sizes[i] along dim, concatenated along dim into
// a fresh tensor.
inline at::Tensor concat_blocks(const std::vector<at::Tensor>& flat, at::IntArrayRef local_shape, int64_t dim,
                                const std::vector<int64_t>& sizes) {
  std::vector<at::Tensor> blocks;
  auto shape = local_shape.vec();
  for (size_t i = 0; i < flat.size(); ++i) {
    shape[dim] = sizes[i];
    blocks.push_back(flat[i].view(shape));
  }
  return at::cat(blocks, dim);
}

// The shape rank `from`'s piece has when it arrives at rank `to` in an all_to_all of
// `local` (this rank's tensor): piece `to` of the split dim, rank `from`'s size along the
// concatenated one.
inline std::vector<int64_t> all_to_all_piece_shape(const at::Tensor& local, int64_t split_dim,
                                                   int64_t concat_dim, int64_t concat_full_size, int64_t k,
                                                   int64_t from, int64_t to) {
  auto shape = local.sizes().vec();
  shape[split_dim] = chunk_size(local.size(split_dim), k, to);
  shape[concat_dim] = chunk_size(concat_full_size, k, from);
  return shape;
}

// Where piece `index` starts when pieces of `sizes` lie end to end along one dimension.
inline int64_t offset_of(const std::vector<int64_t>& sizes, size_t index) {
  return std::accumulate(sizes.begin(), sizes.begin() + static_cast<std::ptrdiff_t>(index), int64_t{0});
}

inline int64_t nbytes(const at::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

// `into` op= `other`, elementwise: the reduction every backend applies, in rank order.
inline void accumulate(at::Tensor& into, const at::Tensor& other, bool max) {
  if (max)
    at::maximum_out(into, into, other);
  else
    into.add_(other);
}

}  // namespace kdist::comm::detail
