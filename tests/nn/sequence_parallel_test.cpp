// Multi-process tests of sequence parallelism (src/nn/sequence_parallel.cpp): TinyGpt with
// its residual stream and LayerNorms on pieces of the sequence, against one process.
// SequenceParallel.* runs on 2 and 4 ranks ((batch=1, model=N) mesh), SequenceParallel2x2.*
// on a 2x2 (batch, model) mesh with the batch sharded over "batch".
#include <kdist/nn.h>
#include <kdist/sync.h>
#include <torch/optim/sgd.h>

#include "../mp_util.h"
#include "models.h"

namespace kdist {
namespace {
using testing::TinyGpt;

constexpr int64_t kVocab = 50, kTime = 7;  // 7 tokens: pieces of 4, 3 on 2 ranks; 2, 2, 2, 1 on 4

DistributeModuleOptions sequence_parallel() {
  DistributeModuleOptions options;
  options.sequence_parallel_dim = 1;
  return options;
}

void sum_norm_gradients(TinyGpt& model) {
  auto children = model->named_children();
  for (const char* name : {"ln1", "ln2", "ln_f"})
    nn::sum_gradients_over_sequence(*children[name], *model->head->parallel.sequence);
}

// Per-step losses within 1e-5 relative and final whole parameters within 1e-5 of one
// process on the global batch (each data shard's rows on its batch coordinate).
void train_and_compare(const LayoutMap& map, int64_t batch_shards, int64_t batch_shard) {
  at::manual_seed(4);
  TinyGpt reference(kVocab, kTime, 32, 4);
  at::manual_seed(4);
  TinyGpt model(kVocab, kTime, 32, 4);
  ModelParallel distribution(map, "batch");
  distribute_module(*model, distribution, sequence_parallel());
  ASSERT_TRUE(model->q->parallel.sequence);
  EXPECT_EQ(model->q->parallel.sequence, model->down->parallel.sequence) << "one per group";
  sum_norm_gradients(model);
  GradientSync sync(*model, distribution);
  // SGD, not Adam: k's bias has no gradient in exact arithmetic (it adds a constant to each
  // query's scores, which softmax cancels), and Adam would turn its rounding noise into steps.
  torch::optim::SGD ref_opt(reference->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9)),
      opt(model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  at::manual_seed(21);
  for (int step = 0; step < 4; ++step) {
    auto ids = at::randint(0, kVocab, {4, kTime}, at::kLong),
         targets = at::randint(0, kVocab, {4, kTime}, at::kLong);
    auto loss_of = [](TinyGpt& m, const at::Tensor& x, const at::Tensor& y) {
      return at::cross_entropy_loss(m->forward(x).reshape({-1, kVocab}), y.reshape({-1}));
    };
    ref_opt.zero_grad();
    auto want = loss_of(reference, ids, targets);
    want.backward();
    ref_opt.step();
    opt.zero_grad();
    auto got = loss_of(model, comm::chunk_piece(ids, 0, batch_shards, batch_shard),
                       comm::chunk_piece(targets, 0, batch_shards, batch_shard));
    got.backward();
    opt.step();
    auto mean = got.detach().clone().view({1});
    comm::all_reduce(mean, comm::ReduceOp::kAvg, *comm::axis_group(*map.device_mesh(), "batch"));
    EXPECT_NEAR(mean.item<float>(), want.item<float>(), 1e-5 * want.item<float>()) << "step " << step;
  }
  auto ref = reference->named_parameters();
  for (const auto& p : model->named_parameters()) {
    auto d = as_dtensor(p.value());
    auto whole = d ? d->full_tensor() : p.value();
    EXPECT_TRUE(at::allclose(whole, ref[p.key()], 1e-5, 1e-5))
        << p.key() << ": max difference " << (whole - ref[p.key()]).abs().max().item<float>();
  }
}

DeviceMeshPtr model_line() {
  return std::make_shared<DeviceMesh>(std::vector<int64_t>{1, num_processes()},
                                      std::vector<std::string>{"batch", "model"});
}

TEST(SequenceParallel, TrainsAsOneProcess) {
  train_and_compare(testing::gpt_tensor_parallel_map(model_line()), 1, 0);
}

// Between the tensor-parallel regions each rank holds its piece of the sequence: the
// LayerNorms' inputs and the residual stream are (batch, piece, width).
TEST(SequenceParallel, TheResidualStreamIsAPieceOfTheSequence) {
  TinyGpt model(kVocab, kTime, 32, 4);
  distribute_module(*model, ModelParallel(testing::gpt_tensor_parallel_map(model_line()), "batch"),
                    sequence_parallel());
  auto ids = at::randint(0, kVocab, {2, kTime}, at::kLong);
  auto x = model->tok(ids) + model->pos(at::arange(kTime, at::kLong));
  auto piece = nn::scatter_sequence(x, *model->head->parallel.sequence);
  const int k = num_processes(), r = process_id();
  EXPECT_EQ(piece.sizes().vec(), (std::vector<int64_t>{2, comm::chunk_size(kTime, k, r), 32}));
  EXPECT_TRUE(at::equal(piece, comm::chunk_piece(x, 1, k, r)));
  auto mixed = model->down(at::gelu(model->up(piece)));  // gathered by up, reduce-scattered by down
  EXPECT_EQ(mixed.sizes().vec(), piece.sizes().vec());
  EXPECT_EQ(model->forward(ids).sizes().vec(), (std::vector<int64_t>{2, kTime, kVocab}))
      << "the head gathers";
}

TEST(SequenceParallel, AnInputThatIsNotAPieceIsNamed) {
  TinyGpt model(kVocab, kTime, 32, 4);
  distribute_module(*model, ModelParallel(testing::gpt_tensor_parallel_map(model_line()), "batch"),
                    sequence_parallel());
  auto whole = at::randn({2, kTime, 32});
  EXPECT_THROW_WITH(
      model->up(whole), std::invalid_argument,
      "[kdist.nn] sequence-parallel column Linear(32, 128) ran before any kdist::nn::scatter_sequence");
  nn::scatter_sequence(whole, *model->head->parallel.sequence);
  if (num_processes() > 1)
    EXPECT_THROW_WITH(
        model->up(whole), std::invalid_argument,
        "sequence-parallel column Linear(32, 128) got an input of shape [2, 7, 32], expected this rank's "
        "piece of the sequence (" +
            std::to_string(comm::chunk_size(kTime, num_processes(), process_id())) + " of 7 along dim 1)");
}

TEST(SequenceParallel2x2, WithDataParallelism) {
  ASSERT_EQ(num_processes(), 4);
  auto mesh = testing::mesh_2x2();
  train_and_compare(testing::gpt_tensor_parallel_map(mesh), 2, mesh->coordinate_of(process_id())[0]);
}

}  // namespace
}  // namespace kdist
