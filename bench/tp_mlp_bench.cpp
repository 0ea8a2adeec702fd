// One training step (forward, backward, SGD) of an MLP in -> hidden -> in, batch 64, with fc1
// column parallel and fc2 row parallel over every rank (one rank: the plain model).
// bench/run_tp_bench.sh runs it on 1 and 2 ranks beside PyTorch's tensor parallelism.
//
//   build/tools/kdist launch -n 2 -- build/bench/tp_mlp_bench --hidden 4096 [--rounds 20]
//
// Prints on rank 0: "step_ms <median ms> param_bytes <bytes on this rank>".
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <kdist/nn.h>
#include <kdist/runtime.h>
#include <torch/nn/module.h>
#include <torch/optim/sgd.h>

#include <cstdio>
#include <cstring>

#include "bench_util.h"

struct MlpImpl : torch::nn::Module {
  MlpImpl(int64_t in, int64_t hidden)
      : fc1(register_module("fc1", kdist::nn::Linear(in, hidden))),
        fc2(register_module("fc2", kdist::nn::Linear(hidden, in))) {}
  at::Tensor forward(const at::Tensor& x) { return fc2(at::relu(fc1(x))); }
  kdist::nn::Linear fc1, fc2;
};
TORCH_MODULE(Mlp);

int main(int argc, char** argv) {
  int64_t hidden = 4096, in = 1024, batch = 64;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--hidden") == 0) hidden = std::stoll(argv[i + 1]);
  const int rounds = kdist::bench::rounds_from_args(argc, argv, 20);
  at::set_num_threads(1);
  kdist::initialize();
  auto mesh = std::make_shared<kdist::DeviceMesh>(std::vector<int64_t>{1, kdist::num_processes()},
                                                  std::vector<std::string>{"batch", "model"});
  kdist::LayoutMap map(mesh);
  map.set("fc1/kernel", {std::nullopt, "model"});
  map.set("fc2/kernel", {"model", std::nullopt});
  at::manual_seed(0);
  Mlp model(in, hidden);
  auto summary = kdist::distribute_module(*model, kdist::ModelParallel(map));
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(1e-3));
  auto x = at::randn({batch, in});
  std::vector<kdist::bench::Op> ops{{"step", 0, [&] {
                                       optimizer.zero_grad();
                                       model->forward(x).pow(2).mean().backward();
                                       optimizer.step();
                                     }}};
  kdist::bench::say_transport(*kdist::comm::world());
  kdist::bench::measure(ops, rounds);
  if (kdist::process_id() == 0)
    std::printf("step_ms %.3f param_bytes %lld\n", ops[0].median_ms, (long long)summary.local_bytes);
  kdist::shutdown();
  return 0;
}
