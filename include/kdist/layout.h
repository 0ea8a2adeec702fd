#pragma once
// TensorLayout: how one tensor is laid out over a DeviceMesh, one AxisSpec per tensor
// dimension (Keras's TensorLayout), and the DTensor placements it turns into.
//
//   kdist::TensorLayout col({std::nullopt, "model"}, mesh);       // dim 1 sharded on "model"
//   kdist::TensorLayout both({std::vector<std::string>{"batch", "model"}, std::nullopt}, mesh);
//   kdist::to_placements(col, 2);  // on mesh (batch, model): {Replicate(), Shard(1)}
//
// An AxisSpec is std::nullopt (replicated), one mesh axis name, or several names: the
// dimension is then sharded over the product of those axes, nested in mesh-axis order
// (the names must be listed in that order). A mesh axis no dimension uses means
// "replicated over that axis".
//
// Throws std::invalid_argument: an axis used by two dimensions; with a mesh, an axis the
// mesh lacks ("Invalid axis names for Layout") or a multi-axis entry out of mesh order;
// giving a mesh to a layout that has one ("Cannot override device mesh").
#include <kdist/mesh.h>

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace kdist {

class AxisSpec {
 public:
  AxisSpec() = default;                      // replicated
  AxisSpec(std::nullopt_t) {}                // NOLINT: implicit on purpose, replicated
  AxisSpec(const char* name);                // NOLINT: one mesh axis
  AxisSpec(std::string name);                // NOLINT
  AxisSpec(std::vector<std::string> names);  // NOLINT: sharded over several axes
  bool is_replicated() const { return names_.empty(); }
  const std::vector<std::string>& names() const { return names_; }
  std::string to_string() const;  // "None", "model", "(batch, model)"
  bool operator==(const AxisSpec& other) const { return names_ == other.names_; }
  bool operator!=(const AxisSpec& other) const { return names_ != other.names_; }

 private:
  std::vector<std::string> names_;
};

class TensorLayout {
 public:
  explicit TensorLayout(std::vector<AxisSpec> axes, DeviceMeshPtr mesh = nullptr);

  const std::vector<AxisSpec>& axes() const { return axes_; }
  const DeviceMeshPtr& device_mesh() const { return mesh_; }
  int64_t rank() const { return static_cast<int64_t>(axes_.size()); }
  // Sets the mesh of a mesh-less layout; throws "Cannot override device mesh" otherwise.
  void set_device_mesh(DeviceMeshPtr mesh);
  // The same layout with its dimensions reversed (a Keras (in, out) kernel <-> torch (out, in)).
  TensorLayout transposed() const;
  bool is_fully_replicated() const;
  std::string to_string() const;  // "TensorLayout(None, model)"
  bool operator==(const TensorLayout& other) const;
  bool operator!=(const TensorLayout& other) const { return !(*this == other); }

 private:
  void validate_against_mesh() const;
  std::vector<AxisSpec> axes_;
  DeviceMeshPtr mesh_;
};

// A fully replicated layout of the given rank.
TensorLayout replicated_layout(int64_t rank, DeviceMeshPtr mesh);

struct Replicate {
  bool operator==(const Replicate&) const { return true; }
  bool operator!=(const Replicate&) const { return false; }
};
// Shard(dim): the tensor is split along dim over the mesh axis by torch.chunk's rule, the
// one DTensor uses: n indices in k pieces of ceil(n/k), the last non-empty one the rest,
// trailing ones empty (chunk_size below). comm's reduce_scatter and all_to_all split by it.
struct Shard {
  int64_t dim;
  bool operator==(const Shard& o) const { return dim == o.dim; }
  bool operator!=(const Shard& o) const { return dim != o.dim; }
};
struct Partial {  // pending sum; exists only inside computations
  bool operator==(const Partial&) const { return true; }
  bool operator!=(const Partial&) const { return false; }
};
using Placement = std::variant<Replicate, Shard, Partial>;

// torch.chunk's rule for Shard: the size of piece `index` of n indices split in k, where
// piece `index` starts, and all k sizes. chunk_size(10, 4, i) = 3, 3, 3, 1; (2, 4, i) = 1, 1, 0, 0.
int64_t chunk_size(int64_t n, int64_t k, int64_t index);
int64_t chunk_offset(int64_t n, int64_t k, int64_t index);
std::vector<int64_t> chunk_sizes(int64_t n, int64_t k);

std::string to_string(const Placement& placement);                // "R", "S(1)", "P(sum)"
std::string to_string(const std::vector<Placement>& placements);  // "[S(0), R]"

// One placement per mesh dimension: Shard(d) if tensor dimension d uses that mesh axis,
// else Replicate(). Throws std::invalid_argument if the layout has no mesh or its rank
// differs from tensor_ndim.
std::vector<Placement> to_placements(const TensorLayout& layout, int64_t tensor_ndim);

}  // namespace kdist
