#include <kdist/layout.h>

#include "test_util.h"

namespace kdist {
namespace {
using testing::mesh;

TEST(TensorLayout, BraceSyntaxAndMultiAxisEntries) {
  auto m = mesh({2, 2}, {"batch", "model"});
  TensorLayout col({std::nullopt, "model"}, m);
  EXPECT_EQ(col.rank(), 2);
  EXPECT_TRUE(col.axes()[0].is_replicated());
  EXPECT_EQ(col.axes()[1].names(), std::vector<std::string>{"model"});
  EXPECT_EQ(col.to_string(), "TensorLayout(None, model)");

  TensorLayout both({std::vector<std::string>{"batch", "model"}, std::nullopt}, m);
  EXPECT_EQ(both.to_string(), "TensorLayout((batch, model), None)");
  EXPECT_FALSE(both.is_fully_replicated());
  EXPECT_TRUE(TensorLayout({std::nullopt, std::nullopt}, m).is_fully_replicated());
}

TEST(TensorLayout, Validation) {
  auto m = mesh({2, 2}, {"batch", "model"});
  EXPECT_THROW_WITH(TensorLayout({"batch", "modle"}, m), std::invalid_argument,
                    "[kdist.layout] Invalid axis names for Layout: axis 'modle' of layout "
                    "(batch, modle) is not in mesh axes (batch, model)");
  EXPECT_THROW_WITH(TensorLayout({"model", "model"}), std::invalid_argument,
                    "axis 'model' is used by dimensions 0 and 1");
  EXPECT_THROW_WITH(TensorLayout({std::vector<std::string>{"model", "batch"}}, m), std::invalid_argument,
                    "must list its axes in mesh-axis order (batch, model)");
  EXPECT_THROW_WITH(TensorLayout({""}), std::invalid_argument, "empty axis name");
}

TEST(TensorLayout, MeshCanBeSetOnceAndIsValidatedThen) {
  auto m = mesh({2, 2}, {"batch", "model"});
  TensorLayout layout({std::nullopt, "model"});
  EXPECT_EQ(layout.device_mesh(), nullptr);
  layout.set_device_mesh(m);
  EXPECT_EQ(layout.device_mesh(), m);
  EXPECT_THROW_WITH(layout.set_device_mesh(m), std::invalid_argument, "Cannot override device mesh");
  TensorLayout unknown({"data"});
  EXPECT_THROW_WITH(unknown.set_device_mesh(m), std::invalid_argument, "Invalid axis names for Layout");
}

TEST(TensorLayout, Transposed) {
  auto m = mesh({2}, {"model"});
  EXPECT_EQ(TensorLayout({std::nullopt, "model"}, m).transposed(), TensorLayout({"model", std::nullopt}, m));
}

TEST(Placements, OnePerMeshDimension) {
  auto m = mesh({2, 2}, {"batch", "model"});
  EXPECT_EQ(to_placements(TensorLayout({std::nullopt, "model"}, m), 2),
            (std::vector<Placement>{Replicate{}, Shard{1}}));
  EXPECT_EQ(to_placements(TensorLayout({"model", "batch"}, m), 2),
            (std::vector<Placement>{Shard{1}, Shard{0}}));
  EXPECT_EQ(to_placements(TensorLayout({std::vector<std::string>{"batch", "model"}, std::nullopt}, m), 2),
            (std::vector<Placement>{Shard{0}, Shard{0}}));
  EXPECT_EQ(to_placements(TensorLayout({std::nullopt, std::nullopt, std::nullopt}, m), 3),
            (std::vector<Placement>{Replicate{}, Replicate{}}));
  EXPECT_EQ(to_string(to_placements(TensorLayout({"batch", std::nullopt}, m), 2)), "[S(0), R]");
  EXPECT_EQ(to_string(Placement{Partial{}}), "P(sum)");
}

TEST(Placements, Errors) {
  auto m = mesh({2}, {"model"});
  EXPECT_THROW_WITH(to_placements(TensorLayout({std::nullopt, "model"}, m), 3), std::invalid_argument,
                    "layout TensorLayout(None, model) has 2 dimensions, the tensor has 3");
  EXPECT_THROW_WITH(to_placements(TensorLayout({"model"}), 1), std::invalid_argument, "has no device mesh");
}

}  // namespace
}  // namespace kdist
