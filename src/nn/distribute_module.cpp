// distribute_module: plan every parameter's layout and its layer's parallel style, check the
// plan, then shard in place. Nothing is changed unless the whole plan is valid.
#include <ATen/ATen.h>
#include <c10/util/accumulate.h>
#include <kdist/dtensor.h>
#include <kdist/nn.h>
#include <kdist/nn/batch_norm.h>
#include <kdist/runtime.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>

#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "base/errors.h"
#include "base/text.h"
#include "job/debug_log.h"
#include "nn/averaging.h"
#include "nn/batch_shard.h"
#include "nn/prefetch.h"
#include "nn/stock_layers.h"

namespace kdist {
using detail::invalid;

namespace {

LayerPlan layer_plan(std::string path, LayerKind kind) {
  LayerPlan plan;
  plan.layer = std::move(path);
  plan.kind = kind;
  return plan;
}

// The mesh dimension that shards a placement list, -1 if none; a weight sharded over two
// mesh axes is rejected.
int64_t sharding_mesh_dim(const std::vector<Placement>& placements, const std::string& name) {
  int64_t found = -1;
  for (size_t i = 0; i < placements.size(); ++i) {
    if (std::holds_alternative<Replicate>(placements[i])) continue;
    if (found >= 0)
      invalid("nn", "parameter '", name, "' is sharded over two mesh axes (", to_string(placements),
              "); kdist's layers shard a weight over one axis: replicate it over the other");
    found = static_cast<int64_t>(i);
  }
  return found;
}

int64_t shard_dim(const std::vector<Placement>& placements, int64_t mesh_dim) {
  return std::get<Shard>(placements[mesh_dim]).dim;
}

using nn::detail::StockSwaps;
using nn::detail::Units;

// What kind of layer a module is to the planner.
struct ModuleKind {
  bool linear = false;
  bool embedding = false;
  bool batch_norm = false;                 // SyncBatchNorm, or a stock one it replaces
  nn::TensorParallel* parallel = nullptr;  // kdist layers: their configuration
  const torch::nn::EmbeddingOptions* embedding_options = nullptr;  // any Embedding's
  bool gathers_output = false;                                     // a swapped stock layer's (StockSwap)
  bool can_run_parallel() const { return linear || embedding; }
};

ModuleKind layer_kind(torch::nn::Module& module, const StockSwaps& swaps) {
  ModuleKind kind;
  const auto swap = swaps.find(&module);
  if (auto* linear = dynamic_cast<nn::LinearImpl*>(&module)) {
    kind.linear = true;
    kind.parallel = &linear->parallel;
  } else if (auto* embedding = dynamic_cast<nn::EmbeddingImpl*>(&module)) {
    kind.embedding = true;
    kind.parallel = &embedding->parallel;
    kind.embedding_options = &embedding->options;
  } else if (auto* stock = dynamic_cast<torch::nn::EmbeddingImpl*>(&module)) {
    kind.embedding = swap != swaps.end();
    kind.embedding_options = &stock->options;
  } else if (dynamic_cast<nn::SyncBatchNormImpl*>(&module)) {
    kind.batch_norm = true;
  } else if (swap != swaps.end()) {
    kind.linear = dynamic_cast<torch::nn::LinearImpl*>(&module) != nullptr;
    kind.batch_norm = nn::detail::is_stock_batch_norm(module);
  }
  if (swap != swaps.end()) kind.gathers_output = swap->second.gathers_output;
  return kind;
}

struct ModulePlan {
  torch::nn::Module* module;
  std::string path;
  ModuleKind kind;
  nn::TensorParallel* parallel = nullptr;  // kdist layers only
  nn::FullyShardImpl* unit = nullptr;      // stock modules in a unit: the unit gathers them
  nn::TensorParallel config;
  std::vector<std::pair<at::Tensor, size_t>> parameters;  // tensor, index into the summary
};

// A layout as messages show it: in torch's orientation, which a Keras kernel key gave transposed.
std::string layout_text(const ParameterPlan& entry) {
  std::string text = entry.layout.to_string();
  if (entry.keras_transposed)
    text += " (in torch's (out, in) order: the Keras key '" + entry.key.value_or("") +
            "' gives the transpose, Keras kernels being (in, out))";
  return text;
}

// Why a module's parameter cannot be sharded over a model axis, and what to do instead.
// `owner` is the module that holds `module` (null for the root).
std::string what_to_use(const torch::nn::Module& module, const torch::nn::Module* owner,
                        const Distribution& distribution) {
  const std::string fsdp = "; to shard it over the batch axis '" + distribution.batch_dim_name() +
                           "' instead (FSDP), wrap it in a kdist::nn::FullyShard unit";
  if (owner && dynamic_cast<const torch::nn::MultiheadAttentionImpl*>(owner))
    return "it belongs to a torch::nn::MultiheadAttention, whose forward kdist cannot run tensor "
           "parallel: replicate it (or write the attention with kdist::nn::Linear projections)" +
           fsdp + " (FullyShardImpl(attention, forward) takes a forward of your own for its several inputs)";
  if (dynamic_cast<const torch::nn::LinearImpl*>(&module))
    return "a torch::nn::Linear outside a torch::nn::Sequential cannot run in parallel: declare "
           "it as kdist::nn::Linear";
  if (dynamic_cast<const torch::nn::EmbeddingImpl*>(&module))
    return "a torch::nn::Embedding outside a torch::nn::Sequential cannot run in parallel: "
           "declare it as kdist::nn::Embedding";
  return "kdist runs tensor parallelism only in kdist::nn::Linear and kdist::nn::Embedding: replicate it "
         "over the model axes" +
         fsdp;
}

// The module that holds each module of the tree (the root: none).
std::map<const torch::nn::Module*, const torch::nn::Module*> owners_of(torch::nn::Module& root) {
  std::map<const torch::nn::Module*, const torch::nn::Module*> owners;
  for (auto& item : root.named_modules("", /*include_self=*/true))
    for (auto& child : item.value()->children()) owners[child.get()] = item.value().get();
  return owners;
}

// The tensor dimension a placement list shards over the batch axis, -1 if none.
int64_t batch_dim_of(const ParameterPlan& entry, const Distribution& distribution) {
  const int64_t batch = distribution.device_mesh()->axis_index(distribution.batch_dim_name());
  const auto* shard = std::get_if<Shard>(&entry.placements[batch]);
  return shard ? shard->dim : -1;
}

// The placements without the batch axis: what tensor parallelism sees.
std::vector<Placement> model_placements(const ParameterPlan& entry, const Distribution& distribution) {
  auto placements = entry.placements;
  placements[distribution.device_mesh()->axis_index(distribution.batch_dim_name())] = Replicate{};
  return placements;
}

// A parameter sharded over the batch axis is gathered before use by kdist's layers only; in
// any other module each process would compute with its own piece, which is not the
// single-process model.
void check_gatherable(const ParameterPlan& entry, const Distribution& distribution,
                      const torch::nn::Module& module) {
  if (batch_dim_of(entry, distribution) < 0) return;
  invalid("nn", "parameter '", entry.path.torch_name, "' of ", module.name(), " has layout ",
          layout_text(entry), ", which shards it over '", distribution.batch_dim_name(),
          "', the batch axis of ", distribution.to_string(),
          ": only kdist::nn::Linear, "
          "kdist::nn::Embedding and kdist::nn::FullyShard units gather such parameters before use "
          "(FSDP); replicate it over '",
          distribution.batch_dim_name(),
          "', declare the layer as a "
          "kdist::nn layer, or wrap it in a kdist::nn::FullyShard unit");
}

// A FullyShard unit gathers its stock modules' parameters over the batch axis; it cannot run
// them tensor parallel.
void check_unit_parameter(ParameterPlan& entry, const Distribution& distribution,
                          const torch::nn::Module& module) {
  for (const auto& placement : model_placements(entry, distribution))
    if (!std::holds_alternative<Replicate>(placement))
      invalid("nn", "parameter '", entry.path.torch_name, "' of ", module.name(),
              " in a "
              "kdist::nn::FullyShard unit has layout ",
              layout_text(entry),
              ": a unit shards "
              "stock modules' parameters over the batch axis '",
              distribution.batch_dim_name(),
              "' only; replicate it over the other axes, or use a kdist::nn layer for tensor "
              "parallelism");
  if (batch_dim_of(entry, distribution) >= 0) entry.batch_sharded = true;
}

// One dimension cannot be gathered over the batch axis and split over another at once.
void check_batch_dim_apart(const ParameterPlan& entry, const Distribution& distribution) {
  const int64_t d = batch_dim_of(entry, distribution);
  if (d < 0) return;
  const auto placements = model_placements(entry, distribution);
  for (size_t m = 0; m < placements.size(); ++m)
    if (auto* shard = std::get_if<Shard>(&placements[m]); shard && shard->dim == d)
      invalid("nn", "parameter '", entry.path.torch_name, "' has layout ", layout_text(entry),
              ": its dimension ", d, " is sharded over both '", distribution.batch_dim_name(),
              "' (the batch axis) and '", distribution.device_mesh()->axis_names()[m],
              "'; kdist shards one over the batch axis and another over the model axis");
}

struct Plan {
  DistributionSummary summary;
  std::vector<ModulePlan> modules;
};

// The summary entries of a module's own parameters, with the layouts the distribution asks.
void plan_parameters(const std::string& prefix, torch::nn::Module& module, const Distribution& distribution,
                     ModulePlan& plan, DistributionSummary& summary, std::set<std::string>& used_keys) {
  const auto* model_parallel = dynamic_cast<const ModelParallel*>(&distribution);
  const std::string owner_type = keras_owner_type(module);
  for (const auto& p : module.named_parameters(/*recurse=*/false)) {
    std::string name = prefix.empty() ? p.key() : prefix + "." + p.key();
    ParameterPath path = make_parameter_path(name, owner_type);
    auto shape = p.value().sizes().vec();
    if (nn::detail::is_averaged(p.value()))
      invalid(
          "nn", "parameter '", name,
          "' is already averaged by a kdist::GradientSync built before "
          "distribute_module, for other shards and layers: build the GradientSync after distribute_module");
    std::optional<std::string> key;
    bool transposed = false;
    if (model_parallel)
      if (auto match = match_parameter(model_parallel->layout_map(), path)) {
        key = match->key;
        transposed = match->via_keras_name && path.keras_transposed;
      }
    if (key) used_keys.insert(*key);
    TensorLayout layout = distribution.get_parameter_layout(path, shape);
    summary.parameters.push_back(ParameterPlan{path,
                                               shape,
                                               layout,
                                               to_placements(layout, shape.size()),
                                               {},
                                               nn::ParallelStyle::kReplicated,
                                               /*batch_sharded=*/false,
                                               key,
                                               p.value().scalar_type(),
                                               p.value().requires_grad(),
                                               transposed});
    check_batch_dim_apart(summary.parameters.back(), distribution);
    plan.parameters.emplace_back(p.value(), summary.parameters.size() - 1);
  }
}

// The parallel style a layer's weight placement asks for, and this rank's piece of it.
void plan_weight(const ModuleKind& kind, ParameterPlan& weight, const Distribution& distribution,
                 const std::vector<int64_t>& coordinate, nn::TensorParallel& config) {
  const auto& mesh = distribution.device_mesh();
  const auto placements = model_placements(weight, distribution);
  const int64_t mesh_dim = sharding_mesh_dim(placements, weight.path.torch_name);
  if (mesh_dim < 0) return;
  if (std::holds_alternative<Partial>(placements[mesh_dim]))
    invalid("nn", "parameter '", weight.path.torch_name, "' cannot be Partial");
  const int64_t d = shard_dim(placements, mesh_dim);
  config.style = kind.linear ? (d == 0 ? nn::ParallelStyle::kColumn : nn::ParallelStyle::kRow)
                             : (d == 0 ? nn::ParallelStyle::kVocab : nn::ParallelStyle::kEmbeddingDim);
  if (kind.embedding) {
    const auto& o = *kind.embedding_options;
    if (o.padding_idx() || o.max_norm() || o.scale_grad_by_freq() || o.sparse())
      invalid("nn", "Embedding '", weight.path.torch_name,
              "' uses padding_idx, max_norm, "
              "scale_grad_by_freq or sparse, which its parallel lookup does not apply: "
              "replicate its weight or drop those options");
  }
  config.full_size = weight.global_shape[d];
  config.local_offset = DTensorSpec{mesh, weight.placements, weight.global_shape}.local_offset(coordinate)[d];
  weight.style = config.style;
}

// A Linear's bias: a column-parallel layer's follows its weight's output features (with no
// entry of its own it is sharded to match); any other layer's is replicated over every axis
// but the batch axis, over which it may be sharded (FSDP) like any parameter.
void plan_bias(ParameterPlan& bias, const ParameterPlan& weight, const Distribution& distribution,
               nn::ParallelStyle style) {
  const auto& mesh = distribution.device_mesh();
  const bool column = style == nn::ParallelStyle::kColumn;
  const int64_t mesh_dim = sharding_mesh_dim(model_placements(weight, distribution), weight.path.torch_name);
  std::vector<Placement> follows(mesh->ndim(), Replicate{});
  if (column) follows[mesh_dim] = Shard{0};
  if (!bias.key && column) {
    std::vector<AxisSpec> axes{AxisSpec(mesh->axis_names()[mesh_dim])};
    bias.layout = TensorLayout(axes, mesh);
    bias.placements = follows;
  } else if (model_placements(bias, distribution) != follows) {
    invalid("nn", "bias '", bias.path.torch_name, "' has layout ", layout_text(bias), " but its weight is ",
            nn::to_string(style),
            column ? " parallel: shard the bias over the same axis as the weight's output "
                     "features, or give it no layout (it then follows the weight)"
            : style == nn::ParallelStyle::kRow ? " parallel, whose bias is added once after the all_reduce: "
                                                 "replicate it"
                                               : ": a replicated layer's bias is replicated");
  }
  bias.style = weight.style;
}

void check_every_key_used(const Distribution& distribution, const std::set<std::string>& used_keys) {
  const auto* model_parallel = dynamic_cast<const ModelParallel*>(&distribution);
  if (!model_parallel) return;
  std::vector<std::string> unmatched;
  for (const auto& key : model_parallel->layout_map().keys())
    if (!used_keys.count(key)) unmatched.push_back(key);
  if (unmatched.empty()) return;
  std::string message = "LayoutMap keys " + detail::quoted_list(unmatched) +
                        " match no parameter of the module (torch or Keras name)";
  const char* allow = std::getenv("KDIST_ALLOW_UNMATCHED");
  if (allow && std::string(allow) == "1")
    std::cerr << "[kdist.nn] warning: " << message << "\n";
  else
    invalid("nn", message, "; set KDIST_ALLOW_UNMATCHED=1 to only warn");
}

void count_bytes(const Plan& plan, const DeviceMeshPtr& mesh, const std::vector<int64_t>& coordinate,
                 DistributionSummary& summary) {
  for (const auto& module : plan.modules)
    for (const auto& [tensor, index] : module.parameters) {
      auto& entry = summary.parameters[index];
      entry.local_shape = DTensorSpec{mesh, entry.placements, entry.global_shape}.local_shape(coordinate);
      int64_t local = tensor.element_size(), global = tensor.element_size();
      for (auto s : entry.local_shape) local *= s;
      for (auto s : entry.global_shape) global *= s;
      summary.local_bytes += local;
      summary.global_bytes += global;
      (entry.layout.is_fully_replicated() ? summary.replicated_bytes : summary.sharded_bytes) += local;
    }
}

std::string leaf_name(const std::string& torch_name) {
  return torch_name.substr(torch_name.rfind('.') + 1);  // npos + 1 == 0: the whole name
}

// A parameter sharded over the batch axis, as its layer or unit gathers it: in param_dtype and
// reduced in reduce_dtype under mixed precision (kdist layers only; units compute as their
// block does).
LayerPlan::Gathered gathered_parameter(const ParameterPlan& entry, const Distribution& distribution,
                                       const std::optional<nn::MixedPrecision>& precision, bool again) {
  const int64_t dim = batch_dim_of(entry, distribution);
  auto whole = entry.local_shape;
  whole[dim] = entry.global_shape[dim];
  const int64_t own = c10::elementSize(entry.dtype);
  const int64_t gathered_in = precision ? c10::elementSize(precision->param_dtype) : own;
  const int64_t reduced_in = precision ? c10::elementSize(precision->reduce_dtype) : own;
  const auto& batch = distribution.batch_dim_name();
  return {entry.path.torch_name,
          batch,
          distribution.device_mesh()->axis_size(batch),
          c10::multiply_integers(entry.local_shape) * gathered_in,
          c10::multiply_integers(whole) * reduced_in,
          again};
}

// Whether BatchNorm must be SyncBatchNorm: the batch axis has several processes and the
// statistics are the global batch's.
bool syncs_batch_norm(const Distribution& distribution, const DistributeModuleOptions& options) {
  return distribution.device_mesh()->axis_size(distribution.batch_dim_name()) > 1 &&
         options.batch_statistics == nn::BatchStatistics::kGlobalBatch;
}

// A SyncBatchNorm's plan: its statistics summed over the batch axis when it syncs them.
LayerPlan batch_norm_plan(const ModulePlan& module, const Distribution& distribution,
                          const std::vector<int64_t>& coordinate, const DistributeModuleOptions& options) {
  LayerPlan layer = layer_plan(module.path, LayerKind::kSyncBatchNorm);
  const auto& mesh = distribution.device_mesh();
  const auto& batch = distribution.batch_dim_name();
  if (auto* bn = dynamic_cast<nn::SyncBatchNormImpl*>(module.module))
    layer.in_features = bn->options.num_features();
  else if (auto* bn1 = dynamic_cast<torch::nn::BatchNorm1dImpl*>(module.module))
    layer.in_features = bn1->options.num_features();
  else if (auto* bn2 = dynamic_cast<torch::nn::BatchNorm2dImpl*>(module.module))
    layer.in_features = bn2->options.num_features();
  else if (auto* bn3 = dynamic_cast<torch::nn::BatchNorm3dImpl*>(module.module))
    layer.in_features = bn3->options.num_features();
  layer.out_features = layer.in_features;
  if (syncs_batch_norm(distribution, options)) {
    layer.axis = batch;
    layer.axis_size = mesh->axis_size(batch);
    layer.axis_rank = coordinate[mesh->axis_index(batch)];
  }
  layer.activation_bytes = 4;  // statistics in fp32, or the parameters' wider dtype
  for (const auto& [tensor, index] : module.parameters)
    layer.activation_bytes = std::max<int64_t>(layer.activation_bytes, tensor.element_size());
  return layer;
}

// Each kdist layer's plan (and one per FullyShard unit, for the parameters it gathers) from
// what make_plan decided: style, axis and this rank's shards.
void plan_layers(Plan& plan, torch::nn::Module& root, const Distribution& distribution,
                 const std::vector<int64_t>& coordinate, const DistributeModuleOptions& options) {
  const auto& mesh = distribution.device_mesh();
  std::map<const nn::FullyShardImpl*, size_t> unit_layer;
  std::map<const torch::nn::Module*, std::string> paths;
  for (auto& item : root.named_modules("", /*include_self=*/true)) paths[item.value().get()] = item.key();
  auto& entries = plan.summary.parameters;
  for (const auto& module : plan.modules) {
    if (module.unit) {
      auto [it, added] = unit_layer.emplace(module.unit, plan.summary.layers.size());
      if (added) plan.summary.layers.push_back(layer_plan(paths[module.unit], LayerKind::kFullyShard));
      for (const auto& [tensor, index] : module.parameters)
        if (batch_dim_of(entries[index], distribution) >= 0)
          plan.summary.layers[it->second].gathered.push_back(
              gathered_parameter(entries[index], distribution, std::nullopt, options.reshard_after_forward));
      continue;
    }
    if (module.kind.batch_norm) {
      plan.summary.layers.push_back(batch_norm_plan(module, distribution, coordinate, options));
      continue;
    }
    if (!module.kind.can_run_parallel()) continue;
    LayerPlan layer =
        layer_plan(module.path, module.kind.linear ? LayerKind::kLinear : LayerKind::kEmbedding);
    const ParameterPlan* weight = nullptr;
    for (const auto& [tensor, index] : module.parameters)
      if (leaf_name(entries[index].path.torch_name) == "weight")
        weight = &entries[index];
      else if (leaf_name(entries[index].path.torch_name) == "bias")
        layer.bias = true;
    layer.style = module.config.style;
    layer.gather_output = module.config.gather_output;
    if (layer.style != nn::ParallelStyle::kReplicated) {
      const int64_t mesh_dim =
          sharding_mesh_dim(model_placements(*weight, distribution), weight->path.torch_name);
      layer.axis = mesh->axis_names()[mesh_dim];
      layer.axis_size = mesh->shape()[mesh_dim];
      layer.axis_rank = coordinate[mesh_dim];
    }
    const bool linear = module.kind.linear;
    layer.in_features = weight->global_shape[linear ? 1 : 0];
    layer.out_features = weight->global_shape[linear ? 0 : 1];
    layer.sequence_parallel =
        options.sequence_parallel_dim.has_value() && linear && layer.style != nn::ParallelStyle::kReplicated;
    layer.activation_bytes = options.mixed_precision ? c10::elementSize(options.mixed_precision->param_dtype)
                                                     : c10::elementSize(weight->dtype);
    for (const auto& [tensor, index] : module.parameters) {
      const auto& entry = entries[index];
      if (batch_dim_of(entry, distribution) < 0) continue;
      const bool again =
          linear && leaf_name(entry.path.torch_name) == "weight" && options.reshard_after_forward;
      layer.gathered.push_back(gathered_parameter(entry, distribution, options.mixed_precision, again));
    }
    plan.summary.layers.push_back(std::move(layer));
  }
}

// Computations over rows that replicas over the batch axis would each do on their own rows.
void check_rowwise(const ModulePlan& plan, const Distribution& distribution,
                   const DistributeModuleOptions& options) {
  const auto& batch = distribution.batch_dim_name();
  const int64_t processes = distribution.device_mesh()->axis_size(batch);
  if (processes == 1) return;
  const auto* embedding = plan.kind.embedding_options;
  const std::string name = plan.path.empty() ? "the module" : "'" + plan.path + "'";
  if (embedding && embedding->max_norm())
    invalid(
        "nn", "Embedding '", plan.path.empty() ? "weight" : plan.path + ".weight",
        "' has max_norm=", *embedding->max_norm(),
        ", which renormalises in "
        "place the rows each process looks up: over the batch axis '",
        batch, "' (", processes,
        " processes) the replicas would renormalise different rows and drift apart (and a weight "
        "sharded over it would renormalise only its gathered copy). Drop max_norm (renormalise the "
        "rows yourself after each optimizer step, identically on every process), or train on one process");
  if (syncs_batch_norm(distribution, options) && nn::detail::is_stock_batch_norm(*plan.module) &&
      !plan.kind.batch_norm)
    invalid("nn", name, " is a stock ", plan.module->name(),
            " that kdist cannot replace (only a "
            "torch::nn::Sequential's children are): over the batch axis '",
            batch, "' (", processes,
            " processes) it would normalise with each process's rows, unlike one process. Declare it as "
            "kdist::nn::SyncBatchNorm, or set DistributeModuleOptions::batch_statistics to "
            "kdist::nn::BatchStatistics::kPerReplica (DDP's behaviour, which differs from one process)");
}

// The checks and plan of one module's own parameters.
void plan_module_parameters(ModulePlan& plan, const Distribution& distribution,
                            const std::vector<int64_t>& coordinate, const torch::nn::Module* owner,
                            DistributionSummary& summary) {
  auto& entries = summary.parameters;
  torch::nn::Module& module = *plan.module;
  auto entry_of = [&](const std::string& leaf) -> ParameterPlan* {
    const std::string name = plan.path.empty() ? leaf : plan.path + "." + leaf;
    for (auto& [tensor, index] : plan.parameters)
      if (entries[index].path.torch_name == name) return &entries[index];
    return nullptr;
  };
  if (plan.unit) {
    for (auto& [tensor, index] : plan.parameters) check_unit_parameter(entries[index], distribution, module);
  } else if (!plan.kind.can_run_parallel()) {
    for (auto& [tensor, index] : plan.parameters) check_gatherable(entries[index], distribution, module);
    for (auto& [tensor, index] : plan.parameters)
      if (!entries[index].layout.is_fully_replicated())
        invalid("nn", "parameter '", entries[index].path.torch_name, "' of ", module.name(), " has layout ",
                layout_text(entries[index]), " but ", what_to_use(module, owner, distribution));
  } else {
    ParameterPlan* weight = entry_of("weight");
    plan_weight(plan.kind, *weight, distribution, coordinate, plan.config);
    if (ParameterPlan* bias = plan.kind.linear ? entry_of("bias") : nullptr)
      plan_bias(*bias, *weight, distribution, plan.config.style);
    for (auto& [tensor, index] : plan.parameters)
      if (batch_dim_of(entries[index], distribution) >= 0) entries[index].batch_sharded = true;
  }
}

// Every check distribute_module makes, and each parameter's shard on the process of `rank`;
// nothing is changed and no process is contacted. Stock layers that distribute_module would
// replace are planned as the kdist layers they become.
Plan make_plan(torch::nn::Module& root, const Distribution& distribution, int rank,
               const DistributeModuleOptions& options) {
  const auto& mesh = distribution.device_mesh();
  const auto coordinate = mesh->coordinate_of(rank);
  const Units units = nn::detail::units_of(root);
  const auto swaps =
      nn::detail::replaceable_stock_layers(root, units, syncs_batch_norm(distribution, options));
  const auto owners = owners_of(root);
  Plan result;
  std::set<std::string> used_keys;

  for (auto& item : root.named_modules("", /*include_self=*/true)) {
    torch::nn::Module& module = *item.value();
    const ModuleKind kind = layer_kind(module, swaps);
    const bool normalises = kind.batch_norm || nn::detail::is_stock_batch_norm(module);
    if (module.named_parameters(/*recurse=*/false).is_empty() && !normalises) continue;
    ModulePlan plan{&module, item.key(), kind, kind.parallel, nullptr, {}, {}};
    if (auto unit = units.find(&module); unit != units.end() && !kind.can_run_parallel())
      plan.unit = unit->second;
    // The user's choice for kdist layers; a swapped stock layer gathers the Sequential's output.
    plan.config.gather_output = kind.parallel ? kind.parallel->gather_output : kind.gathers_output;
    plan_parameters(item.key(), module, distribution, plan, result.summary, used_keys);
    check_rowwise(plan, distribution, options);
    const auto owner = owners.find(&module);
    plan_module_parameters(plan, distribution, coordinate, owner == owners.end() ? nullptr : owner->second,
                           result.summary);
    result.modules.push_back(std::move(plan));
  }
  check_every_key_used(distribution, used_keys);
  count_bytes(result, mesh, coordinate, result.summary);
  plan_layers(result, root, distribution, coordinate, options);
  return result;
}

}  // namespace

DistributionSummary plan_module(torch::nn::Module& module, const Distribution& distribution, int rank,
                                const DistributeModuleOptions& options) {
  return make_plan(module, distribution, rank, options).summary;
}

namespace {
// The prefetch chain of the kdist layers' batch-sharded weights, in module order (the order
// plans are made in), which is the order a sequential model runs them.
void link_prefetch(const std::vector<ModulePlan>& plans, const DistributeModuleOptions& options) {
  std::vector<nn::detail::PrefetchEntry> order;
  for (const auto& plan : plans) {
    auto* batch = plan.unit ? nullptr : nn::batch_sharding_of(*plan.module);
    if (!batch || !batch->weight) continue;
    if (auto* linear = dynamic_cast<nn::LinearImpl*>(plan.module))
      order.push_back({linear->weight, batch->weight, options.reshard_after_forward});
    else if (auto* embedding = dynamic_cast<nn::EmbeddingImpl*>(plan.module))
      order.push_back({embedding->weight, batch->weight, false});
  }
  nn::detail::link_prefetch(order);
}

// One SequenceParallel per model-axis group, shared by its column- and row-parallel Linears.
void link_sequence_parallel(const std::vector<ModulePlan>& plans, int64_t dim) {
  std::map<const comm::Group*, nn::SequenceParallelPtr> by_group;
  for (const auto& plan : plans) {
    auto* linear = dynamic_cast<nn::LinearImpl*>(plan.module);
    if (!linear) continue;
    auto& parallel = linear->parallel;
    parallel.sequence = nullptr;
    if (parallel.style != nn::ParallelStyle::kColumn && parallel.style != nn::ParallelStyle::kRow) continue;
    auto& shared = by_group[parallel.group.get()];
    if (!shared)
      shared = std::make_shared<nn::SequenceParallel>(nn::SequenceParallel{parallel.group, dim, 0, nullptr});
    parallel.sequence = shared;
  }
}
}  // namespace

namespace {
// Shards one module's parameters, configures its layer or unit, and puts the averaging check on
// the gradients that GradientSync must average.
void apply_module_plan(ModulePlan& plan, const DistributionSummary& summary, const Distribution& distribution,
                       const DistributeModuleOptions& options) {
  const auto& mesh = distribution.device_mesh();
  const auto& batch_axis = distribution.batch_dim_name();
  for (auto& [tensor, index] : plan.parameters) {
    at::Tensor param = tensor;
    distribute_parameter(param, summary.parameters[index].layout);
  }
  if (plan.parallel) {
    if (plan.config.style != nn::ParallelStyle::kReplicated) {
      const auto& weight = summary.parameters[plan.parameters.front().second];
      plan.config.group = comm::axis_group(
          *mesh, sharding_mesh_dim(model_placements(weight, distribution), weight.path.torch_name));
    }
    *plan.parallel = plan.config;
  }
  if (auto* bn = dynamic_cast<nn::SyncBatchNormImpl*>(plan.module))
    bn->group = syncs_batch_norm(distribution, options) ? comm::axis_group(*mesh, batch_axis) : nullptr;
  auto* batch = nn::batch_sharding_of(*plan.module);
  if (batch) *batch = {};
  for (const auto& [tensor, index] : plan.parameters) {
    const auto& entry = summary.parameters[index];
    const int64_t dim = batch_dim_of(entry, distribution);
    if (dim < 0) {
      if (options.check_gradient_sync && entry.requires_grad && mesh->axis_size(batch_axis) > 1)
        nn::detail::require_averaging(tensor, entry.path.torch_name, mesh, batch_axis);
      continue;
    }
    auto shard = std::make_shared<nn::BatchShard>();
    shard->group = comm::axis_group(*mesh, batch_axis);
    shard->dim = dim;
    shard->full_size = entry.global_shape[dim];
    shard->reshard_after_forward = options.reshard_after_forward;
    if (!plan.unit) shard->precision = options.mixed_precision;  // units compute as their block does
    if (plan.unit)
      plan.unit->shard_parameter(tensor, entry.path.torch_name, shard);
    else
      (leaf_name(entry.path.torch_name) == "bias" ? batch->bias : batch->weight) = shard;
  }
}
}  // namespace

DistributionSummary distribute_module(torch::nn::Module& root, const Distribution& distribution,
                                      DistributeModuleOptions options) {
  Plan planned = make_plan(root, distribution, process_id(), options);  // every check, before any change
  // The plan points at the layers it configures: after a replacement, at the new ones.
  if (nn::detail::replace_stock_layers(root, syncs_batch_norm(distribution, options)))
    planned = make_plan(root, distribution, process_id(), options);
  auto& [summary, plans] = planned;
  for (auto& [module, unit] : nn::detail::units_of(root)) unit->clear_shards();
  for (auto& plan : plans)
    apply_module_plan(plan, summary, distribution, options);  // every rank in the same order
  if (options.mixed_precision) nn::set_mixed_precision(root, *options.mixed_precision);
  if (options.prefetch) link_prefetch(plans, options);
  if (options.sequence_parallel_dim) link_sequence_parallel(plans, *options.sequence_parallel_dim);
  detail::debug_log("distribute_module:\n" + summary.to_string());
  if (options.print_summary && process_id() == 0) std::cout << summary.to_string() << std::flush;
  return summary;
}

std::string DistributionSummary::to_string() const {
  std::vector<std::vector<std::string>> rows{
      {"parameter", "global shape", "layout", "placements", "local shape", "style"}};
  for (const auto& p : parameters) {
    std::string layout = p.layout.to_string().substr(std::string("TensorLayout").size());
    rows.push_back({p.path.torch_name, detail::tuple_string(p.global_shape), layout,
                    kdist::to_string(p.placements), detail::tuple_string(p.local_shape), p.style_text()});
  }
  std::vector<size_t> width(rows.front().size(), 0);
  for (const auto& row : rows)
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  std::string out;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i)
      out += row[i] + (i + 1 < row.size() ? std::string(width[i] - row[i].size() + 2, ' ') : "");
    out += "\n";
  }
  auto size = [](int64_t bytes) {
    std::ostringstream text;
    text << std::fixed << std::setprecision(2);
    if (bytes >= 1 << 20)
      text << bytes / 1048576.0 << " MiB";
    else
      text << bytes / 1024.0 << " KiB";
    return text.str();
  };
  out += detail::cat("parameters per device: ", size(local_bytes), " (sharded ", size(sharded_bytes),
                     ", replicated ", size(replicated_bytes), "); whole model ", size(global_bytes), "\n");
  return out;
}

}  // namespace kdist
