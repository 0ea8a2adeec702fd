#include <kdist/job.h>
#include <kdist/mesh.h>

#include <algorithm>
#include <mutex>
#include <numeric>
#include <set>

#include "base/errors.h"
#include "base/text.h"

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

struct DeviceMesh::Devices {
  std::once_flag once;  // the job's devices: taken on first use
  std::vector<std::string> names;
  std::vector<int> ranks;  // ranks[p] = index of names[p]
};

namespace {

// Keras's count check, then every device well formed and used once; returns their ranks.
std::vector<int> ranks_of(const std::vector<int64_t>& shape, const std::vector<std::string>& devices,
                          const char* whose) {
  int64_t positions = 1;
  for (int64_t d : shape) positions *= d;
  if (positions != static_cast<int64_t>(devices.size()))
    invalid("mesh", "Shape does not match the number of devices: shape ", tuple_string(shape), " has ",
            positions, " positions, got ", devices.size(), " devices", whose);
  std::set<int> seen;
  std::vector<int> ranks;
  for (const auto& device : devices) {
    int rank = parse_device(device).second;
    if (!seen.insert(rank).second)
      invalid("mesh", "device index ", rank, " appears twice in devices ", tuple_string(devices));
    ranks.push_back(rank);
  }
  return ranks;
}

}  // namespace

DeviceMesh::DeviceMesh(std::vector<int64_t> shape, std::vector<std::string> axis_names,
                       std::vector<std::string> devices)
    : shape_(std::move(shape)), axis_names_(std::move(axis_names)), devices_(std::make_shared<Devices>()) {
  if (shape_.empty() || axis_names_.empty())
    invalid("mesh", "Shape and axis_names cannot be empty: shape ", tuple_string(shape_), ", axis_names ",
            tuple_string(axis_names_));
  if (shape_.size() != axis_names_.size())
    invalid("mesh", "Shape and axis_names should have same size: shape ", tuple_string(shape_), " has ",
            shape_.size(), ", axis_names ", tuple_string(axis_names_), " has ", axis_names_.size());
  if (!devices.empty()) {  // given: checked now, as Keras does
    devices_->ranks = ranks_of(shape_, devices, "");
    devices_->names = std::move(devices);
    std::call_once(devices_->once, [] {});
  }
  for (size_t i = 0; i < shape_.size(); ++i)
    if (shape_[i] <= 0)
      invalid("mesh", "axis '", axis_names_[i], "' has size ", shape_[i], "; sizes must be >= 1");
  std::set<std::string> names(axis_names_.begin(), axis_names_.end());
  if (names.size() != axis_names_.size())
    invalid("mesh", "axis_names ", tuple_string(axis_names_), " repeat a name");
}

// A throw leaves the flag unset: the next use checks again (after initialize, say).
const DeviceMesh::Devices& DeviceMesh::resolved() const {
  std::call_once(devices_->once, [this] {
    auto names = current_job().devices;
    devices_->ranks = ranks_of(shape_, names, " (the job's, as the mesh was built without devices)");
    devices_->names = std::move(names);
  });
  return *devices_;
}

const std::vector<std::string>& DeviceMesh::devices() const { return resolved().names; }

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
  return resolved().ranks[position];
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
  return resolved().ranks[position];
}

bool DeviceMesh::contains_rank(int rank) const {
  const auto& ranks = resolved().ranks;
  return std::find(ranks.begin(), ranks.end(), rank) != ranks.end();
}

std::vector<int64_t> DeviceMesh::coordinate_of(int rank) const {
  const auto& ranks = resolved().ranks;
  auto it = std::find(ranks.begin(), ranks.end(), rank);
  if (it == ranks.end())
    invalid("mesh", "rank ", rank, " has no device in mesh devices ", tuple_string(devices()));
  int64_t position = it - ranks.begin();
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
  const auto& names = devices();
  std::string devices = names.size() <= 4 ? tuple_string(names) : names.front() + ".." + names.back();
  return detail::cat("DeviceMesh(shape=", tuple_string(shape_), ", axis_names=", tuple_string(axis_names_),
                     ", devices=", devices, ")");
}

bool DeviceMesh::operator==(const DeviceMesh& other) const {
  return shape_ == other.shape_ && axis_names_ == other.axis_names_ && devices() == other.devices();
}

}  // namespace kdist
