#include "nn/stock_layers.h"

#include <kdist/nn/batch_norm.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>

namespace kdist::nn::detail {
namespace {

template <typename Impl>
bool is_a(const torch::nn::Module* m) {
  return dynamic_cast<const Impl*>(m) != nullptr;
}

bool is_stock_dense(const torch::nn::Module* m) {
  return is_a<torch::nn::LinearImpl>(m) || is_a<torch::nn::EmbeddingImpl>(m);
}

// kdist's layer in place of `module`, or null where it is not one of the swapped kinds.
std::shared_ptr<torch::nn::Module> swapped(torch::nn::Module& module, const StockSwap& swap,
                                           torch::nn::AnyModule& replacement) {
  auto with = [&](auto layer) -> std::shared_ptr<torch::nn::Module> {
    replacement = torch::nn::AnyModule(layer);
    return layer.ptr();
  };
  if (auto* linear = dynamic_cast<torch::nn::LinearImpl*>(&module)) {
    nn::Linear layer(std::make_shared<LinearImpl>(*linear));
    layer->parallel.gather_output = swap.gathers_output;
    return with(layer);
  }
  if (auto* embedding = dynamic_cast<torch::nn::EmbeddingImpl*>(&module)) {
    nn::Embedding layer(std::make_shared<EmbeddingImpl>(*embedding));
    layer->parallel.gather_output = swap.gathers_output;
    return with(layer);
  }
  if (auto* bn = dynamic_cast<torch::nn::BatchNorm1dImpl*>(&module))
    return with(SyncBatchNorm(std::make_shared<SyncBatchNormImpl>(*bn)));
  if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(&module))
    return with(SyncBatchNorm(std::make_shared<SyncBatchNormImpl>(*bn)));
  if (auto* bn = dynamic_cast<torch::nn::BatchNorm3dImpl*>(&module))
    return with(SyncBatchNorm(std::make_shared<SyncBatchNormImpl>(*bn)));
  return nullptr;
}

}  // namespace

bool is_stock_batch_norm(const torch::nn::Module& module) {
  return is_a<torch::nn::BatchNorm1dImpl>(&module) || is_a<torch::nn::BatchNorm2dImpl>(&module) ||
         is_a<torch::nn::BatchNorm3dImpl>(&module);
}

Units units_of(torch::nn::Module& root) {
  Units units;
  for (auto& item : root.named_modules("", /*include_self=*/true))
    if (auto* unit = dynamic_cast<FullyShardImpl*>(item.value().get()))
      for (auto& inside : unit->modules(/*include_self=*/true)) units[inside.get()] = unit;
  return units;
}

StockSwaps replaceable_stock_layers(torch::nn::Module& root, const Units& units, bool batch_norm) {
  StockSwaps found;
  for (auto& item : root.named_modules("", /*include_self=*/true)) {
    auto* sequential = dynamic_cast<torch::nn::SequentialImpl*>(item.value().get());
    if (!sequential) continue;
    const bool in_unit = units.count(sequential) > 0;
    bool parameters_after = false;  // walking back from the end
    for (size_t i = sequential->size(); i-- > 0;) {
      const torch::nn::Module* module = sequential->ptr(i).get();
      if (batch_norm && is_stock_batch_norm(*module)) found[module] = {};
      if (!in_unit && is_stock_dense(module)) found[module] = {!parameters_after};
      parameters_after = parameters_after || !module->parameters().empty();
    }
  }
  return found;
}

bool replace_stock_layers(torch::nn::Module& root, bool batch_norm) {
  const auto swaps = replaceable_stock_layers(root, units_of(root), batch_norm);
  bool replaced = false;
  for (auto& item : root.named_modules("", /*include_self=*/true)) {
    auto* sequential = dynamic_cast<torch::nn::SequentialImpl*>(item.value().get());
    if (!sequential) continue;
    size_t index = 0;
    for (auto it = sequential->begin(); it != sequential->end(); ++it, ++index) {
      auto swap = swaps.find(it->ptr().get());
      if (swap == swaps.end()) continue;
      torch::nn::AnyModule replacement;
      if (auto layer = swapped(*it->ptr(), swap->second, replacement)) {
        *it = std::move(replacement);
        sequential->replace_module(std::to_string(index), layer);
        replaced = true;
      }
    }
  }
  return replaced;
}

}  // namespace kdist::nn::detail
