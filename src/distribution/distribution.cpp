#include <kdist/distribution.h>
#include <kdist/job.h>

#include <mutex>

#include "base/errors.h"
#include "base/text.h"
#include "job/debug_log.h"

namespace kdist {
using detail::invalid;

DataSharding data_sharding(int64_t num_model_replicas, int num_processes, int process_id) {
  if (num_model_replicas < 1 || num_processes < 1 || process_id < 0 || process_id >= num_processes)
    invalid("distribution", "data_sharding(num_model_replicas=", num_model_replicas,
            ", num_processes=", num_processes, ", process_id=", process_id,
            "): expected replicas >= 1 and 0 <= process_id < num_processes");
  if (num_model_replicas >= num_processes) return {num_processes, process_id};
  if (num_processes % num_model_replicas != 0)
    invalid("distribution", "num_processes ", num_processes, " must be divisible by num_model_replicas ",
            num_model_replicas, " when there are more processes than replicas");
  return {num_model_replicas, process_id / (num_processes / num_model_replicas)};
}

// ---- the process-wide current distribution ----------------------------------------------

namespace {
std::mutex g_mutex;
std::shared_ptr<const Distribution> g_current;

std::string describe(const std::shared_ptr<const Distribution>& d) { return d ? d->to_string() : "None"; }

std::shared_ptr<const Distribution> exchange_current(std::shared_ptr<const Distribution> next) {
  std::lock_guard<std::mutex> lock(g_mutex);
  std::swap(g_current, next);
  return next;
}
}  // namespace

std::shared_ptr<const Distribution> distribution() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_current;
}

void set_distribution(std::shared_ptr<const Distribution> distribution) {
  detail::debug_log("set_distribution(" + describe(distribution) + ")");
  exchange_current(std::move(distribution));
}

DistributionScope::DistributionScope(std::shared_ptr<const Distribution> entered,
                                     std::shared_ptr<const Distribution> previous)
    : entered_(std::move(entered)), previous_(std::move(previous)) {}

DistributionScope::DistributionScope(DistributionScope&& other) noexcept
    : entered_(std::move(other.entered_)), previous_(std::move(other.previous_)), active_(other.active_) {
  other.active_ = false;
}

DistributionScope::~DistributionScope() {
  if (!active_) return;
  detail::debug_log("scope() exiting " + describe(entered_) + ", restoring " + describe(previous_));
  set_distribution(previous_);
}

DistributionScope Distribution::scope() const {
  std::shared_ptr<const Distribution> self;
  try {
    self = shared_from_this();
  } catch (const std::bad_weak_ptr&) {
    invalid("distribution",
            "scope() needs a distribution owned by a std::shared_ptr (create it "
            "with std::make_shared): ",
            to_string());
  }
  detail::debug_log("scope() entering with distribution=" + to_string());
  auto previous = distribution();
  set_distribution(self);
  return DistributionScope(self, previous);
}

// ---- Distribution ---------------------------------------------------------------------------

Distribution::Distribution(DeviceMeshPtr mesh, std::string batch_dim_name, bool auto_shard_dataset)
    : mesh_(std::move(mesh)),
      batch_dim_name_(std::move(batch_dim_name)),
      auto_shard_dataset_(auto_shard_dataset) {
  if (!mesh_) invalid("distribution", "a distribution needs a device mesh, got none");
  if (batch_dim_name_.empty()) batch_dim_name_ = mesh_->axis_names().front();
  if (!mesh_->has_axis(batch_dim_name_))
    invalid("distribution", "batch_dim_name '", batch_dim_name_, "' is not in mesh axes ",
            detail::tuple_string(mesh_->axis_names()));
}

void Distribution::init_data_sharding() {
  const Job job = current_job();
  const int processes = job.num_processes, id = job.process_id;
  if (mesh_->size() == processes && mesh_->contains_rank(id)) {
    // One process per device: the shard is this process's coordinate on the batch axis,
    // whatever the axis order, so the processes of a model group read the same rows.
    const int64_t axis = mesh_->axis_index(batch_dim_name_);
    data_sharding_ = {mesh_->shape()[axis], mesh_->coordinate_of(id)[axis]};
    return;
  }
  data_sharding_ = data_sharding(num_model_replicas(), processes, id);
}

TensorLayout Distribution::get_data_layout(const std::vector<int64_t>& shape) const {
  if (shape.empty()) invalid("distribution", "get_data_layout needs a batch of rank >= 1, got shape ()");
  std::vector<AxisSpec> axes(shape.size());
  axes[0] = batch_dim_name_;
  return TensorLayout(std::move(axes), mesh_);
}

namespace {
void check_rank(const TensorLayout& layout, const std::string& path, const std::vector<int64_t>& shape) {
  if (layout.rank() != static_cast<int64_t>(shape.size()))
    invalid("distribution", "layout ", layout.to_string(), " for '", path, "' has ", layout.rank(),
            " dimensions, the variable has shape ", detail::tuple_string(shape));
}
}  // namespace

// ---- DataParallel ---------------------------------------------------------------------------

namespace {
DeviceMeshPtr batch_mesh(std::vector<std::string> devices) {
  if (devices.empty()) devices = current_job().devices;
  auto n = static_cast<int64_t>(devices.size());
  return std::make_shared<DeviceMesh>(std::vector<int64_t>{n}, std::vector<std::string>{"batch"},
                                      std::move(devices));
}
}  // namespace

DataParallel::DataParallel(DeviceMeshPtr mesh, bool auto_shard_dataset)
    : Distribution(mesh, "", auto_shard_dataset) {
  if (device_mesh()->ndim() != 1)
    invalid("distribution", "DataParallel needs a 1-D mesh, got ", device_mesh()->to_string(),
            "; use ModelParallel for meshes with a model axis");
  init_data_sharding();
}

DataParallel::DataParallel(std::vector<std::string> devices, bool auto_shard_dataset)
    : DataParallel(batch_mesh(std::move(devices)), auto_shard_dataset) {}

DataParallel::DataParallel() : DataParallel(std::vector<std::string>{}) {}

int64_t DataParallel::num_model_replicas() const { return device_mesh()->size(); }

TensorLayout DataParallel::get_variable_layout(const std::string& path,
                                               const std::vector<int64_t>& shape) const {
  (void)path;
  return replicated_layout(static_cast<int64_t>(shape.size()), device_mesh());
}

TensorLayout DataParallel::get_parameter_layout(const ParameterPath& path,
                                                const std::vector<int64_t>& shape) const {
  return get_variable_layout(path.torch_name, shape);
}

std::optional<TensorLayout> DataParallel::get_tensor_layout(const std::string&) const { return std::nullopt; }

std::string DataParallel::to_string() const {
  return "DataParallel(" + device_mesh()->to_string() + ", batch_dim_name=" + batch_dim_name() + ")";
}

// ---- ModelParallel --------------------------------------------------------------------------

namespace {
DeviceMeshPtr mesh_of(const LayoutMap& map) {
  if (!map.device_mesh())
    invalid("distribution", "ModelParallel needs a LayoutMap with a device mesh, got none");
  return map.device_mesh();
}
}  // namespace

ModelParallel::ModelParallel(LayoutMap layout_map, std::string batch_dim_name, bool auto_shard_dataset)
    : Distribution(mesh_of(layout_map), std::move(batch_dim_name), auto_shard_dataset),
      layout_map_(std::move(layout_map)) {
  init_data_sharding();
}

int64_t ModelParallel::num_model_replicas() const { return device_mesh()->axis_size(batch_dim_name()); }

TensorLayout ModelParallel::get_variable_layout(const std::string& path,
                                                const std::vector<int64_t>& shape) const {
  auto layout = layout_map_.get(path);
  if (!layout) return replicated_layout(static_cast<int64_t>(shape.size()), device_mesh());
  check_rank(*layout, path, shape);
  return *layout;
}

TensorLayout ModelParallel::get_parameter_layout(const ParameterPath& path,
                                                 const std::vector<int64_t>& shape) const {
  auto match = match_parameter(layout_map_, path);
  if (!match) return replicated_layout(static_cast<int64_t>(shape.size()), device_mesh());
  check_rank(match->layout, path.torch_name, shape);
  return match->layout;
}

std::optional<TensorLayout> ModelParallel::get_tensor_layout(const std::string& path) const {
  return layout_map_.get(path);
}

std::string ModelParallel::to_string() const {
  return "ModelParallel(" + device_mesh()->to_string() + ", batch_dim_name=" + batch_dim_name() +
         ", layout_map keys=" + detail::quoted_list(layout_map_.keys()) + ")";
}

}  // namespace kdist
