// DTensorSpec: which block of the global tensor each mesh coordinate holds.
#include <kdist/comm.h>
#include <kdist/dtensor.h>

#include "base/errors.h"
#include "base/text.h"

namespace kdist {
using detail::invalid;

void DTensorSpec::validate() const {
  if (!mesh) invalid("dtensor", "a DTensorSpec needs a device mesh");
  if (static_cast<int64_t>(placements.size()) != mesh->ndim())
    invalid("dtensor", "placements ", kdist::to_string(placements), " have ", placements.size(),
            " entries, mesh ", detail::tuple_string(mesh->axis_names()), " has ", mesh->ndim(),
            " dimensions");
  const auto ndim = static_cast<int64_t>(global_shape.size());
  for (const auto& p : placements)
    if (auto* s = std::get_if<Shard>(&p); s && (s->dim < 0 || s->dim >= ndim))
      invalid("dtensor", "placement S(", s->dim, ") is out of range for a tensor of shape ",
              detail::tuple_string(global_shape));
  for (auto size : global_shape)
    if (size < 0) invalid("dtensor", "negative size in shape ", detail::tuple_string(global_shape));
}

// Applies the mesh dimensions in order: each Shard(d) takes this coordinate's torch.chunk
// piece of what the outer mesh dimensions left of dimension d.
static void block(const DTensorSpec& spec, const std::vector<int64_t>& coordinate, std::vector<int64_t>& size,
                  std::vector<int64_t>& offset) {
  size = spec.global_shape;
  offset.assign(size.size(), 0);
  for (size_t i = 0; i < spec.placements.size(); ++i) {
    const auto* shard = std::get_if<Shard>(&spec.placements[i]);
    if (!shard) continue;
    const int64_t k = spec.mesh->shape()[i], d = shard->dim;
    offset[d] += comm::chunk_offset(size[d], k, coordinate[i]);
    size[d] = comm::chunk_size(size[d], k, coordinate[i]);
  }
}

std::vector<int64_t> DTensorSpec::local_shape(const std::vector<int64_t>& coordinate) const {
  std::vector<int64_t> size, offset;
  block(*this, coordinate, size, offset);
  return size;
}

std::vector<int64_t> DTensorSpec::local_offset(const std::vector<int64_t>& coordinate) const {
  std::vector<int64_t> size, offset;
  block(*this, coordinate, size, offset);
  return offset;
}

bool DTensorSpec::has_partial() const {
  for (const auto& p : placements)
    if (std::holds_alternative<Partial>(p)) return true;
  return false;
}

std::string DTensorSpec::to_string() const {
  return "DTensorSpec(global=" + detail::tuple_string(global_shape) +
         ", placements=" + kdist::to_string(placements) + ")";
}

}  // namespace kdist
