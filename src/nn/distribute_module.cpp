// distribute_module: plan every parameter's layout and its layer's parallel style, check the
// plan, then shard in place. Nothing is changed unless the whole plan is valid.
#include <ATen/ATen.h>
#include <kdist/nn.h>
#include <kdist/runtime.h>
#include <torch/nn/modules/container/sequential.h>

#include <cstdlib>
#include <iostream>
#include <iomanip>
#include <set>
#include <sstream>

#include "../debug_log.h"
#include "../errors.h"
#include "../text.h"

namespace kdist {
using detail::invalid;

namespace {

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

// Stock torch::nn layers directly inside a Sequential become kdist's, keeping their weights.
void replace_stock_layers(torch::nn::Module& root) {
  for (auto& item : root.named_modules("", /*include_self=*/true)) {
    auto* sequential = dynamic_cast<torch::nn::SequentialImpl*>(item.value().get());
    if (!sequential) continue;
    size_t index = 0;
    for (auto it = sequential->begin(); it != sequential->end(); ++it, ++index) {
      const std::string child = std::to_string(index);
      auto module = it->ptr();
      torch::NoGradGuard no_grad;
      if (auto* linear = dynamic_cast<torch::nn::LinearImpl*>(module.get())) {
        nn::Linear replacement(linear->options);
        replacement->weight.copy_(linear->weight);
        if (linear->options.bias()) replacement->bias.copy_(linear->bias);
        *it = torch::nn::AnyModule(replacement);
        sequential->replace_module(child, replacement);
      } else if (auto* embedding = dynamic_cast<torch::nn::EmbeddingImpl*>(module.get())) {
        nn::Embedding replacement(embedding->options);
        replacement->weight.copy_(embedding->weight);
        *it = torch::nn::AnyModule(replacement);
        sequential->replace_module(child, replacement);
      }
    }
  }
}

struct ModulePlan {
  torch::nn::Module* module;
  nn::TensorParallel* parallel = nullptr;  // kdist layers only
  nn::TensorParallel config;
  std::vector<std::pair<at::Tensor, size_t>> parameters;  // tensor, index into the summary
};

std::string what_to_use(const torch::nn::Module& module) {
  if (dynamic_cast<const torch::nn::LinearImpl*>(&module))
    return "a torch::nn::Linear outside a torch::nn::Sequential cannot run in parallel: declare "
           "it as kdist::nn::Linear";
  if (dynamic_cast<const torch::nn::EmbeddingImpl*>(&module))
    return "a torch::nn::Embedding outside a torch::nn::Sequential cannot run in parallel: "
           "declare it as kdist::nn::Embedding";
  return "kdist runs sharded parameters only in kdist::nn::Linear and kdist::nn::Embedding: "
         "replicate it";
}

struct Plan {
  DistributionSummary summary;
  std::vector<ModulePlan> modules;
};

// Every check distribute_module makes, and each parameter's shard on the process of `rank`;
// nothing is changed and no process is contacted.
Plan make_plan(torch::nn::Module& root, const Distribution& distribution, int rank) {
  const auto* model_parallel = dynamic_cast<const ModelParallel*>(&distribution);
  const auto& mesh = distribution.device_mesh();
  const auto coordinate = mesh->coordinate_of(rank);
  Plan result;
  DistributionSummary& summary = result.summary;
  std::vector<ModulePlan>& plans = result.modules;
  std::set<std::string> used_keys;

  for (auto& item : root.named_modules("", /*include_self=*/true)) {
    torch::nn::Module& module = *item.value();
    auto direct = module.named_parameters(/*recurse=*/false);
    if (direct.is_empty()) continue;
    ModulePlan plan{&module, nullptr, {}, {}};
    auto* linear = dynamic_cast<nn::LinearImpl*>(&module);
    auto* embedding = dynamic_cast<nn::EmbeddingImpl*>(&module);
    if (linear) plan.parallel = &linear->parallel;
    if (embedding) plan.parallel = &embedding->parallel;
    if (plan.parallel) plan.config.gather_output = plan.parallel->gather_output;  // the user's choice

    const std::string owner_type = keras_owner_type(module);
    for (const auto& p : direct) {
      std::string name = item.key().empty() ? p.key() : item.key() + "." + p.key();
      ParameterPath path = make_parameter_path(name, owner_type);
      auto shape = p.value().sizes().vec();
      std::optional<std::string> key;
      if (model_parallel)
        if (auto match = match_parameter(model_parallel->layout_map(), path)) key = match->key;
      if (key) used_keys.insert(*key);
      TensorLayout layout = distribution.get_parameter_layout(path, shape);
      summary.parameters.push_back(
          ParameterPlan{path, shape, layout, to_placements(layout, shape.size()), {}, "replicated", key});
      plan.parameters.emplace_back(p.value(), summary.parameters.size() - 1);
    }

    auto& entries = summary.parameters;
    auto entry_of = [&](const std::string& leaf) -> ParameterPlan* {
      for (auto& [tensor, index] : plan.parameters)
        if (entries[index].path.torch_name == (item.key().empty() ? leaf : item.key() + "." + leaf))
          return &entries[index];
      return nullptr;
    };
    if (!plan.parallel) {
      for (auto& [tensor, index] : plan.parameters)
        if (!entries[index].layout.is_fully_replicated())
          invalid("nn", "parameter '", entries[index].path.torch_name, "' of ",
                  module.name(), " has layout ", entries[index].layout.to_string(),
                  " but ", what_to_use(module));
      plans.push_back(std::move(plan));
      continue;
    }
    ParameterPlan* weight = entry_of("weight");
    int64_t mesh_dim = sharding_mesh_dim(weight->placements, weight->path.torch_name);
    if (mesh_dim >= 0) {
      if (std::holds_alternative<Partial>(weight->placements[mesh_dim]))
        invalid("nn", "parameter '", weight->path.torch_name, "' cannot be Partial");
      const int64_t d = shard_dim(weight->placements, mesh_dim);
      auto& c = plan.config;
      c.style = linear ? (d == 0 ? nn::ParallelStyle::kColumn : nn::ParallelStyle::kRow)
                       : (d == 0 ? nn::ParallelStyle::kVocab : nn::ParallelStyle::kEmbeddingDim);
      if (embedding) {
        const auto& o = embedding->options;
        if (o.padding_idx() || o.max_norm() || o.scale_grad_by_freq() || o.sparse())
          invalid("nn", "Embedding '", weight->path.torch_name, "' uses padding_idx, max_norm, "
                  "scale_grad_by_freq or sparse, which its parallel lookup does not apply: "
                  "replicate its weight or drop those options");
      }
      c.full_size = weight->global_shape[d];
      DTensorSpec spec{mesh, weight->placements, weight->global_shape};
      c.local_offset = spec.local_offset(coordinate)[d];
      weight->style = nn::to_string(c.style);
    }
    if (ParameterPlan* bias = linear ? entry_of("bias") : nullptr) {
      const bool column = plan.config.style == nn::ParallelStyle::kColumn;
      std::vector<Placement> follows(mesh->ndim(), Replicate{});
      if (column) follows[mesh_dim] = Shard{0};
      if (!bias->key && column) {
        // No entry of its own: the bias follows the weight's output features, so the
        // column-parallel layer adds this rank's piece of it.
        std::vector<AxisSpec> axes{AxisSpec(mesh->axis_names()[mesh_dim])};
        bias->layout = TensorLayout(axes, mesh);
        bias->placements = follows;
      } else if (bias->placements != follows) {
        invalid("nn", "bias '", bias->path.torch_name, "' has layout ", bias->layout.to_string(),
                " but its weight is ", nn::to_string(plan.config.style),
                column ? " parallel: shard the bias over the same axis as the weight's output "
                         "features, or give it no layout (it then follows the weight)"
                       : plan.config.style == nn::ParallelStyle::kRow
                             ? " parallel, whose bias is added once after the all_reduce: "
                               "replicate it"
                             : ": a replicated layer's bias is replicated");
      }
      bias->style = weight->style;
    }
    plans.push_back(std::move(plan));
  }

  if (model_parallel) {
    std::vector<std::string> unmatched;
    for (const auto& key : model_parallel->layout_map().keys())
      if (!used_keys.count(key)) unmatched.push_back(key);
    if (!unmatched.empty()) {
      std::string message = "LayoutMap keys " + detail::quoted_list(unmatched) +
                            " match no parameter of the module (torch or Keras name)";
      const char* allow = std::getenv("KDIST_ALLOW_UNMATCHED");
      if (allow && std::string(allow) == "1")
        std::cerr << "[kdist.nn] warning: " << message << "\n";
      else
        invalid("nn", message, "; set KDIST_ALLOW_UNMATCHED=1 to only warn");
    }
  }

  for (auto& plan : plans)
    for (auto& [tensor, index] : plan.parameters) {
      auto& entry = summary.parameters[index];
      entry.local_shape = DTensorSpec{mesh, entry.placements, entry.global_shape}.local_shape(coordinate);
      int64_t local = tensor.element_size(), global = tensor.element_size();
      for (auto s : entry.local_shape) local *= s;
      for (auto s : entry.global_shape) global *= s;
      summary.local_bytes += local;
      summary.global_bytes += global;
      (entry.layout.is_fully_replicated() ? summary.replicated_bytes : summary.sharded_bytes) += local;
    }
  return result;
}

}  // namespace

DistributionSummary plan_module(torch::nn::Module& module, const Distribution& distribution,
                                int rank) {
  return make_plan(module, distribution, rank).summary;
}

DistributionSummary distribute_module(torch::nn::Module& root, const Distribution& distribution,
                                      DistributeModuleOptions options) {
  replace_stock_layers(root);
  auto [summary, plans] = make_plan(root, distribution, process_id());
  const auto& mesh = distribution.device_mesh();
  // ---- apply: every rank in the same order ----
  for (auto& plan : plans) {
    for (auto& [tensor, index] : plan.parameters) {
      at::Tensor param = tensor;
      distribute_parameter(param, summary.parameters[index].layout);
    }
    if (plan.parallel && plan.config.style != nn::ParallelStyle::kReplicated) {
      const auto& weight = summary.parameters[plan.parameters.front().second];
      plan.config.group = comm::axis_group(*mesh, sharding_mesh_dim(weight.placements, weight.path.torch_name));
      *plan.parallel = plan.config;
    }
  }
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
                    kdist::to_string(p.placements), detail::tuple_string(p.local_shape), p.style});
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
                     ", replicated ", size(replicated_bytes), "); whole model ", size(global_bytes),
                     "\n");
  return out;
}

}  // namespace kdist
