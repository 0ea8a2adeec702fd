// main() of the multi-process tests: every rank runs this binary under `kdist launch` (or
// torchrun), joins the job from the environment, and runs the same tests in the same order.
#include <gtest/gtest.h>
#include <kdist/runtime.h>

#include <iostream>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  try {
    kdist::initialize();
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  int result = RUN_ALL_TESTS();
  // A filter that matches nothing must not pass as green.
  if (::testing::UnitTest::GetInstance()->test_to_run_count() == 0) {
    std::cerr << "no test matched the filter\n";
    result = 1;
  }
  kdist::shutdown();
  return result;
}
