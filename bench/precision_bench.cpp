// bf16 mixed precision against fp32: one Adam step of TinyGpt (tests/nn/models.h) with every
// weight sharded over the batch axis (FSDP) on all processes, timed alternately, and the bytes
// its collectives move (comm::CollectiveCounter).
//
//   build/tools/kdist launch -n 2 -- build/bench/precision_bench [--rounds 5]
//
// Prints on rank 0: fp32 <ms> bf16 <ms> (medians of the slowest rank), then per precision the
// all_gather and reduce_scatter bytes of one step on rank 0:
//   fp32_gather_bytes ... fp32_reduce_bytes ... bf16_gather_bytes ... bf16_reduce_bytes ...
#include <ATen/ATen.h>
#include <kdist/nn.h>
#include <kdist/runtime.h>
#include <kdist/sync.h>
#include <torch/optim/adam.h>

#include <cstdio>

#include "../tests/nn/models.h"
#include "bench_util.h"

using namespace kdist;

constexpr int64_t kVocab = 2048, kContext = 256, kWidth = 512, kHeads = 8, kBatch = 4;

struct Run {
  testing::TinyGpt model{nullptr};
  std::unique_ptr<GradientSync> sync;
  std::unique_ptr<torch::optim::Adam> optimizer;
};

Run make(const Distribution& distribution, bool bf16) {
  Run run;
  at::manual_seed(0);
  run.model = testing::TinyGpt(kVocab, kContext, kWidth, kHeads);
  DistributeModuleOptions options;
  if (bf16) options.mixed_precision = nn::MixedPrecision{};
  distribute_module(*run.model, distribution, options);
  if (bf16) run.model->head->precision->output_dtype = at::kFloat;  // the loss in fp32
  run.sync = std::make_unique<GradientSync>(*run.model, distribution);
  run.optimizer =
      std::make_unique<torch::optim::Adam>(run.model->parameters(), torch::optim::AdamOptions(1e-4));
  return run;
}

int main(int argc, char** argv) {
  const int rounds = kdist::bench::rounds_from_args(argc, argv, 5);
  at::set_num_threads(1);
  kdist::initialize();
  auto mesh =
      std::make_shared<DeviceMesh>(std::vector<int64_t>{num_processes()}, std::vector<std::string>{"batch"});
  LayoutMap map(mesh);
  map.set("(q|k|v|o|up|down|head)/kernel", {"batch", std::nullopt});
  map.set("(tok|pos)/embeddings", {"batch", std::nullopt});
  ModelParallel distribution(map);
  at::manual_seed(1);
  auto ids = at::randint(0, kVocab, {kBatch, kContext}, at::kLong);
  auto targets = at::randint(0, kVocab, {kBatch, kContext}, at::kLong);
  auto step = [&](Run& run) {
    return [&run, &ids, &targets] {
      run.optimizer->zero_grad();
      auto logits = run.model->forward(ids);
      at::cross_entropy_loss(logits.reshape({-1, kVocab}), targets.reshape({-1})).backward();
      run.optimizer->step();
    };
  };
  Run fp32 = make(distribution, false), bf16 = make(distribution, true);
  auto bytes_of = [&](Run& run) {
    comm::CollectiveCounter counter;
    step(run)();
    return std::make_pair(counter.bytes("all_gather"), counter.bytes("reduce_scatter"));
  };
  const auto fp32_bytes = bytes_of(fp32), bf16_bytes = bytes_of(bf16);
  std::vector<kdist::bench::Op> ops{{"fp32", 1, step(fp32)}, {"bf16", 1, step(bf16)}};
  kdist::bench::measure(ops, rounds);
  if (process_id() == 0)
    std::printf(
        "fp32 %.3f bf16 %.3f fp32_gather_bytes %lld fp32_reduce_bytes %lld bf16_gather_bytes %lld "
        "bf16_reduce_bytes %lld\n",
        ops[0].median_ms, ops[1].median_ms, static_cast<long long>(fp32_bytes.first),
        static_cast<long long>(fp32_bytes.second), static_cast<long long>(bf16_bytes.first),
        static_cast<long long>(bf16_bytes.second));
  kdist::shutdown();
  return 0;
}
