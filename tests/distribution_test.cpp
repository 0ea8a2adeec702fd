#include <kdist/distribution.h>
#include <kdist/job.h>

#include <thread>

#include "test_util.h"

namespace kdist {
namespace {
using testing::fake_devices;
using testing::mesh;

TEST(DataParallel, FromMeshDevicesOrAll) {
  DataParallel from_mesh(mesh({8}, {"data"}));
  EXPECT_EQ(from_mesh.batch_dim_name(), "data");
  EXPECT_EQ(from_mesh.num_model_replicas(), 8);

  DataParallel from_devices(fake_devices(4));
  EXPECT_EQ(from_devices.device_mesh()->shape(), std::vector<int64_t>{4});
  EXPECT_EQ(from_devices.batch_dim_name(), "batch");
  EXPECT_EQ(from_devices.num_model_replicas(), 4);

  DataParallel all;
  EXPECT_EQ(all.device_mesh()->devices(), std::vector<std::string>{"cpu:0"});
  EXPECT_EQ(all.num_data_shards(), 1);
  EXPECT_EQ(all.data_shard_id(), 0);
}

TEST(DataParallel, LayoutsAreReplicatedExceptTheBatch) {
  DataParallel dp(mesh({4}, {"batch"}));
  EXPECT_EQ(dp.get_data_layout({16, 3, 5}),
            TensorLayout({"batch", std::nullopt, std::nullopt}, dp.device_mesh()));
  EXPECT_EQ(dp.get_variable_layout("dense/kernel", {8, 4}),
            TensorLayout({std::nullopt, std::nullopt}, dp.device_mesh()));
  EXPECT_EQ(dp.get_tensor_layout("dense/output"), std::nullopt);
  EXPECT_THROW_WITH(dp.get_data_layout({}), std::invalid_argument, "rank >= 1");
}

TEST(DataParallel, RejectsMeshWithAModelAxis) {
  EXPECT_THROW_WITH(DataParallel(mesh({2, 2}, {"batch", "model"})), std::invalid_argument,
                    "[kdist.distribution] DataParallel needs a 1-D mesh, got DeviceMesh(shape=(2, "
                    "2)");
}

TEST(ModelParallel, BatchAxisReplicasAndLayouts) {
  auto m = mesh({4, 2}, {"batch", "model"});
  LayoutMap map(m);
  map.set("dense/kernel", {std::nullopt, "model"});
  map.set("dense/activation", {"batch", std::nullopt});
  ModelParallel mp(map);
  EXPECT_EQ(mp.batch_dim_name(), "batch");
  EXPECT_EQ(mp.num_model_replicas(), 4);
  EXPECT_EQ(mp.get_data_layout({8, 3}), TensorLayout({"batch", std::nullopt}, m));
  EXPECT_EQ(mp.get_variable_layout("dense/kernel", {16, 8}), TensorLayout({std::nullopt, "model"}, m));
  EXPECT_EQ(mp.get_variable_layout("dense/bias", {8}), TensorLayout({std::nullopt}, m));
  EXPECT_THROW_WITH(mp.get_variable_layout("dense/kernel", {16, 8, 2}), std::invalid_argument,
                    "layout TensorLayout(None, model) for 'dense/kernel' has 2 dimensions, the "
                    "variable has shape (16, 8, 2)");
  EXPECT_EQ(mp.get_tensor_layout("dense/activation"), TensorLayout({"batch", std::nullopt}, m));
  EXPECT_EQ(mp.get_tensor_layout("dense/other"), std::nullopt);

  ModelParallel by_model(map, "model");
  EXPECT_EQ(by_model.num_model_replicas(), 2);
  EXPECT_EQ(by_model.get_data_layout({8}), TensorLayout({"model"}, m));
  EXPECT_THROW_WITH(ModelParallel(map, "data"), std::invalid_argument,
                    "batch_dim_name 'data' is not in mesh axes (batch, model)");
  EXPECT_THROW_WITH(ModelParallel(LayoutMap(nullptr)), std::invalid_argument,
                    "ModelParallel needs a LayoutMap with a device mesh");
}

TEST(DataSharding, KerasCases) {
  // 8 replicas on 4 processes: every process reads its own shard.
  for (int p = 0; p < 4; ++p) {
    auto s = data_sharding(8, 4, p);
    EXPECT_EQ(s.num_shards, 4);
    EXPECT_EQ(s.shard_id, p);
  }
  // 2 replicas on 4 processes: processes of one replica read the same shard.
  std::vector<int64_t> ids;
  for (int p = 0; p < 4; ++p) {
    auto s = data_sharding(2, 4, p);
    EXPECT_EQ(s.num_shards, 2);
    ids.push_back(s.shard_id);
  }
  EXPECT_EQ(ids, (std::vector<int64_t>{0, 0, 1, 1}));
  EXPECT_THROW_WITH(data_sharding(3, 4, 0), std::invalid_argument,
                    "num_processes 4 must be divisible by num_model_replicas 3");
  EXPECT_THROW_WITH(data_sharding(2, 4, 4), std::invalid_argument, "0 <= process_id < num_processes");
}

// A Distribution reads where its process stands from the place runtime pushes down at
// initialize (current_job, job.h), at construction, as Keras's reads process_id().
TEST(DataSharding, FromTheJobsPlace) {
  struct RestoreAlone {
    ~RestoreAlone() { detail::set_current_job({}); }
  } restore;
  detail::set_current_job({3, 4, fake_devices(4)});  // process 3 of a 4-process job
  DataParallel dp;
  EXPECT_EQ(dp.device_mesh()->devices(), fake_devices(4));
  EXPECT_EQ(dp.num_data_shards(), 4);
  EXPECT_EQ(dp.data_shard_id(), 3);
  // (model=2, batch=2): process 3 is at batch coordinate 1.
  LayoutMap map(mesh({2, 2}, {"model", "batch"}));
  ModelParallel mp(map, "batch");
  EXPECT_EQ(mp.num_data_shards(), 2);
  EXPECT_EQ(mp.data_shard_id(), 1);
  // 2 replicas over 4 processes that are not the mesh's devices: Keras's rule.
  detail::set_current_job({2, 4, fake_devices(4)});
  DataParallel two(fake_devices(2));
  EXPECT_EQ(two.num_data_shards(), 2);
  EXPECT_EQ(two.data_shard_id(), 1);
}

class GlobalDistribution : public ::testing::Test {
 protected:
  void SetUp() override { set_distribution(nullptr); }
  void TearDown() override { set_distribution(nullptr); }
};

TEST_F(GlobalDistribution, ScopesNest) {
  auto d1 = std::make_shared<DataParallel>(mesh({2}, {"batch"}));
  auto d2 = std::make_shared<DataParallel>(mesh({4}, {"batch"}));
  EXPECT_EQ(distribution(), nullptr);
  {
    auto outer = d1->scope();
    EXPECT_EQ(distribution(), d1);
    {
      auto inner = d2->scope();
      EXPECT_EQ(distribution(), d2);
    }
    EXPECT_EQ(distribution(), d1);
  }
  EXPECT_EQ(distribution(), nullptr);
}

TEST_F(GlobalDistribution, ScopeRestoresWhatSetDistributionSet) {
  auto d1 = std::make_shared<DataParallel>(mesh({2}, {"batch"}));
  auto d2 = std::make_shared<DataParallel>(mesh({4}, {"batch"}));
  set_distribution(d1);
  {
    auto guard = d2->scope();
    auto moved = std::move(guard);  // a moved-from guard restores nothing
    EXPECT_EQ(distribution(), d2);
  }
  EXPECT_EQ(distribution(), d1);
}

TEST_F(GlobalDistribution, ScopeNeedsSharedOwnership) {
  DataParallel on_stack(mesh({2}, {"batch"}));
  EXPECT_THROW_WITH((void)on_stack.scope(), std::invalid_argument,
                    "scope() needs a distribution owned by a std::shared_ptr");
  EXPECT_EQ(distribution(), nullptr);
}

TEST_F(GlobalDistribution, VisibleFromEveryThread) {
  auto d1 = std::make_shared<DataParallel>(mesh({2}, {"batch"}));
  auto guard = d1->scope();
  std::shared_ptr<const Distribution> seen;
  std::thread([&] { seen = distribution(); }).join();
  EXPECT_EQ(seen, d1);

  auto d2 = std::make_shared<DataParallel>(mesh({4}, {"batch"}));
  std::thread([&] { set_distribution(d2); }).join();
  EXPECT_EQ(distribution(), d2);
  set_distribution(d1);
}

}  // namespace
}  // namespace kdist
