// Multi-process tests of src/dtensor/dtensor.cpp: from_local, distribute_tensor,
// distribute_variable and as_dtensor. DTensor1D.* runs on 2 and 4 ranks, DTensor4.* on 4.
#include <kdist/distribution.h>
#include <kdist/dtensor.h>

#include <cstdlib>

#include "../mp_util.h"

namespace kdist {
namespace {
using testing::chunk_piece;
using testing::global_arange;
using testing::line_mesh;

TEST(DTensor1D, FromLocalInfersTheGlobalShape) {
  const int64_t k = num_processes();
  auto x = DTensor::from_local(at::ones({3, 3}), line_mesh(), {Shard{0}});
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{3 * k, 3}));
  EXPECT_EQ(x.local_offset(), (std::vector<int64_t>{3 * process_id(), 0}));
  EXPECT_EQ(DTensor::from_local(at::ones({3, 3}), line_mesh(), {Replicate{}}).sizes(),
            (std::vector<int64_t>{3, 3}));
  EXPECT_THROW_WITH(
      DTensor::from_local(at::ones({3, 3}), line_mesh(), {Shard{0}}, std::vector<int64_t>{100, 3}),
      std::invalid_argument, "holds a block of shape (3, 3)");
  EXPECT_THROW_WITH(DTensor::from_local(at::ones({3}), line_mesh(), {Shard{1}}), std::invalid_argument,
                    "placement S(1) is out of range");
}

TEST(DTensor1D, DistributeTensorTakesRankZerosData) {
  // Each rank passes different data; all end up with rank 0's.
  auto mine = global_arange({7, 4}) + 100 * process_id();
  auto x = distribute_tensor(mine, TensorLayout({"x", std::nullopt}, line_mesh()));
  EXPECT_TRUE(at::equal(x.full_tensor(), global_arange({7, 4})));
  EXPECT_TRUE(at::equal(x.to_local(), chunk_piece(global_arange({7, 4}), 0, num_processes(), process_id())));
  // With assume_identical there is no communication: each rank slices its own data.
  comm::CollectiveCounter counter;
  auto local_only = distribute_tensor(mine, line_mesh(), {Shard{1}}, {/*assume_identical=*/true});
  EXPECT_EQ(counter.total_count(), 0);
  EXPECT_TRUE(at::equal(local_only.to_local(), chunk_piece(mine, 1, num_processes(), process_id())));
}

TEST(DTensor1D, DistributeVariableIsALeafWithARecordedSpec) {
  auto value = global_arange({10, 4}).requires_grad_();
  setenv("KERAS_DISTRIBUTION_DEBUG", "1", 1);
  ::testing::internal::CaptureStderr();
  auto shard = distribute_variable(value, TensorLayout({"x", std::nullopt}, line_mesh()));
  std::string log = ::testing::internal::GetCapturedStderr();
  unsetenv("KERAS_DISTRIBUTION_DEBUG");
  EXPECT_TRUE(shard.is_leaf());
  EXPECT_TRUE(shard.requires_grad());
  const int k = num_processes(), r = process_id();
  EXPECT_TRUE(at::equal(shard, chunk_piece(value.detach(), 0, k, r)));
  auto d = as_dtensor(shard);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->sizes(), (std::vector<int64_t>{10, 4}));
  EXPECT_EQ(d->placements(), (std::vector<Placement>{Shard{0}}));
  EXPECT_TRUE(at::equal(d->full_tensor(), value.detach()));
  EXPECT_EQ(visualize_sharding(*d), visualize_sharding(d->spec()));
  EXPECT_FALSE(as_dtensor(at::ones({2})).has_value());
  EXPECT_FALSE(as_dtensor(shard.clone()).has_value());

  std::string prefix = "DEBUG | [Rank " + std::to_string(r) + "/" + std::to_string(k) + "] ";
  EXPECT_NE(log.find(prefix + "distribute_variable: distribution()=None\n"), std::string::npos) << log;
  EXPECT_NE(log.find(prefix +
                     "distribute_variable: layout=TensorLayout(x, None) placements=[S(0)] "
                     "global=(10, 4) local=(" +
                     std::to_string(comm::chunk_size(10, k, r)) + ", 4) sharded\n"),
            std::string::npos)
      << log;
}

TEST(DTensor1D, DistributeVariableSeesTheScopedDistribution) {
  // Seed 000's question: does distribution() inside distribute_variable see the scope?
  auto mesh = line_mesh();
  LayoutMap map(mesh);
  map.set("w", {std::nullopt, "x"});
  auto mp = std::make_shared<ModelParallel>(map, "x");
  auto guard = mp->scope();
  setenv("KERAS_DISTRIBUTION_DEBUG", "1", 1);
  ::testing::internal::CaptureStderr();
  auto shard = distribute_variable(at::ones({2, 6}), mp->get_variable_layout("w", {2, 6}));
  std::string log = ::testing::internal::GetCapturedStderr();
  unsetenv("KERAS_DISTRIBUTION_DEBUG");
  EXPECT_NE(log.find("distribute_variable: distribution()=" + mp->to_string()), std::string::npos) << log;
  EXPECT_EQ(shard.size(1), comm::chunk_size(6, num_processes(), process_id()));
}

TEST(DTensor4, FromLocalOnA2x4Mesh) {
  // A 2x4 mesh of 8 devices of which this 4-process job holds the first row: global shapes
  // are inferred without communication.
  ASSERT_EQ(num_processes(), 4);
  auto mesh = std::make_shared<DeviceMesh>(std::vector<int64_t>{2, 4}, std::vector<std::string>{"a", "b"},
                                           testing::fake_devices(8));
  EXPECT_EQ(DTensor::from_local(at::ones({3, 3}), mesh, {Shard{0}, Shard{1}}).sizes(),
            (std::vector<int64_t>{6, 12}));
  EXPECT_EQ(DTensor::from_local(at::ones({3, 3}), mesh, {Shard{0}, Shard{0}}).sizes(),
            (std::vector<int64_t>{24, 3}));
  auto rows = DTensor::from_local(at::ones({12, 24}), mesh, {Shard{0}, Replicate{}});
  EXPECT_EQ(rows.local_offset(), (std::vector<int64_t>{12 * (process_id() / 4), 0}));
}

}  // namespace
}  // namespace kdist
