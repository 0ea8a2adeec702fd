#include "checkpoint/state.h"

#include <kdist/dtensor.h>
#include <kdist/runtime.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include "base/errors.h"

namespace kdist::checkpoint {
namespace {

// `local` as a block of the global tensor `owner` belongs to (owner: a parameter; local: the
// parameter itself or an optimizer state tensor of the same shape).
Item block_of(const std::string& name, const at::Tensor& local, const at::Tensor& owner) {
  Item item{name, local, local.sizes().vec(), std::vector<int64_t>(local.dim(), 0), process_id() == 0};
  auto view = as_dtensor(owner);
  if (!view) return item;
  const DTensorSpec& spec = view->spec();
  const auto coordinate = spec.mesh->coordinate_of(process_id());
  item.writer = true;
  for (size_t i = 0; i < spec.placements.size(); ++i) {
    if (std::holds_alternative<Partial>(spec.placements[i]))
      kdist::detail::invalid("checkpoint", "tensor '", name, "' is Partial (", to_string(spec.placements),
                             "): reduce it before saving");
    if (std::holds_alternative<Replicate>(spec.placements[i]) && coordinate[i] != 0) item.writer = false;
  }
  if (spec.local_shape(coordinate) != local.sizes().vec())
    kdist::detail::invalid("checkpoint", "tensor '", name, "' has local shape ", local.sizes(),
                           " but its spec ", spec.to_string(), " gives this rank ",
                           at::IntArrayRef(spec.local_shape(coordinate)));
  item.global_shape = spec.global_shape;
  item.offset = spec.local_offset(coordinate);
  return item;
}

// Parameter name by TensorImpl, the key torch::optim uses for state.
std::map<void*, std::string> parameter_names(torch::nn::Module& module) {
  std::map<void*, std::string> names;
  for (const auto& p : module.named_parameters()) names[p.value().unsafeGetTensorImpl()] = p.key();
  return names;
}

std::vector<at::Tensor> optimizer_parameters(torch::optim::Optimizer& optimizer) {
  std::vector<at::Tensor> params;
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params()) params.push_back(p);
  return params;
}

const std::string& name_of(const std::map<void*, std::string>& names, const at::Tensor& p) {
  auto it = names.find(p.unsafeGetTensorImpl());
  if (it == names.end())
    kdist::detail::invalid("checkpoint", "the optimizer holds a parameter of shape ", p.sizes(),
                           " that is not a parameter of the module");
  return it->second;
}

template <typename State>
void add_adam_tensors(const State& s, const std::string& name, const at::Tensor& p, OptimizerState& out) {
  auto add = [&](const char* field, const at::Tensor& t) {
    if (t.defined()) out.tensors.push_back(block_of(optimizer_tensor_name(name, field), t, p));
  };
  add("exp_avg", s.exp_avg());
  add("exp_avg_sq", s.exp_avg_sq());
  add("max_exp_avg_sq", s.max_exp_avg_sq());
  out.steps[name] = s.step();
}

// A zero tensor shaped like the parameter, listed as an item to read `field` into.
at::Tensor zeros_to_read(const std::string& name, const std::string& field, const at::Tensor& p,
                         std::vector<Item>& items) {
  at::Tensor t = at::zeros_like(p, at::MemoryFormat::Preserve);
  items.push_back(block_of(optimizer_tensor_name(name, field), t, p));
  return t;
}

template <typename State>
std::unique_ptr<State> fresh_adam(const at::Tensor& p, const std::string& name,
                                  const std::set<std::string>& fields, int64_t step,
                                  std::vector<Item>& items) {
  auto state = std::make_unique<State>();
  state->step(step);
  for (const auto& field : fields) {
    if (field == "exp_avg")
      state->exp_avg(zeros_to_read(name, field, p, items));
    else if (field == "exp_avg_sq")
      state->exp_avg_sq(zeros_to_read(name, field, p, items));
    else if (field == "max_exp_avg_sq")
      state->max_exp_avg_sq(zeros_to_read(name, field, p, items));
    else
      kdist::detail::invalid("checkpoint", "optimizer state field '", optimizer_tensor_name(name, field),
                             "' is not one of Adam's");
  }
  return state;
}

}  // namespace

std::string optimizer_tensor_name(const std::string& param, const std::string& field) {
  return "optimizer/" + param + "/" + field;
}

std::optional<std::pair<std::string, std::string>> split_optimizer_tensor_name(const std::string& name) {
  static const std::string prefix = "optimizer/";
  const auto slash = name.rfind('/');
  if (name.rfind(prefix, 0) != 0 || slash < prefix.size()) return std::nullopt;
  return std::make_pair(name.substr(prefix.size(), slash - prefix.size()), name.substr(slash + 1));
}

std::vector<Item> module_items(torch::nn::Module& module) {
  std::vector<Item> items;
  for (const auto& p : module.named_parameters()) items.push_back(block_of(p.key(), p.value(), p.value()));
  for (const auto& b : module.named_buffers()) items.push_back(block_of(b.key(), b.value(), b.value()));
  return items;
}

std::string optimizer_kind(const torch::optim::Optimizer& optimizer) {
  if (dynamic_cast<const torch::optim::SGD*>(&optimizer)) return "sgd";
  if (dynamic_cast<const torch::optim::AdamW*>(&optimizer)) return "adamw";
  if (dynamic_cast<const torch::optim::Adam*>(&optimizer)) return "adam";
  kdist::detail::invalid("checkpoint",
                         "kdist checkpoints hold the state of SGD, Adam and AdamW; "
                         "this optimizer is none of them");
}

OptimizerState optimizer_state(torch::optim::Optimizer& optimizer, torch::nn::Module& module) {
  OptimizerState out;
  out.kind = optimizer_kind(optimizer);
  const auto names = parameter_names(module);
  for (const auto& p : optimizer_parameters(optimizer)) {
    const std::string& name = name_of(names, p);
    auto it = optimizer.state().find(p.unsafeGetTensorImpl());
    if (it == optimizer.state().end()) continue;  // never stepped: nothing to save
    if (auto* s = dynamic_cast<torch::optim::SGDParamState*>(it->second.get())) {
      if (s->momentum_buffer().defined())
        out.tensors.push_back(
            block_of(optimizer_tensor_name(name, "momentum_buffer"), s->momentum_buffer(), p));
    } else if (auto* s = dynamic_cast<torch::optim::AdamWParamState*>(it->second.get())) {
      add_adam_tensors(*s, name, p, out);
    } else if (auto* s = dynamic_cast<torch::optim::AdamParamState*>(it->second.get())) {
      add_adam_tensors(*s, name, p, out);
    }
  }
  return out;
}

std::vector<Item> fresh_optimizer_state(torch::optim::Optimizer& optimizer, torch::nn::Module& module,
                                        const std::map<std::string, std::set<std::string>>& fields,
                                        const std::map<std::string, int64_t>& steps) {
  const std::string kind = optimizer_kind(optimizer);
  const auto names = parameter_names(module);
  std::vector<Item> items;
  for (const auto& p : optimizer_parameters(optimizer)) {
    auto wanted = fields.find(name_of(names, p));
    if (wanted == fields.end()) continue;
    const std::string& name = wanted->first;
    const auto step = steps.find(name);
    const int64_t step_count = step == steps.end() ? 0 : step->second;
    std::unique_ptr<torch::optim::OptimizerParamState> state;
    if (kind == "sgd") {
      auto sgd = std::make_unique<torch::optim::SGDParamState>();
      for (const auto& field : wanted->second) {
        if (field != "momentum_buffer")
          kdist::detail::invalid("checkpoint", "optimizer state field '", optimizer_tensor_name(name, field),
                                 "' is not SGD's");
        sgd->momentum_buffer(zeros_to_read(name, field, p, items));
      }
      state = std::move(sgd);
    } else if (kind == "adamw") {
      state = fresh_adam<torch::optim::AdamWParamState>(p, name, wanted->second, step_count, items);
    } else {
      state = fresh_adam<torch::optim::AdamParamState>(p, name, wanted->second, step_count, items);
    }
    optimizer.state()[p.unsafeGetTensorImpl()] = std::move(state);
  }
  return items;
}

}  // namespace kdist::checkpoint
