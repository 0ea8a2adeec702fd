// Multi-process tests of src/nn/parallel_cross_entropy.cpp (loss parallel) against
// at::cross_entropy_loss of the gathered logits in one process. LossParallel.* runs on 2 and
// 4 ranks (mp.nn.n2, mp.nn.n4), the vocabulary sharded over all of them.
#include <kdist/nn.h>

#include "../mp_util.h"

namespace kdist {
namespace {

nn::TensorParallel vocabulary_over_world(int64_t vocab) {
  auto group = comm::world();
  nn::TensorParallel tp;
  tp.style = nn::ParallelStyle::kColumn;
  tp.group = group;
  tp.full_size = vocab;
  tp.local_offset = comm::chunk_offset(vocab, group->size(), group->rank());
  return tp;
}

void expect_close(const at::Tensor& got, const at::Tensor& want, double tolerance, const std::string& what) {
  EXPECT_TRUE(at::allclose(got, want, /*rtol=*/0, tolerance))
      << what << ": max abs difference " << (got - want).abs().max().item<double>();
}

// Loss and the logits' gradient within 1e-6 of the gathered computation's, for a vocabulary
// that divides, one that does not, and one smaller than the group (trailing ranks hold none),
// with rows of 1 and 2 leading dimensions and logits large enough to overflow a naive exp.
TEST(LossParallel, EqualsCrossEntropyOfTheGatheredLogits) {
  const int k = num_processes(), r = process_id();
  for (int64_t vocab : {16, 13, 3}) {
    for (auto shape : {std::vector<int64_t>{7, vocab}, std::vector<int64_t>{2, 5, vocab}}) {
      at::manual_seed(3);
      auto full = at::randn(shape) * 30;
      auto targets_shape = shape;
      targets_shape.pop_back();
      auto targets = at::randint(0, vocab, targets_shape, at::kLong);
      auto reference = full.clone().requires_grad_();
      auto want = at::cross_entropy_loss(reference.reshape({-1, vocab}), targets.reshape({-1}));
      want.backward();
      auto local = comm::chunk_piece(full, -1, k, r).clone().requires_grad_();
      auto got = nn::parallel_cross_entropy(local, targets, vocabulary_over_world(vocab));
      got.backward();
      const std::string what = "vocab " + std::to_string(vocab) + ", " + std::to_string(shape.size()) + "-D";
      EXPECT_NEAR(got.item<double>(), want.item<double>(), 1e-6 * std::abs(want.item<double>())) << what;
      expect_close(local.grad(), comm::chunk_piece(reference.grad(), -1, k, r), 1e-6, what + " gradient");
    }
  }
}

// Through a column-parallel head without gather_output: the head's weight and input
// gradients equal one process's with the whole head and at::cross_entropy_loss.
TEST(LossParallel, ThroughAColumnParallelHead) {
  const int k = num_processes(), r = process_id();
  auto mesh =
      std::make_shared<DeviceMesh>(std::vector<int64_t>{1, k}, std::vector<std::string>{"batch", "model"});
  at::manual_seed(5);
  nn::Linear reference(torch::nn::LinearOptions(8, 11).bias(false));
  at::manual_seed(5);
  nn::Linear head(torch::nn::LinearOptions(8, 11).bias(false));
  LayoutMap map(mesh);
  map.set("weight", {"model", std::nullopt});  // torch (out, in): column parallel
  distribute_module(*head, ModelParallel(map));
  ASSERT_EQ(head->parallel.style, nn::ParallelStyle::kColumn);
  ASSERT_FALSE(head->parallel.gather_output);
  at::manual_seed(6);
  auto x = at::randn({4, 3, 8});
  auto targets = at::randint(0, 11, {4, 3}, at::kLong);
  auto x_ref = x.clone().requires_grad_(), x_got = x.clone().requires_grad_();
  auto want = at::cross_entropy_loss(reference(x_ref).reshape({-1, 11}), targets.reshape({-1}));
  want.backward();
  auto logits = head(x_got);
  EXPECT_EQ(logits.size(-1), comm::chunk_size(11, k, r)) << "the logits stay sharded";
  auto got = nn::parallel_cross_entropy(logits, targets, head->parallel);
  got.backward();
  EXPECT_NEAR(got.item<double>(), want.item<double>(), 1e-6 * want.item<double>());
  expect_close(head->weight.grad(), comm::chunk_piece(reference->weight.grad(), 0, k, r), 1e-6,
               "head weight");
  expect_close(x_got.grad(), x_ref.grad(), 1e-6, "input");
}

TEST(LossParallel, BadInputsNameTheValue) {
  const int k = num_processes(), r = process_id();
  auto tp = vocabulary_over_world(16);
  auto local = at::zeros({2, comm::chunk_size(16, k, r)});
  EXPECT_THROW_WITH(nn::parallel_cross_entropy(local, at::tensor({0, 16}, at::kLong), tp),
                    std::invalid_argument,
                    "[kdist.nn] parallel_cross_entropy: target 16 is outside the vocabulary [0, 16)");
  EXPECT_THROW_WITH(
      nn::parallel_cross_entropy(local, at::zeros({3}, at::kLong), tp), std::invalid_argument,
      "targets of shape [3] do not match logits of shape [2, " + std::to_string(local.size(1)) + "]");
  EXPECT_THROW_WITH(nn::parallel_cross_entropy(at::zeros({2, 17}), at::zeros({2}, at::kLong), tp),
                    std::invalid_argument,
                    "logits' last dimension 17 is not this rank's shard of the vocabulary");
}

}  // namespace
}  // namespace kdist
