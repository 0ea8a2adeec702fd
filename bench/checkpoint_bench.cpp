// kdist::save / kdist::load throughput on 2 ranks, and torch::save / torch::load of the same
// bytes in one process. Compared with torch.distributed.checkpoint by
// bench/run_checkpoint_bench.sh (bench/checkpoint_torch.py holds the same tensors, same sharding).
//
//   kdist launch -n 2 -- build/bench/checkpoint_bench DIR [--rounds 5]
//
// The state: four Linear(2048, 2048) layers, alternately column and row parallel over a 1-D
// "model" mesh: 64 MiB of parameters, 32 MiB per rank.
#include <kdist/kdist.h>
#include <torch/nn/module.h>
#include <torch/serialize.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "bench_util.h"
#include "checkpoint_stack.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: checkpoint_bench DIR [--rounds N]\n");
    return 2;
  }
  const std::string dir = argv[1];
  const int rounds = kdist::bench::rounds_from_args(argc, argv, 5);
  at::set_num_threads(1);
  kdist::initialize();
  const int rank = kdist::process_id();
  auto distributed = kdist::bench::distributed_checkpoint_stack();
  kdist::bench::CheckpointStack model = distributed.first;
  const auto& summary = distributed.second;

  const std::string path = dir + "/kdist";
  std::vector<kdist::bench::Op> ops{
      {"save", 1, [&] { kdist::save(path, *model); }},
      {"load", 1, [&] { kdist::load(path, *model); }},
  };
  kdist::bench::measure(ops, rounds);
  // Bytes per rank: what this rank writes (replicated biases once) and what it holds.
  const double mib = summary.local_bytes / 1048576.0;
  if (rank == 0)
    std::printf("kdist_save_ms %.2f kdist_load_ms %.2f local_mib %.2f\n", ops[0].median_ms, ops[1].median_ms,
                mib);

  // The same bytes in one process with LibTorch's own serialization (no fsync).
  std::vector<at::Tensor> whole;
  for (const auto& p : model->named_parameters())
    whole.push_back(kdist::as_dtensor(p.value())->full_tensor());
  if (rank == 0) {
    double total = 0;
    for (const auto& t : whole) total += t.numel() * 4 / 1048576.0;
    std::vector<double> save_ms, load_ms;
    for (int r = 0; r < rounds + 2; ++r) {
      auto start = std::chrono::steady_clock::now();
      torch::save(whole, dir + "/torch_save.pt");
      auto middle = std::chrono::steady_clock::now();
      std::vector<at::Tensor> back;
      torch::load(back, dir + "/torch_save.pt");
      auto end = std::chrono::steady_clock::now();
      if (r < 2) continue;  // warm-up
      save_ms.push_back(std::chrono::duration<double, std::milli>(middle - start).count());
      load_ms.push_back(std::chrono::duration<double, std::milli>(end - middle).count());
    }
    std::sort(save_ms.begin(), save_ms.end());
    std::sort(load_ms.begin(), load_ms.end());
    std::printf("torch_save_ms %.2f torch_load_ms %.2f total_mib %.2f\n", save_ms[save_ms.size() / 2],
                load_ms[load_ms.size() / 2], total);
  }
  kdist::shutdown();
  return 0;
}
