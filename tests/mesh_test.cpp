#include <kdist/job.h>
#include <kdist/mesh.h>

#include "test_util.h"

namespace kdist {
namespace {
using testing::fake_devices;

TEST(DeviceMesh, KerasShapeOf8FakeDevices) {
  DeviceMesh mesh({4, 2}, {"batch", "model"}, fake_devices(8));
  EXPECT_EQ(mesh.shape(), (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(mesh.axis_names(), (std::vector<std::string>{"batch", "model"}));
  EXPECT_EQ(mesh.size(), 8);
  EXPECT_EQ(mesh.ndim(), 2);
  EXPECT_EQ(mesh.axis_index("model"), 1);
  EXPECT_EQ(mesh.axis_size("batch"), 4);
  EXPECT_EQ(mesh.axis_size("model"), 2);
}

TEST(DeviceMesh, ErrorsComeInKerasOrder) {
  // Empty beats every other problem.
  EXPECT_THROW_WITH(DeviceMesh({}, {"batch"}, fake_devices(3)), std::invalid_argument,
                    "Shape and axis_names cannot be empty");
  EXPECT_THROW_WITH(DeviceMesh({2}, {}, fake_devices(3)), std::invalid_argument,
                    "Shape and axis_names cannot be empty");
  // Different lengths beats the device count.
  EXPECT_THROW_WITH(DeviceMesh({2, 2}, {"batch"}, fake_devices(3)), std::invalid_argument,
                    "Shape and axis_names should have same size: shape (2, 2) has 2, "
                    "axis_names (batch) has 1");
  EXPECT_THROW_WITH(DeviceMesh({4, 2}, {"batch", "model"}, fake_devices(6)), std::invalid_argument,
                    "Shape does not match the number of devices: shape (4, 2) has 8 positions, "
                    "got 6 devices");
}

TEST(DeviceMesh, OtherBadInput) {
  EXPECT_THROW_WITH(DeviceMesh({2, 1}, {"a", "a"}, fake_devices(2)), std::invalid_argument,
                    "[kdist.mesh] axis_names (a, a) repeat a name");
  EXPECT_THROW_WITH(DeviceMesh({0}, {"a"}, {}), std::invalid_argument,
                    "[kdist.mesh] axis 'a' has size 0; sizes must be >= 1");
  EXPECT_THROW_WITH(DeviceMesh({2}, {"a"}, {"cpu:0", "gpu"}), std::invalid_argument,
                    "device 'gpu' is not of the form <type>:<index>");
  EXPECT_THROW_WITH(DeviceMesh({2}, {"a"}, {"cpu:1", "cpu:1"}), std::invalid_argument,
                    "device index 1 appears twice");
  DeviceMesh mesh({2}, {"batch"}, fake_devices(2));
  EXPECT_THROW_WITH(mesh.axis_index("modle"), std::invalid_argument,
                    "[kdist.mesh] axis 'modle' is not in mesh axes (batch)");
}

TEST(DeviceMesh, RowMajorDevicesAndCoordinates) {
  DeviceMesh mesh({2, 3}, {"x", "y"}, fake_devices(6));
  EXPECT_EQ(mesh.coordinate_of(0), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(mesh.coordinate_of(4), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(mesh.coordinate_of(5), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(mesh.rank_at(std::vector<int64_t>{1, 0}), 3);
  EXPECT_EQ(mesh.rank_at(2), 2);
  EXPECT_THROW_WITH(mesh.coordinate_of(6), std::invalid_argument, "rank 6 has no device");
  EXPECT_THROW_WITH(mesh.rank_at(std::vector<int64_t>{2, 0}), std::invalid_argument,
                    "coordinate (2, 0) is outside mesh shape (2, 3)");
}

TEST(DeviceMesh, DevicesInAnyOrderMapToTheirRanks) {
  DeviceMesh mesh({2, 2}, {"batch", "model"}, {"cpu:3", "cpu:2", "cpu:1", "cpu:0"});
  EXPECT_EQ(mesh.rank_at(0), 3);
  EXPECT_EQ(mesh.coordinate_of(3), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(mesh.coordinate_of(1), (std::vector<int64_t>{1, 0}));
  EXPECT_TRUE(mesh.contains_rank(2));
  EXPECT_FALSE(mesh.contains_rank(4));
}

TEST(DeviceMesh, AxisGroupsOf2x2) {
  // On (batch, model), rank 1's batch group is {1, 3} and its model group {0, 1}.
  DeviceMesh mesh({2, 2}, {"batch", "model"}, fake_devices(4));
  EXPECT_EQ(mesh.ranks_along("batch", 1), (std::vector<int>{1, 3}));
  EXPECT_EQ(mesh.ranks_along("model", 1), (std::vector<int>{0, 1}));
  EXPECT_EQ(mesh.ranks_along("batch", 2), (std::vector<int>{0, 2}));
  EXPECT_EQ(mesh.ranks_along("model", 2), (std::vector<int>{2, 3}));
}

TEST(DeviceMesh, DefaultDevicesAreTheJobsDevices) {
  DeviceMesh mesh({1}, {"batch"});
  EXPECT_EQ(mesh.devices(), (std::vector<std::string>{"cpu:0"}));
  EXPECT_EQ(mesh.to_string(), "DeviceMesh(shape=(1), axis_names=(batch), devices=(cpu:0))");
}

// Built without devices, a mesh takes the job's when it is first used: declared before the
// job is known, it is checked against the job it runs in.
TEST(DeviceMesh, WithoutDevicesTakesTheJobsOnFirstUse) {
  DeviceMesh mesh({2, 2}, {"batch", "model"});  // this process is alone: no error yet
  EXPECT_EQ(mesh.axis_size("model"), 2);        // names and shape need no devices
  EXPECT_THROW_WITH(mesh.size(), std::invalid_argument,
                    "[kdist.mesh] Shape does not match the number of devices: shape (2, 2) has 4 "
                    "positions, got 1 devices (the job's, as the mesh was built without devices)");
  kdist::detail::set_current_job({0, 4, fake_devices(4)});  // what kdist::initialize does
  EXPECT_EQ(mesh.ranks_along("batch", 3), (std::vector<int>{1, 3}));
  const DeviceMesh copy = mesh;  // copies share what was resolved
  kdist::detail::set_current_job({});
  EXPECT_EQ(copy.size(), 4);
  EXPECT_EQ(DeviceMesh({1}, {"batch"}).devices(), (std::vector<std::string>{"cpu:0"}));
}

TEST(DeviceMesh, ParseDevice) {
  EXPECT_EQ(parse_device("cuda:12"), (std::pair<std::string, int>{"cuda", 12}));
  EXPECT_THROW_WITH(parse_device("cpu:"), std::invalid_argument, "'cpu:' is not of the form");
  EXPECT_THROW_WITH(parse_device(":1"), std::invalid_argument, "':1' is not of the form");
}

}  // namespace
}  // namespace kdist
