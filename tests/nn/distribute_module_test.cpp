// Multi-process tests of src/nn/: distribute_module, column/row parallel Linear and parallel
// Embedding, against the same model in one process. TensorParallel.* runs on 2 and 4 ranks
// (a (batch=1, model=N) mesh), TensorParallel2x2.* on a 2x2 (batch, model) mesh.
#include <kdist/nn.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>

#include <cstdlib>
#include <functional>

#include "../mp_util.h"
#include "models.h"

namespace kdist {
namespace {
using testing::keras_mlp_plan;
using testing::Mlp;

// Every process on the model axis; the batch axis, of size 1, is the data-parallel one.
DeviceMeshPtr model_mesh() {
  return std::make_shared<DeviceMesh>(std::vector<int64_t>{1, num_processes()},
                                      std::vector<std::string>{"batch", "model"});
}

LayoutMap torch_mlp_plan(DeviceMeshPtr mesh) {
  LayoutMap map(mesh);
  map.set("fc1.weight", {"model", std::nullopt});  // torch (out, in)
  map.set("fc2.weight", {std::nullopt, "model"});
  return map;
}

// The whole tensor of a (possibly sharded) parameter or of a gradient laid out like it.
at::Tensor whole(const at::Tensor& param, const at::Tensor& local) {
  auto d = as_dtensor(param);
  if (!d) return local;
  return DTensor::from_local(local, d->device_mesh(), d->placements(), d->sizes()).full_tensor();
}

void expect_close(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
  EXPECT_TRUE(at::allclose(got, want, /*rtol=*/1e-5, /*atol=*/1e-6))
      << what << ": max abs difference " << (got - want).abs().max().item<float>();
}

// Runs `steps` optimizer steps of the MLP distributed by `map` and of the same MLP in one
// process, and compares output, gradients and weights.
template <typename Optimizer, typename Options>
void train_and_compare(const LayoutMap& map, Options options, int steps,
                       const std::string& batch_axis = "batch") {
  at::manual_seed(7);
  Mlp reference(16, 24, 8);
  at::manual_seed(7);
  Mlp model(16, 24, 8);
  DistributeModuleOptions same_rows_everywhere;  // batch replicas agree without a GradientSync
  same_rows_everywhere.check_gradient_sync = false;
  distribute_module(*model, ModelParallel(map, batch_axis), same_rows_everywhere);
  Optimizer ref_opt(reference->parameters(), options), opt(model->parameters(), options);
  at::manual_seed(11);
  auto x = at::randn({5, 16});
  auto target = at::randn({5, 8});
  for (int step = 0; step < steps; ++step) {
    for (auto* o : std::vector<torch::optim::Optimizer*>{&ref_opt, &opt}) o->zero_grad();
    auto want = reference->forward(x);
    auto got = model->forward(x);
    expect_close(got, want, "output at step " + std::to_string(step));
    at::mse_loss(want, target).backward();
    at::mse_loss(got, target).backward();
    auto ref_params = reference->named_parameters();
    for (const auto& p : model->named_parameters())
      expect_close(whole(p.value(), p.value().grad()), ref_params[p.key()].grad(),
                   "gradient of " + p.key() + " at step " + std::to_string(step));
    ref_opt.step();
    opt.step();
  }
  auto ref_params = reference->named_parameters();
  for (const auto& p : model->named_parameters())
    expect_close(whole(p.value(), p.value()), ref_params[p.key()], "weight " + p.key() + " after training");
}

TEST(TensorParallel, MlpMatchesOneProcessWithSgdAndAdam) {
  train_and_compare<torch::optim::SGD>(keras_mlp_plan(model_mesh()),
                                       torch::optim::SGDOptions(0.1).momentum(0.9), 5);
  train_and_compare<torch::optim::Adam>(keras_mlp_plan(model_mesh()), torch::optim::AdamOptions(1e-2), 5);
  train_and_compare<torch::optim::Adam>(torch_mlp_plan(model_mesh()), torch::optim::AdamOptions(1e-2), 5);
}

TEST(TensorParallel, KerasAndTorchNamesGiveTheSameShards) {
  at::manual_seed(3);
  Mlp a(16, 24, 8);
  at::manual_seed(3);
  Mlp b(16, 24, 8);
  auto sa = distribute_module(*a, ModelParallel(keras_mlp_plan(model_mesh())));
  auto sb = distribute_module(*b, ModelParallel(torch_mlp_plan(model_mesh())));
  ASSERT_EQ(sa.parameters.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(sa.parameters[i].placements, sb.parameters[i].placements) << sa.parameters[i].path.torch_name;
    EXPECT_EQ(sa.parameters[i].local_shape, sb.parameters[i].local_shape);
  }
  EXPECT_EQ(sa.parameters[0].style_text(), "column");
  EXPECT_EQ(sa.parameters[0].placements,
            (std::vector<Placement>{Replicate{}, Shard{0}}));  // fc1.weight (out, in)
  EXPECT_EQ(sa.parameters[1].placements,
            (std::vector<Placement>{Replicate{}, Shard{0}}));  // fc1.bias follows
  EXPECT_EQ(sa.parameters[2].style_text(), "row");
  EXPECT_EQ(sa.parameters[2].placements, (std::vector<Placement>{Replicate{}, Shard{1}}));
  EXPECT_EQ(sa.parameters[3].placements, (std::vector<Placement>{Replicate{}, Replicate{}}));  // fc2.bias
  EXPECT_TRUE(at::equal(a->fc1->weight, b->fc1->weight));
  EXPECT_TRUE(at::equal(a->fc2->weight, b->fc2->weight));
  const int k = num_processes(), r = process_id();
  EXPECT_EQ(a->fc1->weight.sizes().vec(), (std::vector<int64_t>{comm::chunk_size(24, k, r), 16}));
  EXPECT_EQ(a->fc2->weight.sizes().vec(), (std::vector<int64_t>{8, comm::chunk_size(24, k, r)}));
}

TEST(TensorParallel, OneAllReduceForwardAndOneBackwardWhenTheInputNeedsIt) {
  at::manual_seed(1);
  Mlp model(16, 24, 8);
  distribute_module(*model, ModelParallel(keras_mlp_plan(model_mesh())));
  auto x = at::randn({4, 16});
  {
    comm::CollectiveCounter counter;
    auto y = model->forward(x);
    EXPECT_EQ(counter.count("all_reduce"), 1);
    EXPECT_EQ(counter.total_count(), 1);
    comm::CollectiveCounter backward;
    y.sum().backward();
    EXPECT_EQ(backward.total_count(), 0) << "the input needs no gradient";
  }
  auto xg = x.clone().requires_grad_();
  auto y = model->forward(xg);
  comm::CollectiveCounter backward;
  y.sum().backward();
  EXPECT_EQ(backward.count("all_reduce"), 1);
  EXPECT_EQ(backward.total_count(), 1);
}

TEST(TensorParallel, StockLayersInASequentialAreReplaced) {
  at::manual_seed(5);
  torch::nn::Sequential reference(torch::nn::Linear(8, 12), torch::nn::ReLU(), torch::nn::Linear(12, 4));
  at::manual_seed(5);
  torch::nn::Sequential model(torch::nn::Linear(8, 12), torch::nn::ReLU(), torch::nn::Linear(12, 4));
  LayoutMap map(model_mesh());
  map.set("0/kernel", {std::nullopt, "model"});
  map.set("2/kernel", {"model", std::nullopt});
  auto summary = distribute_module(*model, ModelParallel(map));
  EXPECT_NE(dynamic_cast<nn::LinearImpl*>(model[0].get()), nullptr);
  EXPECT_EQ(summary.parameters[0].style_text(), "column");
  EXPECT_EQ(summary.parameters[2].style_text(), "row");
  auto x = at::randn({3, 8});
  expect_close(model->forward(x), reference->forward(x), "Sequential output");
}

TEST(TensorParallel, ParallelEmbeddings) {
  const int64_t vocab = 11, dim = 6;
  at::manual_seed(9);
  nn::Embedding reference(vocab, dim);
  for (const char* axes : {"vocab", "dim"}) {
    at::manual_seed(9);
    nn::Embedding embedding(vocab, dim);
    LayoutMap map(model_mesh());
    if (std::string(axes) == "vocab")
      map.set("embeddings", {"model", std::nullopt});
    else
      map.set("embeddings", {std::nullopt, "model"});
    distribute_module(*embedding, ModelParallel(map));
    auto ids = at::tensor({0, 3, 10, 5, 7, 10, 1}, at::kLong).view({7});
    auto want = reference->forward(ids);
    auto got = embedding->forward(ids);  // dim parallel: this rank's columns
    auto whole_output = std::string(axes) == "dim" ? comm::all_gather(got.detach(), -1, *comm::world(),
                                                                      comm::chunk_sizes(dim, num_processes()))
                                                   : got;
    expect_close(whole_output, want, std::string(axes) + "-parallel embedding");
    // Vocab parallel: every rank holds the whole output and its loss is the whole loss; the
    // all_reduce's backward is the identity. Dim parallel: the local losses add up to it.
    got.pow(2).sum().backward();
    want.pow(2).sum().backward();
    expect_close(whole(embedding->weight, embedding->weight.grad()), reference->weight.grad(),
                 std::string(axes) + "-parallel embedding gradient");
    reference->weight.mutable_grad().reset();
  }
}

// ---- errors: raised before anything is changed ----------------------------------------------

struct HoldsStockLinearImpl : torch::nn::Module {
  HoldsStockLinearImpl() : fc(register_module("fc", torch::nn::Linear(4, 6))) {}
  torch::nn::Linear fc;
};
TORCH_MODULE(HoldsStockLinear);

TEST(TensorParallel, Errors) {
  auto mesh = model_mesh();
  Mlp mlp(16, 24, 8);
  auto before = mlp->fc1->weight.clone();

  LayoutMap typo = keras_mlp_plan(mesh);
  typo.set("fc3/kernel", {std::nullopt, "model"});
  EXPECT_THROW_WITH(distribute_module(*mlp, ModelParallel(typo)), std::invalid_argument,
                    "[kdist.nn] LayoutMap keys ['fc3/kernel'] match no parameter of the module");
  EXPECT_TRUE(at::equal(mlp->fc1->weight, before)) << "nothing changes on an error";

  LayoutMap rank = keras_mlp_plan(mesh);
  rank.set("fc1/bias", {std::nullopt, "model"});
  EXPECT_THROW_WITH(distribute_module(*mlp, ModelParallel(rank)), std::invalid_argument,
                    "layout TensorLayout(None, model) for 'fc1.bias' has 2 dimensions, the "
                    "variable has shape (24)");

  LayoutMap row_bias = keras_mlp_plan(mesh);
  row_bias.set("fc2/bias", {"model"});
  EXPECT_THROW_WITH(distribute_module(*mlp, ModelParallel(row_bias)), std::invalid_argument,
                    "bias 'fc2.bias' has layout TensorLayout(model) but its weight is row parallel");

  HoldsStockLinear custom;
  LayoutMap stock(mesh);
  stock.set("fc/kernel", {std::nullopt, "model"});
  EXPECT_THROW_WITH(distribute_module(*custom, ModelParallel(stock)), std::invalid_argument,
                    "parameter 'fc.weight' of torch::nn::LinearImpl has layout "
                    "TensorLayout(model, None) (in torch's (out, in) order: the Keras key 'fc/kernel' "
                    "gives the transpose, Keras kernels being (in, out)) but a torch::nn::Linear outside a "
                    "torch::nn::Sequential cannot run in parallel: declare it as kdist::nn::Linear");
  LayoutMap stock_torch_name(mesh);
  stock_torch_name.set("fc.weight", {"model", std::nullopt});
  EXPECT_THROW_WITH(distribute_module(*custom, ModelParallel(stock_torch_name)), std::invalid_argument,
                    "has layout TensorLayout(model, None) but a torch::nn::Linear outside");

  // torch's attention calls its out_proj itself: no kdist::nn::Linear can stand there.
  torch::nn::MultiheadAttention attention(torch::nn::MultiheadAttentionOptions(8, 2));
  LayoutMap attention_map(mesh);
  attention_map.set("out_proj.weight", {"model", std::nullopt});
  EXPECT_THROW_WITH(
      distribute_module(*attention, ModelParallel(attention_map)), std::invalid_argument,
      "parameter 'out_proj.weight' of torch::nn::LinearImpl has layout TensorLayout(model, None) "
      "but it belongs to a torch::nn::MultiheadAttention, whose forward kdist cannot run tensor "
      "parallel: replicate it (or write the attention with kdist::nn::Linear projections); to shard "
      "it over the batch axis 'batch' instead (FSDP), wrap it in a kdist::nn::FullyShard unit "
      "(FullyShardImpl(attention, forward) takes a forward of your own for its several inputs)");

  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(2, 4, 3));
  LayoutMap conv_map(mesh);
  conv_map.set("weight", {"model", std::nullopt, std::nullopt, std::nullopt});
  EXPECT_THROW_WITH(
      distribute_module(*conv, ModelParallel(conv_map)), std::invalid_argument,
      "parameter 'weight' of torch::nn::Conv2dImpl has layout TensorLayout(model, None, None, "
      "None) but kdist runs tensor parallelism only in kdist::nn::Linear and kdist::nn::Embedding: "
      "replicate it over the model axes; to shard it over the batch axis 'batch' instead (FSDP), "
      "wrap it in a kdist::nn::FullyShard unit");

  nn::Embedding padded(torch::nn::EmbeddingOptions(10, 4).padding_idx(0));
  LayoutMap vocab(mesh);
  vocab.set("embeddings", {"model", std::nullopt});
  EXPECT_THROW_WITH(distribute_module(*padded, ModelParallel(vocab)), std::invalid_argument,
                    "Embedding 'weight' uses padding_idx, max_norm, scale_grad_by_freq or sparse");

  setenv("KDIST_ALLOW_UNMATCHED", "1", 1);
  ::testing::internal::CaptureStderr();
  distribute_module(*mlp, ModelParallel(typo));
  std::string warning = ::testing::internal::GetCapturedStderr();
  unsetenv("KDIST_ALLOW_UNMATCHED");
  EXPECT_NE(warning.find("[kdist.nn] warning: LayoutMap keys ['fc3/kernel'] match no parameter"),
            std::string::npos)
      << warning;
  EXPECT_EQ(mlp->fc1->parallel.style, nn::ParallelStyle::kColumn);
}

torch::nn::Sequential stock_mlp() {
  at::manual_seed(5);
  return torch::nn::Sequential(torch::nn::Linear(8, 12), torch::nn::ReLU(), torch::nn::Linear(12, 4));
}

// A refused distribute_module leaves the model as it was: a Sequential's stock layers are
// swapped only once the whole plan is valid, so the caller's parameter handles stay live.
TEST(TensorParallel, ARefusedPlanLeavesTheSequentialAlone) {
  auto model = stock_mlp();
  auto handle = model[0]->as<torch::nn::Linear>()->weight;
  LayoutMap map(model_mesh());
  map.set("0/kernel", {std::nullopt, "model"});
  map.set("2/kernel", {"model", std::nullopt});
  map.set("3/kernel", {"model", std::nullopt});  // matches nothing
  EXPECT_THROW_WITH(distribute_module(*model, ModelParallel(map)), std::invalid_argument,
                    "LayoutMap keys ['3/kernel'] match no parameter");
  EXPECT_NE(model[0]->as<torch::nn::Linear>(), nullptr) << "still the stock layer";
  EXPECT_TRUE(model[0]->named_parameters()["weight"].is_same(handle));
  EXPECT_EQ(model->parameters().size(), 4u);
}

// plan_module and distribute_module accept and refuse the same models, with the same
// messages and, when they accept, the same summary.
TEST(TensorParallel, PlanAndDistributeAgree) {
  struct Case {
    std::string name;
    std::function<std::shared_ptr<torch::nn::Module>()> model;
    std::vector<std::pair<std::string, std::vector<AxisSpec>>> entries;
    std::string batch_axis;
  };
  auto mlp = [] { return Mlp(16, 24, 8).ptr(); };
  auto sequential = [] { return stock_mlp().ptr(); };
  auto holds_stock = [] { return HoldsStockLinear().ptr(); };
  const std::vector<Case> cases{
      {"kdist mlp",
       mlp,
       {{"fc1/kernel", {std::nullopt, "model"}}, {"fc2/kernel", {"model", std::nullopt}}},
       ""},
      {"stock Sequential",
       sequential,
       {{"0/kernel", {std::nullopt, "model"}}, {"2/kernel", {"model", std::nullopt}}},
       ""},
      {"stock Sequential, unmatched key",
       sequential,
       {{"0/kernel", {std::nullopt, "model"}}, {"9/kernel", {"model", std::nullopt}}},
       ""},
      {"stock Sequential, batch axis", sequential, {{"0/kernel", {std::nullopt, "model"}}}, "model"},
      {"stock member", holds_stock, {{"fc/kernel", {std::nullopt, "model"}}}, ""},
      {"stock member, batch axis", holds_stock, {{"fc/kernel", {std::nullopt, "model"}}}, "model"},
      {"row bias", mlp, {{"fc2/kernel", {"model", std::nullopt}}, {"fc2/bias", {"model"}}}, ""},
  };
  for (const auto& c : cases) {
    LayoutMap map(model_mesh());
    for (const auto& [key, axes] : c.entries) map.set(key, axes);
    ModelParallel distribution(map, c.batch_axis);
    std::string planned, distributed;
    try {
      planned = plan_module(*c.model(), distribution, process_id()).to_string();
    } catch (const std::invalid_argument& e) {
      planned = std::string("refused: ") + e.what();
    }
    try {
      distributed = distribute_module(*c.model(), distribution).to_string();
    } catch (const std::invalid_argument& e) {
      distributed = std::string("refused: ") + e.what();
    }
    EXPECT_EQ(planned, distributed) << c.name;
  }
}

// Fewer features or rows than ranks: the chunk rule leaves trailing ranks an empty shard
// (on 4 ranks: vocabulary 9 as 3, 3, 3, 0; 3 features as 1, 1, 1, 0). Every layer still
// computes the single-process result, gradients and SGD steps included.
struct SmallImpl : torch::nn::Module {
  SmallImpl()
      : vocab(register_module("vocab", nn::Embedding(9, 5))),
        dim(register_module("dim", nn::Embedding(9, 3))),
        fc1(register_module("fc1", nn::Linear(8, 3))),
        fc2(register_module("fc2", nn::Linear(3, 2))) {
    dim->parallel.gather_output = true;
  }
  at::Tensor forward(const at::Tensor& ids) {
    auto x = at::cat({vocab(ids), dim(ids)}, -1);  // (n, 8)
    return fc2(at::tanh(fc1(x)));
  }
  nn::Embedding vocab, dim;
  nn::Linear fc1, fc2;
};
TORCH_MODULE(Small);

TEST(TensorParallel, EmptyShardsComputeTheSingleProcessResult) {
  at::manual_seed(13);
  Small reference;
  at::manual_seed(13);
  Small model;
  LayoutMap map(model_mesh());
  map.set("vocab/embeddings", {"model", std::nullopt});  // vocab parallel
  map.set("dim/embeddings", {std::nullopt, "model"});    // embedding-dim parallel
  map.set("fc1/kernel", {std::nullopt, "model"});        // column parallel, 3 outputs
  map.set("fc2/kernel", {"model", std::nullopt});        // row parallel, 3 inputs
  auto summary = distribute_module(*model, ModelParallel(map));
  const int k = num_processes(), r = process_id();
  EXPECT_EQ(model->vocab->weight.size(0), comm::chunk_size(9, k, r));
  EXPECT_EQ(model->fc1->weight.size(0), comm::chunk_size(3, k, r));
  if (k == 4 && r == 3) {
    EXPECT_EQ(model->vocab->weight.numel(), 0);
    EXPECT_EQ(model->dim->weight.numel(), 0);
    EXPECT_EQ(model->fc2->weight.numel(), 0);
  }
  torch::optim::SGD ref_opt(reference->parameters(), torch::optim::SGDOptions(0.1));
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.1));
  auto ids = at::tensor({0, 8, 3, 6, 2, 8, 5}, at::kLong);
  for (int step = 0; step < 3; ++step) {
    ref_opt.zero_grad();
    opt.zero_grad();
    auto want = reference->forward(ids);
    auto got = model->forward(ids);
    expect_close(got, want, "output at step " + std::to_string(step));
    want.pow(2).sum().backward();
    got.pow(2).sum().backward();
    auto ref_params = reference->named_parameters();
    for (const auto& p : model->named_parameters()) {
      auto grad = p.value().grad().defined() ? p.value().grad() : at::zeros_like(p.value());
      expect_close(whole(p.value(), grad), ref_params[p.key()].grad(),
                   "gradient of " + p.key() + " at step " + std::to_string(step));
    }
    ref_opt.step();
    opt.step();
  }
  auto ref_params = reference->named_parameters();
  for (const auto& p : model->named_parameters())
    expect_close(whole(p.value(), p.value()), ref_params[p.key()], "weight " + p.key());
}

TEST(TensorParallel, SummaryCountsBytes) {
  Mlp model(16, 24, 8);
  auto summary = distribute_module(*model, ModelParallel(keras_mlp_plan(model_mesh())));
  const int k = num_processes(), r = process_id();
  const int64_t h = comm::chunk_size(24, k, r);
  EXPECT_EQ(summary.sharded_bytes, 4 * (h * 16 + h + 8 * h));
  EXPECT_EQ(summary.replicated_bytes, 4 * 8);
  EXPECT_EQ(summary.global_bytes, 4 * (24 * 16 + 24 + 8 * 24 + 8));
  auto text = summary.to_string();
  EXPECT_NE(text.find("fc1.weight  (24, 16)"), std::string::npos) << text;
  EXPECT_NE(text.find("column"), std::string::npos) << text;
}

TEST(TensorParallel2x2, MlpOnTheModelAxisOfA2x2Mesh) {
  ASSERT_EQ(num_processes(), 4);
  LayoutMap map = keras_mlp_plan(testing::mesh_2x2());
  auto summary = distribute_module(*Mlp(16, 24, 8), ModelParallel(map));
  EXPECT_EQ(summary.parameters[0].placements, (std::vector<Placement>{Replicate{}, Shard{0}}));
  // Same data on every rank: the batch replicas agree without gradient sync.
  train_and_compare<torch::optim::Adam>(map, torch::optim::AdamOptions(1e-2), 5, "batch");
}

}  // namespace
}  // namespace kdist
