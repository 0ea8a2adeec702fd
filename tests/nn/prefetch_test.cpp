// Multi-process tests of FSDP's prefetch (src/nn/prefetch.cpp, DistributeModuleOptions::
// prefetch), against one process on the global batch. FsdpPrefetch.* runs on 2 and 4 ranks,
// FsdpPrefetch2x2.* on a (batch, model) mesh; through Gloo (mp.fsdp.*.gloo) gathers are
// prefetched, through shared memory (mp.fsdp.n2, ...) nothing is started, and the results
// must be the same.
#include <cstdlib>
#include <string>

#include "fsdp_compare.h"
#include "nn/prefetch.h"

namespace kdist {
namespace {
using testing::Case;
using testing::Entries;
using testing::kAdam;
using testing::kSgd;
using testing::line;
using testing::train_and_compare;

// Three batch-sharded Linears, run in module order, or reversed (fc3 first): then the chain
// (module order) prefetches gathers that are used later than planned, or after the optimizer
// changed the shard, which must cost a gather again, never a stale weight.
struct ThreeImpl : torch::nn::Module {
  explicit ThreeImpl(bool reversed)
      : reversed(reversed),
        fc1(register_module("fc1", nn::Linear(reversed ? 18 : 10, reversed ? 4 : 18))),
        fc2(register_module("fc2", nn::Linear(18, 18))),
        fc3(register_module("fc3", nn::Linear(reversed ? 10 : 18, reversed ? 18 : 4))) {}
  at::Tensor forward(const at::Tensor& x) {
    if (reversed) return fc1(at::tanh(fc2(at::tanh(fc3(x)))));
    return fc3(at::tanh(fc2(at::tanh(fc1(x)))));
  }
  bool reversed;
  nn::Linear fc1, fc2, fc3;
};
TORCH_MODULE(Three);

Case three_case(bool reversed) {
  return {[=] { return Three(reversed).ptr(); },
          [](torch::nn::Module& m, const at::Tensor& x) { return static_cast<ThreeImpl&>(m).forward(x); },
          [](int64_t rows) {
            return at::randn({rows, 10});
          },
          4};
}

// Uneven shards (10, 18 and 4 on 4 ranks), both dimensions, biases sharded too.
const Entries kThreeFsdp{{"fc1/kernel", {"batch", std::nullopt}},
                         {"fc1/bias", {"batch"}},
                         {"fc2/kernel", {std::nullopt, "batch"}},
                         {"fc3/kernel", {"batch", std::nullopt}}};

DistributeModuleOptions prefetching(bool reshard_after_forward = true) {
  DistributeModuleOptions options;
  options.prefetch = true;
  options.reshard_after_forward = reshard_after_forward;
  return options;
}

bool through_gloo() {
  const char* transport = std::getenv("KDIST_TRANSPORT");
  return transport && std::string(transport) == "gloo";
}

TEST(FsdpPrefetch, TrainsAsOneProcess) {
  train_and_compare<torch::optim::SGD>(three_case(false), line("batch"), kThreeFsdp, kSgd, "", 4,
                                       prefetching());
  train_and_compare<torch::optim::Adam>(three_case(false), line("batch"), kThreeFsdp, kAdam, "", 3,
                                        prefetching());
}

TEST(FsdpPrefetch, KeepingTheGatheredWeightsUntilBackward) {
  train_and_compare<torch::optim::Adam>(three_case(false), line("batch"), kThreeFsdp, kAdam, "", 3,
                                        prefetching(/*reshard_after_forward=*/false));
}

TEST(FsdpPrefetch, LayersRunOutOfModuleOrder) {
  train_and_compare<torch::optim::Adam>(three_case(true), line("batch"), kThreeFsdp, kAdam, "", 4,
                                        prefetching());
}

TEST(FsdpPrefetch2x2, NextToTensorParallelism) {
  auto mesh =
      std::make_shared<DeviceMesh>(std::vector<int64_t>{2, 2}, std::vector<std::string>{"batch", "model"});
  train_and_compare<torch::optim::Adam>(three_case(false), mesh,
                                        {{"fc1/kernel", {"batch", "model"}},
                                         {"fc2/kernel", {"model", "batch"}},
                                         {"fc3/kernel", {"batch", std::nullopt}}},
                                        kAdam, "", 3, prefetching());
}

// The gather of the next layer's weight is under way once a layer has run, through Gloo;
// on shared memory nothing is started.
TEST(FsdpPrefetch, StartsTheNextGatherWhereTheTransportRunsBesideTheCaller) {
  Three model(false);
  LayoutMap map(line("batch"));
  for (const auto& [key, axes] : kThreeFsdp) map.set(key, axes);
  distribute_module(*model, ModelParallel(map), prefetching());
  auto x = at::randn({3, 10});
  at::Tensor h;
  {
    at::NoGradGuard no_grad;
    h = model->fc1(x);
  }
  ASSERT_TRUE(model->fc2->batch.weight->prefetch);
  EXPECT_EQ(model->fc2->batch.weight->prefetch->pending.valid(), through_gloo());
  EXPECT_FALSE(model->fc3->batch.weight->prefetch->pending.valid());
  at::NoGradGuard no_grad;
  auto y = model->fc3(at::tanh(model->fc2(at::tanh(h))));  // takes fc2's gather
  EXPECT_FALSE(model->fc2->batch.weight->prefetch->pending.valid());
  EXPECT_EQ(y.size(1), 4);
}

}  // namespace
}  // namespace kdist
