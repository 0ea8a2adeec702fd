// Turning options into a checked training job.
#include "job.h"

#include <kdist/nn.h>
#include <kdist/path_adapter.h>

#include <stdexcept>

namespace kdist::tools {
namespace {

using Entries = std::vector<std::pair<std::string, std::vector<AxisSpec>>>;

std::string escape_dots(const std::string& name) {
  std::string out;
  for (char c : name) out += c == '.' ? std::string("\\.") : std::string(1, c);
  return out;
}

// --layout fsdp: every 2-D weight over the batch axis on its larger dimension (torch names).
Entries fsdp_layout(torch::nn::Module& model, const std::string& batch_axis) {
  Entries entries;
  for (const auto& p : model.named_parameters()) {
    if (p.value().dim() != 2) continue;
    std::vector<AxisSpec> axes(2);
    axes[p.value().size(1) > p.value().size(0) ? 1 : 0] = batch_axis;
    entries.emplace_back(escape_dots(p.key()), axes);
  }
  return entries;
}

// --layout gemma: keras-hub's 2-D pattern. Each tensor-parallel entry of the model's map
// also shards its other dimension over the batch axis ((None, model) -> (batch, model),
// (model, None) -> (model, batch)), and every Embedding is (model, batch).
Entries gemma_layout(const Workload& workload, torch::nn::Module& model, const std::string& batch_axis) {
  Entries entries;
  for (auto [key, axes] : workload.default_layout()) {
    for (auto& axis : axes)
      if (axis.is_replicated()) axis = AxisSpec(batch_axis);
    entries.emplace_back(key, axes);
  }
  for (const auto& path : parameter_paths(model))
    if (path.owner_type == "Embedding")
      entries.emplace_back(escape_dots(path.torch_name), std::vector<AxisSpec>{"model", batch_axis});
  return entries;
}

LayoutMap layout_map_for(const TrainJob& job) {
  Entries entries;
  std::string preset = "tp";
  for (const auto& text : job.options.layout)
    if (is_layout_preset(text)) preset = text;
  if (!job.options.no_default_layout) {
    auto model = job.workload->build();
    entries = preset == "fsdp"    ? fsdp_layout(*model, job.batch_axis)
              : preset == "gemma" ? gemma_layout(*job.workload, *model, job.batch_axis)
                                  : job.workload->default_layout();
  }
  for (const auto& text : job.options.layout) {
    if (is_layout_preset(text)) continue;
    auto entry = parse_layout_entry(text);
    bool replaced = false;
    for (auto& existing : entries)
      if (existing.first == entry.first) existing = entry, replaced = true;
    if (!replaced) entries.push_back(entry);
  }
  LayoutMap map(job.mesh);
  for (const auto& [key, axes] : entries) map.set(key, axes);  // throws for an axis the mesh lacks
  return map;
}

}  // namespace

void check_plan(const TrainJob& job, const DistributionSummary& summary) {
  if (!job.options.loss_parallel && !job.options.sequence_parallel) return;
  const std::string option = job.options.loss_parallel ? "--loss-parallel" : "--sequence-parallel";
  for (const auto& p : summary.parameters)
    if (p.path.torch_name == "head.weight") {
      if (p.style == nn::ParallelStyle::kColumn) return;
      bad_option(
          option + " needs the head column parallel over 'model'; the layout " + p.layout.to_string() +
          " makes head.weight " + p.style_text() +
          (job.mesh->has_axis("model") && job.batch_axis != "model"
               ? std::string()
               : " (the mesh " + job.mesh->to_string() + " has no 'model' axis apart from the batch axis)"));
    }
  bad_option(option + ": the model has no head.weight");
}

DistributeModuleOptions distribute_options(const TrainOptions& options) {
  DistributeModuleOptions module_options;
  if (options.sequence_parallel) module_options.sequence_parallel_dim = 1;  // (batch, time, width)
  if (options.precision == "bf16") module_options.mixed_precision = nn::MixedPrecision{};
  return module_options;
}

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
    // Tensor parallelism splits the gpt's heads over "model", unless "model" is the batch axis
    // (--mesh model=4), where every sharded weight is FSDP and the heads stay whole.
    if (job.mesh->has_axis("model") && job.batch_axis != "model")
      job.workload->check_model_axis(job.mesh->axis_size("model"));
    job.distribution = std::make_shared<ModelParallel>(layout_map_for(job), job.batch_axis);
  }
  job.data_shards = job.mesh->axis_size(job.batch_axis);
  if (options.batch_size % job.data_shards != 0)
    bad_option("--batch-size " + std::to_string(options.batch_size) + " does not divide into the " +
               std::to_string(job.data_shards) + " data shards of mesh axis '" + job.batch_axis + "'");
  const int64_t rows = options.batch_size / job.data_shards;
  if (rows % options.accumulate != 0)
    bad_option("--accumulate " + std::to_string(options.accumulate) + " does not divide the " +
               std::to_string(rows) + " rows of each data shard (--batch-size " +
               std::to_string(options.batch_size) + " over " + std::to_string(job.data_shards) + " shards)");
  return job;
}

}  // namespace kdist::tools
