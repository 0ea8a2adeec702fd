#pragma once
// What a checkpoint holds for a module and an optimizer: every tensor as this process's
// block of a global tensor, and the optimizer's scalar state.
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kdist::checkpoint {

struct Item {
  std::string name;
  at::Tensor local;  // this process's block: the module's own tensor
  std::vector<int64_t> global_shape;
  std::vector<int64_t> offset;  // of `local` within the global tensor
  bool writer = false;          // the lowest rank holding this block writes it
};

// Parameters and buffers by torch name. A tensor with a DTensor spec (as_dtensor) is its
// block of the global tensor; any other is replicated on every process.
std::vector<Item> module_items(torch::nn::Module& module);

// Optimizer tensors are named "optimizer/<param>/<field>".
std::string optimizer_tensor_name(const std::string& param, const std::string& field);
// (param, field) of such a name; std::nullopt for a module tensor's name.
std::optional<std::pair<std::string, std::string>> split_optimizer_tensor_name(const std::string& name);

struct OptimizerState {
  std::string kind;                      // "sgd", "adam", "adamw"
  std::vector<Item> tensors;             // "optimizer/<param>/<field>"
  std::map<std::string, int64_t> steps;  // Adam/AdamW step count per parameter
};

// "sgd", "adam" or "adamw"; throws std::invalid_argument for other optimizers.
std::string optimizer_kind(const torch::optim::Optimizer& optimizer);

// The optimizer's current state, sharded like each parameter.
OptimizerState optimizer_state(torch::optim::Optimizer& optimizer, torch::nn::Module& module);

// Gives every parameter named in `fields` (param name -> saved field names) a fresh state of
// the optimizer's kind, with its step count from `steps` (Adam, AdamW) and zero tensors for
// those fields, replacing any state it had; returns those tensors as items to read into.
std::vector<Item> fresh_optimizer_state(torch::optim::Optimizer& optimizer, torch::nn::Module& module,
                                        const std::map<std::string, std::set<std::string>>& fields,
                                        const std::map<std::string, int64_t>& steps);

}  // namespace kdist::checkpoint
