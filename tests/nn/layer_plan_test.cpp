// Multi-process tests of the layers' plans (src/nn/layer_plan.cpp): what summary.layers says
// a forward and backward send is what comm::CollectiveCounter sees them send, kind by kind,
// count and bytes, on every rank. LayerPlan.* runs on 2 and 4 ranks, LayerPlan2x2.* on 4.
#include <gtest/gtest.h>
#include <kdist/kdist.h>

#include "../mp_util.h"
#include "models.h"

namespace kdist {
namespace {

using ByKind = std::map<std::string, std::pair<int64_t, int64_t>>;  // count, bytes

// TinyGpt's layers see (batch x time) rows, but its position embedding looks up arange(time).
// Under sequence parallelism k and v reuse q's gather of their common input.
ByKind planned(const DistributionSummary& summary, int64_t batch, int64_t time,
               bool sequence_parallel = false) {
  ByKind kinds;
  for (const auto& layer : summary.layers)
    for (const auto& c :
         layer.collectives({layer.layer == "pos" ? time : batch * time, time, true,
                            sequence_parallel && (layer.layer == "k" || layer.layer == "v")})) {
      EXPECT_GT(c.group_size, 1) << layer.layer << ": " << c.what;
      kinds[c.kind].first += 1;
      kinds[c.kind].second += c.bytes;
    }
  return kinds;
}

ByKind counted(const comm::CollectiveCounter& counter) {
  ByKind kinds;
  for (const auto& [kind, count] : counter.counts()) kinds[kind] = {count, counter.bytes(kind)};
  return kinds;
}

// One forward and backward of TinyGpt under `distribution`, counted.
ByKind one_step(testing::TinyGpt& model, int64_t batch, int64_t time, int64_t vocab) {
  at::manual_seed(7);
  auto ids = at::randint(0, vocab, {batch, time}, at::kLong);
  comm::CollectiveCounter counter;
  model->forward(ids).square().mean().backward();
  return counted(counter);
}

// The layers' collectives alone: no GradientSync, whose buckets plan_gradient_sync plans.
DistributeModuleOptions layers_only() {
  DistributeModuleOptions options;
  options.check_gradient_sync = false;
  return options;
}

void expect_plan_is_what_runs(const std::shared_ptr<Distribution>& distribution, bool norms_in_units,
                              DistributeModuleOptions options = layers_only()) {
  const int64_t vocab = 50, time = 8, batch = 3;
  at::manual_seed(4);
  testing::TinyGpt model(vocab, time, 32, 4, norms_in_units);
  const auto planned_here = plan_module(*model, *distribution, process_id(), options);
  const auto summary = distribute_module(*model, *distribution, options);
  ASSERT_EQ(summary.layers.size(), planned_here.layers.size());
  const auto want = planned(summary, batch, time);
  EXPECT_EQ(planned(planned_here, batch, time), want) << "plan_module and distribute_module differ";
  EXPECT_EQ(one_step(model, batch, time, vocab), want) << "rank " << process_id();
}

std::shared_ptr<Distribution> model_parallel(LayoutMap map, const std::string& batch_axis = "batch") {
  return std::make_shared<ModelParallel>(std::move(map), batch_axis);
}

DeviceMeshPtr model_line() {
  return std::make_shared<DeviceMesh>(std::vector<int64_t>{1, num_processes()},
                                      std::vector<std::string>{"batch", "model"});
}

// On 4 ranks the vocabulary of 50 splits 13, 13, 13, 11: tok's rows and the head's gathered
// logits differ by rank.
TEST(LayerPlan, TensorParallelGpt) {
  expect_plan_is_what_runs(model_parallel(testing::gpt_tensor_parallel_map(model_line())), false);
}

TEST(LayerPlan, ForEveryStyleAndRank) {
  // A vocab-parallel and an embedding-dim-parallel embedding (its output gathered), column
  // and row Linears, a column-parallel head gathering its logits.
  LayoutMap map = testing::gpt_tensor_parallel_map(model_line());
  map.set("pos/embeddings", {std::nullopt, "model"});
  at::manual_seed(4);
  testing::TinyGpt model(50, 8, 32, 4);
  model->pos->parallel.gather_output = true;
  auto distribution = model_parallel(map);
  const auto summary = distribute_module(*model, *distribution, layers_only());
  std::map<std::string, std::string> styles;
  for (const auto& layer : summary.layers) styles[layer.layer] = nn::to_string(layer.style);
  EXPECT_EQ(styles["tok"], "vocab");
  EXPECT_EQ(styles["pos"], "embedding-dim");
  EXPECT_EQ(styles["o"], "row");
  EXPECT_EQ(one_step(model, 3, 8, 50), planned(summary, 3, 8)) << "rank " << process_id();
}

TEST(LayerPlan, FsdpOverTheOnlyAxisWithUnits) {
  // Every weight over "batch", the LayerNorms in units sharded too.
  auto mesh = testing::line_mesh_named("batch");
  LayoutMap map(mesh);
  map.set("(q|k|v|up|o|down|head)/kernel", {"batch", std::nullopt});
  map.set("(tok|pos)/embeddings", {std::nullopt, "batch"});
  map.set("ln.*/gamma", {"batch"});
  expect_plan_is_what_runs(model_parallel(map), true);
  DistributeModuleOptions keep = layers_only();
  keep.reshard_after_forward = false;  // gathered once: no second gather in backward
  expect_plan_is_what_runs(model_parallel(map), true, keep);
}

TEST(LayerPlan, MixedPrecisionMovesParamDtype) {
  auto mesh = testing::line_mesh_named("batch");
  LayoutMap map(mesh);
  map.set("(q|k|v|up|o|down|head)/kernel", {"batch", std::nullopt});
  DistributeModuleOptions options = layers_only();
  options.mixed_precision = nn::MixedPrecision{};
  at::manual_seed(4);
  testing::TinyGpt model(50, 8, 32, 4);
  const auto summary = distribute_module(*model, *model_parallel(map), options);
  const int k = num_processes();
  for (const auto& layer : summary.layers) {
    EXPECT_EQ(layer.activation_bytes, 2) << layer.layer;
    if (layer.layer == "q") {  // (32, 32) over dim 1: gathered in bf16, reduced in fp32
      ASSERT_EQ(layer.gathered.size(), 1u);
      EXPECT_EQ(layer.gathered[0].shard_bytes, 32 * comm::chunk_size(32, k, process_id()) * 2);
      EXPECT_EQ(layer.gathered[0].gradient_bytes, 32 * 32 * 4);
      EXPECT_TRUE(layer.gathered[0].again_in_backward);
    }
  }
  EXPECT_EQ(one_step(model, 3, 8, 50), planned(summary, 3, 8)) << "rank " << process_id();
}

// The nn functions the model calls itself, planned beside its layers: sequence parallelism's
// scatter and LayerNorm sums and loss parallelism's cross-entropy, on a sequence of 7 that
// splits unevenly. The step's count is the layers' plans plus these.
TEST(LayerPlan, ModelFunctionsPlanWhatTheySend) {
  const int64_t vocab = 50, time = 7, batch = 3, width = 32;
  at::manual_seed(4);
  testing::TinyGpt model(vocab, time, width, 4);
  model->head->parallel.gather_output = false;  // loss parallel
  DistributeModuleOptions options = layers_only();
  options.sequence_parallel_dim = 1;
  const auto summary =
      distribute_module(*model, *model_parallel(testing::gpt_tensor_parallel_map(model_line())), options);
  auto children = model->named_children();
  for (const char* name : {"ln1", "ln2", "ln_f"})
    nn::sum_gradients_over_sequence(*children[name], *model->head->parallel.sequence);
  const LayerPlan* head = nullptr;
  for (const auto& layer : summary.layers)
    if (layer.layer == "head") head = &layer;
  ASSERT_TRUE(head);
  std::vector<ParameterPlan> norms;
  for (const auto& p : summary.parameters)
    if (p.path.owner_type == "LayerNorm") norms.push_back(p);
  ASSERT_EQ(norms.size(), 6u);  // three weights and biases
  ByKind want = planned(summary, batch, time, /*sequence_parallel=*/true);
  for (const auto& plan : {plan_parallel_cross_entropy(batch * time, *head),
                           plan_scatter_sequence({batch, time, width}, 1, 4, *head),
                           plan_sum_gradients_over_sequence(norms, *head)})
    for (const auto& c : plan) {
      want[c.kind].first += 1;
      want[c.kind].second += c.bytes;
    }
  at::manual_seed(7);
  auto ids = at::randint(0, vocab, {batch, time}, at::kLong);
  auto targets = at::randint(0, vocab, {batch, time}, at::kLong);
  comm::CollectiveCounter counter;
  nn::parallel_cross_entropy(model->forward(ids), targets, model->head->parallel).backward();
  EXPECT_EQ(counted(counter), want) << "rank " << process_id();

  LayerPlan alone;  // an axis of one: nothing to send
  EXPECT_TRUE(plan_parallel_cross_entropy(10, alone).empty());
  EXPECT_TRUE(plan_scatter_sequence({2, 7, 4}, 1, 4, alone).empty());
  EXPECT_TRUE(plan_sum_gradients_over_sequence(norms, alone).empty());
  LayerPlan whole = *head;  // logits gathered: at::cross_entropy_loss
  whole.gather_output = true;
  EXPECT_TRUE(plan_parallel_cross_entropy(10, whole).empty());
  EXPECT_THROW_WITH(plan_scatter_sequence({2, 7}, 2, 4, *head), std::invalid_argument,
                    "[kdist.nn] plan_scatter_sequence: dim 2 is out of range for shape (2, 7)");
  LayerPlan outside = *head;
  outside.axis_rank = outside.axis_size;
  EXPECT_THROW_WITH(plan_parallel_cross_entropy(10, outside), std::invalid_argument,
                    "[kdist.nn] plan_parallel_cross_entropy: layer 'head' is rank");
}

TEST(LayerPlan2x2, KerasHubStyleLayout) {
  ASSERT_EQ(num_processes(), 4);
  auto map = testing::gpt_gemma_map(testing::mesh_2x2());
  map.set("ln.*/gamma", {"batch"});
  expect_plan_is_what_runs(model_parallel(map), true);
}

TEST(LayerPlan2x2, ModelAxisFirst) {
  ASSERT_EQ(num_processes(), 4);
  auto mesh =
      std::make_shared<DeviceMesh>(std::vector<int64_t>{2, 2}, std::vector<std::string>{"model", "batch"});
  expect_plan_is_what_runs(model_parallel(testing::gpt_gemma_map(mesh)), false);
}

}  // namespace
}  // namespace kdist
