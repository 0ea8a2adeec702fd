#pragma once
// Distribution: says how a model and its data are spread over a DeviceMesh (Keras's
// Distribution), and the process-wide "current distribution".
//
//   auto mesh = std::make_shared<kdist::DeviceMesh>(std::vector<int64_t>{2, 2},
//                                                   std::vector<std::string>{"batch", "model"});
//   kdist::LayoutMap map(mesh);
//   map.set("fc1/kernel", {std::nullopt, "model"});
//   auto mp = std::make_shared<kdist::ModelParallel>(map);  // batch axis: "batch"
//   {
//     auto guard = mp->scope();   // kdist::distribution() == mp until guard dies
//     ...
//   }
//
// DataParallel shards the batch over a 1-D mesh and replicates every variable.
// ModelParallel shards variables by a LayoutMap and the batch over `batch_dim_name`.
//
// The current distribution is process-wide, not thread-local (unlike Keras): one set on
// any thread is seen on every thread. scope() must be called on a Distribution owned by a
// std::shared_ptr; guards must be destroyed in reverse order of creation.
//
// Throws std::invalid_argument: a batch axis the mesh lacks, a DataParallel mesh that is
// not 1-D, processes > replicas with processes % replicas != 0 ("must be divisible by
// num_model_replicas"), a variable whose rank differs from its layout's.
#include <kdist/layout_map.h>
#include <kdist/path_adapter.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kdist {

class DistributionScope;

// Which data shard a process reads when processes and devices differ in number (Keras's
// rule): `num_shards` = min(replicas, processes); `shard_id` = process_id if replicas >=
// processes, else process_id / (processes / replicas). With one process per device of the
// mesh (every kdist job), a Distribution uses the process's coordinate on the batch axis
// instead, whatever the axis order: on a (model=2, batch=2) mesh ranks 0..3 read shards
// 0, 1, 0, 1.
struct DataSharding {
  int64_t num_shards;
  int64_t shard_id;
};
DataSharding data_sharding(int64_t num_model_replicas, int num_processes, int process_id);

class Distribution : public std::enable_shared_from_this<Distribution> {
 public:
  virtual ~Distribution() = default;

  const DeviceMeshPtr& device_mesh() const { return mesh_; }
  const std::string& batch_dim_name() const { return batch_dim_name_; }
  virtual int64_t num_model_replicas() const = 0;
  // From the job's process count and id at construction (current_job(), job.h;
  // see DataSharding).
  int64_t num_data_shards() const { return data_sharding_.num_shards; }
  int64_t data_shard_id() const { return data_sharding_.shard_id; }
  bool auto_shard_dataset() const { return auto_shard_dataset_; }

  // (batch, None, ...) for a batch of this shape.
  TensorLayout get_data_layout(const std::vector<int64_t>& shape) const;
  // The layout of a variable addressed by a Keras or torch path; fully replicated if
  // nothing says otherwise. Throws if a layout's rank differs from shape.size().
  virtual TensorLayout get_variable_layout(const std::string& path,
                                           const std::vector<int64_t>& shape) const = 0;
  // The same for a LibTorch parameter, through the path adapter, in torch orientation.
  virtual TensorLayout get_parameter_layout(const ParameterPath& path,
                                            const std::vector<int64_t>& shape) const = 0;
  // The layout asked for an intermediate tensor by path, if any.
  virtual std::optional<TensorLayout> get_tensor_layout(const std::string& path) const = 0;

  // Makes this the current distribution until the guard dies; the previous one is restored.
  [[nodiscard]] DistributionScope scope() const;
  virtual std::string to_string() const = 0;

 protected:
  Distribution(DeviceMeshPtr mesh, std::string batch_dim_name, bool auto_shard_dataset);
  // Subclasses call this once num_model_replicas() is answerable.
  void init_data_sharding();

 private:
  DeviceMeshPtr mesh_;
  std::string batch_dim_name_;
  bool auto_shard_dataset_;
  DataSharding data_sharding_{1, 0};
};

class DataParallel : public Distribution {
 public:
  explicit DataParallel(DeviceMeshPtr mesh, bool auto_shard_dataset = true);
  // A 1-D mesh named "batch" over these devices.
  explicit DataParallel(std::vector<std::string> devices, bool auto_shard_dataset = true);
  // A 1-D mesh named "batch" over the job's devices (current_job(), job.h).
  DataParallel();

  int64_t num_model_replicas() const override;
  TensorLayout get_variable_layout(const std::string& path, const std::vector<int64_t>& shape) const override;
  TensorLayout get_parameter_layout(const ParameterPath& path,
                                    const std::vector<int64_t>& shape) const override;
  std::optional<TensorLayout> get_tensor_layout(const std::string& path) const override;
  std::string to_string() const override;
};

class ModelParallel : public Distribution {
 public:
  // batch_dim_name empty = the mesh's first axis.
  explicit ModelParallel(LayoutMap layout_map, std::string batch_dim_name = "",
                         bool auto_shard_dataset = true);

  const LayoutMap& layout_map() const { return layout_map_; }
  int64_t num_model_replicas() const override;
  TensorLayout get_variable_layout(const std::string& path, const std::vector<int64_t>& shape) const override;
  TensorLayout get_parameter_layout(const ParameterPath& path,
                                    const std::vector<int64_t>& shape) const override;
  std::optional<TensorLayout> get_tensor_layout(const std::string& path) const override;
  std::string to_string() const override;

 private:
  LayoutMap layout_map_;
};

// The current distribution, or nullptr when none is set.
std::shared_ptr<const Distribution> distribution();
void set_distribution(std::shared_ptr<const Distribution> distribution);

// RAII guard returned by Distribution::scope(); movable, not copyable.
class DistributionScope {
 public:
  DistributionScope(DistributionScope&& other) noexcept;
  DistributionScope& operator=(DistributionScope&&) = delete;
  DistributionScope(const DistributionScope&) = delete;
  DistributionScope& operator=(const DistributionScope&) = delete;
  ~DistributionScope();

 private:
  friend class Distribution;
  DistributionScope(std::shared_ptr<const Distribution> entered,
                    std::shared_ptr<const Distribution> previous);
  std::shared_ptr<const Distribution> entered_;
  std::shared_ptr<const Distribution> previous_;
  bool active_ = true;
};

}  // namespace kdist
