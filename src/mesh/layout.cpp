#include <kdist/layout.h>

#include <algorithm>
#include <map>

#include "base/errors.h"
#include "base/text.h"

namespace kdist {
using detail::invalid;
using detail::tuple_string;

AxisSpec::AxisSpec(const char* name) : AxisSpec(std::string(name)) {}
AxisSpec::AxisSpec(std::string name) : names_{std::move(name)} {}
AxisSpec::AxisSpec(std::vector<std::string> names) : names_(std::move(names)) {}

std::string AxisSpec::to_string() const {
  if (names_.empty()) return "None";
  if (names_.size() == 1) return names_[0];
  return tuple_string(names_);
}

namespace {
std::string axes_string(const std::vector<AxisSpec>& axes) {
  std::vector<std::string> parts;
  for (const auto& a : axes) parts.push_back(a.to_string());
  return tuple_string(parts);
}
}  // namespace

TensorLayout::TensorLayout(std::vector<AxisSpec> axes, DeviceMeshPtr mesh)
    : axes_(std::move(axes)), mesh_(std::move(mesh)) {
  std::map<std::string, size_t> dim_of_axis;
  for (size_t d = 0; d < axes_.size(); ++d) {
    for (const auto& name : axes_[d].names()) {
      if (name.empty()) invalid("layout", "empty axis name in layout ", axes_string(axes_));
      auto [it, inserted] = dim_of_axis.emplace(name, d);
      if (!inserted)
        invalid("layout", "axis '", name, "' is used by dimensions ", it->second, " and ", d, " of layout ",
                axes_string(axes_), "; a mesh axis can shard one dimension only");
    }
  }
  if (mesh_) validate_against_mesh();
}

void TensorLayout::validate_against_mesh() const {
  for (const auto& spec : axes_) {
    int64_t previous = -1;
    for (const auto& name : spec.names()) {
      if (!mesh_->has_axis(name))
        invalid("layout", "Invalid axis names for Layout: axis '", name, "' of layout ", axes_string(axes_),
                " is not in mesh axes ", tuple_string(mesh_->axis_names()));
      int64_t index = mesh_->axis_index(name);
      if (index < previous)
        invalid("layout", "dimension sharded over ", spec.to_string(),
                " must list its axes in mesh-axis order ", tuple_string(mesh_->axis_names()),
                ": sharding nests in that order");
      previous = index;
    }
  }
}

void TensorLayout::set_device_mesh(DeviceMeshPtr mesh) {
  if (mesh_)
    invalid("layout", "Cannot override device mesh: layout ", to_string(), " already has ",
            mesh_->to_string());
  mesh_ = std::move(mesh);
  if (mesh_) validate_against_mesh();
}

TensorLayout TensorLayout::transposed() const {
  return TensorLayout(std::vector<AxisSpec>(axes_.rbegin(), axes_.rend()), mesh_);
}

bool TensorLayout::is_fully_replicated() const {
  for (const auto& spec : axes_)
    if (!spec.is_replicated()) return false;
  return true;
}

std::string TensorLayout::to_string() const { return "TensorLayout" + axes_string(axes_); }

bool TensorLayout::operator==(const TensorLayout& other) const {
  bool same_mesh = mesh_ == other.mesh_ || (mesh_ && other.mesh_ && *mesh_ == *other.mesh_);
  return axes_ == other.axes_ && same_mesh;
}

TensorLayout replicated_layout(int64_t rank, DeviceMeshPtr mesh) {
  return TensorLayout(std::vector<AxisSpec>(rank), std::move(mesh));
}

std::string to_string(const Placement& placement) {
  if (std::holds_alternative<Shard>(placement))
    return "S(" + std::to_string(std::get<Shard>(placement).dim) + ")";
  return std::holds_alternative<Replicate>(placement) ? "R" : "P(sum)";
}

std::string to_string(const std::vector<Placement>& placements) {
  std::string out = "[";
  for (size_t i = 0; i < placements.size(); ++i) out += (i ? ", " : "") + to_string(placements[i]);
  return out + "]";
}

std::vector<Placement> to_placements(const TensorLayout& layout, int64_t tensor_ndim) {
  const auto& mesh = layout.device_mesh();
  if (!mesh) invalid("layout", "layout ", layout.to_string(), " has no device mesh");
  if (layout.rank() != tensor_ndim)
    invalid("layout", "layout ", layout.to_string(), " has ", layout.rank(), " dimensions, the tensor has ",
            tensor_ndim);
  std::vector<Placement> placements(mesh->ndim(), Replicate{});
  for (int64_t d = 0; d < layout.rank(); ++d)
    for (const auto& name : layout.axes()[d].names()) placements[mesh->axis_index(name)] = Shard{d};
  return placements;
}

int64_t chunk_size(int64_t n, int64_t k, int64_t index) {
  const int64_t chunk = (n + k - 1) / k;
  return std::max<int64_t>(0, std::min(chunk, n - index * chunk));
}

int64_t chunk_offset(int64_t n, int64_t k, int64_t index) { return std::min(n, index * ((n + k - 1) / k)); }

std::vector<int64_t> chunk_sizes(int64_t n, int64_t k) {
  std::vector<int64_t> sizes(k);
  for (int64_t i = 0; i < k; ++i) sizes[i] = chunk_size(n, k, i);
  return sizes;
}

}  // namespace kdist
