#pragma once
// The FSDP tests' harness: train a model distributed by a layout map and in one process on
// the global batch, and compare losses and parameters (tests/nn/batch_shard_test.cpp,
// tests/nn/fully_shard_test.cpp).
#include <gtest/gtest.h>
#include <kdist/nn.h>
#include <kdist/sync.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>

#include <functional>

#include "../mp_util.h"
#include "models.h"

namespace kdist::testing {

using Entries = std::vector<std::pair<std::string, std::vector<AxisSpec>>>;

inline at::Tensor whole(const at::Tensor& param) {
  auto d = as_dtensor(param);
  return d ? d->full_tensor() : param;
}

inline float value(const at::Tensor& scalar) { return scalar.item<float>(); }

struct Case {
  std::function<std::shared_ptr<torch::nn::Module>()> build;
  std::function<at::Tensor(torch::nn::Module&, const at::Tensor&)> forward;
  std::function<at::Tensor(int64_t rows)> inputs;  // the global batch of a step
  int64_t outputs;
};

inline Case mlp_case(int64_t in, int64_t hidden, int64_t out) {
  return {
      [=] { return Mlp(in, hidden, out).ptr(); },
      [](torch::nn::Module& m, const at::Tensor& x) { return static_cast<testing::MlpImpl&>(m).forward(x); },
      [=](int64_t rows) {
        return at::randn({rows, in});
      },
      out};
}

// Trains the case distributed by `entries` (each process on its data shard's rows, with
// GradientSync) and in one process on the whole batch: per-step losses within 1e-5 relative,
// final full parameters within 1e-5. Returns the distributed model's summary.
template <typename Optimizer, typename Options>
DistributionSummary train_and_compare(const Case& c, DeviceMeshPtr mesh, const Entries& entries,
                                      Options options, const std::string& batch_axis = "", int steps = 4,
                                      DistributeModuleOptions module_options = {}) {
  LayoutMap map(mesh);
  for (const auto& [key, axes] : entries) map.set(key, axes);
  ModelParallel distribution(map, batch_axis);
  at::manual_seed(17);
  auto reference = c.build();
  at::manual_seed(17);
  auto model = c.build();
  auto summary = distribute_module(*model, distribution, module_options);
  GradientSync sync(*model, distribution);
  Optimizer ref_opt(reference->parameters(), options), opt(model->parameters(), options);
  const int64_t shards = distribution.num_data_shards(), shard = distribution.data_shard_id();
  auto batch_group = comm::axis_group(*mesh, distribution.batch_dim_name());
  at::manual_seed(23);
  for (int step = 0; step < steps; ++step) {
    auto x = c.inputs(16);
    auto y = at::randn({16, c.outputs});
    ref_opt.zero_grad();
    auto want = at::mse_loss(c.forward(*reference, x), y);
    want.backward();
    ref_opt.step();
    opt.zero_grad();
    auto got =
        at::mse_loss(c.forward(*model, chunk_piece(x, 0, shards, shard)), chunk_piece(y, 0, shards, shard));
    got.backward();
    opt.step();
    auto mean = got.detach().clone().view({1});
    comm::all_reduce(mean, comm::ReduceOp::kAvg, *batch_group);
    EXPECT_NEAR(value(mean), value(want), 1e-5 * std::abs(value(want)) + 1e-7) << "loss at step " << step;
  }
  auto ref = reference->named_parameters();
  for (const auto& p : model->named_parameters())
    EXPECT_TRUE(at::allclose(whole(p.value()), ref[p.key()], 1e-5, 1e-5))
        << p.key() << ": max difference " << value((whole(p.value()) - ref[p.key()]).abs().max());
  return summary;
}

// no_sync: two micro-batches of the case accumulate without communicating (no reduce_scatter,
// no all_reduce), and the synchronised backward after them reduce-scatters the sum: every
// gradient, whole, within 1e-5 of one process's accumulated over the three global batches.
inline void expect_no_sync_accumulates(const Case& c, const LayoutMap& map) {
  const int k = num_processes(), r = process_id();
  at::manual_seed(5);
  auto reference = c.build();
  at::manual_seed(5);
  auto model = c.build();
  ModelParallel distribution(map);
  distribute_module(*model, distribution);
  GradientSync sync(*model, distribution);
  auto backward = [&](torch::nn::Module& m, const at::Tensor& x) {
    c.forward(m, x).pow(2).mean().backward();
  };
  at::manual_seed(6);
  auto a = c.inputs(2 * k), b = c.inputs(2 * k), last = c.inputs(2 * k);
  for (const auto& batch : {a, b, last}) backward(*reference, batch);
  {
    auto guard = sync.no_sync();
    comm::CollectiveCounter counter;
    for (const auto& batch : {a, b}) backward(*model, chunk_piece(batch, 0, k, r));
    EXPECT_EQ(counter.count("reduce_scatter"), 0);
    EXPECT_EQ(counter.count("all_reduce"), 0);
  }
  backward(*model, chunk_piece(last, 0, k, r));
  auto ref = reference->named_parameters();
  for (const auto& p : model->named_parameters()) {
    auto d = as_dtensor(p.value());
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    auto grad =
        d ? DTensor::from_local(p.value().grad(), d->device_mesh(), d->placements(), d->sizes()).full_tensor()
          : p.value().grad();
    EXPECT_TRUE(at::allclose(grad, ref[p.key()].grad(), 1e-5, 1e-6)) << "accumulated " << p.key();
  }
}

// DistributeModuleOptions that keep gathered weights until backward.
inline DistributeModuleOptions kept_until_backward() {
  DistributeModuleOptions options;
  options.reshard_after_forward = false;
  return options;
}

inline DeviceMeshPtr line(const std::string& name) {
  return std::make_shared<DeviceMesh>(std::vector<int64_t>{num_processes()}, std::vector<std::string>{name});
}

const torch::optim::SGDOptions kSgd = torch::optim::SGDOptions(0.05).momentum(0.9);
const torch::optim::AdamOptions kAdam = torch::optim::AdamOptions(1e-2);

}  // namespace kdist::testing
