// Multi-process tests of kdist::nn::FullyShard (src/nn/fully_shard.cpp): stock LibTorch layers
// whose parameters are sharded over the batch axis, gathered by their unit, trained against
// the same model in one process on the global batch. FullyShard1D.* runs on 2 and 4 ranks (the
// batch axis the mesh's only axis), FullyShard2x2.* on a 2x2 (batch, model) mesh.
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "fsdp_compare.h"

namespace kdist {
namespace {
using testing::Case;
using testing::Entries;
using testing::kAdam;
using testing::kSgd;
using testing::line;
using testing::train_and_compare;

torch::nn::LayerNorm layer_norm(int64_t width) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}));
}

// A stock LayerNorm in a unit between kdist layers; `twice` runs the unit twice per forward
// (one parameter used twice in one graph).
struct NormMlpImpl : torch::nn::Module {
  NormMlpImpl(int64_t in, int64_t hidden, int64_t out, bool twice)
      : ln0(register_module("ln0", nn::FullyShard(layer_norm(in)))),
        fc1(register_module("fc1", nn::Linear(in, hidden))),
        fc2(register_module("fc2", nn::Linear(hidden, out))),
        twice(twice) {}
  at::Tensor forward(const at::Tensor& x) {
    auto h = ln0(x);
    if (twice) h = ln0(at::tanh(h));
    return fc2(at::relu(fc1(h)));
  }
  nn::FullyShard ln0;
  nn::Linear fc1, fc2;
  bool twice;
};
TORCH_MODULE(NormMlp);

Case norm_mlp_case(int64_t in, int64_t hidden, int64_t out, bool twice = false) {
  return {[=] { return NormMlp(in, hidden, out, twice).ptr(); },
          [](torch::nn::Module& m, const at::Tensor& x) { return static_cast<NormMlpImpl&>(m).forward(x); },
          [=](int64_t rows) {
            return at::randn({rows, in});
          },
          out};
}

// A unit of a whole stock Sequential: two Conv2d and a stock Linear, which stays stock inside
// the unit (the unit gathers it; distribute_module replaces stock Linears only outside units).
struct ConvNetImpl : torch::nn::Module {
  ConvNetImpl()
      : convs(register_module("convs",
                              nn::FullyShard(torch::nn::Sequential(
                                  torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 5, 3)), torch::nn::ReLU(),
                                  torch::nn::Conv2d(torch::nn::Conv2dOptions(5, 4, 3)), torch::nn::Flatten(),
                                  torch::nn::Linear(64, 6))))),
        fc(register_module("fc", nn::Linear(6, 3))) {}
  at::Tensor forward(const at::Tensor& x) { return fc(at::tanh(convs(x))); }
  nn::FullyShard convs;
  nn::Linear fc;
};
TORCH_MODULE(ConvNet);

Case conv_case() {
  return {[] { return ConvNet().ptr(); },
          [](torch::nn::Module& m, const at::Tensor& x) { return static_cast<ConvNetImpl&>(m).forward(x); },
          [](int64_t rows) {
            return at::randn({rows, 3, 8, 8});
          },
          3};
}

const Entries kNormMlpFsdp{{"ln0/gamma", {"batch"}},
                           {"ln0/beta", {"batch"}},
                           {"fc1/kernel", {"batch", std::nullopt}},
                           {"fc2/kernel", {std::nullopt, "batch"}}};

// ---- 1-D: the batch axis is the only axis ------------------------------------------------------

TEST(FullyShard1D, ALayerNormInAUnit) {
  // 13 features do not divide over 2 or 4 ranks: uneven LayerNorm shards.
  auto summary =
      train_and_compare<torch::optim::Adam>(norm_mlp_case(13, 20, 4), line("batch"), kNormMlpFsdp, kAdam);
  EXPECT_EQ(summary.parameters[0].path.torch_name, "ln0.weight") << "the unit adds no name";
  EXPECT_EQ(summary.parameters[0].path.keras_name, "ln0/gamma");
  EXPECT_EQ(summary.parameters[0].style_text(), "fsdp");
  EXPECT_EQ(summary.parameters[0].local_shape,
            (std::vector<int64_t>{comm::chunk_size(13, num_processes(), process_id())}));
  train_and_compare<torch::optim::SGD>(norm_mlp_case(13, 20, 4), line("batch"), kNormMlpFsdp, kSgd);
}

TEST(FullyShard1D, AUnitRunTwiceInOneForward) {
  train_and_compare<torch::optim::SGD>(norm_mlp_case(12, 20, 4, /*twice=*/true), line("batch"), kNormMlpFsdp,
                                       kSgd);
}

TEST(FullyShard1D, KeepingTheGatheredParametersUntilBackward) {
  train_and_compare<torch::optim::Adam>(norm_mlp_case(13, 20, 4), line("batch"), kNormMlpFsdp, kAdam, "", 3,
                                        testing::kept_until_backward());
}

TEST(FullyShard1D, ASequentialOfConvolutionsAndAStockLinear) {
  const Entries entries{{"convs.0.weight", {"batch", std::nullopt, std::nullopt, std::nullopt}},
                        {"convs.0.bias", {"batch"}},
                        {"convs.2.weight", {std::nullopt, "batch", std::nullopt, std::nullopt}},
                        {"convs.4.weight", {"batch", std::nullopt}},
                        {"fc/kernel", {"batch", std::nullopt}}};
  auto summary = train_and_compare<torch::optim::Adam>(conv_case(), line("batch"), entries, kAdam);
  for (const auto& p : summary.parameters)
    if (p.key) {
      EXPECT_EQ(p.style_text(), "fsdp") << p.path.torch_name;
    }
  train_and_compare<torch::optim::SGD>(conv_case(), line("batch"), entries, kSgd);
}

TEST(FullyShard1D, CollectivesOfAStep) {
  auto model = NormMlp(12, 20, 4, false);
  LayoutMap map(line("batch"));
  map.set("ln0/gamma", {"batch"});
  map.set("ln0/beta", {"batch"});
  ModelParallel distribution(map);
  distribute_module(*model, distribution);
  GradientSync sync(*model, distribution);
  comm::CollectiveCounter forward;
  auto loss = model->forward(at::randn({4, 12})).pow(2).mean();
  EXPECT_EQ(forward.count("all_gather"), 2) << "the unit gathers its two parameters";
  EXPECT_EQ(forward.total_count(), 2);
  comm::CollectiveCounter backward;
  loss.backward();
  EXPECT_EQ(backward.count("all_gather"), 2) << "gathered again for backward";
  EXPECT_EQ(backward.count("reduce_scatter"), 2);
  EXPECT_EQ(backward.count("all_reduce"), 1) << "fc1 and fc2, replicated, in one bucket";
  for (const auto& p : model->ln0->parameters()) {
    EXPECT_EQ(p.size(0), comm::chunk_size(12, num_processes(), process_id())) << "back on the shard";
    EXPECT_EQ(p.grad().sizes(), p.sizes()) << "a shard's gradient has the shard's shape";
  }
}

// no_sync: two micro-batches accumulate the unit's unsharded gradients; the synchronised
// backward after them reduce-scatters the sum, as one process's accumulated gradients.
TEST(FullyShard1D, NoSyncAccumulates) {
  LayoutMap map(line("batch"));
  for (const auto& [key, axes] : kNormMlpFsdp) map.set(key, axes);
  testing::expect_no_sync_accumulates(norm_mlp_case(13, 20, 4), map);
}

// A batch-sharded stock parameter outside any unit is refused, naming the unit as the fix.
TEST(FullyShard1D, AStockParameterOutsideAUnitIsRefused) {
  testing::TinyGpt gpt(50, 8, 16, 2);
  LayoutMap map(line("batch"));
  map.set("ln1/gamma", {"batch"});
  EXPECT_THROW_WITH(distribute_module(*gpt, ModelParallel(map)), std::invalid_argument,
                    "or wrap it in a kdist::nn::FullyShard unit");
}

// ---- 2x2: units under FSDP over "batch" with tensor parallelism over "model" ------------------

TEST(FullyShard2x2, BesideKerasHubStyleLayouts) {
  ASSERT_EQ(num_processes(), 4);
  const Entries gemma{{"ln0/gamma", {"batch"}},
                      {"ln0/beta", {"batch"}},
                      {"fc1/kernel", {"batch", "model"}},
                      {"fc2/kernel", {"model", "batch"}}};
  auto summary =
      train_and_compare<torch::optim::Adam>(norm_mlp_case(13, 22, 5), testing::mesh_2x2(), gemma, kAdam);
  EXPECT_EQ(summary.parameters[0].style_text(), "fsdp");
  EXPECT_EQ(summary.parameters[0].placements, (std::vector<Placement>{Shard{0}, Replicate{}}));
  // The batch axis second on the mesh.
  auto flipped =
      std::make_shared<DeviceMesh>(std::vector<int64_t>{2, 2}, std::vector<std::string>{"model", "batch"});
  summary = train_and_compare<torch::optim::SGD>(norm_mlp_case(13, 22, 5), flipped, gemma, kSgd, "batch");
  EXPECT_EQ(summary.parameters[0].placements, (std::vector<Placement>{Replicate{}, Shard{0}}));
}

TEST(FullyShard2x2, AUnitCannotRunTensorParallel) {
  ASSERT_EQ(num_processes(), 4);
  LayoutMap map(testing::mesh_2x2());
  map.set("ln0/gamma", {"model"});
  NormMlp model(12, 20, 4, false);
  EXPECT_THROW_WITH(distribute_module(*model, ModelParallel(map)), std::invalid_argument,
                    "parameter 'ln0.weight' of kdist::nn::FullyShardImpl in a kdist::nn::FullyShard unit has "
                    "layout TensorLayout(model): a unit shards stock modules' parameters over the batch axis "
                    "'batch' only");
}

}  // namespace
}  // namespace kdist
