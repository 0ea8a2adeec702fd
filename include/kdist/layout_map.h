#pragma once
// LayoutMap: an ordered map from variable-path patterns to TensorLayouts (Keras's LayoutMap).
//
//   kdist::LayoutMap map(mesh);
//   map.set("fc1/kernel", {std::nullopt, "model"});  // Keras name of torch's fc1.weight
//   map.set(".*bias", {"model"});
//   map.get("fc1/kernel");   // the layout, with the map's mesh
//   map.get("conv/kernel");  // std::nullopt: no key matches
//
// Lookup: an exact key wins; otherwise every key is a regular expression (ECMAScript
// syntax) that must match the *whole* path. Two or more matching keys is an error, no
// matching key is std::nullopt (never an exception). Layouts without a mesh get the map's.
//
// Throws std::invalid_argument: a key set twice ("already exist"), a key that is not a
// valid regex, a path matching several keys ("matches multiple layout specification keys",
// naming the path and the keys), a layout whose axes the mesh lacks.
#include <kdist/layout.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kdist {

class LayoutMap {
 public:
  explicit LayoutMap(DeviceMeshPtr mesh);
  ~LayoutMap();
  LayoutMap(const LayoutMap&);
  LayoutMap& operator=(const LayoutMap&);
  LayoutMap(LayoutMap&&) noexcept;
  LayoutMap& operator=(LayoutMap&&) noexcept;

  void set(const std::string& key, TensorLayout layout);
  void set(const std::string& key, std::vector<AxisSpec> axes);  // Keras's tuple shorthand
  std::optional<TensorLayout> get(const std::string& path) const;
  // The key that get(path) would use, if any.
  std::optional<std::string> matching_key(const std::string& path) const;
  // The keys whose pattern matches the whole of one of `names` (exact matches included),
  // in insertion order. Used by the path adapter, which offers two names per parameter.
  std::vector<std::string> keys_matching_any(const std::vector<std::string>& names) const;
  // The layout stored under an exact key; throws std::invalid_argument if absent.
  const TensorLayout& at(const std::string& key) const;
  bool erase(const std::string& key);
  size_t size() const;
  bool contains(const std::string& key) const;
  std::vector<std::string> keys() const;  // insertion order
  const DeviceMeshPtr& device_mesh() const { return mesh_; }

 private:
  struct Entry;
  DeviceMeshPtr mesh_;
  std::vector<std::unique_ptr<Entry>> entries_;
};

}  // namespace kdist
