#include "plan.h"

#include <iomanip>
#include <map>
#include <set>
#include <sstream>

namespace kdist::tools {
namespace {

std::string bytes_text(double bytes) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(bytes < 1024 ? 0 : 2);
  if (bytes >= 1 << 30) out << bytes / (1 << 30) << " GiB";
  else if (bytes >= 1 << 20) out << bytes / (1 << 20) << " MiB";
  else if (bytes >= 1024) out << bytes / 1024 << " KiB";
  else out << bytes << " B";
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

// The mesh axis other than the batch axis that a placement list shards over, or "".
std::string model_axis(const DeviceMesh& mesh, const std::vector<Placement>& placements,
                       const std::string& batch_axis) {
  for (size_t i = 0; i < placements.size(); ++i)
    if (!std::holds_alternative<Replicate>(placements[i]) && mesh.axis_names()[i] != batch_axis)
      return mesh.axis_names()[i];
  return "";
}

// The tensor-parallel style of a summary's style ("column+fsdp" -> "column", "fsdp" -> "replicated").
std::string tensor_parallel_style(const std::string& style) {
  if (style == "fsdp") return "replicated";
  const auto plus = style.find("+fsdp");
  return plus == std::string::npos ? style : style.substr(0, plus);
}

double elements(const std::vector<int64_t>& shape) {
  double n = 1;
  for (auto s : shape) n *= s;
  return n;
}

}  // namespace

std::string sharding_report(const TrainJob& job, const DistributionSummary& summary) {
  std::ostringstream out;
  out << "mesh:         " << job.mesh->to_string() << "\n"
      << "distribution: " << job.distribution->to_string() << "\n"
      << "model:        " << job.workload->describe() << "\n"
      << "batch:        " << job.options.batch_size << " global, " << job.options.batch_size / job.data_shards
      << " per data shard (" << job.data_shards << (job.data_shards == 1 ? " shard" : " shards")
      << " over '" << job.batch_axis << "')";
  if (job.options.accumulate > 1)
    out << ", " << job.options.accumulate << " micro-batches of "
        << job.options.batch_size / job.data_shards / job.options.accumulate << " (--accumulate)";
  out << "\n";
  if (job.options.precision == "bf16")
    out << "precision:    bf16 compute and all_gathers, fp32 master weights, optimizer state and gradient reduction\n";
  out << "\n";
  std::vector<std::vector<std::string>> rows{
      {"parameter", "global shape", "layout", "placements", "local shape", "style"}};
  for (const auto& p : summary.parameters)
    rows.push_back({p.path.torch_name, shape_text(p.global_shape),
                    p.layout.to_string().substr(std::string("TensorLayout").size()),
                    to_string(p.placements), shape_text(p.local_shape), p.style});
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

std::string collectives_report(const TrainJob& job, const DistributionSummary& summary,
                               torch::nn::Module& model) {
  const DeviceMesh& mesh = *job.mesh;
  // Rows of one micro-batch: its forward and backward collectives run once per micro-batch,
  // the gradient reductions once per step (the micro-batches before the last under no_sync).
  const int64_t micro_batches = job.options.accumulate;
  const int64_t rows = job.options.batch_size / job.data_shards / micro_batches * job.workload->rows_per_sample();
  std::map<std::string, std::shared_ptr<torch::nn::Module>> modules;
  for (const auto& item : model.named_modules()) modules[item.key()] = item.value();

  std::vector<std::vector<std::string>> lines{{"phase", "collective", "over", "layer", "bytes"}};
  double total = 0;
  int64_t count = 0;
  auto add_times = [&](const std::string& phase, const std::string& kind, const std::string& axis,
                       const std::string& layer, double bytes, int64_t times) {
    lines.push_back({times > 1 ? phase + " x" + std::to_string(times) : phase, kind,
                     axis + " (" + std::to_string(mesh.axis_size(axis)) + ")", layer, bytes_text(bytes)});
    total += bytes * times;
    count += times;
  };
  auto add = [&](const std::string& phase, const std::string& kind, const std::string& axis,
                 const std::string& layer, double bytes) { add_times(phase, kind, axis, layer, bytes, micro_batches); };
  auto add_once = [&](const std::string& phase, const std::string& kind, const std::string& axis,
                      const std::string& layer, double bytes) { add_times(phase, kind, axis, layer, bytes, 1); };
  const int64_t batch_dim = mesh.axis_index(job.batch_axis);
  const double element = 4;
  // Sequence parallelism: column layers with one parent (q, k, v of one attention) share one
  // gather of the sequence, as kdist's cache does for layers taking the same input.
  const bool sequence = job.options.sequence_parallel;
  std::set<std::string> gathered_inputs;
  for (const auto& p : summary.parameters) {
    const auto& name = p.path.torch_name;
    const auto dot = name.rfind('.');
    const std::string layer = dot == std::string::npos ? "" : name.substr(0, dot);
    const std::string leaf = dot == std::string::npos ? name : name.substr(dot + 1);
    bool gather = false, linear = false;
    if (auto it = modules.find(layer); it != modules.end()) {
      if (auto* l = dynamic_cast<nn::LinearImpl*>(it->second.get())) gather = l->parallel.gather_output, linear = true;
      if (auto* embedding = dynamic_cast<nn::EmbeddingImpl*>(it->second.get())) gather = embedding->parallel.gather_output;
    }
    // Sharded over the batch axis (FSDP): gathered before use (and again for a Linear's
    // weight in backward, as its gathered copy was released), gradient reduce-scattered.
    if (!std::holds_alternative<Replicate>(p.placements[batch_dim])) {
      const double shard = elements(p.local_shape) * element;
      const double gathered = shard * mesh.axis_size(job.batch_axis);
      add("forward", "all_gather", job.batch_axis, name, shard);
      if (linear && leaf == "weight") add("backward", "all_gather", job.batch_axis, name + " (again)", shard);
      add_once("backward", "reduce_scatter", job.batch_axis, name + " (gradient, averaged)", gathered);
    }
    const std::string style = tensor_parallel_style(p.style);
    if (sequence && p.path.owner_type == "LayerNorm")  // run on pieces of the sequence
      add("backward", "all_reduce", "model", name + " (gradient, summed over pieces)", elements(p.local_shape) * element);
    if (sequence && style == "row" && leaf == "bias")
      add("backward", "all_reduce", "model", name + " (gradient, summed over pieces)", elements(p.local_shape) * element);
    if (style == "replicated" || leaf != "weight") continue;
    const std::string axis = model_axis(mesh, p.placements, job.batch_axis);
    if (style == "column" && sequence) {  // weight (out, in)
      const auto parent_dot = layer.rfind('.');
      if (gathered_inputs.insert(parent_dot == std::string::npos ? "" : layer.substr(0, parent_dot)).second) {
        const double input = rows * p.global_shape[1] * element;
        add("forward", "all_gather", axis, layer + " (the sequence, shared with its siblings)", input);
        add("backward", "reduce_scatter", axis, layer + " (input gradient, summed)", input);
      }
      if (gather) add("forward", "all_gather", axis, layer, rows * p.global_shape[0] * element);
    } else if (style == "column") {
      if (gather) add("forward", "all_gather", axis, layer, rows * p.global_shape[0] * element);
      add("backward", "all_reduce", axis, layer + " (input gradient)", rows * p.global_shape[1] * element);
    } else if (style == "row" && sequence) {
      add("forward", "reduce_scatter", axis, layer + " (to pieces of the sequence)", rows * p.global_shape[0] * element);
      add("backward", "all_gather", axis, layer + " (output gradient)", rows * p.global_shape[0] * element);
    } else if (style == "row") {
      add("forward", "all_reduce", axis, layer, rows * p.global_shape[0] * element);
    } else if (style == "vocab") {
      add("forward", "all_reduce", axis, layer, rows * p.global_shape[1] * element);
    } else if (style == "embedding-dim" && gather) {
      add("forward", "all_gather", axis, layer, rows * p.global_shape[1] * element);
    }
    if (sequence && name == "head.weight")  // scatter_sequence after the embeddings
      add("backward", "all_gather", axis, "embeddings (gradient of the residual stream)", rows * p.global_shape[1] * element);
    if (style == "column" && !gather && job.options.loss_parallel && name == "head.weight") {
      add("forward", "all_reduce", axis, "loss (max of each row's logits)", rows * element);
      add("forward", "all_reduce", axis, "loss (sum of exp, target logit)", 2 * rows * element);
    }
  }
  if (job.data_shards > 1) {
    double synced = 0;
    for (const auto& p : summary.parameters)
      if (std::holds_alternative<Replicate>(p.placements[batch_dim])) {
        double bytes = 4;
        for (auto s : p.local_shape) bytes *= s;
        synced += bytes;
      }
    add_once("backward", "all_reduce", job.batch_axis, "gradients (bucketed, averaged)", synced);
    add_once("step end", "all_reduce", job.batch_axis, "loss (for the report)", 4);
  }
  std::ostringstream out;
  out << "collectives per training step on one device (" << rows << " rows of activations"
      << (micro_batches > 1 ? " per micro-batch, " + std::to_string(micro_batches) + " micro-batches" : std::string())
      << "):\n";
  if (lines.size() == 1) out << "  none: every parameter is replicated and there is one data shard\n";
  else out << table(lines);
  out << "total per step: " << bytes_text(total) << " in " << count << " collectives\n";
  return out.str();
}

}  // namespace kdist::tools
