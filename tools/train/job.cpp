// Turning options into a checked training job.
#include "job.h"

#include <stdexcept>

namespace kdist::tools {
namespace {

LayoutMap layout_map_for(const TrainJob& job) {
  std::vector<std::pair<std::string, std::vector<AxisSpec>>> entries;
  if (!job.options.no_default_layout) entries = job.workload->default_layout();
  for (const auto& text : job.options.layout) {
    auto entry = parse_layout_entry(text);
    bool replaced = false;
    for (auto& existing : entries)
      if (existing.first == entry.first) existing = entry, replaced = true;
    if (!replaced) entries.push_back(entry);
  }
  LayoutMap map(job.mesh);
  for (const auto& [key, axes] : entries) {
    for (const auto& axis : axes)
      for (const auto& name : axis.names())
        if (name == job.batch_axis)
          bad_option("layout '" + key + "' shards over '" + name + "', the batch axis: each process of " +
              "a model group must see the same data, so give the mesh its own batch axis (e.g. " +
              "--mesh batch=1,model=" + std::to_string(job.mesh->size()) + ")");
    map.set(key, axes);  // throws for an axis the mesh lacks
  }
  return map;
}

}  // namespace

std::vector<std::string> cpu_devices(int64_t count) {
  std::vector<std::string> devices;
  for (int64_t r = 0; r < count; ++r) devices.push_back("cpu:" + std::to_string(r));
  return devices;
}

TrainJob prepare_job(const TrainOptions& options, const std::vector<std::string>& devices) {
  validate(options);
  TrainJob job;
  job.options = options;
  job.workload = make_workload(options);
  job.mesh = make_mesh(options, devices);
  job.kind = distribution_kind(options, *job.mesh);
  if (job.kind == "data") {
    if (!options.layout.empty())
      bad_option("--layout needs --distribution model (DataParallel replicates every parameter)");
    if (job.mesh->ndim() != 1)
      bad_option("--distribution data needs a 1-D mesh, got " + job.mesh->to_string() +
          ": use --distribution model for a (batch, model) mesh");
    job.batch_axis = job.mesh->axis_names().front();
    job.distribution = std::make_shared<DataParallel>(job.mesh);
  } else {
    job.batch_axis = job.mesh->has_axis("batch") ? "batch" : job.mesh->axis_names().front();
    if (job.mesh->has_axis("model")) job.workload->check_model_axis(job.mesh->axis_size("model"));
    job.distribution = std::make_shared<ModelParallel>(layout_map_for(job), job.batch_axis);
  }
  job.data_shards = job.mesh->axis_size(job.batch_axis);
  if (options.batch_size % job.data_shards != 0)
    bad_option("--batch-size " + std::to_string(options.batch_size) + " does not divide into the " +
        std::to_string(job.data_shards) + " data shards of mesh axis '" + job.batch_axis + "'");
  return job;
}

}  // namespace kdist::tools
