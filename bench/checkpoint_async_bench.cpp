// What checkpointing every 5 steps costs a training loop on 2 ranks: no checkpoints,
// kdist::save, and kdist::AsyncSaver, in alternating order each round; medians of the
// per-step time over rounds, on the slowest rank.
//
//   kdist launch -n 2 -- build/bench/checkpoint_async_bench DIR [--rounds 5]
//
// The model: four Linear(2048, 2048) layers, alternately column and row parallel over a 1-D
// "model" mesh, trained with Adam on 64 rows: 96 MiB of parameters and moments per rank.
// The asynchronous window starts with a save in flight (made before the clock starts) and its
// last save is waited for after the clock stops, so that each timed step has a write behind
// it and each 5 steps pay one host copy and one publish: the steady state of a long run.
#include <kdist/kdist.h>
#include <torch/optim/adam.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>

#include "bench_util.h"
#include "checkpoint_stack.h"

namespace {

constexpr int kSteps = 10, kEvery = 5;

double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: checkpoint_async_bench DIR [--rounds N]\n");
    return 2;
  }
  const std::string dir = argv[1];
  const int rounds = kdist::bench::rounds_from_args(argc, argv, 5);
  at::set_num_threads(1);
  kdist::initialize();
  auto distributed = kdist::bench::distributed_checkpoint_stack();
  kdist::bench::CheckpointStack model = distributed.first;
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-4));
  const at::Tensor input = at::randn({64, 2048});
  auto step = [&] {
    optimizer.zero_grad();
    model->forward(input).pow(2).mean().backward();
    optimizer.step();
  };
  kdist::AsyncSaver saver;
  auto path = [&](const char* kind, int at_step) {
    return dir + "/" + kind + "-" + std::to_string(at_step % (2 * kEvery));
  };
  // Each configuration: the checkpoint to take after step `s` (none, sync, async).
  const std::vector<std::pair<std::string, std::function<void(int)>>> configs{
      {"none", [](int) {}},
      {"sync",
       [&](int s) {
         if (s % kEvery == 0) kdist::save(path("sync", s), *model, &optimizer);
       }},
      {"async",
       [&](int s) {
         saver.poll();
         if (s % kEvery == 0) saver.save(path("async", s), *model, &optimizer);
       }},
  };
  std::vector<std::vector<double>> per_step(configs.size());
  for (int round = -1; round < rounds; ++round) {  // round -1 warms up
    for (size_t k = 0; k < configs.size(); ++k) {
      const size_t c = (k + std::max(round, 0)) % configs.size();
      if (configs[c].first == "async") saver.save(path("async", 0), *model, &optimizer);
      kdist::comm::barrier(*kdist::comm::world());
      const auto start = std::chrono::steady_clock::now();
      for (int s = 1; s <= kSteps; ++s) step(), configs[c].second(s);
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      saver.wait();
      auto slowest = at::full({1}, ms / kSteps, at::kDouble);
      kdist::comm::all_reduce(slowest, kdist::comm::ReduceOp::kMax, *kdist::comm::world());
      if (round >= 0) per_step[c].push_back(slowest.item<double>());
    }
  }
  if (kdist::process_id() == 0) {
    for (size_t c = 0; c < configs.size(); ++c)
      std::printf("%s_step_ms %.2f ", configs[c].first.c_str(), median(per_step[c]));
    std::printf("\n");
  }
  kdist::shutdown();
  return 0;
}
