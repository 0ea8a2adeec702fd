#pragma once
// DeviceMesh: the devices of a job arranged in an n-dimensional grid with named axes.
//
//   auto mesh = std::make_shared<kdist::DeviceMesh>(
//       std::vector<int64_t>{2, 2}, std::vector<std::string>{"batch", "model"});
//   mesh->axis_size("model");              // 2
//   mesh->ranks_along("batch", /*rank=*/1); // {1, 3}: the ranks that differ from rank 1 only in "batch"
//
// Devices are strings "<type>:<index>" ("cpu:3", "cuda:0"), kept row-major: mesh
// position p holds devices()[p], and device "cpu:r" belongs to the process of global
// rank r. A mesh is immutable; share it as DeviceMeshPtr (copies share the devices).
//
// A mesh built without devices is the job's: it takes current_job().devices (job.h) when it is
// first used (devices(), size(), ranks, coordinates, to_string, ==), not while it is
// constructed, so it may be declared before kdist::initialize() and used after it. Its
// device count is checked then, with the Keras message.
//
// Throws std::invalid_argument, checked in this order (the Keras messages):
//   empty shape or names   -> "Shape and axis_names cannot be empty"
//   different lengths      -> "Shape and axis_names should have same size"
//   product != devices     -> "Shape does not match the number of devices" (at construction
//                             for given devices, at first use for the job's)
// and for a non-positive dimension, a repeated axis name or a malformed device string.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kdist {

class DeviceMesh {
 public:
  // devices empty: the job's devices, taken at first use (above).
  DeviceMesh(std::vector<int64_t> shape, std::vector<std::string> axis_names,
             std::vector<std::string> devices = {});

  const std::vector<int64_t>& shape() const { return shape_; }
  const std::vector<std::string>& axis_names() const { return axis_names_; }
  const std::vector<std::string>& devices() const;
  int64_t ndim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size() const { return static_cast<int64_t>(devices().size()); }

  bool has_axis(const std::string& name) const;
  // Throws std::invalid_argument naming the axis and the mesh axes when absent.
  int64_t axis_index(const std::string& name) const;
  int64_t axis_size(const std::string& name) const;

  // Global rank owning the device at mesh position p (row-major), i.e. the index in "cpu:r".
  int rank_at(int64_t position) const;
  int rank_at(const std::vector<int64_t>& coordinate) const;
  bool contains_rank(int rank) const;
  // Mesh coordinate of a global rank; throws std::invalid_argument if the rank is not in the mesh.
  std::vector<int64_t> coordinate_of(int rank) const;
  // The ranks that share every coordinate with `rank` except along `axis`, in axis order:
  // the process group of that axis that `rank` belongs to.
  std::vector<int> ranks_along(const std::string& axis, int rank) const;
  std::vector<int> ranks_along(int64_t axis_index, int rank) const;

  // "DeviceMesh(shape=(2, 2), axis_names=(batch, model), devices=cpu:0..cpu:3)"
  std::string to_string() const;
  bool operator==(const DeviceMesh& other) const;
  bool operator!=(const DeviceMesh& other) const { return !(*this == other); }

 private:
  struct Devices;  // the names and their ranks, resolved once (src/mesh.cpp)
  const Devices& resolved() const;

  std::vector<int64_t> shape_;
  std::vector<std::string> axis_names_;
  std::shared_ptr<Devices> devices_;
};

using DeviceMeshPtr = std::shared_ptr<const DeviceMesh>;

// Parses "cpu:3" into ("cpu", 3); throws std::invalid_argument for anything else.
std::pair<std::string, int> parse_device(const std::string& device);

}  // namespace kdist
