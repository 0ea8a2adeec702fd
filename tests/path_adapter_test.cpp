#include <kdist/distribution.h>
#include <kdist/path_adapter.h>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <map>

#include "test_util.h"

namespace kdist {
namespace {

struct BlockImpl : torch::nn::Module {
  BlockImpl() {
    ln = register_module("ln", torch::nn::LayerNorm(torch::nn::LayerNormOptions({8})));
    fc1 = register_module("fc1", torch::nn::Linear(8, 16));
    fc2 = register_module("fc2", torch::nn::Linear(16, 8));
  }
  torch::nn::LayerNorm ln{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Block);

struct TinyModelImpl : torch::nn::Module {
  TinyModelImpl() {
    embed = register_module("embed", torch::nn::Embedding(100, 8));
    blocks = register_module("blocks", torch::nn::ModuleList(Block(), Block()));
    head = register_module("head", torch::nn::Linear(torch::nn::LinearOptions(8, 100).bias(false)));
    scale = register_parameter("scale", torch::ones({8}));
  }
  torch::nn::Embedding embed{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::Linear head{nullptr};
  torch::Tensor scale;
};
TORCH_MODULE(TinyModel);

TEST(PathAdapter, KerasNamesOfARealModule) {
  TinyModel model;
  std::map<std::string, ParameterPath> by_name;
  for (const auto& p : parameter_paths(*model)) by_name[p.torch_name] = p;
  ASSERT_EQ(by_name.size(), model->named_parameters().size());

  auto expect = [&](const std::string& torch, const std::string& keras, const std::string& owner,
                    bool transposed) {
    ASSERT_TRUE(by_name.count(torch)) << torch;
    EXPECT_EQ(by_name[torch].keras_name, keras) << torch;
    EXPECT_EQ(by_name[torch].owner_type, owner) << torch;
    EXPECT_EQ(by_name[torch].keras_transposed, transposed) << torch;
  };
  expect("embed.weight", "embed/embeddings", "Embedding", false);
  expect("blocks.0.ln.weight", "blocks/0/ln/gamma", "LayerNorm", false);
  expect("blocks.1.ln.bias", "blocks/1/ln/beta", "LayerNorm", false);
  expect("blocks.0.fc1.weight", "blocks/0/fc1/kernel", "Linear", true);
  expect("blocks.1.fc2.bias", "blocks/1/fc2/bias", "Linear", false);
  expect("head.weight", "head/kernel", "Linear", true);
  EXPECT_EQ(by_name["scale"].keras_name, "scale");
  EXPECT_NE(by_name["scale"].owner_type, "Linear");
}

TEST(PathAdapter, LayoutsOfEveryParameterInTorchOrientation) {
  TinyModel model;
  auto mesh = testing::mesh({2}, {"model"});
  LayoutMap map(mesh);
  map.set(".*fc1/kernel", {std::nullopt, "model"});                  // Keras (in, out): column parallel
  map.set("blocks\\.\\d+\\.fc2\\.weight", {std::nullopt, "model"});  // torch (out, in): row parallel
  map.set("embed/embeddings", {"model", std::nullopt});              // vocab parallel, no transpose
  map.set(".*ln/(gamma|beta)", {std::nullopt});
  map.set("head.weight", {"model", std::nullopt});  // exact torch key

  auto layout_of = [&](const std::string& torch_name) -> std::optional<TensorLayout> {
    for (const auto& p : parameter_paths(*model))
      if (p.torch_name == torch_name) {
        auto m = match_parameter(map, p);
        if (!m) return std::nullopt;
        return m->layout;
      }
    ADD_FAILURE() << "no parameter " << torch_name;
    return std::nullopt;
  };
  auto layout = [&](std::vector<AxisSpec> axes) { return TensorLayout(std::move(axes), mesh); };

  EXPECT_EQ(layout_of("blocks.0.fc1.weight"), layout({"model", std::nullopt}));  // (16, 8): Shard(0)
  EXPECT_EQ(layout_of("blocks.1.fc1.weight"), layout({"model", std::nullopt}));
  EXPECT_EQ(layout_of("blocks.0.fc2.weight"), layout({std::nullopt, "model"}));  // (8, 16): Shard(1)
  EXPECT_EQ(layout_of("embed.weight"), layout({"model", std::nullopt}));
  EXPECT_EQ(layout_of("blocks.1.ln.weight"), layout({std::nullopt}));
  EXPECT_EQ(layout_of("blocks.1.ln.bias"), layout({std::nullopt}));
  EXPECT_EQ(layout_of("head.weight"), layout({"model", std::nullopt}));
  EXPECT_EQ(layout_of("blocks.0.fc1.bias"), std::nullopt);
  EXPECT_EQ(layout_of("scale"), std::nullopt);

  for (const auto& p : parameter_paths(*model)) {
    if (p.torch_name != "blocks.0.fc1.weight") continue;
    auto m = match_parameter(map, p);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->key, ".*fc1/kernel");
    EXPECT_TRUE(m->via_keras_name);
    // Column parallel: the torch weight (out=16, in=8) is sharded on its output features.
    EXPECT_EQ(to_placements(m->layout, 2), (std::vector<Placement>{Shard{0}}));
  }
}

TEST(PathAdapter, AmbiguousOrientationIsAnError) {
  auto mesh = testing::mesh({2}, {"model"});
  auto path = make_parameter_path("blocks.0.fc1.weight", "Linear");
  LayoutMap sharded(mesh);
  sharded.set(".*fc1.*", {std::nullopt, "model"});  // matches fc1.weight and fc1/kernel
  EXPECT_THROW_WITH(match_parameter(sharded, path), std::invalid_argument,
                    "key '.*fc1.*' matches both the torch name 'blocks.0.fc1.weight' and the Keras "
                    "name 'blocks/0/fc1/kernel' of a Linear weight");
  LayoutMap replicated(mesh);
  replicated.set(".*fc1.*", {std::nullopt, std::nullopt});  // same either way: fine
  auto m = match_parameter(replicated, path);
  ASSERT_TRUE(m);
  EXPECT_FALSE(m->via_keras_name);
}

TEST(PathAdapter, TwoKeysForOneParameterIsAnError) {
  auto mesh = testing::mesh({2}, {"model"});
  LayoutMap map(mesh);
  map.set("fc1/kernel", {std::nullopt, "model"});
  map.set("fc1.weight", {"model", std::nullopt});
  EXPECT_THROW_WITH(match_parameter(map, make_parameter_path("fc1.weight", "Linear")), std::invalid_argument,
                    "Path 'fc1.weight' (Keras name 'fc1/kernel') matches multiple layout "
                    "specification keys: ['fc1.weight', 'fc1/kernel']");
}

TEST(PathAdapter, ModelParallelGivesParameterLayoutsAndChecksRank) {
  auto mesh = testing::mesh({1, 2}, {"batch", "model"});
  LayoutMap map(mesh);
  map.set("fc1/kernel", {std::nullopt, "model"});
  map.set("fc1/bias", {"model", std::nullopt});  // wrong rank for a bias
  ModelParallel mp(map);
  auto weight = make_parameter_path("fc1.weight", "Linear");
  EXPECT_EQ(mp.get_parameter_layout(weight, {16, 8}), TensorLayout({"model", std::nullopt}, mesh));
  auto bias = make_parameter_path("fc1.bias", "Linear");
  EXPECT_THROW_WITH(mp.get_parameter_layout(bias, {16}), std::invalid_argument,
                    "layout TensorLayout(model, None) for 'fc1.bias' has 2 dimensions, the "
                    "variable has shape (16)");
  auto other = make_parameter_path("fc2.weight", "Linear");
  EXPECT_EQ(mp.get_parameter_layout(other, {4, 16}), replicated_layout(2, mesh));
  DataParallel dp(testing::mesh({2}, {"batch"}));
  EXPECT_EQ(dp.get_parameter_layout(weight, {16, 8}), replicated_layout(2, dp.device_mesh()));
}

}  // namespace
}  // namespace kdist
