// tools/launch/membership.cpp: the members value an elastic attempt's store holds, read back,
// and refused when damaged.
#include "launch/membership.h"

#include <gtest/gtest.h>

#include "../test_util.h"

namespace kdist::tools {
namespace {

TEST(LaunchMembership, MembersRoundTripWithTheStoresNodeFirst) {
  Membership m = Membership::parse("1@10.0.0.2,0@10.0.0.1", 3);
  EXPECT_EQ(m.nodes, (std::vector<int>{1, 0}));
  EXPECT_EQ(m.addresses, (std::vector<std::string>{"10.0.0.2", "10.0.0.1"}));
  EXPECT_EQ(m.missing, (std::vector<int>{2}));
  EXPECT_EQ(m.index_of(1), 0);
  EXPECT_EQ(m.index_of(2), -1);
  EXPECT_EQ(m.serialize(), "1@10.0.0.2,0@10.0.0.1");
  EXPECT_EQ(m.describe(), "nodes 0, 1 of 3 (node 2 did not join)");
}

TEST(LaunchMembership, DamagedMembersAreRefusedByName) {
  for (const std::string bad : {"", "0", "x@a", "0@a,0@b", "5@a", "-1@a", "99999999@a"})
    EXPECT_THROW_WITH(Membership::parse(bad, 2), std::runtime_error,
                      "[kdist.launch] this attempt's members are '");
}

}  // namespace
}  // namespace kdist::tools
