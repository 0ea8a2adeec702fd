// Multi-process tests of src/comm/collectives.cpp: real ranks over 127.0.0.1.
// Run on 2 and 4 ranks (Comm1D.*) and on 4 ranks as a 2x2 mesh (Comm2x2.*).
#include <ATen/ATen.h>
#include <kdist/comm.h>
#include <kdist/runtime.h>

#include <chrono>
#include <cstdlib>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "../mp_util.h"

namespace kdist::comm {
namespace {

using testing::chunk_piece;
using testing::global_arange;
using testing::line_mesh;
using testing::mesh_2x2;

TEST(ChunkRule, MatchesTorchChunk) {
  EXPECT_EQ(chunk_sizes(10, 4), (std::vector<int64_t>{3, 3, 3, 1}));
  EXPECT_EQ(chunk_sizes(5, 4), (std::vector<int64_t>{2, 2, 1, 0}));
  EXPECT_EQ(chunk_sizes(12, 4), (std::vector<int64_t>{3, 3, 3, 3}));
  EXPECT_EQ(chunk_sizes(1, 2), (std::vector<int64_t>{1, 0}));
}

TEST(Comm1D, WorldAndAxisGroup) {
  auto w = world();
  EXPECT_EQ(w->size(), num_processes());
  EXPECT_EQ(w->rank(), process_id());
  auto g = axis_group(*line_mesh(), "x");
  EXPECT_EQ(g->ranks(), w->ranks());
  EXPECT_EQ(g.get(), w.get()) << "the group of all ranks is cached once";
}

TEST(Comm1D, AllReduceSumAvgMax) {
  auto g = world();
  const float k = static_cast<float>(g->size());
  auto sum = at::full({2, 3}, process_id() + 1.0f);
  all_reduce(sum, ReduceOp::kSum, *g);
  EXPECT_TRUE(at::equal(sum, at::full({2, 3}, k * (k + 1) / 2)));
  auto avg = at::full({5}, process_id() + 1.0f);
  all_reduce(avg, ReduceOp::kAvg, *g);
  EXPECT_TRUE(at::allclose(avg, at::full({5}, (k + 1) / 2)));
  auto max = at::full({4}, static_cast<float>(process_id()));
  all_reduce(max, ReduceOp::kMax, *g);
  EXPECT_TRUE(at::equal(max, at::full({4}, k - 1)));
  // A non-contiguous tensor is reduced in place too.
  auto base = at::full({3, 4}, 1.0f);
  auto column = base.select(1, 2);
  all_reduce(column, ReduceOp::kSum, *g);
  EXPECT_TRUE(at::equal(base.select(1, 2), at::full({3}, k)));
  EXPECT_TRUE(at::equal(base.select(1, 0), at::full({3}, 1.0f)));
}

TEST(Comm1D, AllGatherEvenAndUneven) {
  auto g = world();
  const int k = g->size();
  for (int64_t n : {12, 13, 14, 3, 5, 1}) {
    for (int64_t dim : {0, 1}) {
      std::vector<int64_t> shape = dim == 0 ? std::vector<int64_t>{n, 3} : std::vector<int64_t>{3, n};
      auto full = global_arange(shape);
      auto local = chunk_piece(full, dim, k, g->rank()).contiguous();
      auto with_sizes = all_gather(local, dim, *g, chunk_sizes(n, k));
      EXPECT_TRUE(at::equal(with_sizes, full)) << "n=" << n << " dim=" << dim;
      auto exchanged = all_gather(local, dim, *g);  // sizes found by the collective itself
      EXPECT_TRUE(at::equal(exchanged, full)) << "n=" << n << " dim=" << dim;
    }
  }
}

// Through Gloo the gather runs while other collectives go on (every rank waits it later);
// on shared memory it is not started, and says so alike on every rank.
TEST(Comm1D, AsyncAllGatherEqualsAllGather) {
  auto g = world();
  const int k = g->size();
  const char* transport = std::getenv("KDIST_TRANSPORT");
  const bool gloo = transport && std::string(transport) == "gloo";
  for (int64_t n : {12, 13, 3}) {
    for (int64_t dim : {0, 1}) {
      std::vector<int64_t> shape = dim == 0 ? std::vector<int64_t>{n, 3} : std::vector<int64_t>{3, n};
      auto full = global_arange(shape);
      auto local = chunk_piece(full, dim, k, g->rank()).clone();
      auto pending = all_gather_async(local, dim, *g, chunk_sizes(n, k));
      ASSERT_EQ(pending.valid(), gloo) << "n=" << n;
      if (!pending.valid()) continue;
      local.fill_(-1);  // copied when launched
      auto between = at::ones({4});
      all_reduce(between, ReduceOp::kSum, *g);  // another collective before the wait
      EXPECT_EQ(between[0].item<float>(), k);
      EXPECT_TRUE(at::equal(pending.wait(), full)) << "n=" << n << " dim=" << dim;
      EXPECT_FALSE(pending.valid());
    }
  }
  auto local = at::ones({2, 2});
  EXPECT_THROW(all_gather_async(local, 0, *g, {2}), std::invalid_argument);
}

TEST(Comm1D, ReduceScatterEvenAndUneven) {
  auto g = world();
  const int k = g->size();
  const float factor = k * (k + 1) / 2.0f;  // sum over ranks of (rank + 1)
  {
    for (int64_t n : {12, 13, 14, 3, 5}) {
      for (int64_t dim : {0, 1}) {
        std::vector<int64_t> shape = dim == 0 ? std::vector<int64_t>{n, 3} : std::vector<int64_t>{3, n};
        auto mine = global_arange(shape) * (process_id() + 1.0f);
        auto expected = chunk_piece(global_arange(shape) * factor, dim, k, g->rank());
        auto got = reduce_scatter(mine, dim, ReduceOp::kSum, *g);
        EXPECT_TRUE(at::allclose(got, expected)) << "n=" << n << " dim=" << dim;
        auto avg = reduce_scatter(mine, dim, ReduceOp::kAvg, *g);
        EXPECT_TRUE(at::allclose(avg, expected / k)) << "avg, n=" << n << " dim=" << dim;
      }
    }
  }
}

TEST(Comm1D, AllToAllReshards) {
  // Shard(0) -> Shard(1): rows in, columns out, on even and uneven shapes.
  auto g = world();
  const int k = g->size();
  for (auto shape : std::vector<std::vector<int64_t>>{{8, 8}, {8, 5}, {5, 8}, {5, 5}, {3, 7}}) {
    auto full = global_arange(shape);
    auto rows = chunk_piece(full, 0, k, g->rank()).contiguous();
    auto cols = all_to_all(rows, /*split_dim=*/1, /*concat_dim=*/0, shape[0], *g);
    EXPECT_TRUE(at::equal(cols, chunk_piece(full, 1, k, g->rank()))) << shape[0] << "x" << shape[1];
    auto back = all_to_all(cols, /*split_dim=*/0, /*concat_dim=*/1, shape[1], *g);
    EXPECT_TRUE(at::equal(back, rows)) << shape[0] << "x" << shape[1];
  }
}

TEST(Comm1D, BroadcastAndBarrier) {
  auto g = world();
  for (int root = 0; root < g->size(); ++root) {
    auto t = at::full({3}, process_id() * 10.0f);
    broadcast(t, root, *g);
    EXPECT_TRUE(at::equal(t, at::full({3}, root * 10.0f))) << "root " << root;
  }
  barrier(*g);
  auto t = at::ones({1});
  EXPECT_THROW_WITH(broadcast(t, g->size(), *g), std::invalid_argument, "broadcast root");
}

TEST(Comm1D, CounterCountsKindsAndBytes) {
  auto g = world();
  const int k = g->size();
  CollectiveCounter outer;
  {
    CollectiveCounter counter;
    auto t = at::ones({12});
    all_reduce(t, ReduceOp::kSum, *g);
    all_gather(at::ones({2, 3}), 0, *g, std::vector<int64_t>(k, 2));
    reduce_scatter(at::ones({4 * k}), 0, ReduceOp::kSum, *g);
    EXPECT_EQ(counter.count("all_reduce"), 1);
    EXPECT_EQ(counter.bytes("all_reduce"), 48);
    EXPECT_EQ(counter.count("all_gather"), 1);
    EXPECT_EQ(counter.bytes("all_gather"), 24);
    EXPECT_EQ(counter.count("reduce_scatter"), 1);
    EXPECT_EQ(counter.total_count(), 3);
    EXPECT_EQ(counter.count("all_to_all"), 0);
  }
  EXPECT_EQ(outer.total_count(), 3);
}

TEST(Comm1D, BadArguments) {
  auto g = world();
  auto t = at::ones({2, 2});
  EXPECT_THROW_WITH(all_gather(t, 2, *g), std::invalid_argument,
                    "all_gather: dim 2 is out of range for a tensor of 2 dimensions");
  EXPECT_THROW_WITH(all_gather(t, 0, *g, std::vector<int64_t>{1}), std::invalid_argument,
                    "all_gather on world");
  // An empty size list is named as such (its error path once read entry `rank` of it).
  EXPECT_THROW_WITH(all_gather(t, 0, *g, std::vector<int64_t>{}), std::invalid_argument,
                    "sizes has 0 entries, expected one per rank (" + std::to_string(g->size()) + ")");
  std::vector<int64_t> wrong(g->size(), 2);
  wrong[g->rank()] = 5;
  EXPECT_THROW_WITH(all_gather(t, 0, *g, wrong), std::invalid_argument,
                    "sizes says 5 for group rank " + std::to_string(g->rank()) + ", whose tensor has 2");
}

// ---- transports ----------------------------------------------------------------------------

// What comm should choose for the world group: KDIST_TRANSPORT=gloo forces Gloo; otherwise
// the placement decides, and KDIST_TEST_HOSTS (tests/comm/mp_main.cpp) splits this machine
// into hosts.
Transport expected_world_transport() {
  const char* forced = std::getenv("KDIST_TRANSPORT");
  if (forced && std::string(forced) == "gloo") return Transport::kGloo;
  const char* hosts = std::getenv("KDIST_TEST_HOSTS");
  if (!hosts) return Transport::kSharedMemory;
  std::vector<std::string> labels;
  std::stringstream in(hosts);
  for (std::string label; std::getline(in, label, ',');) labels.push_back(label);
  labels.resize(num_processes());
  std::set<std::string> distinct(labels.begin(), labels.end());
  if (distinct.size() == 1) return Transport::kSharedMemory;
  return distinct.size() == labels.size() ? Transport::kGloo : Transport::kHierarchical;
}

TEST(CommTransport, WorldFollowsWhereTheRanksRun) {
  EXPECT_EQ(to_string(transport(*world())), to_string(expected_world_transport()));
  EXPECT_EQ(transport(*axis_group(*line_mesh(), "x", {Transport::kGloo})), Transport::kGloo);
  if (!std::getenv("KDIST_TEST_HOSTS"))
    EXPECT_THROW_WITH(axis_group(*line_mesh(), "x", {Transport::kHierarchical}), std::invalid_argument,
                      "[kdist.comm] a hierarchical transport for x (ranks 0,");
}

// A rank with no rows beside blocks far larger than the shared memory made so far: every
// process must size the gathered whole from the sizes, not from its own block (a process
// with an empty block that sized it from its own would not grow the segment with the rest).
TEST(CommTransport, AnEmptyBlockBesideLargeOnesGathers) {
  auto chosen = world();
  const int k = chosen->size(), me = chosen->rank();
  std::vector<int64_t> sizes(k, 2048);
  sizes[0] = 0;
  auto local = at::full({sizes[me], 1024}, me + 1.0);
  std::vector<at::Tensor> blocks;
  for (int q = 0; q < k; ++q) blocks.push_back(at::full({sizes[q], 1024}, q + 1.0));
  EXPECT_TRUE(at::equal(all_gather(local, 0, *chosen, sizes), at::cat(blocks, 0)));
}

// Whatever the world group runs on returns what Gloo returns: the same bits where nothing
// is summed (gathers, all_to_all, broadcast, max), within rounding where something is.
TEST(CommTransport, EveryCollectiveAgreesWithGloo) {
  auto chosen = world();
  auto gloo = axis_group(*line_mesh(), "x", {Transport::kGloo});
  const int k = chosen->size(), me = chosen->rank();
  at::manual_seed(5 + process_id());
  for (auto dtype : {at::kFloat, at::kDouble, at::kBFloat16}) {
    for (int64_t n : {1000, 1001, 3}) {
      for (int64_t dim : {0, 1}) {
        SCOPED_TRACE(::testing::Message() << c10::toString(dtype) << " n=" << n << " dim=" << dim);
        std::vector<int64_t> shape = dim == 0 ? std::vector<int64_t>{n, 3} : std::vector<int64_t>{3, n};
        auto x = at::randn(shape).to(dtype);
        const double tolerance = dtype == at::kBFloat16 ? 5e-2 : 1e-5;
        for (auto op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax}) {
          auto a = x.clone(), b = x.clone();
          all_reduce(a, op, *chosen);
          all_reduce(b, op, *gloo);
          if (op == ReduceOp::kMax)
            EXPECT_TRUE(at::equal(a, b));
          else
            EXPECT_TRUE(at::allclose(a, b, tolerance, tolerance)) << "op " << int(op);
          const auto before = x.clone();
          EXPECT_TRUE(at::equal(all_reduce_copy(x, op, *chosen), a)) << "all_reduce_copy, op " << int(op);
          EXPECT_TRUE(at::equal(x, before)) << "all_reduce_copy leaves its input";
          auto rs_a = reduce_scatter(x, dim, op, *chosen), rs_b = reduce_scatter(x, dim, op, *gloo);
          EXPECT_TRUE(at::allclose(rs_a, rs_b, tolerance, tolerance)) << "reduce_scatter op " << int(op);
        }
        auto piece = chunk_piece(x, dim, k, me).contiguous();
        EXPECT_TRUE(at::equal(all_gather(piece, dim, *chosen, chunk_sizes(n, k)),
                              all_gather(piece, dim, *gloo, chunk_sizes(n, k))));
        EXPECT_TRUE(at::equal(all_gather(piece, dim, *chosen), all_gather(piece, dim, *gloo)));
        auto rows = chunk_piece(x, 0, k, me).contiguous();
        EXPECT_TRUE(
            at::equal(all_to_all(rows, 1, 0, x.size(0), *chosen), all_to_all(rows, 1, 0, x.size(0), *gloo)));
        auto a = x.clone(), b = x.clone();
        broadcast(a, k - 1, *chosen);
        broadcast(b, k - 1, *gloo);
        EXPECT_TRUE(at::equal(a, b));
      }
    }
  }
  // Larger than a first shared-memory segment (1 MiB per process): it grows, alike everywhere.
  auto big = at::randn({600 * 1024});
  auto a = big.clone(), b = big.clone();
  all_reduce(a, ReduceOp::kSum, *chosen);
  all_reduce(b, ReduceOp::kSum, *gloo);
  EXPECT_TRUE(at::allclose(a, b, 1e-5, 1e-5));
  auto longs = at::arange(7, at::kLong) * (process_id() + 1);
  all_reduce(longs, ReduceOp::kSum, *chosen);
  EXPECT_TRUE(at::equal(longs, at::arange(7, at::kLong) * (k * (k + 1) / 2)));
  barrier(*chosen);
}

// allocate_buffer's memory is reduced where it lies, and all_reduce_async on it waits for
// nothing until wait() (on shared memory) or runs beside the caller (on Gloo).
TEST(CommTransport, BufferMemoryIsReducedWhereItLies) {
  auto g = world();
  const int k = g->size();
  auto memory = allocate_buffer(*g, 4096);
  ASSERT_EQ(memory.numel(), 4096);
  EXPECT_EQ(memory.scalar_type(), at::kByte);
  EXPECT_TRUE(at::equal(memory, at::zeros({4096}, at::kByte)));
  auto floats = memory.narrow(0, 64, 400).view(at::kFloat);
  for (int round = 0; round < 3; ++round) {
    floats.fill_(process_id() + 1.0f + round);
    const void* where = floats.data_ptr();
    auto pending = all_reduce_async(floats, ReduceOp::kSum, *g);
    pending.wait();
    EXPECT_EQ(floats.data_ptr(), where);
    EXPECT_TRUE(at::equal(floats, at::full({100}, k * (k + 1) / 2.0f + k * round))) << "round " << round;
  }
  EXPECT_TRUE(at::equal(memory.narrow(0, 0, 64), at::zeros({64}, at::kByte))) << "the rest untouched";
}

// ---- 2x2 mesh (batch, model) on 4 ranks ------------------------------------------------------

TEST(Comm2x2, AxisGroupsFollowTheMesh) {
  ASSERT_EQ(num_processes(), 4);
  auto mesh = mesh_2x2();
  auto batch = axis_group(*mesh, "batch");
  auto model = axis_group(*mesh, "model");
  const int r = process_id();
  EXPECT_EQ(batch->ranks(), (std::vector<int>{r % 2, r % 2 + 2}));          // rank 1: {1, 3}
  EXPECT_EQ(model->ranks(), (std::vector<int>{r / 2 * 2, r / 2 * 2 + 1}));  // rank 1: {0, 1}
  EXPECT_EQ(batch->rank(), r / 2);
  EXPECT_EQ(model->rank(), r % 2);
  EXPECT_EQ(axis_group(*mesh_2x2(), "batch").get(), batch.get()) << "cached per rank set";
}

TEST(Comm2x2, CollectivesStayInsideTheirGroup) {
  auto mesh = mesh_2x2();
  const int r = process_id();
  auto model = axis_group(*mesh, "model");
  auto batch = axis_group(*mesh, "batch");

  CollectiveCounter counter;
  auto t = at::full({3}, static_cast<float>(r));
  all_reduce(t, ReduceOp::kSum, *model);
  float model_sum = static_cast<float>(model->ranks()[0] + model->ranks()[1]);
  EXPECT_TRUE(at::equal(t, at::full({3}, model_sum)));

  auto full = global_arange({5, 2});
  auto local = chunk_piece(full, 0, 2, batch->rank()).contiguous();  // rows 0-2 or 3-4
  EXPECT_TRUE(at::equal(all_gather(local, 0, *batch, chunk_sizes(5, 2)), full));

  auto scattered = reduce_scatter(global_arange({3, 4}), 1, ReduceOp::kSum, *model);
  EXPECT_TRUE(at::equal(scattered, chunk_piece(global_arange({3, 4}) * 2, 1, 2, model->rank())));

  auto cols = all_to_all(chunk_piece(full, 0, 2, model->rank()).contiguous(), 1, 0, 5, *model);
  EXPECT_TRUE(at::equal(cols, chunk_piece(full, 1, 2, model->rank())));
  EXPECT_EQ(counter.total_count(), 4);
}

// ---- failures (run on 2 ranks with a short KDIST_TIMEOUT_S) ----------------------------------

TEST(CommFailure, AMissingPeerIsATimeoutError) {
  auto g = world();
  if (process_id() == 0) {
    auto t = at::ones({4});
    EXPECT_THROW_WITH(all_reduce(t, ReduceOp::kSum, *g), std::runtime_error,
                      "[kdist.comm] all_reduce on world (ranks 0,1) failed on rank 0");
  }
  // Rank 1 never joins, and stays alive past the timeout so that rank 0 sees a hung
  // collective rather than a closed connection.
  if (process_id() == 1) std::this_thread::sleep_for(std::chrono::seconds(5));
}

}  // namespace
}  // namespace kdist::comm

namespace kdist::comm {
namespace {

// For tests/launch_test.sh's root_cause case (4 ranks): rank 2 leaves with exit code 3 while
// the others wait in a collective; they fail because it left (rank 1 aborts, as a rank does
// when an error escapes; ranks 0 and 3 exit 1). The launcher must blame rank 2.
TEST(LaunchRootCause, RankTwoLeavesDuringACollective) {
  if (process_id() == 2) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::_Exit(3);
  }
  try {
    for (int i = 0; i < 1000; ++i) barrier(*world());
  } catch (const std::exception&) {
    if (process_id() == 1) std::abort();
    std::_Exit(1);
  }
}

// Rank 1 leaves without kdist::shutdown(), exit code 0, while the others wait for it.
TEST(LaunchRootCause, RankOneLeavesQuietly) {
  if (process_id() == 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::_Exit(0);
  }
  try {
    for (int i = 0; i < 1000; ++i) barrier(*world());
  } catch (const std::exception&) {
    std::_Exit(1);
  }
}

// Every rank ends with code 0 without kdist::shutdown(), after a last barrier.
TEST(LaunchRootCause, EveryRankLeavesQuietly) {
  barrier(*world());
  std::_Exit(0);
}

}  // namespace
}  // namespace kdist::comm
