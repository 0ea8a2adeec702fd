// A small transformer trained tensor-parallel matches the same model in one process.
// TensorParallelGpt.* runs on 2 and 4 ranks ((batch=1, model=N) mesh); TensorParallelGpt2x2.* on a
// 2x2 (batch, model) mesh with the model axis used.
#include <kdist/nn.h>
#include <torch/optim/adam.h>

#include "../mp_util.h"
#include "models.h"

namespace kdist {
namespace {
using testing::TinyGpt;

std::vector<float> train(TinyGpt& model, int steps) {
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(3e-3));
  at::manual_seed(21);
  auto ids = at::randint(0, 50, {4, 8}, at::kLong);
  auto targets = at::randint(0, 50, {4, 8}, at::kLong);
  std::vector<float> losses;
  for (int step = 0; step < steps; ++step) {
    optimizer.zero_grad();
    auto logits = model->forward(ids);
    auto loss = at::cross_entropy_loss(logits.view({-1, 50}), targets.view({-1}));
    loss.backward();
    optimizer.step();
    losses.push_back(loss.item<float>());
  }
  return losses;
}

void expect_same_losses(const LayoutMap& plan, const std::string& batch_axis) {
  at::manual_seed(4);
  TinyGpt reference(50, 8, 32, 4);
  at::manual_seed(4);
  TinyGpt model(50, 8, 32, 4);
  DistributeModuleOptions same_rows_everywhere;  // batch replicas agree without a GradientSync
  same_rows_everywhere.check_gradient_sync = false;
  auto summary = distribute_module(*model, ModelParallel(plan, batch_axis), same_rows_everywhere);
  EXPECT_EQ(model->q->parallel.style, nn::ParallelStyle::kColumn);
  EXPECT_EQ(model->o->parallel.style, nn::ParallelStyle::kRow);
  EXPECT_EQ(model->tok->parallel.style, nn::ParallelStyle::kVocab);
  EXPECT_EQ(model->pos->parallel.style, nn::ParallelStyle::kReplicated);
  EXPECT_GT(summary.sharded_bytes, summary.replicated_bytes);
  auto want = train(reference, 10);
  auto got = train(model, 10);
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(got[i], want[i], 1e-4 * std::max(1.0f, std::abs(want[i]))) << "step " << i;
  EXPECT_LT(got.back(), got.front()) << "the loss falls";
}

TEST(TensorParallelGpt, TenAdamStepsMatchOneProcess) {
  auto mesh = std::make_shared<DeviceMesh>(std::vector<int64_t>{1, num_processes()},
                                           std::vector<std::string>{"batch", "model"});
  expect_same_losses(testing::gpt_tensor_parallel_map(mesh), "batch");
}

TEST(TensorParallelGpt2x2, TenAdamStepsMatchOneProcess) {
  ASSERT_EQ(num_processes(), 4);
  expect_same_losses(testing::gpt_tensor_parallel_map(testing::mesh_2x2()), "batch");
}

}  // namespace
}  // namespace kdist
