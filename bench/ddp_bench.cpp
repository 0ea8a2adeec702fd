// Data-parallel MLP step (1024 -> 4096 -> 1024, batch 64 per rank, SGD) with kdist's
// GradientSync, plus what is needed to say how much communication backward hides.
// bench/run_ddp_bench.sh runs it beside PyTorch's DDP (bench/ddp_torch.py).
//
//   build/tools/kdist launch -n 2 -- build/bench/ddp_bench [--rounds 20]
//
// Prints on rank 0 (medians of the slowest rank, ms):
//   step <synced step> compute <step under no_sync> comm <blocking kdist all_reduce (sum) of
//   every gradient byte> buckets <kdist's buckets, all launched then waited, as the sync does>
//   raw <one raw Gloo all_reduce of the same bytes> bytes <gradient bytes> nbuckets <n>
// --bucket-mib N sets GradientSync's bucket size (default 25).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <kdist/runtime.h>
#include <kdist/sync.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>

#include <cstdio>

#include "bench_util.h"
#include "comm/context.h"

struct MlpImpl : torch::nn::Module {
  MlpImpl() : fc1(register_module("fc1", torch::nn::Linear(1024, 4096))),
              fc2(register_module("fc2", torch::nn::Linear(4096, 1024))) {}
  at::Tensor forward(const at::Tensor& x) { return fc2(at::relu(fc1(x))); }
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(Mlp);

using namespace kdist;

int main(int argc, char** argv) {
  const int rounds = kdist::bench::rounds_from_args(argc, argv, 20);
  GradientSyncOptions sync_options;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--bucket-mib") sync_options.bucket_bytes = std::stoll(argv[i + 1]) << 20;
  at::set_num_threads(1);
  kdist::initialize();
  at::manual_seed(0);
  Mlp model;
  DataParallel dp;
  GradientSync sync(*model, dp, sync_options);
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(1e-3));
  auto x = at::randn({64, 1024});
  auto step = [&] {
    optimizer.zero_grad();
    model->forward(x).pow(2).mean().backward();
    optimizer.step();
  };
  int64_t numel = 0;
  for (const auto& p : model->parameters()) numel += p.numel();
  auto flat = at::randn({numel});
  auto& world = *comm::world();
  auto& raw = *world.impl().backend;
  // Buffers the sizes of GradientSync's buckets.
  std::vector<at::Tensor> buckets;
  for (int64_t numel : sync.bucket_numels()) buckets.push_back(at::randn({numel}));
  std::vector<bench::Op> ops{
      {"step", 0, step},
      {"compute", 0, [&] { auto guard = sync.no_sync(); step(); }},
      {"comm", 0, [&] { comm::all_reduce(flat, comm::ReduceOp::kSum, world); }},
      {"buckets", 0, [&] {
         std::vector<comm::PendingCollective> pending;
         for (auto& b : buckets) pending.push_back(comm::all_reduce_async(b, comm::ReduceOp::kSum, world));
         for (auto& p : pending) p.wait();
       }},
      {"raw", 0, [&] { std::vector<at::Tensor> t{flat}; raw.allreduce(t)->wait(); }},
  };
  bench::measure(ops, rounds);
  if (process_id() == 0) {
    for (const auto& op : ops) std::printf("%s %.3f ", op.name.c_str(), op.median_ms);
    std::printf("bytes %lld nbuckets %lld\n", (long long)numel * 4, (long long)sync.num_buckets());
  }
  shutdown();
  return 0;
}
