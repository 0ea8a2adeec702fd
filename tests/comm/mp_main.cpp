// main() of the multi-process tests: every rank runs this binary under `kdist launch` (or
// torchrun), joins the job from the environment, and runs the same tests in the same order.
#include <gtest/gtest.h>
#include <kdist/runtime.h>

#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {
// KDIST_TEST_HOSTS="0,0,1,1": rank r runs on host label r of that list (KDIST_HOST), so that
// one machine holds several hosts for comm's transports (the hierarchical one's tests).
void label_hosts_for_tests() {
  const char* list = std::getenv("KDIST_TEST_HOSTS");
  const char* rank = std::getenv("RANK");
  if (list == nullptr || rank == nullptr) return;
  std::vector<std::string> labels;
  std::stringstream in(list);
  for (std::string label; std::getline(in, label, ',');) labels.push_back(label);
  const int r = std::stoi(rank);
  if (r < static_cast<int>(labels.size())) setenv("KDIST_HOST", ("test-host-" + labels[r]).c_str(), 1);
}

// KDIST_TEST_NCCL_HOST_PER_RANK=1: each rank tells NCCL it is a host of its own, so that
// several ranks may share one GPU (scripts/device-check.sh on a one-GPU machine).
void one_nccl_host_per_rank() {
  const char* rank = std::getenv("RANK");
  if (std::getenv("KDIST_TEST_NCCL_HOST_PER_RANK") == nullptr || rank == nullptr) return;
  setenv("NCCL_HOSTID", (std::string("kdist-test-rank-") + rank).c_str(), 1);
}
}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  label_hosts_for_tests();
  one_nccl_host_per_rank();
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
