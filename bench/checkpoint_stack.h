#pragma once
// The model of the checkpoint benchmarks: four Linear(2048, 2048) layers, alternately column
// and row parallel over a 1-D "model" mesh of every process (64 MiB of parameters).
#include <kdist/kdist.h>
#include <torch/nn/module.h>

namespace kdist::bench {

struct CheckpointStackImpl : torch::nn::Module {
  CheckpointStackImpl() {
    for (int i = 0; i < 4; ++i)
      layers.push_back(register_module("l" + std::to_string(i), nn::Linear(2048, 2048)));
  }
  at::Tensor forward(at::Tensor x) {
    for (auto& layer : layers) x = layer->forward(x);
    return x;
  }
  std::vector<nn::Linear> layers;
};
TORCH_MODULE(CheckpointStack);

// A CheckpointStack of seed 0, distributed; after kdist::initialize().
inline std::pair<CheckpointStack, DistributionSummary> distributed_checkpoint_stack() {
  auto mesh = std::make_shared<DeviceMesh>(std::vector<int64_t>{1, num_processes()},
                                           std::vector<std::string>{"batch", "model"});
  LayoutMap map(mesh);
  map.set("l(0|2)/kernel", {std::nullopt, "model"});
  map.set("l(1|3)/kernel", {"model", std::nullopt});
  ModelParallel distribution(map);
  at::manual_seed(0);
  CheckpointStack model;
  auto summary = distribute_module(*model, distribution);
  return {model, summary};
}

}  // namespace kdist::bench
