// Loss parallel and sequence parallel against plain tensor parallelism: one step of a GPT
// block (tests/nn/models.h's TinyGpt: embeddings, attention, MLP, LayerNorms, head) at a
// vocabulary and context where the logits and the residual stream matter, Adam, on the
// model axis of every process.
//
//   build/tools/kdist launch -n 2 -- build/bench/gpt_parallel_bench [--rounds 5]
//
// Prints on rank 0, per configuration: step (median ms of the slowest rank) and peak resident
// growth during a step (bytes, rank 0), and the logits bytes a process holds:
//   tp <ms> tp_peak <bytes> lp <ms> lp_peak <bytes> sp ... sp_lp ...
#include <ATen/ATen.h>
#include <kdist/nn.h>
#include <kdist/runtime.h>
#include <torch/optim/adam.h>

#include <cstdio>

#include "../tests/nn/models.h"
#include "bench_util.h"

using namespace kdist;

constexpr int64_t kVocab = 32000, kContext = 512, kWidth = 128, kHeads = 4, kBatch = 2;

struct Run {
  testing::TinyGpt model{nullptr};
  std::unique_ptr<torch::optim::Adam> optimizer;
  bool loss_parallel = false;
};

Run make(const Distribution& distribution, bool loss_parallel, bool sequence_parallel) {
  Run run;
  at::manual_seed(0);
  run.model = testing::TinyGpt(kVocab, kContext, kWidth, kHeads);
  run.model->head->parallel.gather_output = !loss_parallel;
  run.loss_parallel = loss_parallel;
  DistributeModuleOptions options;
  if (sequence_parallel) options.sequence_parallel_dim = 1;
  distribute_module(*run.model, distribution, options);
  if (sequence_parallel) {
    auto children = run.model->named_children();
    for (const char* name : {"ln1", "ln2", "ln_f"})
      nn::sum_gradients_over_sequence(*children[name], *run.model->head->parallel.sequence);
  }
  run.optimizer = std::make_unique<torch::optim::Adam>(run.model->parameters(), torch::optim::AdamOptions(1e-4));
  return run;
}

int main(int argc, char** argv) {
  const int rounds = kdist::bench::rounds_from_args(argc, argv, 5);
  at::set_num_threads(1);
  kdist::initialize();
  auto mesh = std::make_shared<DeviceMesh>(std::vector<int64_t>{1, num_processes()},
                                           std::vector<std::string>{"batch", "model"});
  ModelParallel distribution(testing::gpt_tensor_parallel_map(mesh), "batch");
  at::manual_seed(1);
  auto ids = at::randint(0, kVocab, {kBatch, kContext}, at::kLong);
  auto targets = at::randint(0, kVocab, {kBatch, kContext}, at::kLong);
  auto step = [&](Run& run) {
    return [&run, &ids, &targets] {
      run.optimizer->zero_grad();
      auto logits = run.model->forward(ids);
      auto loss = run.loss_parallel ? nn::parallel_cross_entropy(logits, targets, run.model->head->parallel)
                                    : at::cross_entropy_loss(logits.reshape({-1, kVocab}), targets.reshape({-1}));
      loss.backward();
      run.optimizer->step();
    };
  };
  const std::vector<std::pair<std::string, std::pair<bool, bool>>> configs{
      {"tp", {false, false}}, {"lp", {true, false}}, {"sp", {false, true}}, {"sp_lp", {true, true}}};
  // Memory first, one configuration at a time: the peak resident growth of a step over what
  // the process held before it (model and Adam state already there after one step).
  std::vector<int64_t> peaks;
  for (const auto& [name, flags] : configs) {
    Run run = make(distribution, flags.first, flags.second);
    step(run)();
    kdist::bench::reset_peak_resident();
    const int64_t before = kdist::bench::proc_status_bytes("VmRSS");
    step(run)();
    peaks.push_back(kdist::bench::proc_status_bytes("VmHWM") - before);
  }
  std::vector<Run> runs;
  for (const auto& [name, flags] : configs) runs.push_back(make(distribution, flags.first, flags.second));
  std::vector<kdist::bench::Op> ops;
  for (size_t i = 0; i < configs.size(); ++i) ops.push_back({configs[i].first, 1, step(runs[i])});
  kdist::bench::measure(ops, rounds);
  if (process_id() == 0) {
    for (size_t i = 0; i < ops.size(); ++i)
      std::printf("%s %.3f %s_peak %lld ", ops[i].name.c_str(), ops[i].median_ms, ops[i].name.c_str(),
                  static_cast<long long>(peaks[i]));
    std::printf("whole_logits_bytes %lld\n", static_cast<long long>(kBatch * kContext * kVocab * 4));
  }
  kdist::shutdown();
  return 0;
}
