// Multi-process tests of src/comm/shared_memory.cpp: real ranks on one host.
// SharedMemory.* runs on 2 and 4 ranks (and on the batch groups of a 2x2 mesh);
// SharedMemoryFailure.* on 2 ranks with a 2 s timeout (the dead peer with the job's).
#include <ATen/ATen.h>
#include <kdist/comm.h>
#include <kdist/runtime.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "../mp_util.h"
#include "comm/transports/shared_memory_segment.h"

namespace kdist::comm {
namespace {

std::shared_ptr<SharedMemorySegment> make(const Group& group, int64_t bytes) {
  std::string why_not;
  auto shm = SharedMemorySegment::create(group, bytes, &why_not);
  EXPECT_TRUE(shm != nullptr) << why_not;
  return shm;
}

// What every rank's contribution sums to: rank r holds (r + 1) * base.
at::Tensor expected_sum(const at::Tensor& base, int ranks) {
  return base * static_cast<double>(ranks * (ranks + 1) / 2);
}

TEST(SharedMemory, SumsEveryRankAndEverySize) {
  auto& group = *world();
  const int k = group.size(), r = group.rank();
  auto shm = make(group, 1 << 16);
  ASSERT_TRUE(shm);
  // Sizes that split unevenly over the ranks, down to fewer elements than ranks.
  for (int64_t n : {1, 3, 7, 1000, 4099}) {
    auto base = at::arange(n, at::kFloat).add(0.25);
    auto data = shm->region(/*offset=*/128, n, at::kFloat);
    data.copy_(base * (r + 1));
    shm->sum(data);
    EXPECT_TRUE(at::equal(data, expected_sum(base, k))) << "n = " << n;
  }
}

TEST(SharedMemory, RangesDtypesAndRepeatedCalls) {
  auto& group = *world();
  const int k = group.size(), r = group.rank();
  auto shm = make(group, 1 << 16);
  ASSERT_TRUE(shm);
  auto first = shm->region(0, 100, at::kDouble);
  auto second = shm->region(800, 50, at::kFloat);  // right after `first`
  for (int round = 0; round < 20; ++round) {
    first.fill_(r + round);
    second.fill_(-(r + 1));
    shm->sum(second);  // leaves `first` alone
    EXPECT_TRUE(at::equal(first, at::full({100}, r + round, at::kDouble))) << "round " << round;
    EXPECT_TRUE(at::equal(second, at::full({50}, -k * (k + 1) / 2.0, at::kFloat)));
    shm->sum(first);
    EXPECT_TRUE(at::equal(first, at::full({100}, k * (k - 1) / 2.0 + k * round, at::kDouble)));
  }
  // The same bits on every rank: the ranks' results agree exactly.
  auto noisy = shm->region(1024, 999, at::kFloat);
  at::manual_seed(7 + r);
  noisy.copy_(at::randn({999}));
  shm->sum(noisy);
  auto gathered = all_gather(noisy.clone().unsqueeze(0), 0, group);
  for (int q = 1; q < k; ++q) EXPECT_TRUE(at::equal(gathered[q], gathered[0]));
}

// The hierarchical backend's all_reduce: the group's reduction on the root, the root's step
// on it (here: doubled, plus 1), and that on every process; for tensors outside the region
// and inside it, sizes that split unevenly, and every reduction.
TEST(SharedMemory, AllReduceAroundRunsTheRootsStepOnTheReduction) {
  auto& group = *world();
  const int k = group.size(), r = group.rank(), root = k - 1;
  auto shm = make(group, 1 << 16);
  ASSERT_TRUE(shm);
  int steps = 0;
  auto step = [&](at::Tensor& reduced) {
    ++steps;
    reduced.mul_(2).add_(1);
  };
  for (int64_t n : {1, 3, 7, 4099}) {
    auto base = at::arange(n, at::kFloat).add(0.25);
    for (bool in_region : {false, true}) {
      for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax}) {
        auto data = in_region ? shm->region(256, n, at::kFloat) : at::empty({n});
        data.copy_(base * (r + 1));
        shm->all_reduce_around(data, op, root, step);
        at::Tensor reduced = op == ReduceOp::kMax ? base * k : expected_sum(base, k);
        if (op == ReduceOp::kAvg) reduced = reduced / k;
        EXPECT_TRUE(at::allclose(data, reduced * 2 + 1, 1e-6, 0))
            << "n = " << n << (in_region ? " in the region" : " outside it") << ", op "
            << static_cast<int>(op);
      }
    }
  }
  EXPECT_EQ(steps, r == root ? 4 * 2 * 3 : 0);  // on the root alone, once a call
  // Sizes beside the shapes: a 2-D tensor reaches the step with its shape.
  auto matrix = at::full({3, 5}, r + 1.0);
  shm->all_reduce_around(matrix, ReduceOp::kSum, 0, [&](at::Tensor& reduced) {
    EXPECT_EQ(reduced.sizes().vec(), (std::vector<int64_t>{3, 5}));
  });
  EXPECT_TRUE(at::equal(matrix, at::full({3, 5}, k * (k + 1) / 2.0)));
}

// The hierarchical backend's all_gather: each process's block (uneven, along dim 1) in its
// place in the root's tensor from `offset` on, the root's step filling the rest, the whole
// on every process.
TEST(SharedMemory, AllGatherAroundPutsEachBlockInItsPlace) {
  auto& group = *world();
  const int k = group.size(), r = group.rank(), root = k - 1;
  auto shm = make(group, 1 << 16);
  ASSERT_TRUE(shm);
  std::vector<int64_t> sizes;
  for (int q = 0; q < k; ++q) sizes.push_back(q + 1);
  const int64_t blocks = k * (k + 1) / 2, offset = 2, full_size = offset + blocks + 3;
  int steps = 0;
  auto step = [&](at::Tensor& full) {
    ++steps;
    full.narrow(1, 0, offset).fill_(-1);
    full.narrow(1, offset + blocks, 3).fill_(-2);
  };
  auto local = at::full({3, sizes[r]}, r + 1.0);
  auto got = shm->all_gather_around(local, 1, sizes, full_size, offset, root, step);
  std::vector<at::Tensor> parts{at::full({3, offset}, -1.0)};
  for (int q = 0; q < k; ++q) parts.push_back(at::full({3, sizes[q]}, q + 1.0));
  parts.push_back(at::full({3, 3}, -2.0));
  EXPECT_TRUE(at::equal(got, at::cat(parts, 1))) << got;
  EXPECT_EQ(steps, r == root ? 1 : 0);
}

TEST(SharedMemory, BadRegionsAreNamed) {
  auto shm = make(*world(), 4096);
  ASSERT_TRUE(shm);
  EXPECT_THROW_WITH(shm->region(4000, 100, at::kFloat), std::invalid_argument,
                    "[kdist.comm] shared-memory region [4000, 4400) of Float does not fit the "
                    "4096-byte region");
  EXPECT_THROW_WITH(shm->region(2, 1, at::kFloat), std::invalid_argument,
                    "offset 2 is not a multiple of Float's 4 bytes");
  auto outside = at::ones({4});
  EXPECT_THROW_WITH(shm->sum(outside), std::invalid_argument,
                    "[kdist.comm] shared-memory all_reduce needs a contiguous tensor inside this "
                    "process's region");
}

TEST(SharedMemory2x2, EachBatchGroupHasItsOwnSegment) {
  ASSERT_EQ(num_processes(), 4);
  auto mesh = testing::mesh_2x2();
  auto batch = axis_group(*mesh, "batch");  // ranks {0, 2} and {1, 3}
  auto shm = make(*batch, 4096);
  ASSERT_TRUE(shm);
  auto data = shm->region(0, 10, at::kFloat).fill_(process_id());
  shm->sum(data);
  const float want = process_id() % 2 == 0 ? 0 + 2 : 1 + 3;
  EXPECT_TRUE(at::equal(data, at::full({10}, want)));
}

TEST(SharedMemoryFailure, AMissingPeerIsATimeoutError) {
  auto& group = *world();
  auto shm = make(group, 4096);
  ASSERT_TRUE(shm);
  if (group.rank() == 0) {
    auto data = shm->region(0, 4, at::kFloat);
    auto start = std::chrono::steady_clock::now();
    EXPECT_THROW_WITH(shm->sum(data), std::runtime_error,
                      "[kdist.comm] all_reduce on world (ranks 0,1) failed on rank 0 (shared "
                      "memory): waited 2 s (KDIST_TIMEOUT_S) in the 'written' barrier for group rank(s) 1");
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
    EXPECT_THROW_WITH(shm->sum(data), std::runtime_error, "an earlier call failed");
  }
  // Rank 1 never calls sum(), and stays alive past the timeout (2 s), but joins the barrier
  // below well before rank 0's barrier times out (about 4 s from here).
  if (group.rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(3));
  barrier(group);
}

// The root's step throwing (the leaders' exchange between hosts failing) fails the others
// at once, not after the timeout (2 s here), and leaves the segment refusing later calls.
TEST(SharedMemoryFailure, ARootWhoseStepThrowsFailsTheOthersAtOnce) {
  auto& group = *world();
  auto shm = make(group, 4096);
  ASSERT_TRUE(shm);
  auto data = at::ones({8});
  auto failing = [](at::Tensor&) { throw std::runtime_error("the hosts' exchange failed"); };
  if (group.rank() == 0) {
    EXPECT_THROW_WITH(shm->all_reduce_around(data, ReduceOp::kSum, 0, failing), std::runtime_error,
                      "the hosts' exchange failed");
  } else {
    EXPECT_THROW_WITH(shm->all_reduce_around(data, ReduceOp::kSum, 0, failing), std::runtime_error,
                      "[kdist.comm] all_reduce on world (ranks 0,1) failed on rank 1 (shared memory): "
                      "group rank 0 gave up");
  }
  EXPECT_THROW_WITH(shm->all_reduce_around(data, ReduceOp::kSum, 0, failing), std::runtime_error,
                    "an earlier call failed");
  auto fresh = make(group, 4096);  // the same for all_gather_around
  ASSERT_TRUE(fresh);
  const std::vector<int64_t> sizes(group.size(), 8);
  EXPECT_THROW_WITH(fresh->all_gather_around(data, 0, sizes, 8 * group.size(), 0, 0, failing),
                    std::runtime_error,
                    group.rank() == 0 ? "the hosts' exchange failed" : "group rank 0 gave up");
  barrier(group);
}

TEST(SharedMemoryFailure, ADeadPeerIsNamedWithoutWaitingForTheTimeout) {
  auto& group = *world();
  auto shm = make(group, 4096);
  ASSERT_TRUE(shm);
  if (group.rank() == 1) std::_Exit(0);  // gone, as a crashed process is
  auto data = shm->region(0, 4, at::kFloat);
  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW_WITH(shm->sum(data), std::runtime_error, "the process of group rank 1 (pid ");
  // The job's timeout is 60 s: this is the liveness check, not the timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

}  // namespace
}  // namespace kdist::comm
