#pragma once
// distribute_module: shards a model's parameters in place as a Distribution says and configures
// its kdist::nn layers to run in parallel; plan_module: what it would do, without processes.
// kdist/nn.h gives the overview of layers, styles and errors.
#include <kdist/distribution.h>
#include <kdist/nn/batch_norm.h>
#include <kdist/nn/mixed_precision.h>
#include <kdist/nn/plan.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <optional>

namespace kdist {

struct DistributeModuleOptions {
  bool print_summary = false;  // rank 0 prints the summary to stdout
  // Parameters sharded over the batch axis: release the gathered copy after forward and
  // gather again for backward (FSDP2's reshard_after_forward), or keep it until backward.
  bool reshard_after_forward = true;
  // Once a kdist layer has gathered its batch-sharded weight, start the gather of the next
  // one's (module order in forward, the reverse in backward's gathers again) so that it
  // travels while this layer computes: FSDP's prefetch. It needs a transport that runs
  // collectives beside the caller (comm::all_gather_async); where the batch group's does
  // not, nothing is started. Measured on this project's 2-core machine (docs/
  // PERFORMANCE.md, "Prefetch"): 0.98-1.02x on one host forced to TCP, 0.95x across two
  // (network namespaces), hence off unless asked for. A prefetched weight is used only if
  // its shard is unchanged since (its version counter), so an order that differs from module
  // order costs a gather, never a stale weight. FullyShard units do not prefetch.
  bool prefetch = false;
  // Sequence parallelism along this dimension of the activations (nn.h's SequenceParallel)
  // for every column- and row-parallel Linear; all layers over one group share one
  // SequenceParallel. Unset: off.
  std::optional<int64_t> sequence_parallel_dim;
  // Mixed precision for every kdist layer (nn.h's MixedPrecision). Unset: each computes in
  // its parameters' dtype.
  std::optional<nn::MixedPrecision> mixed_precision;
  // Whose rows BatchNorm's training statistics come from when the batch axis has several
  // processes (kdist/nn/batch_norm.h): the global batch's, as one process (SyncBatchNorm in
  // place of the Sequentials' stock BatchNorms), or each replica's own (stock BatchNorm left as
  // it is, DDP's behaviour, which differs from one process).
  nn::BatchStatistics batch_statistics = nn::BatchStatistics::kGlobalBatch;
  // Under a batch axis of several processes, every trainable parameter replicated over it must
  // have its gradient averaged there (kdist::GradientSync): otherwise each process would step its
  // replica with its own rows' gradient, and the replicas would drift apart. A backward that
  // reaches such a gradient with no GradientSync on it throws std::invalid_argument naming the
  // parameter. False turns that check off, for a caller that averages the gradients itself
  // (or feeds every process the same rows, as a test may).
  bool check_gradient_sync = true;
};

// Shards `module`'s parameters in place as `distribution` says (the module keeps its own
// parameter handles), configures kdist::nn layers' parallel style, replaces stock
// torch::nn::Linear/Embedding children of a torch::nn::Sequential by kdist's, and makes
// replicated parameters identical on every rank (from mesh coordinate 0). Collective: every
// rank calls it with the same model. Throws std::invalid_argument (see nn.h's header comment)
// before changing anything: the whole plan, the Sequential replacements included, is checked
// first, so a refused call leaves the caller's parameter handles (and optimizers) valid.
DistributionSummary distribute_module(torch::nn::Module& module,
                                      const Distribution& distribution = *kdist::distribution(),
                                      DistributeModuleOptions options = {});

// What distribute_module would do, seen from the process of global rank `rank`: the same
// checks (same exceptions) and the same summary, with local shapes and bytes of that rank's
// shards and the layers' plans under `options`. Changes nothing and talks to no process, so it
// works for meshes larger than the job (build the mesh with explicit devices). Stock torch::nn::Linear and
// Embedding layers directly inside a Sequential are planned as the kdist layers distribute_module replaces
// them by, so the two accept and refuse the same models, with the same messages.
DistributionSummary plan_module(torch::nn::Module& module, const Distribution& distribution, int rank = 0,
                                const DistributeModuleOptions& options = {});

}  // namespace kdist
