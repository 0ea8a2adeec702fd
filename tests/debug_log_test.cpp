// The KERAS_DISTRIBUTION_DEBUG trace of src/debug_log.cpp, as seen through the API.
#include <kdist/distribution.h>
#include <kdist/job.h>

#include <cstdlib>

#include "test_util.h"

namespace kdist {
namespace {

class DebugLog : public ::testing::Test {
 protected:
  void TearDown() override {
    unsetenv("KERAS_DISTRIBUTION_DEBUG");
    set_distribution(nullptr);
  }
};

TEST_F(DebugLog, ScopeAndSetDistributionAreTraced) {
  setenv("KERAS_DISTRIBUTION_DEBUG", "1", 1);
  auto dp = std::make_shared<DataParallel>(testing::mesh({2}, {"batch"}));
  ::testing::internal::CaptureStderr();
  { auto guard = dp->scope(); }
  std::string log = ::testing::internal::GetCapturedStderr();
  const std::string dp_text = dp->to_string();
  EXPECT_NE(log.find("DEBUG | [Rank 0/1] scope() entering with distribution=" + dp_text + "\n"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("DEBUG | [Rank 0/1] set_distribution(" + dp_text + ")\n"), std::string::npos) << log;
  EXPECT_NE(log.find("DEBUG | [Rank 0/1] scope() exiting " + dp_text + ", restoring None\n"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("DEBUG | [Rank 0/1] set_distribution(None)\n"), std::string::npos) << log;
}

// The prefix is the place runtime pushes down at initialize (current_job, job.h).
TEST_F(DebugLog, LinesNameTheProcessOfTheJob) {
  setenv("KERAS_DISTRIBUTION_DEBUG", "1", 1);
  detail::set_current_job({2, 4, testing::fake_devices(4)});
  ::testing::internal::CaptureStderr();
  set_distribution(nullptr);
  std::string log = ::testing::internal::GetCapturedStderr();
  detail::set_current_job({});
  EXPECT_EQ(log, "DEBUG | [Rank 2/4] set_distribution(None)\n");
}

TEST_F(DebugLog, SilentUnlessAsked) {
  auto dp = std::make_shared<DataParallel>(testing::mesh({2}, {"batch"}));
  for (const char* value : {"", "0"}) {
    if (*value) setenv("KERAS_DISTRIBUTION_DEBUG", value, 1);
    ::testing::internal::CaptureStderr();
    { auto guard = dp->scope(); }
    EXPECT_EQ(::testing::internal::GetCapturedStderr(), "") << "KERAS_DISTRIBUTION_DEBUG=" << value;
  }
}

}  // namespace
}  // namespace kdist
