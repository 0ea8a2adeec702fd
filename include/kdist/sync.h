#pragma once
// GradientSync: data-parallel gradient averaging for a LibTorch module (PyTorch's DDP, in C++).
//
//   kdist::DataParallel dp;                       // or a 2-D ModelParallel
//   kdist::distribute_module(*model, dp);         // parameters identical on every replica
//   kdist::GradientSync sync(*model, dp);
//   for (auto& batch : loader) {                  // each process: its own per-process batch
//     optimizer.zero_grad();
//     loss_fn(model->forward(batch.data), batch.target).backward();  // syncs while it runs
//     optimizer.step();                           // gradients are averaged by now
//   }
//
// Every parameter replicated along the distribution's batch axis (all of them under
// DataParallel; under a 2-D ModelParallel the model-axis shards too, each within its batch
// group) has its gradient averaged over that axis. Gradients go into buckets (the first one
// small so that communication starts early, then bucket_bytes) in the order backward produces
// them; a bucket's all_reduce is launched as soon as its last gradient arrives, and buckets
// start in order on every rank. When backward finishes, the remaining buckets are
// launched and every bucket is waited for, so the optimizer sees averaged gradients. The one
// copy is each gradient into its bucket; from then on the gradient *is* a view into it.
//
// Transport: the buckets live in memory from comm::allocate_buffer and go to the batch
// group's all_reduce_async, whatever carries it (comm.h, Transport): a transport that runs
// collectives beside the caller sums each bucket while backward goes on; one that runs them
// on the caller's thread sums them where they lie, in order, when backward ends, so that
// backward never waits for a peer. All give the same averages within rounding.
// comm::transport(group()) says which; GradientSyncOptions::group can force one.
//
// A parameter that got no gradient on a rank counts as zero there; one that got none on any
// rank keeps no gradient, as it would in one process. Parameters sharded over the batch axis
// (FSDP) are reduce-scattered, averaged, by their own layers' backward (nn.h's BatchShard),
// one collective per parameter, as FSDP2 does per unit; no_sync() reaches them too: their
// unsharded gradients accumulate until the next synchronised backward reduce-scatters the sum. Construction
// broadcasts every synchronised parameter and buffer from the first replica, so replicas start identical;
// after each synchronised backward the buffers are broadcast again (broadcast_buffers), so replicas stay
// identical.
//
// Contract: every rank builds the same module and GradientSync and runs backward the same
// number of times. no_sync() skips synchronisation (gradients accumulate locally) while its
// guard lives, as DDP's no_sync.
#include <kdist/comm.h>
#include <kdist/distribution.h>
#include <kdist/nn/plan.h>
#include <torch/nn/module.h>

#include <memory>

namespace kdist {

struct GradientSyncOptions {
  int64_t bucket_bytes = 25 << 20;
  int64_t first_bucket_bytes = 1 << 20;
  bool broadcast_parameters = true;
  // After every synchronised backward, copy the first replica's buffers (BatchNorm's running
  // statistics, which each replica updates from its own rows) to the others, as DDP's
  // broadcast_buffers does before every forward.
  bool broadcast_buffers = true;
  // How the batch group is made (comm.h); the default lets comm choose its transport.
  comm::GroupOptions group;
};

class GradientSync {
 public:
  explicit GradientSync(torch::nn::Module& module, const Distribution& distribution = *kdist::distribution(),
                        GradientSyncOptions options = {});
  ~GradientSync();  // removes its hooks
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // While the returned guard lives, backward accumulates gradients without communicating.
  class NoSyncGuard {
   public:
    explicit NoSyncGuard(GradientSync& sync);
    ~NoSyncGuard();
    NoSyncGuard(const NoSyncGuard&) = delete;
    NoSyncGuard& operator=(const NoSyncGuard&) = delete;

   private:
    GradientSync& sync_;
    bool previous_;
  };
  [[nodiscard]] NoSyncGuard no_sync() { return NoSyncGuard(*this); }

  int64_t num_buckets() const;
  // Each bucket's gradient elements, in launch order (what one step all-reduces).
  std::vector<int64_t> bucket_numels() const;
  int64_t synchronized_parameters() const;
  // The batch group the gradients are averaged over (comm::transport says over what).
  const comm::Group& group() const;
  // Called by the autograd engine at the end of backward; callable by hand (idempotent).
  void finish();

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// The all_reduces one synchronised backward of GradientSync(module, distribution, options)
// issues on the process whose summary this is (plan_module or distribute_module), one per
// bucket in launch order, with the bytes CollectiveCounter records (each bucket's gradients
// and its one flag per parameter), then one broadcast per buffer (broadcast_buffers). The
// buckets are the ones GradientSync builds: both come from one function. Empty when the batch
// axis has one process. `module` gives the buffers.
std::vector<PlannedCollective> plan_gradient_sync(const DistributionSummary& summary,
                                                  const Distribution& distribution, torch::nn::Module& module,
                                                  const GradientSyncOptions& options = {});

// Gradient clipping over a distributed module, as torch::nn::utils::clip_grad_norm_ on the
// whole model in one process: returns the global norm of every parameter's gradient, each
// element counted once whatever the parameter's layout (a shard's elements once; a parameter
// replicated over a mesh axis once, not once per replica), and scales every gradient by
// max_norm / (norm + 1e-6) when that is below 1. norm_type 2 (default), any p > 0, or
// infinity. Call it after backward (and GradientSync's averaging) and before the optimizer.
// It issues one all_reduce of 8 bytes (a double) over the whole job.
//
//   loss.backward();
//   double norm = kdist::clip_grad_norm_(*model, 1.0);
//   optimizer.step();
//
// Collective: every process of the job calls it on its part of the same model. Parameters
// without a gradient are skipped, as torch's. Throws std::invalid_argument for a norm_type
// <= 0, a gradient held as Partial, or a DTensor mesh that is not the whole job.
double clip_grad_norm_(torch::nn::Module& module, double max_norm, double norm_type = 2.0);

}  // namespace kdist
