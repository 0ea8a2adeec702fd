// Data-parallel MLP step (1024 -> 4096 -> 1024, batch 64 per rank, SGD) with kdist's
// GradientSync, plus what is needed to say how much communication backward hides.
// bench/run_ddp_bench.sh runs it beside PyTorch's DDP (bench/ddp_torch.py).
//
//   build/tools/kdist launch -n 2 -- build/bench/ddp_bench [--rounds 20]
//
// Prints on rank 0 (medians of the slowest rank, ms):
//   step <synced step, default transport (shared memory on one host)>
//   gloo_step <synced step, the batch group on Gloo (comm::Transport::kGloo)>
//   compute <step under no_sync>
//   comm <one blocking kdist all_reduce (Gloo) of every gradient byte>
//   shm_buckets <GradientSync's buckets summed through shared memory, one after another>
//   gloo_buckets <the same buckets through Gloo, all launched then waited, as the sync does>
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
#include "raw_gloo.h"

struct MlpImpl : torch::nn::Module {
  MlpImpl()
      : fc1(register_module("fc1", torch::nn::Linear(1024, 4096))),
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
  Mlp model, gloo_model;
  DataParallel dp;
  GradientSync sync(*model, dp, sync_options);
  auto gloo_options = sync_options;
  gloo_options.group.transport = comm::Transport::kGloo;
  GradientSync gloo_sync(*gloo_model, dp, gloo_options);
  if (comm::transport(sync.group()) != comm::Transport::kSharedMemory) {
    std::fprintf(stderr, "ddp_bench: the ranks cannot share memory here\n");
    return 1;
  }
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(1e-3));
  torch::optim::SGD gloo_optimizer(gloo_model->parameters(), torch::optim::SGDOptions(1e-3));
  auto x = at::randn({64, 1024});
  auto step_of = [&](Mlp& m, torch::optim::SGD& opt) {
    return [&m, &opt, &x] {
      opt.zero_grad();
      m->forward(x).pow(2).mean().backward();
      opt.step();
    };
  };
  auto step = step_of(model, optimizer);
  int64_t numel = 0;
  for (const auto& p : model->parameters()) numel += p.numel();
  auto flat = at::randn({numel});
  auto& world = *comm::world();  // shared memory: every rank is on this host
  auto& gloo_world = *comm::axis_group(*dp.device_mesh(), 0, {comm::Transport::kGloo});
  auto raw_backend = kdist::bench::raw_gloo();  // c10d Gloo among the same ranks, beside kdist
  auto& raw = *raw_backend;
  // Buffers the sizes of GradientSync's buckets, in private memory and in comm's memory.
  std::vector<at::Tensor> buckets, shm_buckets;
  int64_t shm_bytes = 0;
  for (int64_t n : sync.bucket_numels()) shm_bytes += (n * 4 + 63) / 64 * 64;
  auto memory = comm::allocate_buffer(world, shm_bytes);
  int64_t offset = 0;
  for (int64_t n : sync.bucket_numels()) {
    buckets.push_back(at::randn({n}));
    shm_buckets.push_back(memory.narrow(0, offset, n * 4).view(at::kFloat).fill_(1e-3));
    offset += (n * 4 + 63) / 64 * 64;
  }
  auto sum_buckets = [](std::vector<at::Tensor>& list, const comm::Group& group) {
    std::vector<comm::PendingCollective> pending;
    for (auto& b : list) pending.push_back(comm::all_reduce_async(b, comm::ReduceOp::kSum, group));
    for (auto& p : pending) p.wait();
  };
  std::vector<bench::Op> ops{
      {"step", 0, step},
      {"gloo_step", 0, step_of(gloo_model, gloo_optimizer)},
      {"compute", 0,
       [&] {
         auto guard = sync.no_sync();
         step();
       }},
      {"comm", 0, [&] { comm::all_reduce(flat, comm::ReduceOp::kSum, gloo_world); }},
      {"shm_buckets", 0, [&] { sum_buckets(shm_buckets, world); }},
      {"gloo_buckets", 0, [&] { sum_buckets(buckets, gloo_world); }},
      {"raw", 0,
       [&] {
         std::vector<at::Tensor> t{flat};
         raw.allreduce(t)->wait();
       }},
  };
  bench::say_transport(sync.group());
  bench::measure(ops, rounds);
  if (process_id() == 0) {
    for (const auto& op : ops) std::printf("%s %.3f ", op.name.c_str(), op.median_ms);
    std::printf("bytes %lld nbuckets %lld\n", (long long)numel * 4, (long long)sync.num_buckets());
  }
  shutdown();
  return 0;
}
