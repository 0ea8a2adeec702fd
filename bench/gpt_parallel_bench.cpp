// Loss parallel and sequence parallel against plain tensor parallelism: one step of a GPT
// block (tests/nn/models.h's TinyGpt: embeddings, attention, MLP, LayerNorms, head) at a
// vocabulary and context where the logits and the residual stream matter, Adam, on the
// model axis of every process.
//
//   build/tools/kdist launch -n 2 -- build/bench/gpt_parallel_bench [--rounds 5]
//       [--vocab 32000] [--context 512] [--width 128] [--heads 4] [--batch 2]
//
// Prints on rank 0, per configuration: step (median ms of the slowest rank), peak resident
// growth during a step and peak tensor bytes over those before it (bytes, rank 0):
//   tp <ms> tp_peak <bytes> tp_tensors <bytes> lp ... sp ... sp_lp ... whole_logits_bytes ...
#include <ATen/ATen.h>
#include <kdist/nn.h>
#include <kdist/runtime.h>
#include <torch/optim/adam.h>

#include <cstdio>

#include "../tests/nn/models.h"
#include "bench_util.h"

using namespace kdist;

struct Shape {
  int64_t vocab = 32000, context = 512, width = 128, heads = 4, batch = 2;
};

Shape shape_from_args(int argc, char** argv) {
  Shape s;
  for (int i = 1; i + 1 < argc; ++i) {
    const std::string flag = argv[i];
    int64_t* field = flag == "--vocab"     ? &s.vocab
                     : flag == "--context" ? &s.context
                     : flag == "--width"   ? &s.width
                     : flag == "--heads"   ? &s.heads
                     : flag == "--batch"   ? &s.batch
                                           : nullptr;
    if (field) *field = std::stoll(argv[i + 1]);
  }
  return s;
}

struct Run {
  testing::TinyGpt model{nullptr};
  std::unique_ptr<torch::optim::Adam> optimizer;
  bool loss_parallel = false;
};

Run make(const Shape& s, const Distribution& distribution, bool loss_parallel, bool sequence_parallel) {
  Run run;
  at::manual_seed(0);
  run.model = testing::TinyGpt(s.vocab, s.context, s.width, s.heads);
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
  run.optimizer =
      std::make_unique<torch::optim::Adam>(run.model->parameters(), torch::optim::AdamOptions(1e-4));
  return run;
}

int main(int argc, char** argv) {
  const int rounds = kdist::bench::rounds_from_args(argc, argv, 5);
  const Shape s = shape_from_args(argc, argv);
  at::set_num_threads(1);
  kdist::initialize();
  auto mesh = std::make_shared<DeviceMesh>(std::vector<int64_t>{1, num_processes()},
                                           std::vector<std::string>{"batch", "model"});
  ModelParallel distribution(testing::gpt_tensor_parallel_map(mesh), "batch");
  at::manual_seed(1);
  auto ids = at::randint(0, s.vocab, {s.batch, s.context}, at::kLong);
  auto targets = at::randint(0, s.vocab, {s.batch, s.context}, at::kLong);
  const int64_t vocab = s.vocab;
  auto step = [&](Run& run) {
    return [&run, &ids, &targets, vocab] {
      run.optimizer->zero_grad();
      auto logits = run.model->forward(ids);
      auto loss = run.loss_parallel
                      ? nn::parallel_cross_entropy(logits, targets, run.model->head->parallel)
                      : at::cross_entropy_loss(logits.reshape({-1, vocab}), targets.reshape({-1}));
      loss.backward();
      run.optimizer->step();
    };
  };
  const std::vector<std::pair<std::string, std::pair<bool, bool>>> configs{
      {"tp", {false, false}}, {"lp", {true, false}}, {"sp", {false, true}}, {"sp_lp", {true, true}}};
  // Memory first, one configuration at a time: the peak resident growth of a step over what
  // the process held before it (model and Adam state already there after one step).
  // Both the resident set's growth and the tensors' (what tensors held at most, over what
  // they held before the step).
  auto& tensors = kdist::bench::TensorBytes::instance();
  std::vector<int64_t> peaks, tensor_peaks;
  for (const auto& [name, flags] : configs) {
    Run run = make(s, distribution, flags.first, flags.second);
    step(run)();
    kdist::bench::reset_peak_resident();
    tensors.reset_peak();
    const int64_t before = kdist::bench::proc_status_bytes("VmRSS"), tensors_before = tensors.live();
    step(run)();
    peaks.push_back(kdist::bench::proc_status_bytes("VmHWM") - before);
    tensor_peaks.push_back(tensors.peak() - tensors_before);
  }
  std::vector<Run> runs;
  for (const auto& [name, flags] : configs) runs.push_back(make(s, distribution, flags.first, flags.second));
  std::vector<kdist::bench::Op> ops;
  for (size_t i = 0; i < configs.size(); ++i) ops.push_back({configs[i].first, 1, step(runs[i])});
  kdist::bench::measure(ops, rounds);
  if (process_id() == 0) {
    for (size_t i = 0; i < ops.size(); ++i)
      std::printf("%s %.3f %s_peak %lld %s_tensors %lld ", ops[i].name.c_str(), ops[i].median_ms,
                  ops[i].name.c_str(), static_cast<long long>(peaks[i]), ops[i].name.c_str(),
                  static_cast<long long>(tensor_peaks[i]));
    std::printf("whole_logits_bytes %lld residual_bytes %lld\n",
                static_cast<long long>(s.batch * s.context * s.vocab * 4),
                static_cast<long long>(s.batch * s.context * s.width * 4));
  }
  kdist::shutdown();
  return 0;
}
