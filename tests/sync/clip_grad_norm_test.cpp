// Multi-process tests of src/sync/clip_grad_norm.cpp: the global gradient norm and the clipped
// gradients of a distributed gpt equal torch::nn::utils::clip_grad_norm_ on the whole model in
// one process, on the global batch, under tensor, data, FSDP and 2-D layouts. ClipGradNorm.*
// runs on 2 and 4 ranks, ClipGradNorm2x2.* on a 2x2 (batch, model) mesh.
#include <kdist/nn.h>
#include <kdist/sync.h>
#include <torch/nn/utils/clip_grad.h>

#include <cmath>
#include <limits>

#include "../mp_util.h"
#include "../nn/models.h"

namespace kdist {
namespace {
using testing::chunk_piece;
using testing::TinyGpt;

using Entries = std::vector<std::pair<std::string, std::vector<AxisSpec>>>;

at::Tensor whole_grad(const at::Tensor& param) {
  auto d = as_dtensor(param);
  if (!d) return param.grad();
  return DTensor::from_local(param.grad(), d->device_mesh(), d->placements(), d->sizes()).full_tensor();
}

// One backward of the gpt on the global batch (each process its data shard's rows), then
// clipping: the norm within 1e-6 relative of one process's, every clipped gradient within
// 1e-5 of one process's. Returns the norm.
double clip_and_compare(const std::shared_ptr<Distribution>& distribution, double max_norm,
                        double norm_type = 2.0, bool norms_in_units = false) {
  at::manual_seed(7);
  TinyGpt reference(50, 8, 32, 4);
  at::manual_seed(7);
  TinyGpt model(50, 8, 32, 4, norms_in_units);
  distribute_module(*model, *distribution);
  std::unique_ptr<GradientSync> sync;
  if (distribution->num_data_shards() > 1) sync = std::make_unique<GradientSync>(*model, *distribution);
  at::manual_seed(8);
  auto ids = at::randint(0, 50, {8, 8}, at::kLong), targets = at::randint(0, 50, {8, 8}, at::kLong);
  auto loss_of = [](TinyGpt& m, const at::Tensor& x, const at::Tensor& y) {
    return at::cross_entropy_loss(m->forward(x).reshape({-1, 50}), y.reshape({-1}));
  };
  loss_of(reference, ids, targets).backward();
  const int64_t shards = distribution->num_data_shards(), shard = distribution->data_shard_id();
  loss_of(model, chunk_piece(ids, 0, shards, shard), chunk_piece(targets, 0, shards, shard)).backward();

  const double want = torch::nn::utils::clip_grad_norm_(reference->parameters(), max_norm, norm_type);
  const double got = clip_grad_norm_(*model, max_norm, norm_type);
  EXPECT_NEAR(got, want, 1e-6 * want) << "norm_type " << norm_type;
  auto ref = reference->named_parameters();
  for (const auto& p : model->named_parameters())
    EXPECT_TRUE(at::allclose(whole_grad(p.value()), ref[p.key()].grad(), 1e-5, 1e-7))
        << "clipped " << p.key();
  return got;
}

DeviceMeshPtr mesh(std::vector<int64_t> shape, std::vector<std::string> names) {
  return std::make_shared<DeviceMesh>(std::move(shape), std::move(names));
}

TEST(ClipGradNorm, TensorParallel) {
  // Replicated LayerNorms and biases are on every rank and count once.
  auto tp = std::make_shared<ModelParallel>(
      testing::gpt_tensor_parallel_map(mesh({1, num_processes()}, {"batch", "model"})), "batch");
  const double norm = clip_and_compare(tp, 0.1);
  EXPECT_GT(norm, 0.1) << "the test must clip";
  clip_and_compare(tp, 0.1, std::numeric_limits<double>::infinity());
  clip_and_compare(tp, 1e6, 1.0);  // no clipping: the gradients stay as they are
}

TEST(ClipGradNorm, DataParallel) {
  clip_and_compare(std::make_shared<DataParallel>(mesh({num_processes()}, {"batch"})), 0.1);
}

TEST(ClipGradNorm, FsdpWithLayerNormsInUnits) {
  LayoutMap map(mesh({num_processes()}, {"batch"}));
  map.set("(q|k|v|o|up|down|head)/kernel", {"batch", std::nullopt});
  map.set("tok/embeddings", {"batch", std::nullopt});
  map.set("ln(1|2|_f)/(gamma|beta)", {"batch"});
  clip_and_compare(std::make_shared<ModelParallel>(map), 0.1, 2.0, /*norms_in_units=*/true);
}

TEST(ClipGradNorm, BadNormTypeIsNamed) {
  TinyGpt model(50, 8, 32, 4);
  EXPECT_THROW_WITH(clip_grad_norm_(*model, 1.0, -1.0), std::invalid_argument,
                    "[kdist.sync] clip_grad_norm_: norm_type -1 must be positive (or infinity)");
}

TEST(ClipGradNorm2x2, KerasHubStyleLayout) {
  ASSERT_EQ(num_processes(), 4);
  LayoutMap map = testing::gpt_gemma_map(testing::mesh_2x2());
  map.set("ln(1|2|_f)/gamma", {"batch"});
  auto distribution = std::make_shared<ModelParallel>(map);
  clip_and_compare(distribution, 0.1, 2.0, /*norms_in_units=*/true);
  clip_and_compare(distribution, 0.1, std::numeric_limits<double>::infinity(), /*norms_in_units=*/true);
  // The batch axis second on the mesh.
  LayoutMap flipped = testing::gpt_gemma_map(mesh({2, 2}, {"model", "batch"}));
  flipped.set("ln(1|2|_f)/gamma", {"batch"});
  clip_and_compare(std::make_shared<ModelParallel>(flipped, "batch"), 0.1, 2.0, /*norms_in_units=*/true);
}

}  // namespace
}  // namespace kdist
