// `kdist train`: trains a built-in model under the distribution the options describe; run
// it on every process of a job (`kdist launch -n 4 -- kdist train --mesh batch=2,model=2`).
#include <ATen/Parallel.h>
#include <kdist/kdist.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <thread>

#include "commands.h"
#include "train/checkpoints.h"
#include "train/job.h"
#include "train/plan.h"
#include "train/report.h"
#include "train/step_checkpoints.h"
#include "train/trainer.h"
#include "validators.h"

namespace kdist::tools {
namespace {

// Every process checks the same things, so a bad option fails everywhere; the lowest
// failing rank alone prints its error, and every rank learns that some rank failed.
bool any_rank_failed(const std::string& error) {
  const int first_failed = comm::first_failed_rank(!error.empty());
  if (first_failed == process_id()) std::cerr << "kdist train: " << error << "\n";
  return first_failed >= 0;
}

// Runs `step` on every rank; true if it threw on any (the lowest failing rank said why).
bool failed_anywhere(const std::function<void()>& step) {
  std::string error;
  try {
    step();
  } catch (const std::exception& e) {
    error = e.what();
  }
  return any_rank_failed(error);
}

void use_fair_share_of_cores() {
  if (std::getenv("OMP_NUM_THREADS")) return;
  const int local = std::getenv("LOCAL_WORLD_SIZE") ? std::atoi(std::getenv("LOCAL_WORLD_SIZE")) : 1;
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(std::max(1, cores / std::max(1, local)));
}

// A fixed unit, unlike plan.cpp's bytes_text: scripts compare these lines (bench/, tests/tools).
// How the gradient sync's batch group communicates, for the job's report.
std::string transport_phrase(comm::Transport transport) {
  switch (transport) {
    case comm::Transport::kSharedMemory:
      return "through shared memory";
    case comm::Transport::kHierarchical:
      return "hierarchically (shared memory on each host, Gloo between hosts)";
    default:
      return "with Gloo all_reduce";
  }
}

std::string mib(int64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f MiB", bytes / 1048576.0);
  return text;
}

// fp32 runs differ from one process by summation order alone; bf16 ones by its roundings
// (8 bits of mantissa) in another order too (docs/train.md, "--precision bf16").
double verify_tolerance(const TrainOptions& options) {
  if (options.verify_tolerance > 0) return options.verify_tolerance;
  return options.precision == "bf16" ? 2e-3 : 1e-4;
}

int verify_against_one_process(const TrainJob& job, const std::vector<StepRecord>& distributed,
                               int64_t largest_distributed_state) {
  std::cout << "\nverify: training the same model in this process alone on the global batch...\n"
            << std::flush;
  // The other processes are done: this one may use every core.
  if (!std::getenv("OMP_NUM_THREADS"))
    at::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  auto model = job.workload->build();
  if (job.options.precision == "bf16") {  // the same policy in one process
    nn::set_mixed_precision(*model, nn::MixedPrecision{});
    job.workload->after_distribute(*model);
  }
  if (!job.options.init_from.empty()) load_safetensors(job.options.init_from, *model);
  auto optimizer = make_optimizer(*model, job.options);
  TrainOptions whole_batch = job.options;  // one backward over the global batch
  whole_batch.accumulate = 1;
  auto reference = train(*job.workload, *model, *optimizer, whole_batch, DataShard{});
  const auto whole_state = measure_training_state(*model, *optimizer);
  std::printf(
      "verify: one process holds %s of training state; the largest distributed process %s (%.3f of it)\n",
      mib(whole_state.total()).c_str(), mib(largest_distributed_state).c_str(),
      double(largest_distributed_state) / double(std::max<int64_t>(1, whole_state.total())));
  double worst = 0;
  int64_t worst_step = 1;
  for (size_t i = 0; i < reference.size(); ++i) {
    const double diff =
        std::abs(distributed[i].loss - reference[i].loss) / std::max(1e-6, std::abs(reference[i].loss));
    if (diff > worst || std::isnan(diff)) worst = diff, worst_step = reference[i].step;
  }
  const double tolerance = verify_tolerance(job.options);
  const bool ok = worst <= tolerance;
  std::printf(
      "verify: %zu steps, largest relative loss difference from one process %.2e at step %lld "
      "(tolerance %.0e): %s\n",
      reference.size(), worst, static_cast<long long>(worst_step), tolerance, ok ? "OK" : "FAILED");
  if (!ok)
    std::printf("verify: step %lld: distributed %.8f, one process %.8f\n", static_cast<long long>(worst_step),
                distributed[worst_step - 1].loss, reference[worst_step - 1].loss);
  return ok ? 0 : 1;
}

// The step after the newest checkpoint of `directory` that loads, trying older ones when one is
// damaged (load fails on every rank alike, so the ranks try the same ones); step 1 when there is
// none. Throws std::invalid_argument, naming each, when none loads.
int64_t resume_from_newest(const std::string& directory, torch::nn::Module& model,
                           torch::optim::Optimizer& optimizer, bool rank0) {
  const auto saved = complete_checkpoints(directory);
  if (saved.empty()) {
    if (rank0) std::cout << "no checkpoint in " << directory << ": starting at step 1\n\n" << std::flush;
    return 1;
  }
  std::string failures;
  for (auto it = saved.rbegin(); it != saved.rend(); ++it) {
    try {
      load(it->path, model, &optimizer);
      if (rank0) std::cout << "resumed from " << it->path << "\n\n" << std::flush;
      return it->step + 1;
    } catch (const std::exception& e) {
      if (rank0)
        std::cout << "cannot resume from " << it->path << ": " << e.what()
                  << (std::next(it) != saved.rend() ? "\ntrying the checkpoint before it\n" : "\n")
                  << std::flush;
      failures += std::string(failures.empty() ? "" : "; ") + it->path + ": " + e.what();
    }
  }
  bad_option("--resume: no checkpoint in '" + directory + "' loads (" + failures + ")");
}

// What a run is set up with, once every option has been checked on every rank.
struct Setup {
  TrainOptions options;
  std::optional<TrainJob> job;
  std::shared_ptr<torch::nn::Module> model;
  DataShard shard;
  std::unique_ptr<MetricsFile> metrics;
};

// Everything that can be wrong with the options, checked before any work (the config file
// sets the options bound to `given`). False, on every rank, where some rank found a problem.
bool set_up(CLI::App& command, const TrainOptions& given, Setup& run) {
  const bool rank0 = process_id() == 0;
  return !failed_anywhere([&] {
    apply_config_file(command, given);
    run.options = given;
    const auto& options = run.options;
    run.job = prepare_job(options, list_devices());
    run.model = run.job->workload->build();
    const auto batch = per_process_batch(options.batch_size, *run.job->distribution);
    run.shard = {batch.num_shards, batch.shard_id};
    check_plan(*run.job, plan_module(*run.model, *run.job->distribution, process_id()));
    const double units = double(options.batch_size * run.job->workload->rows_per_sample());
    if (rank0 && !options.metrics.empty())
      run.metrics = std::make_unique<MetricsFile>(options.metrics, units, run.job->workload->unit());
    if (rank0 && !options.plot.empty() && !std::ofstream(options.plot))
      bad_option("cannot write plot file '" + options.plot + "'");
    if (!options.checkpoint_dir.empty())
      check_checkpoint_dir(options.checkpoint_dir, options.resume, process_id());
  });
}

void print_setup(const TrainJob& job, const DistributionSummary& summary, const GradientSync* sync) {
  std::cout << sharding_report(job, summary);
  if (sync)
    std::cout << "gradient sync: " << sync->num_buckets()
              << (sync->num_buckets() == 1 ? " bucket" : " buckets") << " averaged over '" << job.batch_axis
              << "', " << transport_phrase(comm::transport(sync->group())) << "\n";
  std::cout << "\n" << std::flush;
}

// The step to start at: after --init-from's weights and --resume's checkpoint, where asked.
// Nullopt, on every rank, where one of them does not fit this model.
std::optional<int64_t> first_step_of(const TrainOptions& options, torch::nn::Module& model,
                                     torch::optim::Optimizer& optimizer) {
  const bool rank0 = process_id() == 0;
  int64_t first_step = 1;
  const bool failed = failed_anywhere([&] {
    if (!options.init_from.empty()) {
      load_safetensors(options.init_from, model);
      if (rank0) std::cout << "initialised from " << options.init_from << "\n\n" << std::flush;
    }
    if (options.resume) first_step = resume_from_newest(options.checkpoint_dir, model, optimizer, rank0);
  });
  return failed ? std::nullopt : std::optional<int64_t>(first_step);
}

// The training state's size, the run's figures, the sample and the plot, on rank 0.
void print_results(const TrainJob& job, const TrainOptions& options, const std::vector<StepRecord>& records,
                   const TrainingState& state, int64_t largest_state, double rate,
                   const std::string& sample) {
  double seconds = 0;
  for (const auto& r : records) seconds += r.seconds;
  std::printf(
      "\ntraining state on rank 0: parameters %s, gradients %s, optimizer %s; largest over "
      "processes %s\n",
      mib(state.parameters).c_str(), mib(state.gradients).c_str(), mib(state.optimizer).c_str(),
      mib(largest_state).c_str());
  std::printf("trained %lld steps on %d process%s in %.1f s: loss %.4f -> %.4f, %.0f %s/s\n",
              static_cast<long long>(records.size()), num_processes(), num_processes() == 1 ? "" : "es",
              seconds, records.front().loss, records.back().loss, rate, job.workload->unit());
  if (!sample.empty()) std::printf("\nsample:\n%s\n", sample.c_str());
  if (!options.plot.empty()) {
    const auto workload = job.workload->describe();
    write_loss_plot(options.plot, records,
                    workload.substr(0, workload.find(':')) + " on " + std::to_string(num_processes()) +
                        " processes, " + job.kind + " parallel");
    std::printf("loss curve: %s\n", options.plot.c_str());
  }
  std::fflush(stdout);
}

int run_train(CLI::App& command, const TrainOptions& given) {
  use_fair_share_of_cores();
  initialize();
  const bool rank0 = process_id() == 0;
  Setup run;
  if (!set_up(command, given, run)) return shutdown(), 2;
  const TrainOptions& options = run.options;
  TrainJob& job = *run.job;
  torch::nn::Module& model = *run.model;

  auto scope = job.distribution->scope();
  const auto summary = distribute_module(model, *job.distribution, distribute_options(options));
  job.workload->after_distribute(model);
  std::unique_ptr<GradientSync> sync;
  comm::GroupPtr loss_group;
  if (job.data_shards > 1) {
    sync = std::make_unique<GradientSync>(model, *job.distribution);
    loss_group = comm::axis_group(*job.mesh, job.batch_axis);
  }
  auto optimizer = make_optimizer(model, options);
  if (rank0) print_setup(job, summary, sync.get());
  const auto first_step = first_step_of(options, model, *optimizer);
  if (!first_step) return shutdown(), 2;
  report_resumed(*first_step - 1);

  const double units_per_step = double(options.batch_size * job.workload->rows_per_sample());
  Progress progress(*first_step, options.steps, units_per_step, job.workload->unit(), options.log_every,
                    rank0 && isatty(STDOUT_FILENO));
  StepCheckpoints checkpoints(options);
  auto records =
      train(*job.workload, model, *optimizer, options, run.shard, {sync.get(), loss_group}, *first_step,
            [&](const StepRecord& r) {
              checkpoints.after_step(r.step, model, *optimizer);
              report_step(r.step);
              if (options.count_collectives)
                std::printf("collectives of step %lld on rank %d: %s\n", static_cast<long long>(r.step),
                            process_id(), counts_text(r.collectives).c_str()),
                    std::fflush(stdout);
              if (!rank0) return;
              progress.update(r);
              if (run.metrics) run.metrics->write(r);
            });
  checkpoints.finish();
  if (records.empty()) {
    if (rank0)
      std::cout << "nothing to do: the checkpoint is at step " << *first_step - 1 << " of " << options.steps
                << "\n";
    return shutdown(), 0;
  }
  if (rank0) progress.finish();
  const std::string sample = job.workload->sample(model, options.sample_length);
  const auto state = measure_training_state(model, *optimizer);
  auto largest_state = at::full({1}, state.total(), at::kLong);
  comm::all_reduce(largest_state, comm::ReduceOp::kMax, *comm::world());
  if (rank0)
    print_results(job, options, records, state, largest_state.item<int64_t>(), progress.mean_rate(), sample);
  sync.reset();
  shutdown();  // the reference below is this process's alone
  if (!options.verify || !rank0) return 0;
  return verify_against_one_process(job, records, largest_state.item<int64_t>());
}

}  // namespace

void add_train_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<TrainOptions>();
  auto* train_cmd = app.add_subcommand(
      "train", "Train a built-in model (gpt, mlp) under a DataParallel or ModelParallel distribution");
  add_train_options(*train_cmd, *options);
  train_cmd->add_option("--metrics", options->metrics, "Write one JSON line per step to this file");
  train_cmd->add_option("--plot", options->plot, "Write the loss curve to this SVG file");
  train_cmd
      ->add_option("--log-every", options->log_every, "Progress line every N steps when not on a terminal")
      ->check(whole_number(0));
  train_cmd->add_option("--checkpoint-dir", options->checkpoint_dir,
                        "Save sharded checkpoints here (DIR/step-N; the two newest are kept)");
  train_cmd
      ->add_option("--checkpoint-every", options->checkpoint_every,
                   "Steps between checkpoints (0: after the last step only)")
      ->check(whole_number(0));
  train_cmd->add_flag("--checkpoint-async", options->checkpoint_async,
                      "Copy each checkpoint to host memory at the step and write it in the background, "
                      "publishing it at a later step");
  train_cmd->add_flag("--resume", options->resume,
                      "Continue from the newest complete checkpoint in --checkpoint-dir");
  train_cmd->add_option("--init-from", options->init_from,
                        "Start from the whole weights of a safetensors file (kdist export writes one), "
                        "each process reading its own shards");
  train_cmd->add_flag("--count-collectives", options->count_collectives,
                      "Print, on every rank after every step, the collectives it issued by kind (counts "
                      "and bytes, in `kdist plan`'s \"by kind\" format)");
  train_cmd->add_flag("--verify", options->verify,
                      "Also train in one process and fail unless the losses match");
  train_cmd
      ->add_option(
          "--verify-tolerance", options->verify_tolerance,
          "Largest relative loss difference --verify accepts (0: 1e-4, or 2e-3 with --precision bf16)")
      ->check(real_number(/*positive=*/false))
      ->capture_default_str();
  train_cmd->add_option("--sample-length", options->sample_length, "gpt: characters of generated text")
      ->check(whole_number(0))
      ->capture_default_str();
  train_cmd->callback([options, train_cmd, &exit_code] { exit_code = run_train(*train_cmd, *options); });
}

}  // namespace kdist::tools
