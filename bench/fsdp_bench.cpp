// FSDP MLP step (1024 -> 4096 -> 1024, batch 64 per rank, SGD), each Linear sharded over the
// batch axis (its own unit), against kdist's own data-parallel step in the same process.
// bench/run_fsdp_bench.sh runs it beside PyTorch's FSDP2 (bench/fsdp_torch.py), and again with
// KDIST_TRANSPORT=gloo, where prefetch can overlap (on shared memory it starts nothing).
//
//   build/tools/kdist launch -n 2 -- build/bench/fsdp_bench [--rounds 20]
//
// Prints on rank 0 (medians of the slowest rank, ms; bytes of rank 0):
//   fsdp <FSDP step> fsdp_keep <FSDP step, gathered weights kept until backward>
//   fsdp_prefetch <FSDP step, next weight's gather started early> dp <data-parallel step> state_bytes
//   <parameters + gradients + SGD momentum on this rank> one_process_state_bytes <the same for the whole
//   model> peak_rss_growth <bytes> peak_tensor_growth <the most bytes tensors held during a step, over what
//   they held before> ...
#include <ATen/ATen.h>
#include <kdist/nn.h>
#include <kdist/runtime.h>
#include <kdist/sync.h>
#include <torch/optim/sgd.h>

#include <cstdio>
#include <string>

#include "bench_util.h"

struct MlpImpl : torch::nn::Module {
  MlpImpl()
      : fc1(register_module("fc1", kdist::nn::Linear(1024, 4096))),
        fc2(register_module("fc2", kdist::nn::Linear(4096, 1024))) {}
  at::Tensor forward(const at::Tensor& x) { return fc2(at::relu(fc1(x))); }
  kdist::nn::Linear fc1, fc2;
};
TORCH_MODULE(Mlp);

using namespace kdist;

int main(int argc, char** argv) {
  const int rounds = kdist::bench::rounds_from_args(argc, argv, 20);
  at::set_num_threads(1);
  kdist::initialize();
  auto mesh =
      std::make_shared<DeviceMesh>(std::vector<int64_t>{num_processes()}, std::vector<std::string>{"batch"});
  LayoutMap map(mesh);
  map.set("fc1/kernel", {"batch", std::nullopt});  // Keras (in, out): torch (4096, 1024) on dim 1
  map.set("fc2/kernel", {std::nullopt, "batch"});  // torch (1024, 4096) on dim 0
  ModelParallel fsdp(map);
  DataParallel dp(mesh);
  auto x = at::randn({64, 1024});

  struct Run {
    Mlp model;
    std::unique_ptr<GradientSync> sync;
    std::unique_ptr<torch::optim::SGD> optimizer;
  };
  auto make = [&](const Distribution& distribution, bool reshard, bool prefetch = false) {
    Run run;
    at::manual_seed(0);
    DistributeModuleOptions options;
    options.reshard_after_forward = reshard;
    options.prefetch = prefetch;
    distribute_module(*run.model, distribution, options);
    run.sync = std::make_unique<GradientSync>(*run.model, distribution);
    run.optimizer = std::make_unique<torch::optim::SGD>(run.model->parameters(),
                                                        torch::optim::SGDOptions(1e-3).momentum(0.9));
    return run;
  };
  auto step = [&x](Run& run) {
    return [&run, &x] {
      run.optimizer->zero_grad();
      run.model->forward(x).pow(2).mean().backward();
      run.optimizer->step();
    };
  };

  // Memory first, one configuration at a time: the peak resident growth of one step over
  // what the process held before it (the model's state included then).
  auto state_bytes = [](Run& run) {
    int64_t bytes = 0;
    for (const auto& p : run.model->parameters()) bytes += 3 * p.numel() * 4;  // param, grad, momentum
    return bytes;
  };
  auto& tensors = kdist::bench::TensorBytes::instance();
  int64_t fsdp_growth = 0, fsdp_state = 0, one_process_state = 0, tensor_growth = 0;
  {
    Run run = make(fsdp, true);
    step(run)();  // gradients and momentum exist from here
    fsdp_state = state_bytes(run);
    kdist::bench::reset_peak_resident();
    tensors.reset_peak();
    const int64_t before = kdist::bench::proc_status_bytes("VmRSS"), tensors_before = tensors.live();
    step(run)();
    fsdp_growth = kdist::bench::proc_status_bytes("VmHWM") - before;
    tensor_growth = tensors.peak() - tensors_before;
    one_process_state = 3 * (1024 * 4096 * 2 + 4096 + 1024) * 4;
  }

  Run sharded = make(fsdp, true), kept = make(fsdp, false), prefetched = make(fsdp, true, true),
      replicated = make(dp, true);
  std::vector<kdist::bench::Op> ops{{"fsdp", 1, step(sharded)},
                                    {"fsdp_keep", 1, step(kept)},
                                    {"fsdp_prefetch", 1, step(prefetched)},
                                    {"dp", 1, step(replicated)}};
  kdist::bench::say_transport(*kdist::comm::world());
  kdist::bench::measure(ops, rounds);
  if (process_id() == 0)
    std::printf(
        "fsdp %.3f fsdp_keep %.3f fsdp_prefetch %.3f dp %.3f state_bytes %lld one_process_state_bytes %lld "
        "peak_rss_growth %lld peak_tensor_growth %lld largest_unit_bytes %lld\n",
        ops[0].median_ms, ops[1].median_ms, ops[2].median_ms, ops[3].median_ms,
        static_cast<long long>(fsdp_state), static_cast<long long>(one_process_state),
        static_cast<long long>(fsdp_growth), static_cast<long long>(tensor_growth),
        static_cast<long long>(4096 * 1024 * 4));
  kdist::shutdown();
  return 0;
}
