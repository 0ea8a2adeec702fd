// src/dtensor/spec.cpp and src/dtensor/visualize.cpp: which rank holds which block.
#include <kdist/dtensor.h>

#include "../test_util.h"

namespace kdist {
namespace {

DTensorSpec spec_of(DeviceMeshPtr mesh, std::vector<Placement> placements, std::vector<int64_t> shape) {
  return DTensorSpec{std::move(mesh), std::move(placements), std::move(shape)};
}

TEST(DTensorSpec, NestedShardsFollowMeshOrder) {
  // [S0, S0] of 8 rows on 2x2: ranks 0..3 hold rows 0-1, 2-3, 4-5, 6-7.
  auto spec = spec_of(testing::mesh({2, 2}, {"a", "b"}), {Shard{0}, Shard{0}}, {8, 3});
  for (int64_t r = 0; r < 4; ++r) {
    auto c = spec.mesh->coordinate_of(static_cast<int>(r));
    EXPECT_EQ(spec.local_shape(c), (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(spec.local_offset(c), (std::vector<int64_t>{2 * r, 0}));
  }
}

TEST(DTensorSpec, UnevenShardsFollowTheChunkRule) {
  auto line = testing::mesh({4}, {"x"});
  auto rows10 = spec_of(line, {Shard{0}}, {10, 2});
  auto rows5 = spec_of(line, {Shard{0}}, {5, 2});
  std::vector<int64_t> sizes10, sizes5, offsets5;
  for (int64_t r = 0; r < 4; ++r) {
    sizes10.push_back(rows10.local_shape({r})[0]);
    sizes5.push_back(rows5.local_shape({r})[0]);
    offsets5.push_back(rows5.local_offset({r})[0]);
  }
  EXPECT_EQ(sizes10, (std::vector<int64_t>{3, 3, 3, 1}));
  EXPECT_EQ(sizes5, (std::vector<int64_t>{2, 2, 1, 0}));
  EXPECT_EQ(offsets5, (std::vector<int64_t>{0, 2, 4, 5}));

  // 9 rows over [S0, S0] on 2x2: 5 | 4, then 3 | 2 and 2 | 2.
  auto nested = spec_of(testing::mesh({2, 2}, {"a", "b"}), {Shard{0}, Shard{0}}, {9, 1});
  EXPECT_EQ(nested.local_shape({0, 0})[0], 3);
  EXPECT_EQ(nested.local_offset({0, 1})[0], 3);
  EXPECT_EQ(nested.local_shape({0, 1})[0], 2);
  EXPECT_EQ(nested.local_offset({1, 0})[0], 5);
  EXPECT_EQ(nested.local_offset({1, 1})[0], 7);
  EXPECT_EQ(nested.local_shape({1, 1})[0], 2);

  // (10, 5) over [S0, S1] on 2x2: rows 5 | 5, columns 3 | 2.
  auto both = spec_of(testing::mesh({2, 2}, {"a", "b"}), {Shard{0}, Shard{1}}, {10, 5});
  EXPECT_EQ(both.local_shape({1, 1}), (std::vector<int64_t>{5, 2}));
  EXPECT_EQ(both.local_offset({1, 1}), (std::vector<int64_t>{5, 3}));
}

TEST(DTensorSpec, OffsetsOn2x4) {
  // (24, 24) over [S0, R] on a 2x4 mesh: rank r holds rows from 12 * (r / 4).
  auto spec = spec_of(testing::mesh({2, 4}, {"a", "b"}), {Shard{0}, Replicate{}}, {24, 24});
  for (int r = 0; r < 8; ++r) {
    auto c = spec.mesh->coordinate_of(r);
    EXPECT_EQ(spec.local_offset(c), (std::vector<int64_t>{12 * (r / 4), 0})) << "rank " << r;
    EXPECT_EQ(spec.local_shape(c), (std::vector<int64_t>{12, 24})) << "rank " << r;
  }
}

TEST(DTensorSpec, Validation) {
  auto mesh = testing::mesh({2, 2}, {"batch", "model"});
  EXPECT_THROW_WITH(spec_of(mesh, {Shard{0}}, {4}).validate(), std::invalid_argument,
                    "[kdist.dtensor] placements [S(0)] have 1 entries, mesh (batch, model) has 2 "
                    "dimensions");
  EXPECT_THROW_WITH(spec_of(mesh, {Shard{2}, Replicate{}}, {4, 4}).validate(), std::invalid_argument,
                    "placement S(2) is out of range for a tensor of shape (4, 4)");
  EXPECT_EQ(spec_of(mesh, {Partial{}, Shard{1}}, {4, 4}).to_string(),
            "DTensorSpec(global=(4, 4), placements=[P(sum), S(1)])");
}

TEST(VisualizeSharding, TwoDimensionalBlocks) {
  auto mesh = testing::mesh({2, 2}, {"batch", "model"});
  EXPECT_EQ(visualize_sharding(TensorLayout({"batch", "model"}, mesh), {4, 6}),
            "DTensorSpec(global=(4, 6), placements=[S(0), S(1)]) on mesh (batch, model) (2, 2)\n"
            "      0:3   3:6\n"
            "    +-----+-----+\n"
            "0:2 | 0   | 1   |\n"
            "    +-----+-----+\n"
            "2:4 | 2   | 3   |\n"
            "    +-----+-----+\n");
  // Replicated over "batch": each column block is held by two ranks.
  EXPECT_EQ(visualize_sharding(TensorLayout({std::nullopt, "model"}, mesh), {4, 6}),
            "DTensorSpec(global=(4, 6), placements=[R, S(1)]) on mesh (batch, model) (2, 2)\n"
            "      0:3   3:6\n"
            "    +-----+-----+\n"
            "0:4 | 0,2 | 1,3 |\n"
            "    +-----+-----+\n");
}

TEST(VisualizeSharding, OneDimensionalAndUneven) {
  auto mesh = testing::mesh({4}, {"x"});
  EXPECT_EQ(visualize_sharding(TensorLayout({"x"}, mesh), {5}),
            "DTensorSpec(global=(5), placements=[S(0)]) on mesh (x) (4)\n"
            "  0:2   2:4   4:5\n"
            "+-----+-----+-----+\n"
            "| 0   | 1   | 2   |\n"
            "+-----+-----+-----+\n");
  EXPECT_THROW_WITH(visualize_sharding(TensorLayout({"x", std::nullopt, std::nullopt}, mesh), {2, 2, 2}),
                    std::invalid_argument, "shows 1-D and 2-D tensors, got shape (2, 2, 2)");
}

}  // namespace
}  // namespace kdist
