// Multi-process tests of src/nn/batch_norm.cpp: BatchNorm under data parallelism computes the
// global batch's statistics, so a model trains as it does in one process on the whole batch:
// outputs, gradients through the statistics, running statistics and eval outputs, with batches
// that do not divide over the ranks. SyncBatchNorm.* runs on 1, 2 and 4 ranks,
// SyncBatchNorm2x2.* on 4 (a (model, batch) mesh, the batch axis second).
#include <kdist/kdist.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>

#include "../mp_util.h"

namespace kdist {
namespace {

// A custom module that declares its BatchNorm as kdist's (a stock one there cannot be swapped).
struct DeclaredImpl : torch::nn::Module {
  DeclaredImpl()
      : fc(register_module("fc", nn::Linear(6, 8))),
        bn(register_module("bn", nn::SyncBatchNorm(torch::nn::BatchNormOptions(8).momentum(std::nullopt)))),
        out(register_module("out", nn::Linear(8, 3))) {}
  at::Tensor forward(const at::Tensor& x) { return out(at::relu(bn(fc(x)))); }
  nn::Linear fc;
  nn::SyncBatchNorm bn;
  nn::Linear out;
};
TORCH_MODULE(Declared);

struct HoldsStockBatchNormImpl : torch::nn::Module {
  HoldsStockBatchNormImpl() : bn(register_module("bn", torch::nn::BatchNorm1d(4))) {}
  at::Tensor forward(const at::Tensor& x) { return bn(x); }
  torch::nn::BatchNorm1d bn;
};
TORCH_MODULE(HoldsStockBatchNorm);

struct Case {
  std::string name;
  std::function<std::shared_ptr<torch::nn::Module>()> make;
  std::function<at::Tensor(torch::nn::Module&, const at::Tensor&)> forward;
  std::vector<int64_t> input;  // one row's shape
};

template <typename Holder>
std::function<at::Tensor(torch::nn::Module&, const at::Tensor&)> forward_of() {
  return [](torch::nn::Module& m, const at::Tensor& x) {
    return dynamic_cast<typename Holder::ContainedType&>(m).forward(x);
  };
}

std::vector<Case> cases() {
  return {
      {"BatchNorm1d in a Sequential",
       [] {
         return torch::nn::Sequential(torch::nn::Linear(6, 8), torch::nn::BatchNorm1d(8), torch::nn::ReLU(),
                                      torch::nn::Linear(8, 3))
             .ptr();
       },
       forward_of<torch::nn::Sequential>(),
       {6}},
      {"BatchNorm2d in a Sequential",
       [] {
         return torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 4, 3).padding(1)),
                                      torch::nn::BatchNorm2d(4), torch::nn::ReLU(), torch::nn::Flatten(),
                                      torch::nn::Linear(4 * 5 * 5, 3))
             .ptr();
       },
       forward_of<torch::nn::Sequential>(),
       {2, 5, 5}},
      {"BatchNorm1d without affine on 3-D input",
       [] {
         return torch::nn::Sequential(torch::nn::BatchNorm1d(torch::nn::BatchNormOptions(3).affine(false)),
                                      torch::nn::Flatten(), torch::nn::Linear(3 * 4, 3))
             .ptr();
       },
       forward_of<torch::nn::Sequential>(),
       {3, 4}},
      {"SyncBatchNorm declared, cumulative average",
       [] { return Declared().ptr(); },
       forward_of<Declared>(),
       {6}},
  };
}

std::vector<int64_t> batch_of(int64_t rows, std::vector<int64_t> row) {
  row.insert(row.begin(), rows);
  return row;
}

// Three SGD steps under `distribution` against one process on the global batch (10 rows: 3, 3,
// 3, 1 on 4 ranks). Each rank's loss is its rows' share of the global mean, so GradientSync's
// average is the global mean's gradient.
void expect_trains_as_one_process(const Case& c, const Distribution& distribution) {
  SCOPED_TRACE(c.name);
  at::manual_seed(9);
  auto reference = c.make();
  at::manual_seed(9);
  auto model = c.make();
  distribute_module(*model, distribution);
  GradientSync sync(*model, distribution);
  torch::optim::SGD ref_opt(reference->parameters(), 0.1), opt(model->parameters(), 0.1);
  const int64_t rows = 10, shards = distribution.num_data_shards(), shard = distribution.data_shard_id();
  at::manual_seed(2);
  for (int step = 0; step < 3; ++step) {
    auto x = at::randn(batch_of(rows, c.input)), y = at::randn({rows, 3});
    auto mine = testing::chunk_piece(x, 0, shards, shard), my_y = testing::chunk_piece(y, 0, shards, shard);
    ref_opt.zero_grad();
    opt.zero_grad();
    auto want = c.forward(*reference, x);
    at::mse_loss(want, y).backward();
    auto got = c.forward(*model, mine);
    EXPECT_TRUE(at::allclose(got, testing::chunk_piece(want, 0, shards, shard), 1e-5, 1e-5))
        << "output at step " << step;
    (at::mse_loss(got, my_y, at::Reduction::Sum) * double(shards) / double(want.numel())).backward();
    ref_opt.step();
    opt.step();
  }
  auto ref_params = reference->named_parameters();
  for (const auto& p : model->named_parameters())
    EXPECT_TRUE(at::allclose(p.value(), ref_params[p.key()], 1e-5, 1e-6))
        << p.key() << ": max abs difference " << (p.value() - ref_params[p.key()]).abs().max().item<float>();
  auto ref_buffers = reference->named_buffers();
  for (const auto& b : model->named_buffers())
    EXPECT_TRUE(at::allclose(b.value().to(at::kDouble), ref_buffers[b.key()].to(at::kDouble), 1e-5, 1e-6))
        << "buffer " << b.key() << ": " << b.value() << " one process: " << ref_buffers[b.key()];
  reference->eval();
  model->eval();
  auto x = at::randn(batch_of(rows, c.input));
  EXPECT_TRUE(at::allclose(c.forward(*model, testing::chunk_piece(x, 0, shards, shard)),
                           testing::chunk_piece(c.forward(*reference, x), 0, shards, shard), 1e-5, 1e-5))
      << "eval output, from the running statistics";
}

TEST(SyncBatchNorm, TrainsAsOneProcessOnTheGlobalBatch) {
  for (const auto& c : cases()) expect_trains_as_one_process(c, DataParallel());
}

TEST(SyncBatchNorm, StockBatchNormBecomesSyncBatchNormOverSeveralProcesses) {
  torch::nn::Sequential model(torch::nn::Linear(6, 8), torch::nn::BatchNorm1d(8));
  auto weight = model[1]->as<torch::nn::BatchNorm1dImpl>()->weight;
  auto running_mean = model[1]->as<torch::nn::BatchNorm1dImpl>()->running_mean;
  const auto summary = distribute_module(*model, DataParallel());
  if (num_processes() == 1) {
    EXPECT_NE(model[1]->as<torch::nn::BatchNorm1dImpl>(), nullptr) << "one process: nothing to synchronise";
    return;
  }
  auto* sync_bn = model[1]->as<nn::SyncBatchNormImpl>();
  ASSERT_NE(sync_bn, nullptr);
  EXPECT_TRUE(sync_bn->weight.is_same(weight)) << "the stock layer's own parameter";
  EXPECT_TRUE(sync_bn->running_mean.is_same(running_mean)) << "and buffers";
  ASSERT_TRUE(sync_bn->group);
  EXPECT_EQ(sync_bn->group->size(), num_processes());
  ASSERT_EQ(summary.layers.size(), 2u);  // the Linear and the BatchNorm
  EXPECT_EQ(summary.layers[1].kind, LayerKind::kSyncBatchNorm);
  EXPECT_EQ(summary.layers[1].collectives({4, 0, true}).size(), 4u);
}

// DDP's behaviour on request: each process normalises with its own rows.
TEST(SyncBatchNorm, PerReplicaStatisticsKeepTheStockLayer) {
  at::manual_seed(3);
  torch::nn::Sequential model(torch::nn::BatchNorm1d(4));
  at::manual_seed(3);
  torch::nn::BatchNorm1d alone(4);
  DistributeModuleOptions options;
  options.batch_statistics = nn::BatchStatistics::kPerReplica;
  distribute_module(*model, DataParallel(), options);
  ASSERT_NE(model[0]->as<torch::nn::BatchNorm1dImpl>(), nullptr);
  at::manual_seed(4 + process_id());
  auto x = at::randn({5, 4});
  EXPECT_TRUE(at::allclose(model->forward(x), alone->forward(x)));

  HoldsStockBatchNorm custom;
  EXPECT_NO_THROW(distribute_module(*custom, DataParallel(), options));
}

TEST(SyncBatchNorm, AStockBatchNormKdistCannotReplaceIsAnError) {
  HoldsStockBatchNorm custom;
  if (num_processes() == 1) {
    EXPECT_NO_THROW(plan_module(*custom, DataParallel(), 0));
    return;
  }
  EXPECT_THROW_WITH(
      plan_module(*custom, DataParallel(), 0), std::invalid_argument,
      "[kdist.nn] 'bn' is a stock torch::nn::BatchNorm1dImpl that kdist cannot replace (only a "
      "torch::nn::Sequential's children are): over the batch axis 'batch' (" +
          std::to_string(num_processes()) +
          " processes) it would normalise with each process's rows, unlike one process. Declare it as "
          "kdist::nn::SyncBatchNorm, or set DistributeModuleOptions::batch_statistics to "
          "kdist::nn::BatchStatistics::kPerReplica");
}

TEST(SyncBatchNorm, ErrorsNameTheLayer) {
  nn::SyncBatchNorm bn(4);
  EXPECT_THROW_WITH(bn->forward(at::randn({3, 5})), std::invalid_argument,
                    "[kdist.nn] SyncBatchNorm(4) got 5 channels (dimension 1 of input [3, 5])");
  EXPECT_THROW_WITH(bn->forward(at::randn({3})), std::invalid_argument,
                    "SyncBatchNorm(4) expects at least 2-D inputs (N, C, ...), got 1-D input");
  torch::nn::Sequential model(torch::nn::BatchNorm2d(4));
  distribute_module(*model, DataParallel());
  if (num_processes() > 1)
    EXPECT_THROW_WITH(model->forward(at::randn({3, 4})), std::invalid_argument,
                      "SyncBatchNorm(4) expects 4-D inputs (N, C, ...), got 2-D input of shape [3, 4]");
  if (num_processes() > 1)  // one row on one process and none elsewhere: one value per channel
    EXPECT_THROW_WITH(
        model->forward(at::randn({process_id() == 0 ? 1 : 0, 4, 1, 1})), std::invalid_argument,
        "SyncBatchNorm expected more than 1 value per channel when training, got 1 over the batch "
        "axis' " +
            std::to_string(num_processes()) + " processes");
}

// On a (model, batch) mesh the statistics are summed over the batch axis alone: the model axis'
// processes hold the same rows.
TEST(SyncBatchNorm2x2, TheBatchAxisSecond) {
  ASSERT_EQ(num_processes(), 4);
  auto mesh =
      std::make_shared<DeviceMesh>(std::vector<int64_t>{2, 2}, std::vector<std::string>{"model", "batch"});
  const ModelParallel distribution(LayoutMap(mesh), "batch");
  for (const auto& c : cases()) expect_trains_as_one_process(c, distribution);
}

}  // namespace
}  // namespace kdist
