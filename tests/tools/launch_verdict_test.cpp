// tools/launch/verdict.cpp: which failure the launcher blames, and how it says so.
#include <gtest/gtest.h>

#include "launch/verdict.h"

namespace kdist::tools {
namespace {

TEST(LaunchVerdict, TheEarliestFailureIsTheRootCause) {
  const double t = 1.7e9;
  std::vector<Failure> seen{
      {t + 0.004, "rank 1", "was killed by signal 6 (Aborted)", 134, true},
      {t, "rank 2", "exited with code 3", 3},
      {t + 0.010, "rank 3", "was stopped by the launcher (was killed by signal 15 (Terminated))", 143, true,
       true}};
  auto v = judge(seen);
  ASSERT_EQ(v.lines.size(), 3u);
  EXPECT_EQ(v.lines[0], "failed: rank 2 exited with code 3");
  EXPECT_EQ(v.lines[1], "  then rank 1 was killed by signal 6 (Aborted), after rank 2 failed");
  EXPECT_EQ(v.lines[2],
            "  then rank 3 was stopped by the launcher (was killed by signal 15 (Terminated)), after rank 2 "
            "failed");
  EXPECT_EQ(v.exit_code, 3);
}

TEST(LaunchVerdict, ARankTheLauncherStoppedIsNeverTheRootCause) {
  const double t = 1.7e9;
  auto v = judge({{t, "rank 0 (node 0)", "was stopped by the launcher (exited with code 1)", 1, false, true},
                  {t + 1, "node 1 (ranks 2-3)", "stopped responding", 1}});
  EXPECT_EQ(v.lines[0], "failed: node 1 (ranks 2-3) stopped responding");
  EXPECT_EQ(v.lines[1],
            "  then rank 0 (node 0) was stopped by the launcher (exited with code 1), after node 1 failed");
}

TEST(LaunchVerdict, AtEqualTimesAnExitCodeBeatsASignal) {
  auto v = judge(
      {{5, "rank 0", "was killed by signal 6 (Aborted)", 134, true}, {5, "rank 1", "exited with code 2", 2}});
  EXPECT_EQ(v.lines[0], "failed: rank 1 exited with code 2");
  EXPECT_EQ(v.exit_code, 2);
}

TEST(LaunchVerdict, NoFailureIsSuccess) {
  auto v = judge({});
  EXPECT_TRUE(v.lines.empty());
  EXPECT_EQ(v.exit_code, 0);
}

// A rank that left with code 0 while others needed it is a failure only when the job fails.
TEST(LaunchVerdict, AnEarlyCleanExitIsTheRootCauseOnlyOfAFailedJob) {
  const Failure left{10.0, "rank 1", "exited with code 0 without leaving the job", 1, false, false, true};
  EXPECT_EQ(judge({left}).exit_code, 0);
  EXPECT_TRUE(judge({left}).lines.empty());
  auto v = judge({{12.0, "rank 0", "exited with code 1", 1}, left});
  ASSERT_EQ(v.lines.size(), 2u);
  EXPECT_EQ(v.lines[0], "failed: rank 1 exited with code 0 without leaving the job");
  EXPECT_EQ(v.lines[1], "  then rank 0 exited with code 1, after rank 1 failed");
  EXPECT_EQ(v.exit_code, 1);
  v = judge({{9.0, "rank 0", "exited with code 4", 4}, left});  // the failure came first
  EXPECT_EQ(v.lines[0], "failed: rank 0 exited with code 4");
  EXPECT_EQ(v.exit_code, 4);
}

TEST(LaunchVerdict, FailuresTravelThroughTheStoreUnchanged) {
  Failure f{1700000000.123456, "rank 3 (node 1)", "was killed by signal 9 (Killed)", 137, true, false, true};
  auto back = Failure::parse(f.serialize());
  ASSERT_TRUE(back.has_value());
  EXPECT_DOUBLE_EQ(back->wall_time, f.wall_time);
  EXPECT_EQ(back->who, f.who);
  EXPECT_EQ(back->what, f.what);
  EXPECT_EQ(back->exit_code, 137);
  EXPECT_TRUE(back->by_signal);
  EXPECT_FALSE(back->stopped_by_launcher);
  EXPECT_TRUE(back->clean_exit);
  EXPECT_FALSE(Failure::parse("garbage").has_value());
}

}  // namespace
}  // namespace kdist::tools
