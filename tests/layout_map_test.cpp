#include <kdist/layout_map.h>

#include "test_util.h"

namespace kdist {
namespace {

class LayoutMapKeras : public ::testing::Test {
 protected:
  // Keras's own LayoutMap test: a (4, 2) mesh of 8 fake devices.
  DeviceMeshPtr mesh = testing::mesh({4, 2}, {"batch", "model"});
  TensorLayout sharded_2d{{std::nullopt, "model"}};
  TensorLayout sharded_1d{{"model"}};
  TensorLayout replicated_2d{{std::nullopt, std::nullopt}};
  TensorLayout replicated_1d{{std::nullopt}};
  TensorLayout with_mesh(TensorLayout layout) {
    layout.set_device_mesh(mesh);
    return layout;
  }
  LayoutMap keras_map() {
    LayoutMap map(mesh);
    map.set("dense/kernel", sharded_2d);
    map.set("dense/bias", sharded_1d);
    map.set(".*dense.*kernel", replicated_2d);
    map.set(".*dense.*bias", replicated_1d);
    map.set(".*bias", sharded_1d);
    return map;
  }
};

TEST_F(LayoutMapKeras, ExactKeysWinThenFullRegexMatch) {
  LayoutMap map = keras_map();
  EXPECT_EQ(map.get("dense/kernel"), with_mesh(sharded_2d));
  EXPECT_EQ(map.get("dense/bias"), with_mesh(sharded_1d));
  EXPECT_EQ(map.get("dense_2/kernel"), with_mesh(replicated_2d));
  EXPECT_EQ(map.matching_key("dense_2/kernel"), std::optional<std::string>(".*dense.*kernel"));
  EXPECT_THROW_WITH(map.get("dense_2/bias"), std::invalid_argument,
                    "Path 'dense_2/bias' matches multiple layout specification keys: "
                    "['.*dense.*bias', '.*bias']");
  EXPECT_EQ(map.get("conv2d/kernel"), std::nullopt);
  EXPECT_EQ(map.get("conv2d/bias"), with_mesh(sharded_1d));
}

TEST_F(LayoutMapKeras, RegexMustMatchTheWholePath) {
  LayoutMap map(mesh);
  map.set("dense", sharded_2d);
  EXPECT_EQ(map.get("dense/kernel"), std::nullopt);
  EXPECT_EQ(map.get("my_dense"), std::nullopt);
}

TEST_F(LayoutMapKeras, MeshIsInjectedIntoMeshlessLayouts) {
  LayoutMap map(mesh);
  map.set("a", sharded_2d);
  EXPECT_EQ(map.at("a").device_mesh(), mesh);
  map.set("b", {std::nullopt, "model"});  // Keras's tuple shorthand
  EXPECT_EQ(map.at("b"), with_mesh(sharded_2d));
  EXPECT_THROW_WITH(map.set("c", {"data"}), std::invalid_argument,
                    "Invalid axis names for Layout: axis 'data'");
}

TEST_F(LayoutMapKeras, InsertionOrderEraseAndDuplicates) {
  LayoutMap map = keras_map();
  EXPECT_EQ(map.size(), 5u);
  EXPECT_EQ(map.keys(), (std::vector<std::string>{"dense/kernel", "dense/bias", ".*dense.*kernel",
                                                  ".*dense.*bias", ".*bias"}));
  EXPECT_THROW_WITH(map.set("dense/bias", replicated_1d), std::invalid_argument,
                    "dense/bias already exist in the LayoutMap with value TensorLayout(model)");
  EXPECT_TRUE(map.erase(".*dense.*bias"));
  EXPECT_FALSE(map.erase(".*dense.*bias"));
  EXPECT_EQ(map.size(), 4u);
  EXPECT_EQ(map.get("dense_2/bias"), with_mesh(sharded_1d));  // no longer ambiguous
  map.set(".*dense.*bias", replicated_1d);                    // re-added at the end
  EXPECT_EQ(map.keys().back(), ".*dense.*bias");
  EXPECT_THROW_WITH(map.at("nope"), std::invalid_argument, "no key 'nope' in LayoutMap");
}

TEST_F(LayoutMapKeras, BadRegexIsRejectedAtSet) {
  LayoutMap map(mesh);
  EXPECT_THROW_WITH(map.set("dense/(kernel", sharded_2d), std::invalid_argument,
                    "key 'dense/(kernel' is not a valid regular expression");
  EXPECT_EQ(map.size(), 0u);
}

TEST_F(LayoutMapKeras, CopiesAreIndependent) {
  LayoutMap map = keras_map();
  LayoutMap copy = map;
  copy.erase("dense/kernel");
  EXPECT_EQ(map.size(), 5u);
  EXPECT_EQ(copy.size(), 4u);
  EXPECT_EQ(copy.get("dense_2/kernel"), with_mesh(replicated_2d));
}

}  // namespace
}  // namespace kdist
