// Multi-process tests of mixed precision (nn.h's MixedPrecision): fp32 master weights, bf16
// compute, batch-sharded weights gathered in bf16 and their gradients reduced in fp32.
// MixedPrecision.* runs on 2 and 4 ranks (a 1-D batch mesh, FSDP), MixedPrecision2x2.* on a
// (batch, model) mesh (FSDP x TP), each against one process under the same policy.
#include <kdist/nn.h>
#include <kdist/sync.h>
#include <torch/optim/adam.h>

#include "../mp_util.h"
#include "models.h"

namespace kdist {
namespace {
using testing::Mlp;

nn::MixedPrecision bf16() { return nn::MixedPrecision{}; }  // bf16 compute, fp32 reduction

DistributeModuleOptions with(const nn::MixedPrecision& policy) {
  DistributeModuleOptions options;
  options.mixed_precision = policy;
  return options;
}

LayoutMap fsdp_map(DeviceMeshPtr mesh) {
  LayoutMap map(std::move(mesh));
  map.set("fc1/kernel", {"batch", std::nullopt});
  map.set("fc2/kernel", {std::nullopt, "batch"});
  return map;
}

// Per-step losses of the distributed model against one process under the same policy. bf16
// keeps 8 bits of mantissa (relative spacing 2^-8 = 0.4%); sums in another order (partial
// sums per rank, the reduce_scatter) move each rounding by up to that, so losses agree to
// about 1e-2 relative, not 1e-5.
void train_against_one_process(const LayoutMap& map, int64_t shards, int64_t shard) {
  at::manual_seed(3);
  Mlp reference(16, 64, 8);
  at::manual_seed(3);
  Mlp model(16, 64, 8);
  ModelParallel distribution(map, "batch");
  nn::set_mixed_precision(*reference, bf16());
  distribute_module(*model, distribution, with(bf16()));
  GradientSync sync(*model, distribution);
  torch::optim::Adam ref_opt(reference->parameters(), torch::optim::AdamOptions(1e-2)),
      opt(model->parameters(), torch::optim::AdamOptions(1e-2));
  at::manual_seed(4);
  for (int step = 0; step < 4; ++step) {
    auto x = at::randn({16, 16}), y = at::randn({16, 8});
    ref_opt.zero_grad();
    auto want = at::mse_loss(reference(x).to(at::kFloat), y);
    want.backward();
    ref_opt.step();
    opt.zero_grad();
    auto out = model(comm::chunk_piece(x, 0, shards, shard));
    EXPECT_EQ(out.scalar_type(), at::kBFloat16) << "computed in bf16";
    auto got = at::mse_loss(out.to(at::kFloat), comm::chunk_piece(y, 0, shards, shard));
    got.backward();
    for (const auto& p : model->parameters()) {
      EXPECT_EQ(p.scalar_type(), at::kFloat) << "fp32 master weights";
      EXPECT_EQ(p.grad().scalar_type(), at::kFloat) << "fp32 gradients on the shards";
    }
    opt.step();
    auto mean = got.detach().clone().view({1});
    comm::all_reduce(mean, comm::ReduceOp::kAvg, *comm::axis_group(*map.device_mesh(), "batch"));
    EXPECT_NEAR(mean.item<float>(), want.item<float>(), 1e-2 * want.item<float>()) << "step " << step;
  }
}

TEST(MixedPrecision, FsdpTrainsAsOneProcessUnderTheSamePolicy) {
  train_against_one_process(fsdp_map(testing::line_mesh_named("batch")), num_processes(), process_id());
}

// The weights travel in bf16 (half the fp32 bytes), their gradients in fp32 (the same bytes);
// reduce_dtype bf16 halves those too.
TEST(MixedPrecision, GathersMoveParamDtypeAndReductionsReduceDtype) {
  auto bytes_of_a_step = [](const std::optional<nn::MixedPrecision>& policy) {
    at::manual_seed(3);
    Mlp model(16, 64, 8);
    DistributeModuleOptions options;
    options.mixed_precision = policy;
    options.check_gradient_sync = false;  // counts the layers' collectives alone
    distribute_module(*model, ModelParallel(fsdp_map(testing::line_mesh_named("batch"))), options);
    comm::CollectiveCounter counter;
    model(at::randn({4, 16})).to(at::kFloat).sum().backward();
    return std::make_pair(counter.bytes("all_gather"), counter.bytes("reduce_scatter"));
  };
  const auto fp32 = bytes_of_a_step(std::nullopt);
  const auto mixed = bytes_of_a_step(bf16());
  nn::MixedPrecision all_bf16;
  all_bf16.reduce_dtype = at::kBFloat16;
  const auto reduced_in_bf16 = bytes_of_a_step(all_bf16);
  EXPECT_EQ(mixed.first * 2, fp32.first) << "all_gather bytes";
  EXPECT_EQ(mixed.second, fp32.second) << "reduce_scatter bytes, fp32";
  EXPECT_EQ(reduced_in_bf16.second * 2, fp32.second) << "reduce_scatter bytes, bf16";
}

TEST(MixedPrecision, OutputDtypeCastsTheLayersOutput) {
  Mlp model(16, 64, 8);
  nn::MixedPrecision policy;
  policy.output_dtype = at::kFloat;
  nn::set_mixed_precision(*model, policy);
  EXPECT_EQ(model->fc1(at::randn({2, 16})).scalar_type(), at::kFloat);
}

TEST(MixedPrecision2x2, FsdpAndTensorParallelism) {
  ASSERT_EQ(num_processes(), 4);
  auto mesh = testing::mesh_2x2();
  LayoutMap map(mesh);
  map.set("fc1/kernel", {"batch", "model"});
  map.set("fc2/kernel", {"model", "batch"});
  train_against_one_process(map, 2, mesh->coordinate_of(process_id())[0]);
}

}  // namespace
}  // namespace kdist
