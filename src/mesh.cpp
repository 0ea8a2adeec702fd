#include <kdist/mesh.h>
#include <kdist/runtime.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "errors.h"
#include "text.h"

namespace kdist {
using detail::invalid;
using detail::tuple_string;

std::pair<std::string, int> parse_device(const std::string& device) {
  auto colon = device.find(':');
  bool ok = colon != std::string::npos && colon > 0 && colon + 1 < device.size() &&
            std::all_of(device.begin() + colon + 1, device.end(), ::isdigit) &&
            device.size() - colon - 1 <= 9;
  if (!ok) invalid("mesh", "device '", device, "' is not of the form <type>:<index>, like cpu:0");
  return {device.substr(0, colon), std::stoi(device.substr(colon + 1))};
}

DeviceMesh::DeviceMesh(std::vector<int64_t> shape, std::vector<std::string> axis_names,
                       std::vector<std::string> devices)
    : shape_(std::move(shape)), axis_names_(std::move(axis_names)), devices_(std::move(devices)) {
  if (shape_.empty() || axis_names_.empty())
    invalid("mesh", "Shape and axis_names cannot be empty: shape ", tuple_string(shape_),
            ", axis_names ", tuple_string(axis_names_));
  if (shape_.size() != axis_names_.size())
    invalid("mesh", "Shape and axis_names should have same size: shape ", tuple_string(shape_),
            " has ", shape_.size(), ", axis_names ", tuple_string(axis_names_), " has ",
            axis_names_.size());
  if (devices_.empty()) devices_ = list_devices();
  int64_t positions = 1;
  for (int64_t d : shape_) positions *= d;
  if (positions != static_cast<int64_t>(devices_.size()))
    invalid("mesh", "Shape does not match the number of devices: shape ", tuple_string(shape_),
            " has ", positions, " positions, got ", devices_.size(), " devices");
  for (size_t i = 0; i < shape_.size(); ++i)
    if (shape_[i] <= 0)
      invalid("mesh", "axis '", axis_names_[i], "' has size ", shape_[i], "; sizes must be >= 1");
  std::set<std::string> names(axis_names_.begin(), axis_names_.end());
  if (names.size() != axis_names_.size())
    invalid("mesh", "axis_names ", tuple_string(axis_names_), " repeat a name");
  std::set<int> seen;
  for (const auto& device : devices_) {
    int rank = parse_device(device).second;
    if (!seen.insert(rank).second)
      invalid("mesh", "device index ", rank, " appears twice in devices ", tuple_string(devices_));
    ranks_.push_back(rank);
  }
}

bool DeviceMesh::has_axis(const std::string& name) const {
  return std::find(axis_names_.begin(), axis_names_.end(), name) != axis_names_.end();
}

int64_t DeviceMesh::axis_index(const std::string& name) const {
  auto it = std::find(axis_names_.begin(), axis_names_.end(), name);
  if (it == axis_names_.end())
    invalid("mesh", "axis '", name, "' is not in mesh axes ", tuple_string(axis_names_));
  return it - axis_names_.begin();
}

int64_t DeviceMesh::axis_size(const std::string& name) const { return shape_[axis_index(name)]; }

int DeviceMesh::rank_at(int64_t position) const {
  if (position < 0 || position >= size())
    invalid("mesh", "position ", position, " is outside a mesh of ", size(), " devices");
  return ranks_[position];
}

int DeviceMesh::rank_at(const std::vector<int64_t>& coordinate) const {
  if (coordinate.size() != shape_.size())
    invalid("mesh", "coordinate ", tuple_string(coordinate), " has ", coordinate.size(),
            " entries, mesh has ", shape_.size(), " axes");
  int64_t position = 0;
  for (size_t i = 0; i < shape_.size(); ++i) {
    if (coordinate[i] < 0 || coordinate[i] >= shape_[i])
      invalid("mesh", "coordinate ", tuple_string(coordinate), " is outside mesh shape ",
              tuple_string(shape_));
    position = position * shape_[i] + coordinate[i];
  }
  return ranks_[position];
}

bool DeviceMesh::contains_rank(int rank) const {
  return std::find(ranks_.begin(), ranks_.end(), rank) != ranks_.end();
}

std::vector<int64_t> DeviceMesh::coordinate_of(int rank) const {
  auto it = std::find(ranks_.begin(), ranks_.end(), rank);
  if (it == ranks_.end())
    invalid("mesh", "rank ", rank, " has no device in mesh devices ", tuple_string(devices_));
  int64_t position = it - ranks_.begin();
  std::vector<int64_t> coordinate(shape_.size());
  for (size_t i = shape_.size(); i-- > 0;) {
    coordinate[i] = position % shape_[i];
    position /= shape_[i];
  }
  return coordinate;
}

std::vector<int> DeviceMesh::ranks_along(const std::string& axis, int rank) const {
  return ranks_along(axis_index(axis), rank);
}

std::vector<int> DeviceMesh::ranks_along(int64_t axis, int rank) const {
  if (axis < 0 || axis >= ndim())
    invalid("mesh", "axis index ", axis, " is outside a mesh of ", ndim(), " axes");
  auto coordinate = coordinate_of(rank);
  std::vector<int> ranks;
  for (int64_t i = 0; i < shape_[axis]; ++i) {
    coordinate[axis] = i;
    ranks.push_back(rank_at(coordinate));
  }
  return ranks;
}

std::string DeviceMesh::to_string() const {
  std::string devices = devices_.size() <= 4 ? tuple_string(devices_)
                                             : devices_.front() + ".." + devices_.back();
  return detail::cat("DeviceMesh(shape=", tuple_string(shape_),
                     ", axis_names=", tuple_string(axis_names_), ", devices=", devices, ")");
}

bool DeviceMesh::operator==(const DeviceMesh& other) const {
  return shape_ == other.shape_ && axis_names_ == other.axis_names_ && devices_ == other.devices_;
}

}  // namespace kdist
