// Multi-process tests of parameters sharded over the batch axis (FSDP; src/nn/batch_shard_ops.cpp
// and distribute_module's plan), against the same model in one process on the global batch.
// Fsdp1D.* runs on 2 and 4 ranks (a 1-D mesh, the batch axis its only axis), Fsdp2x2.* on a
// 2x2 (batch, model) mesh (FSDP over "batch" composed with tensor parallelism over "model").
#include "fsdp_compare.h"

namespace kdist {
namespace {
using testing::Mlp;

using testing::Case;
using testing::Entries;
using testing::kAdam;
using testing::kSgd;
using testing::line;
using testing::mlp_case;
using testing::train_and_compare;
using testing::whole;

// An Embedding feeding a Linear: ids in, (n, 3) out.
struct EmbedMlpImpl : torch::nn::Module {
  EmbedMlpImpl()
      : tok(register_module("tok", nn::Embedding(11, 6))), fc(register_module("fc", nn::Linear(6, 3))) {
    tok->parallel.gather_output = true;  // embedding-dim parallel: fc needs the whole rows
  }
  at::Tensor forward(const at::Tensor& ids) { return fc(at::tanh(tok(ids))); }
  nn::Embedding tok;
  nn::Linear fc;
};
TORCH_MODULE(EmbedMlp);

Case embed_case() {
  return {[] { return EmbedMlp().ptr(); },
          [](torch::nn::Module& m, const at::Tensor& x) { return static_cast<EmbedMlpImpl&>(m).forward(x); },
          [](int64_t rows) { return at::randint(0, 11, {rows}, at::kLong); }, 3};
}

// ---- 1-D: the batch axis is the only axis (pure FSDP) ----------------------------------------

TEST(Fsdp1D, LinearWeightsOnEitherDimension) {
  const Entries keras{{"fc1/kernel", {"batch", std::nullopt}}, {"fc2/kernel", {std::nullopt, "batch"}}};
  auto summary = train_and_compare<torch::optim::SGD>(mlp_case(12, 20, 4), line("batch"), keras, kSgd);
  EXPECT_EQ(summary.parameters[0].style_text(), "fsdp");
  // Keras (in, out) (batch, None) is torch (out, in) sharded on dim 1.
  EXPECT_EQ(summary.parameters[0].placements, (std::vector<Placement>{Shard{1}}));
  EXPECT_EQ(summary.parameters[2].placements, (std::vector<Placement>{Shard{0}}));
  const Entries torch_names{{"fc1.weight", {"batch", std::nullopt}}, {"fc2.weight", {std::nullopt, "batch"}}};
  train_and_compare<torch::optim::Adam>(mlp_case(12, 20, 4), line("batch"), torch_names, kAdam);
}

TEST(Fsdp1D, BiasesAndUnevenShapes) {
  // 13 inputs, 22 hidden, 5 outputs: no dimension divides by 2 or 4 evenly everywhere.
  const Entries entries{{"fc1/kernel", {"batch", std::nullopt}},
                        {"fc1/bias", {"batch"}},
                        {"fc2/kernel", {std::nullopt, "batch"}},
                        {"fc2/bias", {"batch"}}};
  auto summary = train_and_compare<torch::optim::Adam>(mlp_case(13, 22, 5), line("batch"), entries, kAdam);
  EXPECT_EQ(summary.parameters[1].style_text(), "fsdp");
  const int k = num_processes(), r = process_id();
  EXPECT_EQ(summary.parameters[3].local_shape, (std::vector<int64_t>{comm::chunk_size(5, k, r)}));
}

// Keras's default batch axis on a mesh ("model",) is "model": a tensor-parallel map there
// shards data and weights over the same axis, which is FSDP.
TEST(Fsdp1D, AModelMeshWhoseBatchAxisIsModel) {
  auto summary = train_and_compare<torch::optim::SGD>(
      mlp_case(12, 20, 4), line("model"),
      {{"fc1/kernel", {std::nullopt, "model"}}, {"fc2/kernel", {"model", std::nullopt}}}, kSgd);
  EXPECT_EQ(summary.parameters[0].style_text(), "fsdp");
  EXPECT_EQ(summary.parameters[1].style_text(), "replicated") << "fc1.bias follows no weight sharding here";
}

TEST(Fsdp1D, EmbeddingRowsOrColumns) {
  train_and_compare<torch::optim::Adam>(embed_case(), line("batch"),
                                        {{"tok/embeddings", {"batch", std::nullopt}}}, kAdam);
  train_and_compare<torch::optim::SGD>(
      embed_case(), line("batch"),
      {{"tok/embeddings", {std::nullopt, "batch"}}, {"fc/kernel", {"batch", std::nullopt}}}, kSgd);
}

TEST(Fsdp1D, KeepingTheGatheredWeightUntilBackward) {
  train_and_compare<torch::optim::Adam>(
      mlp_case(12, 20, 4), line("batch"),
      {{"fc1/kernel", {"batch", std::nullopt}}, {"fc2/kernel", {std::nullopt, "batch"}}}, kAdam, "", 3,
      testing::kept_until_backward());
}

TEST(Fsdp1D, CollectivesOfAStep) {
  LayoutMap map(line("batch"));
  map.set("fc1/kernel", {"batch", std::nullopt});
  map.set("fc2/kernel", {std::nullopt, "batch"});
  Mlp model(12, 20, 4);
  ModelParallel distribution(map);
  distribute_module(*model, distribution);
  GradientSync sync(*model, distribution);
  comm::CollectiveCounter forward;
  auto loss = model->forward(at::randn({4, 12})).pow(2).mean();
  EXPECT_EQ(forward.count("all_gather"), 2) << "each weight gathered once";
  EXPECT_EQ(forward.total_count(), 2);
  comm::CollectiveCounter backward;
  loss.backward();
  EXPECT_EQ(backward.count("all_gather"), 2) << "gathered again for backward";
  EXPECT_EQ(backward.count("reduce_scatter"), 2);
  EXPECT_EQ(backward.count("all_reduce"), 1) << "the two replicated biases, in one bucket";
}

// no_sync: two micro-batches accumulate without communicating, the synchronised backward
// after them reduce-scatters the sum, as one process's accumulated gradients.
TEST(Fsdp1D, NoSyncAccumulates) {
  LayoutMap map(line("batch"));
  map.set("fc1/kernel", {"batch", std::nullopt});
  map.set("fc2/kernel", {std::nullopt, "batch"});
  testing::expect_no_sync_accumulates(mlp_case(12, 20, 4), map);
}

// Stock modules cannot gather: a batch-sharded parameter there is refused, naming it.
TEST(Fsdp1D, AStockModuleCannotHoldABatchShardedParameter) {
  testing::TinyGpt gpt(50, 8, 16, 2);
  LayoutMap map(line("batch"));
  map.set("ln1/gamma", {"batch"});
  EXPECT_THROW_WITH(
      distribute_module(*gpt, ModelParallel(map)), std::invalid_argument,
      "parameter 'ln1.weight' of torch::nn::LayerNormImpl has layout TensorLayout(batch), which "
      "shards it over 'batch', the batch axis");
}

// ---- 2x2: FSDP over "batch" and tensor parallelism over "model" -------------------------------

DeviceMeshPtr mesh_2x2() { return testing::mesh_2x2(); }

TEST(Fsdp2x2, KerasHubStyleLinearLayouts) {
  ASSERT_EQ(num_processes(), 4);
  // Gemma's ffw_gating (batch, model) and ffw_linear (model, batch), in Keras (in, out).
  const Entries gemma{{"fc1/kernel", {"batch", "model"}}, {"fc2/kernel", {"model", "batch"}}};
  auto summary = train_and_compare<torch::optim::Adam>(mlp_case(12, 20, 4), mesh_2x2(), gemma, kAdam);
  EXPECT_EQ(summary.parameters[0].style_text(), "column+fsdp");
  EXPECT_EQ(summary.parameters[0].placements, (std::vector<Placement>{Shard{1}, Shard{0}}));
  EXPECT_EQ(summary.parameters[1].style_text(), "column") << "the bias follows the output features only";
  EXPECT_EQ(summary.parameters[2].style_text(), "row+fsdp");
  EXPECT_EQ(summary.parameters[0].local_shape, (std::vector<int64_t>{10, 6}));
  train_and_compare<torch::optim::SGD>(mlp_case(13, 22, 5), mesh_2x2(), gemma, kSgd);  // uneven
  // FSDP alone on a 2-D mesh: the weights replicated over "model".
  train_and_compare<torch::optim::SGD>(
      mlp_case(12, 20, 4), mesh_2x2(),
      {{"fc1/kernel", {"batch", std::nullopt}}, {"fc2/kernel", {std::nullopt, "batch"}}}, kSgd);
}

TEST(Fsdp2x2, EmbeddingOverBothAxes) {
  ASSERT_EQ(num_processes(), 4);
  // Gemma's token_embedding (model, batch): vocabulary over "model", embedding dim over "batch".
  auto summary = train_and_compare<torch::optim::Adam>(embed_case(), mesh_2x2(),
                                                       {{"tok/embeddings", {"model", "batch"}}}, kAdam);
  EXPECT_EQ(summary.parameters[0].style_text(), "vocab+fsdp");
  train_and_compare<torch::optim::Adam>(embed_case(), mesh_2x2(), {{"tok/embeddings", {"batch", "model"}}},
                                        kAdam);
}

TEST(Fsdp2x2, OneDimensionOverBothAxesIsRefused) {
  ASSERT_EQ(num_processes(), 4);
  LayoutMap map(mesh_2x2());
  map.set("fc1/kernel", {std::vector<std::string>{"batch", "model"}, std::nullopt});
  Mlp model(12, 20, 4);
  EXPECT_THROW_WITH(distribute_module(*model, ModelParallel(map)), std::invalid_argument,
                    "its dimension 1 is sharded over both 'batch' (the batch axis) and 'model'");
}

}  // namespace
}  // namespace kdist
