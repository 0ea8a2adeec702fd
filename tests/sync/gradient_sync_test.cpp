// Multi-process tests of src/sync/gradient_sync.cpp against one process on the global batch.
// DataParallel.* runs on 2 and 4 ranks; DataParallel2x2.* on a 2x2 (batch, model) mesh.
#include <kdist/nn.h>
#include <kdist/sync.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>

#include <unistd.h>

#include <cstdlib>

#include "../mp_util.h"
#include "../nn/models.h"

namespace kdist {
namespace {
using testing::chunk_piece;
using testing::Mlp;

void expect_close(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
  EXPECT_TRUE(at::allclose(got, want, /*rtol=*/1e-5, /*atol=*/1e-6))
      << what << ": max abs difference " << (got - want).abs().max().item<float>();
}

// The whole tensor of a parameter that may be sharded over the model axis.
at::Tensor whole(const at::Tensor& param) {
  auto d = as_dtensor(param);
  return d ? d->full_tensor() : param;
}

// Trains `model` data-parallel on this rank's rows of each global batch and `reference` on the
// whole batch, and compares the weights after every step.
template <typename Optimizer, typename Options>
void train_and_compare(Mlp& reference, Mlp& model, const Distribution& dist, Options options, int steps,
                       comm::Transport transport = comm::Transport::kAuto) {
  GradientSyncOptions sync_options;
  sync_options.group.transport = transport;
  GradientSync sync(*model, dist, sync_options);
  // All ranks of these tests run on one host: kAuto picks shared memory.
  EXPECT_EQ(comm::transport(sync.group()),
            transport == comm::Transport::kGloo ? comm::Transport::kGloo : comm::Transport::kSharedMemory);
  Optimizer ref_opt(reference->parameters(), options), opt(model->parameters(), options);
  const int64_t shards = dist.num_data_shards(), shard = dist.data_shard_id();
  at::manual_seed(99);
  for (int step = 0; step < steps; ++step) {
    auto x = at::randn({16, 12});
    auto y = at::randn({16, 4});
    ref_opt.zero_grad();
    at::mse_loss(reference->forward(x), y).backward();
    ref_opt.step();
    opt.zero_grad();
    at::mse_loss(model->forward(chunk_piece(x, 0, shards, shard)), chunk_piece(y, 0, shards, shard))
        .backward();
    opt.step();
    auto ref = reference->named_parameters();
    for (const auto& p : model->named_parameters())
      expect_close(whole(p.value()), ref[p.key()], p.key() + " after step " + std::to_string(step));
  }
}

TEST(DataParallel, MatchesOneProcessOnTheGlobalBatch) {
  for (auto transport : {comm::Transport::kAuto, comm::Transport::kGloo})
    for (int optimizer = 0; optimizer < 2; ++optimizer) {
      SCOPED_TRACE(comm::to_string(transport));
      at::manual_seed(100);
      Mlp reference(12, 20, 4);
      at::manual_seed(100 + process_id());  // replicas start different: the sync broadcasts rank 0's
      Mlp model(12, 20, 4);
      DataParallel dp;
      if (optimizer == 0)
        train_and_compare<torch::optim::SGD>(reference, model, dp,
                                             torch::optim::SGDOptions(0.05).momentum(0.9), 5, transport);
      else
        train_and_compare<torch::optim::Adam>(reference, model, dp, torch::optim::AdamOptions(1e-2), 5,
                                              transport);
    }
}

// Shared memory and Gloo give the same averages: bit for bit on 2 ranks (a + b either way),
// within rounding on 4 (the summation order differs).
TEST(DataParallel, TransportsAgree) {
  at::manual_seed(8);
  Mlp shm_model(12, 20, 4);
  at::manual_seed(8);
  Mlp gloo_model(12, 20, 4);
  GradientSyncOptions shm_options, gloo_options;
  shm_options.group.transport = comm::Transport::kSharedMemory;
  gloo_options.group.transport = comm::Transport::kGloo;
  GradientSync shm_sync(*shm_model, DataParallel(), shm_options);
  GradientSync gloo_sync(*gloo_model, DataParallel(), gloo_options);
  EXPECT_EQ(comm::transport(shm_sync.group()), comm::Transport::kSharedMemory);
  EXPECT_EQ(comm::transport(gloo_sync.group()), comm::Transport::kGloo);
  at::manual_seed(9 + process_id());
  auto x = at::randn({5, 12});
  for (auto* m : {&shm_model, &gloo_model}) (*m)->forward(x).pow(2).mean().backward();
  auto gloo_params = gloo_model->named_parameters();
  for (const auto& p : shm_model->named_parameters()) {
    const auto& got = p.value().grad();
    const auto& want = gloo_params[p.key()].grad();
    if (num_processes() == 2)
      EXPECT_TRUE(at::equal(got, want)) << p.key();
    else
      expect_close(got, want, p.key());
  }
}

// Processes that cannot map one segment make a batch group that falls back to Gloo under
// kAuto; kSharedMemory says why it cannot be had. Run by mp.data_parallel.shm_apart, whose
// ranks each look for segments in a directory of their own (KDIST_SHM_DIR, as on two hosts).
TEST(DataParallelApart, FallsBackToGlooWhereProcessesCannotShareMemory) {
  DataParallel dp;
  Mlp model(12, 20, 4);
  GradientSync sync(*model, dp);
  EXPECT_EQ(comm::transport(sync.group()), comm::Transport::kGloo);
  GradientSyncOptions forced;
  forced.group.transport = comm::Transport::kSharedMemory;
  EXPECT_THROW_WITH(GradientSync(*model, dp, forced), std::runtime_error,
                    "[kdist.comm] shared memory was asked for, but the processes of batch (ranks ");
  at::manual_seed(30 + process_id());  // each rank its own rows: equal gradients prove the sync
  at::mse_loss(model->forward(at::randn({4, 12})), at::zeros({4, 4})).backward();
  auto grads = comm::all_gather(model->fc1->weight.grad().unsqueeze(0), 0, *comm::world());
  for (int q = 1; q < num_processes(); ++q) EXPECT_TRUE(at::equal(grads[q], grads[0]));
}

// A backward that throws halfway runs no end-of-backward callback: here fc2's gradients have
// reached their buckets when fc1.weight's accumulation fails (it holds a gradient of the wrong
// shape, on every rank). The next backward must synchronise all the same.
TEST(DataParallel, SynchronisesAgainAfterABackwardThatThrew) {
  at::manual_seed(7);
  Mlp model(12, 20, 4);
  GradientSync sync(*model, DataParallel());
  model->fc1->weight.mutable_grad() = at::zeros({3});
  EXPECT_ANY_THROW(model->forward(at::randn({4, 12})).pow(2).mean().backward());
  model->zero_grad(/*set_to_none=*/true);
  at::manual_seed(40 + process_id());  // each rank its own rows: equal gradients prove the sync
  at::mse_loss(model->forward(at::randn({4, 12})), at::zeros({4, 4})).backward();
  for (const auto& p : model->named_parameters()) {
    auto grads = comm::all_gather(p.value().grad().unsqueeze(0), 0, *comm::world());
    for (int q = 1; q < num_processes(); ++q) EXPECT_TRUE(at::equal(grads[q], grads[0])) << p.key();
  }
}

// The end-of-backward callback may run after the GradientSync that queued it is gone (here it
// is destroyed by a hook during backward): it must then do nothing.
TEST(DataParallel, DestroyedDuringBackward) {
  Mlp model(12, 20, 4);
  auto sync = std::make_unique<GradientSync>(*model, DataParallel());
  auto hidden = model->fc1->forward(at::randn({4, 12}));
  hidden.register_hook([&](const at::Tensor& grad) {
    sync.reset();
    return grad;
  });
  model->fc2->forward(at::relu(hidden)).pow(2).mean().backward();
  EXPECT_EQ(sync, nullptr);
  EXPECT_TRUE(model->fc1->weight.grad().defined());
}

TEST(DataParallel, BucketsAndCommunication) {
  Mlp model(12, 20, 4);
  GradientSyncOptions small;
  small.first_bucket_bytes = 4 * 30;  // fc2 (4x20 + 4): the first bucket holds one tensor
  small.bucket_bytes = 4 * 300;
  GradientSync sync(*model, DataParallel(), small);
  EXPECT_EQ(sync.synchronized_parameters(), 4);
  EXPECT_GT(sync.num_buckets(), 1);
  comm::CollectiveCounter counter;
  at::mse_loss(model->forward(at::randn({4, 12})), at::zeros({4, 4})).backward();
  EXPECT_EQ(counter.count("all_reduce"), sync.num_buckets());
  // Gradients live in the buckets after the first step: a second step needs no copy and
  // gives the same averages.
  auto first = model->fc1->weight.grad().clone();
  model->zero_grad(/*set_to_none=*/false);
  at::mse_loss(model->forward(at::randn({4, 12})), at::zeros({4, 4})).backward();
  EXPECT_FALSE(at::equal(first, model->fc1->weight.grad()));
}

// plan_gradient_sync cuts the buckets GradientSync cuts, and one synchronised backward sends
// what it says: one all_reduce per bucket (gradients and a flag each), a broadcast per buffer;
// the SyncBatchNorm that replaced the stock one sends what its layer plan says.
TEST(DataParallel, PlanIsWhatRuns) {
  at::manual_seed(11);
  auto model =
      torch::nn::Sequential(torch::nn::Linear(6, 8), torch::nn::BatchNorm1d(8), torch::nn::Linear(8, 2));
  DataParallel dp;
  const auto summary = distribute_module(*model, dp);  // the stock Linears become kdist's
  GradientSyncOptions small;
  small.first_bucket_bytes = 4 * 20;  // the last Linear's bias and weight, then the rest
  small.bucket_bytes = 4 * 60;
  const auto plan = plan_gradient_sync(summary, dp, *model, small);
  GradientSync sync(*model, dp, small);
  std::vector<int64_t> planned_buckets;
  std::map<std::string, std::pair<int64_t, int64_t>> want;
  for (const auto& c : plan) {
    EXPECT_EQ(c.group_size, num_processes());
    EXPECT_TRUE(c.once_per_step) << c.what;
    if (c.kind == "all_reduce") planned_buckets.push_back(c.bytes / 4);
    want[c.kind].first += 1;
    want[c.kind].second += c.bytes;
  }
  // Each bucket: its gradient elements, then one flag per parameter.
  auto numels = sync.bucket_numels();
  ASSERT_EQ(planned_buckets.size(), numels.size());
  EXPECT_GT(numels.size(), 2u);
  int64_t flags = 0;
  for (size_t b = 0; b < numels.size(); ++b) flags += planned_buckets[b] - numels[b];
  EXPECT_EQ(flags, 6);                    // two Linears' weight and bias, BatchNorm's weight and bias
  EXPECT_EQ(want["broadcast"].first, 3);  // running mean, running var, batches tracked
  int64_t planned_total = static_cast<int64_t>(plan.size());
  for (const auto& layer : summary.layers)
    for (const auto& c : layer.collectives({4, 0, true})) {
      want[c.kind].first += 1;
      want[c.kind].second += c.bytes;
      ++planned_total;
    }
  if (num_processes() > 1) {
    EXPECT_EQ(want["all_reduce"].first, static_cast<int64_t>(numels.size()) + 4);
  }
  comm::CollectiveCounter counter;
  model->forward(at::randn({4, 6})).pow(2).mean().backward();
  for (const auto& [kind, counted] : want) {
    EXPECT_EQ(counter.count(kind), counted.first) << kind;
    EXPECT_EQ(counter.bytes(kind), counted.second) << kind;
  }
  EXPECT_EQ(counter.total_count(), planned_total);
}

// BatchNorm's running statistics see only each replica's rows. As with DDP, every replica's
// buffers become the first replica's after a step, unless broadcast_buffers is off.
TEST(DataParallel, BuffersFollowTheFirstReplica) {
  const int k = num_processes(), r = process_id();
  auto make = [] {
    at::manual_seed(11);
    return torch::nn::Sequential(torch::nn::Linear(6, 8), torch::nn::BatchNorm1d(8), torch::nn::Linear(8, 2));
  };
  at::manual_seed(12);
  const auto x = at::randn({4 * k, 6});
  auto first_replica = make();  // one process on rank 0's rows
  first_replica->forward(chunk_piece(x, 0, k, 0)).pow(2).mean().backward();
  for (bool broadcast : {true, false}) {
    auto model = make();
    GradientSyncOptions options;
    options.broadcast_buffers = broadcast;
    GradientSync sync(*model, DataParallel(), options);
    model->forward(chunk_piece(x, 0, k, r)).pow(2).mean().backward();
    auto want = first_replica->named_buffers();
    for (const auto& b : model->named_buffers()) {
      if (broadcast || r == 0) {
        EXPECT_TRUE(at::allclose(b.value(), want[b.key()])) << b.key() << ", broadcast " << broadcast;
      } else if (b.key() != "1.num_batches_tracked") {
        EXPECT_FALSE(at::allclose(b.value(), want[b.key()])) << b.key() << " is rank 0's without a broadcast";
      }
    }
  }
}

// fc1 feeds fc2, and `extra` is used only on rank 0 (or nowhere).
struct BranchyImpl : torch::nn::Module {
  BranchyImpl()
      : fc1(register_module("fc1", nn::Linear(6, 8))),
        fc2(register_module("fc2", nn::Linear(8, 2))),
        extra(register_module("extra", nn::Linear(8, 2))),
        unused(register_module("unused", nn::Linear(2, 2))) {}
  at::Tensor forward(const at::Tensor& x, bool branch) {
    auto h = at::relu(fc1(x));
    return branch ? fc2(h) + extra(h) : fc2(h);
  }
  nn::Linear fc1, fc2, extra, unused;
};
TORCH_MODULE(Branchy);

TEST(DataParallel, UnusedParameters) {
  const int k = num_processes(), r = process_id();
  at::manual_seed(3);
  Branchy reference;
  at::manual_seed(3);
  Branchy model;
  GradientSync sync(*model, DataParallel());
  at::manual_seed(4);
  auto x = at::randn({4 * k, 6});
  // One process, global batch: the mean of every rank's loss, the branch on rank 0's rows.
  at::Tensor total = at::zeros({});
  for (int q = 0; q < k; ++q)
    total = total + reference->forward(chunk_piece(x, 0, k, q), q == 0).pow(2).mean() / k;
  total.backward();
  model->forward(chunk_piece(x, 0, k, r), r == 0).pow(2).mean().backward();
  for (const char* name : {"fc1.weight", "fc2.bias", "extra.weight", "extra.bias"})
    expect_close(model->named_parameters()[name].grad(), reference->named_parameters()[name].grad(), name);
  EXPECT_FALSE(model->unused->weight.grad().defined()) << "no rank used it: no gradient";
  EXPECT_FALSE(reference->unused->weight.grad().defined());
}

TEST(DataParallel, NoSyncAccumulates) {
  const int k = num_processes(), r = process_id();
  at::manual_seed(5);
  Mlp reference(12, 20, 4);
  at::manual_seed(5);
  Mlp model(12, 20, 4);
  GradientSync sync(*model, DataParallel());
  at::manual_seed(6);
  auto a = at::randn({2 * k, 12}), b = at::randn({2 * k, 12});
  for (const auto& batch : {a, b}) reference->forward(batch).pow(2).mean().backward();
  {
    auto guard = sync.no_sync();
    comm::CollectiveCounter counter;
    model->forward(chunk_piece(a, 0, k, r)).pow(2).mean().backward();
    EXPECT_EQ(counter.total_count(), 0);
  }
  model->forward(chunk_piece(b, 0, k, r)).pow(2).mean().backward();
  auto ref = reference->named_parameters();
  for (const auto& p : model->named_parameters())
    expect_close(p.value().grad(), ref[p.key()].grad(), "accumulated " + p.key());
}

TEST(DataParallel2x2, MlpWithModelAndBatchAxes) {
  ASSERT_EQ(num_processes(), 4);
  ModelParallel mp(testing::keras_mlp_plan(testing::mesh_2x2()));  // 2 replicas of a 2-way TP MLP
  at::manual_seed(100);
  Mlp reference(12, 20, 4);
  at::manual_seed(100);
  Mlp model(12, 20, 4);
  distribute_module(*model, mp);
  EXPECT_EQ(mp.num_data_shards(), 2);
  EXPECT_EQ(mp.data_shard_id(), mp.device_mesh()->coordinate_of(process_id())[0]);
  train_and_compare<torch::optim::Adam>(reference, model, mp, torch::optim::AdamOptions(1e-2), 5);
}

// The batch axis second: ranks 0..3 sit at (model, batch) = (0,0), (0,1), (1,0), (1,1), so
// they read data shards 0, 1, 0, 1, and the ranks of a model group ({0, 2}, {1, 3}) read the
// same rows. Trained against one process, which fails if a model group reads two shards.
TEST(DataParallel2x2, MlpOnAModelBatchMesh) {
  ASSERT_EQ(num_processes(), 4);
  auto mesh =
      std::make_shared<DeviceMesh>(std::vector<int64_t>{2, 2}, std::vector<std::string>{"model", "batch"});
  ModelParallel mp(testing::keras_mlp_plan(mesh), "batch");
  EXPECT_EQ(mp.num_data_shards(), 2);
  EXPECT_EQ(mp.data_shard_id(), std::vector<int64_t>({0, 1, 0, 1})[process_id()]);
  at::manual_seed(100);
  Mlp reference(12, 20, 4);
  at::manual_seed(100);
  Mlp model(12, 20, 4);
  distribute_module(*model, mp);
  train_and_compare<torch::optim::SGD>(reference, model, mp, torch::optim::SGDOptions(0.05).momentum(0.9), 4);
}

TEST(DataParallel2x2, GptWithModelAndBatchAxes) {
  ASSERT_EQ(num_processes(), 4);
  auto mesh = testing::mesh_2x2();
  ModelParallel mp(testing::gpt_tensor_parallel_map(mesh));
  at::manual_seed(4);
  testing::TinyGpt reference(50, 8, 32, 4);
  at::manual_seed(4);
  testing::TinyGpt model(50, 8, 32, 4);
  distribute_module(*model, mp);
  GradientSync sync(*model, mp);
  torch::optim::Adam ref_opt(reference->parameters(), torch::optim::AdamOptions(3e-3));
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(3e-3));
  at::manual_seed(21);
  auto ids = at::randint(0, 50, {8, 8}, at::kLong);
  auto targets = at::randint(0, 50, {8, 8}, at::kLong);
  auto loss_of = [](testing::TinyGpt& m, const at::Tensor& in, const at::Tensor& out) {
    return at::cross_entropy_loss(m->forward(in).view({-1, 50}), out.reshape({-1}));
  };
  const int64_t shard = mp.data_shard_id();
  for (int step = 0; step < 10; ++step) {
    ref_opt.zero_grad();
    auto want = loss_of(reference, ids, targets);
    want.backward();
    ref_opt.step();
    opt.zero_grad();
    auto got = loss_of(model, chunk_piece(ids, 0, 2, shard), chunk_piece(targets, 0, 2, shard));
    got.backward();
    opt.step();
    // The global loss is the mean of the two replicas' losses.
    auto mean = got.detach().clone().view({1});
    comm::all_reduce(mean, comm::ReduceOp::kAvg, *comm::axis_group(*mesh, "batch"));
    EXPECT_NEAR(mean.item<float>(), want.item<float>(), 1e-4 * std::max(1.0f, want.item<float>()))
        << "step " << step;
  }
}

}  // namespace
}  // namespace kdist
