#include "trainer.h"

#include <kdist/sync.h>

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <chrono>
#include <stdexcept>

namespace kdist::tools {
std::unique_ptr<torch::optim::Optimizer> make_optimizer(torch::nn::Module& model, const TrainOptions& o) {
  if (o.optimizer == "sgd")
    return std::make_unique<torch::optim::SGD>(model.parameters(),
                                               torch::optim::SGDOptions(o.lr).momentum(0.9));
  if (o.optimizer == "adam")
    return std::make_unique<torch::optim::Adam>(model.parameters(), torch::optim::AdamOptions(o.lr));
  if (o.optimizer == "adamw")
    return std::make_unique<torch::optim::AdamW>(model.parameters(), torch::optim::AdamWOptions(o.lr));
  bad_option("--optimizer '" + o.optimizer + "' is not one of sgd, adam, adamw");
}

namespace {

// One step's gradients of this shard's mean loss, micro-batch by micro-batch; returns the loss.
at::Tensor accumulate_gradients(const Workload& workload, torch::nn::Module& model, const Batch& shard_rows,
                                int64_t micro_batches, GradientSync* sync) {
  const int64_t rows = shard_rows.inputs.size(0) / micro_batches;
  at::Tensor total;
  for (int64_t m = 0; m < micro_batches; ++m) {
    auto loss = workload.loss(model, shard_rows.rows(m * rows, rows));
    if (micro_batches > 1) loss = loss / static_cast<double>(micro_batches);
    if (sync && m + 1 < micro_batches) {
      auto local_only = sync->no_sync();
      loss.backward();
    } else {
      loss.backward();
    }
    total = total.defined() ? total + loss.detach() : loss.detach();
  }
  return total;
}

}  // namespace

std::vector<StepRecord> train(const Workload& workload, torch::nn::Module& model,
                              torch::optim::Optimizer& optimizer, const TrainOptions& options,
                              DataShard shard, Synchronisation sync, int64_t first_step,
                              const std::function<void(const StepRecord&)>& on_step) {
  const int64_t rows = options.batch_size / shard.count;
  const auto& loss_group = sync.loss_group;
  std::vector<StepRecord> records;
  for (int64_t step = first_step; step <= options.steps; ++step) {
    const auto start = std::chrono::steady_clock::now();
    auto counter = options.count_collectives ? std::make_unique<comm::CollectiveCounter>() : nullptr;
    auto batch = workload.global_batch(step, options.batch_size).rows(shard.id * rows, rows);
    optimizer.zero_grad();
    auto loss = accumulate_gradients(workload, model, batch, options.accumulate, sync.gradients);
    if (options.grad_clip > 0) clip_grad_norm_(model, options.grad_clip);
    optimizer.step();
    auto reported = loss.reshape({1});
    if (loss_group && loss_group->size() > 1) {
      comm::all_reduce(reported, comm::ReduceOp::kSum, *loss_group);
      reported /= loss_group->size();
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    records.push_back({step, reported.item<double>(), seconds, {}});
    if (counter)
      for (const auto& [kind, count] : counter->counts())
        records.back().collectives[kind] = {count, counter->bytes(kind)};
    if (on_step) on_step(records.back());
  }
  return records;
}

TrainingState measure_training_state(torch::nn::Module& model, torch::optim::Optimizer& optimizer) {
  auto bytes = [](const at::Tensor& t) { return t.defined() ? t.numel() * t.element_size() : int64_t{0}; };
  TrainingState state;
  for (const auto& p : model.parameters()) state.parameters += bytes(p), state.gradients += bytes(p.grad());
  // Adam's and AdamW's states are distinct classes with the same fields.
  auto moments = [&](const auto& adam) {
    return bytes(adam.exp_avg()) + bytes(adam.exp_avg_sq()) + bytes(adam.max_exp_avg_sq());
  };
  for (const auto& [key, param_state] : optimizer.state()) {
    if (auto* adam = dynamic_cast<torch::optim::AdamParamState*>(param_state.get()))
      state.optimizer += moments(*adam);
    else if (auto* adamw = dynamic_cast<torch::optim::AdamWParamState*>(param_state.get()))
      state.optimizer += moments(*adamw);
    else if (auto* sgd = dynamic_cast<torch::optim::SGDParamState*>(param_state.get()))
      state.optimizer += bytes(sgd->momentum_buffer());
  }
  return state;
}

}  // namespace kdist::tools
