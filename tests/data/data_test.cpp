// Multi-process tests of kdist/data.h and src/data/data.cpp: which samples each process reads.
// DistributedData.* runs on 2 and 4 ranks, DistributedData2x2.* on a 2x2 mesh.
#include <kdist/data.h>
#include <torch/data/datasets/base.h>
#include <torch/data/example.h>

#include <set>

#include "../mp_util.h"

namespace kdist {
namespace {

// Sample i is the number i.
struct Numbers : torch::data::datasets::Dataset<Numbers, torch::data::Example<>> {
  explicit Numbers(int64_t n) : n(n) {}
  torch::data::Example<> get(size_t i) override {
    return {at::full({1}, static_cast<int64_t>(i), at::kLong), at::zeros({1})};
  }
  torch::optional<size_t> size() const override { return n; }
  int64_t n;
};

// Every sample this process reads in one epoch, in order.
std::vector<int64_t> read_epoch(const DistributedDataset<Numbers>& data, size_t epoch, int64_t* steps) {
  std::vector<int64_t> seen;
  *steps = 0;
  for (auto& batch : data.epoch(epoch)) {
    ++*steps;
    for (auto& example : batch) seen.push_back(example.data.item<int64_t>());
  }
  return seen;
}

// Everyone's samples, rank by rank (all ranks read the same count).
std::vector<std::vector<int64_t>> everyones(const std::vector<int64_t>& mine) {
  auto all = comm::all_gather(at::tensor(mine, at::kLong), 0, *comm::world());
  std::vector<std::vector<int64_t>> out(num_processes());
  for (int r = 0; r < num_processes(); ++r)
    for (size_t i = 0; i < mine.size(); ++i) out[r].push_back(all[r * mine.size() + i].item<int64_t>());
  return out;
}

TEST(DistributedData, EveryProcessReadsItsOwnSamplesCoveringTheEpoch) {
  const int k = num_processes();
  DataParallel dp;
  auto data = distribute_dataset(Numbers(22), /*global_batch_size=*/2 * k, dp, {/*seed=*/7});
  EXPECT_EQ(data.batch().batch_size, 2);
  int64_t steps = 0;
  auto mine = read_epoch(data, 0, &steps);
  EXPECT_EQ(static_cast<int64_t>(mine.size()), (22 + k - 1) / k) << "padded to equal shards";
  auto all = everyones(mine);
  std::multiset<int64_t> union_of_all;
  for (const auto& r : all) union_of_all.insert(r.begin(), r.end());
  for (int64_t i = 0; i < 22; ++i) EXPECT_GE(union_of_all.count(i), 1u) << "sample " << i;
  EXPECT_EQ(union_of_all.size(), static_cast<size_t>(k * ((22 + k - 1) / k)));  // only padding repeats
  auto steps_all = comm::all_gather(at::full({1}, steps, at::kLong), 0, *comm::world());
  EXPECT_TRUE(at::equal(steps_all, at::full({k}, steps, at::kLong))) << "same number of steps";
  // Another epoch shuffles differently; the same (seed, epoch) gives the same order.
  int64_t ignored = 0;
  EXPECT_NE(read_epoch(data, 1, &ignored), mine);
  EXPECT_EQ(read_epoch(data, 0, &ignored), mine);
  // drop_last cuts the shards instead of padding them.
  auto cut = distribute_dataset(Numbers(22), 2 * k, dp, {/*seed=*/7, /*drop_last=*/true});
  EXPECT_EQ(static_cast<int64_t>(read_epoch(cut, 0, &ignored).size()), 22 / k / 2 * 2);
}

TEST(DistributedData, BadGlobalBatchSize) {
  const int k = num_processes();
  EXPECT_THROW_WITH(distribute_dataset(Numbers(10), 2 * k + 1, DataParallel()), std::invalid_argument,
                    "[kdist.data] global batch size " + std::to_string(2 * k + 1) +
                        " does not divide by the " + std::to_string(k) + " data shards");
}

TEST(DistributedData, DataInputIsShardedOverTheBatchAxis) {
  DataParallel dp;
  auto x = distribute_data_input(at::full({3, 2}, float(process_id())), dp);
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{3 * num_processes(), 2}));
  EXPECT_EQ(x.placements(), (std::vector<Placement>{Shard{0}}));
  EXPECT_TRUE(at::equal(x.full_tensor().narrow(0, 3, 3), at::full({3, 2}, 1.0f)));
}

TEST(DistributedData2x2, AModelGroupReadsTheSameBatches) {
  ASSERT_EQ(num_processes(), 4);
  LayoutMap map(testing::mesh_2x2());
  ModelParallel mp(map);
  auto data = distribute_dataset(Numbers(16), /*global_batch_size=*/4, mp, {/*seed=*/1});
  EXPECT_EQ(data.batch().batch_size, 2);
  int64_t steps = 0;
  auto all = everyones(read_epoch(data, 0, &steps));
  EXPECT_EQ(all[0], all[1]) << "ranks 0 and 1 are one model replica";
  EXPECT_EQ(all[2], all[3]);
  std::set<int64_t> first(all[0].begin(), all[0].end());
  for (auto v : all[2]) EXPECT_EQ(first.count(v), 0u) << "the replicas read disjoint samples";
}

}  // namespace
}  // namespace kdist
