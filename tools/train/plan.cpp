#include "plan.h"

#include <kdist/sync.h>
#include <iomanip>

#include <map>
#include <sstream>

namespace kdist::tools {
namespace {

std::string bytes_text(double bytes) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(bytes < 1024 ? 0 : 2);
  if (bytes >= 1 << 30)
    out << bytes / (1 << 30) << " GiB";
  else if (bytes >= 1 << 20)
    out << bytes / (1 << 20) << " MiB";
  else if (bytes >= 1024)
    out << bytes / 1024 << " KiB";
  else
    out << bytes << " B";
  return out.str();
}

std::string table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(rows.front().size(), 0);
  for (const auto& row : rows)
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) line += row[i] + std::string(width[i] - row[i].size() + 2, ' ');
    out += line.substr(0, line.find_last_not_of(' ') + 1) + "\n";
  }
  return out;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + (shape.size() == 1 ? ",)" : ")");
}

// Optimizer state per parameter element: Adam's two moments, SGD's momentum buffer.
int optimizer_slots(const std::string& optimizer) { return optimizer == "sgd" ? 1 : 2; }

}  // namespace

std::string sharding_report(const TrainJob& job, const DistributionSummary& summary) {
  std::ostringstream out;
  out << "mesh:         " << job.mesh->to_string() << "\n"
      << "distribution: " << job.distribution->to_string() << "\n"
      << "model:        " << job.workload->describe() << "\n"
      << "batch:        " << job.options.batch_size << " global, " << job.options.batch_size / job.data_shards
      << " per data shard (" << job.data_shards << (job.data_shards == 1 ? " shard" : " shards") << " over '"
      << job.batch_axis << "')";
  if (job.options.accumulate > 1)
    out << ", " << job.options.accumulate << " micro-batches of "
        << job.options.batch_size / job.data_shards / job.options.accumulate << " (--accumulate)";
  out << "\n";
  if (job.options.precision == "bf16")
    out << "precision:    bf16 compute and all_gathers, fp32 master weights, optimizer state and gradient "
           "reduction\n";
  out << "\n";
  std::vector<std::vector<std::string>> rows{
      {"parameter", "global shape", "layout", "placements", "local shape", "style"}};
  for (const auto& p : summary.parameters)
    rows.push_back({p.path.torch_name, shape_text(p.global_shape),
                    p.layout.to_string().substr(std::string("TensorLayout").size()), to_string(p.placements),
                    shape_text(p.local_shape), p.style_text()});
  out << table(rows);
  const double params = static_cast<double>(summary.local_bytes);
  const int slots = optimizer_slots(job.options.optimizer);
  out << "\nper device: parameters " << bytes_text(params) << " (sharded "
      << bytes_text(double(summary.sharded_bytes)) << ", replicated "
      << bytes_text(double(summary.replicated_bytes)) << "), gradients " << bytes_text(params) << ", "
      << job.options.optimizer << " state " << bytes_text(slots * params) << "; total "
      << bytes_text((2 + slots) * params) << " (one process would hold "
      << bytes_text((2 + slots) * double(summary.global_bytes)) << ")\n";
  return out.str();
}

StepPlan plan_step(const TrainJob& job, const DistributionSummary& summary, torch::nn::Module& model) {
  StepPlan plan;
  plan.micro_batches = job.options.accumulate;
  const int64_t samples = job.options.batch_size / job.data_shards / plan.micro_batches;
  plan.rows = samples * job.workload->rows_per_sample();
  auto& out = plan.collectives;
  auto append = [&out](const std::vector<PlannedCollective>& more) {
    out.insert(out.end(), more.begin(), more.end());
  };
  auto phase = [](const std::vector<PlannedCollective>& all, const std::string& which) {
    std::vector<PlannedCollective> some;
    for (const auto& c : all)
      if (c.phase == which) some.push_back(c);
    return some;
  };
  // Forward through the layers in module order, the model's own (its loss), backward in reverse.
  std::vector<std::vector<PlannedCollective>> layers;
  for (const auto& layer : summary.layers)
    layers.push_back(layer.collectives(job.workload->layer_input(layer.layer, samples)));
  const auto model_side = job.workload->model_collectives(summary, samples);
  for (const auto& layer : layers) append(phase(layer, "forward"));
  append(phase(model_side, "forward"));
  for (auto it = layers.rbegin(); it != layers.rend(); ++it) append(phase(*it, "backward"));
  append(phase(model_side, "backward"));
  // The trainer's: gradient sync, clipping, the reported loss.
  append(plan_gradient_sync(summary, *job.distribution, model));
  const int64_t devices = job.mesh->size();
  if (job.options.grad_clip > 0 && devices > 1)
    out.push_back({"step end", "all_reduce", "job", devices, 8, "gradient norm (--grad-clip)", true});
  if (job.data_shards > 1)
    out.push_back(
        {"step end", "all_reduce", job.batch_axis, job.data_shards, 4, "loss (for the report)", true});
  return plan;
}

std::map<std::string, std::pair<int64_t, int64_t>> StepPlan::by_kind() const {
  std::map<std::string, std::pair<int64_t, int64_t>> kinds;
  for (const auto& c : collectives) {
    auto& [count, bytes] = kinds[c.kind];
    count += times(c);
    bytes += times(c) * c.bytes;
  }
  return kinds;
}

std::string counts_text(const std::map<std::string, std::pair<int64_t, int64_t>>& by_kind) {
  std::string out;
  for (const auto& [kind, counted] : by_kind)
    if (counted.first > 0)
      out += (out.empty() ? "" : "; ") + kind + " " + std::to_string(counted.first) + " (" +
             std::to_string(counted.second) + " B)";
  return out.empty() ? "none" : out;
}

std::string collectives_report(const TrainJob& job, const StepPlan& plan, int rank) {
  std::vector<std::vector<std::string>> lines{{"phase", "collective", "over", "what", "bytes"}};
  double total = 0;
  int64_t count = 0;
  for (const auto& c : plan.collectives) {
    const int64_t times = plan.times(c);
    lines.push_back({times > 1 ? c.phase + " x" + std::to_string(times) : c.phase, c.kind,
                     c.axis + " (" + std::to_string(c.group_size) + ")", c.what,
                     bytes_text(double(c.bytes))});
    total += double(c.bytes) * times;
    count += times;
  }
  std::ostringstream out;
  out << "collectives per training step on rank " << rank << " (" << plan.rows << " rows of activations"
      << (plan.micro_batches > 1
              ? " per micro-batch, " + std::to_string(plan.micro_batches) + " micro-batches"
              : std::string())
      << "; bytes as comm::CollectiveCounter counts them: the tensor handed in, an all_gather's piece):\n";
  if (lines.size() == 1)
    out << "  none: every parameter is replicated and there is one data shard\n";
  else
    out << table(lines);
  out << "total per step: " << bytes_text(total) << " in " << count << " collectives\n"
      << "by kind: " << counts_text(plan.by_kind()) << "\n";
  return out.str();
}

}  // namespace kdist::tools
