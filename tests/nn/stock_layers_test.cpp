// Multi-process tests of src/nn/stock_layers.cpp and of what distribute_module checks about the
// rest of a training loop: a Sequential of stock layers, with its optimizer, freezes and dtype
// set up before distribute_module, trains as the same model in one process under DataParallel,
// tensor parallelism and FSDP; a GradientSync built too early, or missing, is an error.
// StockLayers.* runs on 1, 2 and 4 ranks.
#include <kdist/kdist.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/embedding.h>
#include <torch/optim/adam.h>

#include "../mp_util.h"

namespace kdist {
namespace {

torch::nn::Sequential stock_model() {
  at::manual_seed(21);
  return torch::nn::Sequential(torch::nn::Linear(12, 32), torch::nn::ReLU(), torch::nn::Linear(32, 30),
                               torch::nn::ReLU(), torch::nn::Linear(30, 6));
}

// The distributions of the issue: every process a replica; tensor parallelism over every process
// (the last layer column parallel: 6 outputs over the ranks, uneven on 4); FSDP over every process.
std::shared_ptr<Distribution> distribution_named(const std::string& name) {
  const int64_t n = num_processes();
  if (name == "data parallel") return std::make_shared<DataParallel>();
  if (name == "tensor parallel") {
    auto mesh =
        std::make_shared<DeviceMesh>(std::vector<int64_t>{1, n}, std::vector<std::string>{"batch", "model"});
    LayoutMap map(mesh);
    map.set("0/kernel", {std::nullopt, "model"});  // column
    map.set("2/kernel", {"model", std::nullopt});  // row
    map.set("4/kernel", {std::nullopt, "model"});  // column, the Sequential's output: gathered
    return std::make_shared<ModelParallel>(map);
  }
  auto mesh = testing::line_mesh_named("batch");
  LayoutMap map(mesh);
  map.set(".*kernel", {"batch", std::nullopt});
  return std::make_shared<ModelParallel>(map);
}

const std::vector<std::string> kDistributions{"data parallel", "tensor parallel", "fsdp"};

// This process's rows of the global batch, under `distribution`.
at::Tensor my_rows(const at::Tensor& global, const Distribution& distribution) {
  return testing::chunk_piece(global, 0, distribution.num_data_shards(), distribution.data_shard_id());
}

at::Tensor whole(const at::Tensor& param) {
  auto d = as_dtensor(param);
  return d ? d->full_tensor() : param;
}

// Three Adam steps of `model` (set up by `prepare`, then distributed) against one process.
void expect_trains_as_one_process(const std::string& name,
                                  const std::function<void(torch::nn::Sequential&)>& prepare,
                                  c10::ScalarType dtype = at::kFloat) {
  SCOPED_TRACE(name);
  auto reference = stock_model();
  auto model = stock_model();
  prepare(reference);
  prepare(model);
  torch::optim::Adam ref_opt(reference->parameters(), torch::optim::AdamOptions(1e-2));
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(1e-2));  // before distributing
  std::vector<at::Tensor> handles;
  for (const auto& p : model->parameters()) handles.push_back(p);
  auto distribution = distribution_named(name);
  distribute_module(*model, *distribution);
  GradientSync sync(*model, *distribution);
  const auto after = model->parameters();
  ASSERT_EQ(after.size(), handles.size());
  for (size_t i = 0; i < after.size(); ++i)
    EXPECT_TRUE(after[i].is_same(handles[i])) << "parameter " << i << " is not the optimizer's tensor";
  at::manual_seed(5);
  for (int step = 0; step < 3; ++step) {
    auto x = at::randn({8, 12}, dtype), y = at::randn({8, 6}, dtype);
    ref_opt.zero_grad();
    opt.zero_grad();
    auto want = reference->forward(x);
    at::mse_loss(want, y).backward();
    auto got = model->forward(my_rows(x, *distribution));
    ASSERT_EQ(got.sizes(), my_rows(want, *distribution).sizes()) << "the Sequential's output is whole";
    EXPECT_TRUE(at::allclose(got, my_rows(want, *distribution), 1e-5, 1e-6)) << "output at step " << step;
    at::mse_loss(got, my_rows(y, *distribution)).backward();
    ref_opt.step();
    opt.step();
  }
  auto ref_params = reference->named_parameters();
  for (const auto& p : model->named_parameters()) {
    EXPECT_EQ(p.value().scalar_type(), dtype) << p.key();
    EXPECT_EQ(p.value().requires_grad(), ref_params[p.key()].requires_grad()) << p.key();
    auto w = whole(p.value());
    EXPECT_TRUE(at::allclose(w, ref_params[p.key()], 1e-5, 1e-6))
        << p.key() << " after 3 steps: max abs difference "
        << (w - ref_params[p.key()]).abs().max().item<double>();
  }
}

TEST(StockLayers, AnOptimizerBuiltBeforeDistributingTrainsTheModel) {
  for (const auto& name : kDistributions) expect_trains_as_one_process(name, [](torch::nn::Sequential&) {});
}

TEST(StockLayers, AFrozenLayerStaysFrozen) {
  for (const auto& name : kDistributions) {
    auto first_weight = stock_model()->named_parameters()["0.weight"].clone();
    expect_trains_as_one_process(name, [](torch::nn::Sequential& m) {
      for (auto& p : m[0]->parameters()) p.requires_grad_(false);
    });
    auto model = stock_model();
    for (auto& p : model[0]->parameters()) p.requires_grad_(false);
    distribute_module(*model, *distribution_named(name));
    EXPECT_FALSE(model->named_parameters()["0.weight"].requires_grad()) << name;
    EXPECT_TRUE(at::equal(whole(model->named_parameters()["0.weight"]), first_weight)) << name;
  }
}

TEST(StockLayers, ADoubleModelStaysDouble) {
  for (const auto& name : kDistributions)
    expect_trains_as_one_process(
        name, [](torch::nn::Sequential& m) { m->to(at::kDouble); }, at::kDouble);
}

TEST(StockLayers, ASwappedLayerKeepsTheTrainingFlag) {
  auto model = stock_model();
  model->eval();
  distribute_module(*model, *distribution_named("data parallel"));
  EXPECT_NE(model[0]->as<nn::LinearImpl>(), nullptr) << "the stock Linear became kdist's";
  EXPECT_FALSE(model[0]->is_training());
}

TEST(StockLayers, AGradientSyncBuiltBeforeDistributingIsAnError) {
  for (const auto& name : kDistributions) {
    auto model = stock_model();
    auto distribution = distribution_named(name);
    GradientSync early(*model, *distribution);
    EXPECT_THROW_WITH(
        distribute_module(*model, *distribution), std::invalid_argument,
        "[kdist.nn] parameter '0.weight' is already averaged by a kdist::GradientSync built before "
        "distribute_module, for other shards and layers: build the GradientSync after distribute_module");
    EXPECT_EQ(model[0]->as<torch::nn::LinearImpl>()->weight.sizes(), (at::IntArrayRef{32, 12}))
        << "nothing changed";
  }
}

// Over several processes, a backward with no GradientSync averaging the replicated gradients
// throws before any of them lands; on one process there is nothing to average.
TEST(StockLayers, NoGradientSyncIsAnErrorAtTheFirstBackward) {
  for (const auto& name : {std::string("data parallel"), std::string("fsdp")}) {
    auto model = stock_model();
    distribute_module(*model, *distribution_named(name));
    auto loss = model->forward(at::randn({2, 12})).square().mean();
    if (num_processes() == 1) {
      loss.backward();
      continue;
    }
    EXPECT_THROW_WITH(loss.backward(), std::invalid_argument, "[kdist.nn] the gradient of '4.");
    loss = model->forward(at::randn({2, 12})).square().mean();
    EXPECT_THROW_WITH(loss.backward(), std::invalid_argument,
                      "' is not averaged over the batch axis 'batch' (" + std::to_string(num_processes()) +
                          " processes): each process would step its replica with "
                          "its own rows' gradient and the replicas would drift apart. Build a "
                          "kdist::GradientSync(module, distribution) after distribute_module");
    // A GradientSync built afterwards, then dropped: the check is back.
    {
      auto distribution = distribution_named(name);
      GradientSync sync(*model, *distribution);
      model->forward(at::randn({2, 12})).square().mean().backward();
    }
    EXPECT_THROW_WITH(model->forward(at::randn({2, 12})).square().mean().backward(), std::invalid_argument,
                      "is not averaged over the batch axis");
  }
}

// max_norm renormalises the looked-up rows of the weight in place, which replicas over the batch
// axis would each do on their own rows.
TEST(StockLayers, EmbeddingMaxNormOverTheBatchAxisIsAnError) {
  torch::nn::Sequential stock(torch::nn::Embedding(torch::nn::EmbeddingOptions(10, 4).max_norm(1.0)));
  nn::Embedding kdist_layer(torch::nn::EmbeddingOptions(10, 4).max_norm(1.0));
  LayoutMap fsdp_map(testing::line_mesh_named("batch"));
  fsdp_map.set("embeddings", {"batch", std::nullopt});
  const ModelParallel fsdp(fsdp_map);
  for (auto* module : std::vector<torch::nn::Module*>{stock.get(), kdist_layer.get()}) {
    const auto data_parallel = distribution_named("data parallel");
    for (const Distribution* distribution : std::vector<const Distribution*>{data_parallel.get(), &fsdp}) {
      if (distribution == &fsdp && module == stock.get()) continue;  // the key names the kdist layer's weight
      if (num_processes() == 1) {
        EXPECT_NO_THROW(plan_module(*module, *distribution, 0));
        continue;
      }
      EXPECT_THROW_WITH(
          plan_module(*module, *distribution, 0), std::invalid_argument,
          std::string("Embedding '") + (module == stock.get() ? "0.weight" : "weight") +
              "' has max_norm=1, which renormalises in place the rows each process looks up: over the "
              "batch axis 'batch' (" +
              std::to_string(num_processes()) +
              " processes) the replicas "
              "would renormalise different rows and drift apart");
    }
  }
}

}  // namespace
}  // namespace kdist
