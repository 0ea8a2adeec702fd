// Multi-process tests of src/dtensor/redistribute.cpp: values, collective counts, gradients.
// Redistribute1D.* runs on 2 and 4 ranks, Redistribute2x2.* on 4.
#include <kdist/dtensor.h>

#include "../mp_util.h"

namespace kdist {
namespace {
using comm::CollectiveCounter;
using testing::chunk_piece;
using testing::global_arange;
using testing::line_mesh;
using testing::mesh_2x2;

// This rank's block of `full` on the 2x2 mesh, from the chunk rule alone: mesh dimensions in
// order, each splitting what the earlier ones left (DTensor's nesting), never the code under test.
at::Tensor expected_block(const at::Tensor& full, const std::vector<Placement>& placements) {
  const int coordinate[2] = {process_id() / 2, process_id() % 2};
  at::Tensor block = full;
  for (int m = 0; m < 2; ++m)
    if (auto* shard = std::get_if<Shard>(&placements[m]))
      block = chunk_piece(block, shard->dim, 2, coordinate[m]);
  return block;
}

const std::vector<std::vector<int64_t>> kUnevenShapes{{12, 3}, {13, 3}, {14, 3}, {3, 12}, {3, 13}, {3, 14}};

// redistribute runs the plan plan_redistribute gives: comm counts the same collectives with
// the same bytes, step for step in kind.
void expect_plan_is_what_runs(const DTensor& x, const std::vector<Placement>& to) {
  const auto plan = x.plan_redistribute(to);
  CollectiveCounter counter;
  x.redistribute(to);
  const std::string what = to_string(x.placements()) + " -> " + to_string(to) + " on " +
                           std::to_string(x.sizes()[0]) + "x" + std::to_string(x.sizes()[1]);
  int64_t planned = 0;
  for (const char* kind : {"all_gather", "all_to_all", "all_reduce", "reduce_scatter"}) {
    EXPECT_EQ(plan.count(kind), counter.count(kind)) << kind << ": " << what << "\n" << plan.to_string();
    EXPECT_EQ(plan.bytes(kind), counter.bytes(kind)) << kind << ": " << what << "\n" << plan.to_string();
    planned += plan.count(kind);
  }
  EXPECT_EQ(planned, counter.total_count()) << what;
}

TEST(Redistribute1D, PlanIsWhatRuns) {
  auto mesh = line_mesh();
  const std::vector<Placement> all{Replicate{}, Shard{0}, Shard{1}};
  for (auto shape : std::vector<std::vector<int64_t>>{{8, 6}, {5, 3}, {1, 2}}) {
    auto full = global_arange(shape);
    for (const auto& from : all)
      for (const auto& to : all) expect_plan_is_what_runs(distribute_tensor(full, mesh, {from}), {to});
    auto partial = DTensor::from_local(at::ones(shape), mesh, {Partial{}}, shape);
    for (const auto& to : all) expect_plan_is_what_runs(partial, {to});
  }
  auto x = distribute_tensor(global_arange({4, 4}), mesh, {Shard{0}});
  EXPECT_THROW_WITH(x.plan_redistribute({Partial{}}), std::invalid_argument,
                    "Partial placements exist only inside computations");
  auto plan = x.plan_redistribute({Replicate{}});
  ASSERT_EQ(plan.steps.size(), 1u);
  EXPECT_EQ(plan.steps[0].ranks, mesh->ranks_along(0, process_id()));
  EXPECT_EQ(plan.to_string().rfind("mesh dim 0: S(0) -> R  all_gather over ranks 0,", 0), 0u)
      << plan.to_string();
}

TEST(Redistribute2x2, PlanIsWhatRuns) {
  auto mesh = mesh_2x2();
  const std::vector<Placement> one{Replicate{}, Shard{0}, Shard{1}};
  std::vector<std::vector<Placement>> all;
  for (const auto& a : one)
    for (const auto& b : one) all.push_back({a, b});
  for (auto shape : std::vector<std::vector<int64_t>>{{8, 6}, {5, 3}}) {
    auto full = global_arange(shape);
    for (const auto& from : all)
      for (const auto& to : all) expect_plan_is_what_runs(distribute_tensor(full, mesh, from), to);
    for (const auto& from : std::vector<std::vector<Placement>>{
             {Partial{}, Replicate{}}, {Shard{1}, Partial{}}, {Partial{}, Partial{}}}) {
      auto p = DTensor::from_local(expected_block(full, from).clone(), mesh, from, shape);
      for (const auto& to : all) expect_plan_is_what_runs(p, to);
    }
  }
}

TEST(Redistribute1D, ShardToReplicateAndItsGradient) {
  auto mesh = line_mesh();
  const int k = num_processes(), r = process_id();
  for (const auto& shape : kUnevenShapes) {
    for (int64_t d : {0, 1}) {
      auto full = global_arange(shape);
      auto local = chunk_piece(full, d, k, r).clone().requires_grad_();
      auto x = DTensor::from_local(local, mesh, {Shard{d}}, shape);
      CollectiveCounter forward;
      auto y = x.redistribute({Replicate{}});
      EXPECT_TRUE(at::equal(y.to_local(), full)) << shape[0] << "x" << shape[1] << " S(" << d << ")";
      EXPECT_EQ(forward.count("all_gather"), 1);
      EXPECT_EQ(forward.total_count(), 1);
      // The gradient of Shard -> Replicate is this rank's slice: no communication.
      auto weight = global_arange(shape) + 1;
      CollectiveCounter backward;
      (y.to_local() * weight).sum().backward();
      EXPECT_EQ(backward.total_count(), 0);
      EXPECT_TRUE(at::equal(local.grad(), chunk_piece(weight, d, k, r)));
    }
  }
}

TEST(Redistribute1D, ReplicateToShardAndItsGradient) {
  auto mesh = line_mesh();
  const int k = num_processes(), r = process_id();
  for (const auto& shape : kUnevenShapes) {
    for (int64_t d : {0, 1}) {
      auto full = global_arange(shape).requires_grad_();
      auto x = DTensor::from_local(full, mesh, {Replicate{}});
      CollectiveCounter forward;
      auto y = x.redistribute({Shard{d}});
      EXPECT_EQ(forward.total_count(), 0);
      EXPECT_TRUE(at::equal(y.to_local(), chunk_piece(full.detach(), d, k, r)));
      auto chunks = at::chunk(full.detach(), k, d);  // torch.chunk itself, where it has a piece
      if (r < static_cast<int>(chunks.size())) {
        EXPECT_TRUE(at::equal(y.to_local(), chunks[r]));
      }
      // The gradient of Replicate -> Shard is an all_gather of the pieces.
      auto weight = global_arange(shape) * 2;
      CollectiveCounter backward;
      (y.to_local() * chunk_piece(weight, d, k, r)).sum().backward();
      EXPECT_EQ(backward.count("all_gather"), 1);
      EXPECT_EQ(backward.total_count(), 1);
      EXPECT_TRUE(at::equal(full.grad(), weight));
    }
  }
}

TEST(Redistribute1D, PartialToReplicateAndShard) {
  auto mesh = line_mesh();
  const int k = num_processes(), r = process_id();
  CollectiveCounter counter;
  auto sum = DTensor::from_local(at::ones({12, 3}), mesh, {Partial{}}).redistribute({Replicate{}});
  EXPECT_TRUE(at::equal(sum.to_local(), at::full({12, 3}, float(k))));
  EXPECT_EQ(counter.count("all_reduce"), 1);
  for (const auto& shape : kUnevenShapes) {
    for (int64_t d : {0, 1}) {
      auto p = DTensor::from_local(at::ones(shape), mesh, {Partial{}}, shape);
      auto shard = p.redistribute({Shard{d}}).to_local();
      auto expected_shape = shape;
      expected_shape[d] = comm::chunk_size(shape[d], k, r);
      EXPECT_EQ(shard.sizes().vec(), expected_shape);
      EXPECT_TRUE(at::equal(shard, at::full(expected_shape, float(k))));
    }
  }
  // Partial -> Replicate's gradient is the replicated gradient itself: nothing is reduced.
  auto local = at::ones({4}).requires_grad_();
  auto y = DTensor::from_local(local, mesh, {Partial{}}).redistribute({Replicate{}});
  CollectiveCounter backward;
  (y.to_local() * at::arange(4, at::kFloat)).sum().backward();
  EXPECT_EQ(backward.total_count(), 0);
  EXPECT_TRUE(at::equal(local.grad(), at::arange(4, at::kFloat)));
  EXPECT_THROW_WITH(sum.redistribute({Partial{}}), std::invalid_argument,
                    "Partial placements exist only inside computations");
}

TEST(Redistribute1D, ShardToShardEqualsADirectDistribution) {
  auto mesh = line_mesh();
  for (auto shape : std::vector<std::vector<int64_t>>{{8, 8}, {8, 5}, {5, 8}, {5, 5}}) {
    auto full = global_arange(shape);
    auto s0 = distribute_tensor(full, mesh, {Shard{0}});
    CollectiveCounter counter;
    auto s1 = s0.redistribute({Shard{1}});
    EXPECT_EQ(counter.count("all_to_all"), 1);
    EXPECT_TRUE(at::equal(s1.to_local(), distribute_tensor(full, mesh, {Shard{1}}).to_local()));
    EXPECT_TRUE(at::equal(s1.redistribute({Shard{0}}).to_local(), s0.to_local()));
  }
}

TEST(Redistribute1D, GradientOfAChainMatchesOneProcess) {
  // loss = sum(chain(x) * w) with chain = S0 -> S1 -> R -> S0 is sum(x * w): d loss / dx = w.
  auto mesh = line_mesh();
  const int k = num_processes(), r = process_id();
  at::manual_seed(0);
  auto x = at::randn({9, 7});
  auto w = at::randn({9, 7});
  auto local = chunk_piece(x, 0, k, r).clone().requires_grad_();
  auto y = DTensor::from_local(local, mesh, {Shard{0}}, std::vector<int64_t>{9, 7})
               .redistribute({Shard{1}})
               .redistribute({Replicate{}})
               .redistribute({Shard{0}});
  EXPECT_TRUE(at::equal(y.to_local(), chunk_piece(x, 0, k, r)));
  (y.to_local() * chunk_piece(w, 0, k, r)).sum().backward();
  EXPECT_TRUE(at::allclose(local.grad(), chunk_piece(w, 0, k, r), 1e-6, 1e-6));
}

TEST(Redistribute1D, ASizeOneMeshDimensionCostsNothing) {
  // A (1, k) mesh: anything on the size-1 dimension is free, the other works as usual.
  const int k = num_processes();
  auto mesh = std::make_shared<DeviceMesh>(std::vector<int64_t>{1, k}, std::vector<std::string>{"one", "x"});
  auto full = global_arange({6, 5});
  auto x = distribute_tensor(full, mesh, {Shard{0}, Replicate{}});
  EXPECT_TRUE(at::equal(x.to_local(), full));
  comm::CollectiveCounter counter;
  EXPECT_TRUE(at::equal(x.redistribute({Shard{1}, Replicate{}}).to_local(), full));
  EXPECT_TRUE(at::equal(x.redistribute({Replicate{}, Replicate{}}).to_local(), full));
  auto p = DTensor::from_local(full, mesh, {Partial{}, Replicate{}});
  EXPECT_TRUE(at::equal(p.redistribute({Replicate{}, Replicate{}}).to_local(), full));
  EXPECT_EQ(counter.total_count(), 0);
  EXPECT_TRUE(
      at::equal(x.redistribute({Shard{0}, Shard{1}}).to_local(), chunk_piece(full, 1, k, process_id())));
}

TEST(Redistribute2x2, UnevenRoundTrips) {
  ASSERT_EQ(num_processes(), 4);
  auto mesh = mesh_2x2();
  for (auto shape : std::vector<std::vector<int64_t>>{{10, 5}, {9, 5}, {3, 5}, {1, 3}}) {
    for (auto placements : std::vector<std::vector<Placement>>{{Shard{0}, Shard{0}}, {Shard{0}, Shard{1}}}) {
      auto full = global_arange(shape);
      auto x = distribute_tensor(full, mesh, placements);
      EXPECT_TRUE(at::equal(x.full_tensor(), full))
          << shape[0] << "x" << shape[1] << " " << to_string(placements);
      EXPECT_TRUE(at::equal(x.to_local(), expected_block(full, placements)))
          << shape[0] << "x" << shape[1] << " " << to_string(placements);
    }
  }
}

// Blocks that are empty on some ranks ((3, 5) as S(0), S(0) leaves rank 3 none; (1, 3) leaves
// three ranks none) go to every other placement and back, each compared with the nested
// chunk rule.
TEST(Redistribute2x2, EmptyLocalBlocks) {
  ASSERT_EQ(num_processes(), 4);
  auto mesh = mesh_2x2();
  const std::vector<std::vector<Placement>> all{{Shard{0}, Shard{0}},    {Shard{0}, Shard{1}},
                                                {Shard{1}, Shard{0}},    {Replicate{}, Shard{0}},
                                                {Shard{0}, Replicate{}}, {Replicate{}, Replicate{}}};
  for (auto shape : std::vector<std::vector<int64_t>>{{3, 5}, {1, 3}})
    for (const auto& from : all)
      for (const auto& to : all) {
        auto full = global_arange(shape);
        auto x = DTensor::from_local(expected_block(full, from).clone(), mesh, from, shape);
        auto y = x.redistribute(to);
        EXPECT_TRUE(at::equal(y.to_local(), expected_block(full, to)))
            << shape[0] << "x" << shape[1] << " " << to_string(from) << " -> " << to_string(to);
        EXPECT_TRUE(at::equal(y.redistribute(from).to_local(), x.to_local()));
      }
}

TEST(Redistribute2x2, TransitionCountsAndValues) {
  auto mesh = mesh_2x2();
  auto full = global_arange({8, 8});
  auto s0s1 = distribute_tensor(full, mesh, {Shard{0}, Shard{1}});
  struct Case {
    std::vector<Placement> to;
    int64_t collectives;
  };
  for (const auto& c : std::vector<Case>{{{Shard{0}, Shard{0}}, 1},
                                         {{Shard{1}, Shard{0}}, 2},
                                         {{Shard{0}, Replicate{}}, 1},
                                         {{Replicate{}, Shard{1}}, 1},
                                         {{Replicate{}, Replicate{}}, 2},
                                         {{Shard{1}, Shard{1}}, 2}}) {
    CollectiveCounter counter;
    auto y = s0s1.redistribute(c.to);
    EXPECT_EQ(counter.total_count(), c.collectives) << to_string(c.to);
    EXPECT_TRUE(at::equal(y.to_local(), distribute_tensor(full, mesh, c.to).to_local())) << to_string(c.to);
    EXPECT_TRUE(at::equal(y.full_tensor(), full)) << to_string(c.to);
  }
  // Partial on one axis, sharded on the other.
  auto p = DTensor::from_local(at::ones({4, 6}), mesh, {Partial{}, Shard{1}}, std::vector<int64_t>{4, 12});
  EXPECT_TRUE(at::equal(p.redistribute({Replicate{}, Replicate{}}).to_local(), at::full({4, 12}, 2.0f)));
  auto scattered = p.redistribute({Shard{0}, Shard{1}});
  EXPECT_EQ(scattered.to_local().sizes().vec(), (std::vector<int64_t>{2, 6}));
  EXPECT_TRUE(at::equal(scattered.to_local(), at::full({2, 6}, 2.0f)));
}

}  // namespace
}  // namespace kdist
