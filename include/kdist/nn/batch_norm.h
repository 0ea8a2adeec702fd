#pragma once
// kdist::nn::SyncBatchNorm: BatchNorm whose training statistics are the global batch's, as in
// one process (Keras on JAX computes one program over the whole batch), whatever the number of
// data-parallel processes: PyTorch's SyncBatchNorm, in C++.
//
//   torch::nn::Sequential model(torch::nn::Conv2d(3, 8, 3), torch::nn::BatchNorm2d(8), ...);
//   kdist::distribute_module(*model, kdist::DataParallel());   // BatchNorm2d -> SyncBatchNorm
//   kdist::GradientSync sync(*model, kdist::DataParallel());
//
// distribute_module puts a SyncBatchNorm in place of every stock BatchNorm1d/2d/3d of a
// torch::nn::Sequential when the batch axis has more than one process, over the stock layer's
// own parameters and buffers (the same tensors: an optimizer built before still steps them),
// and gives every SyncBatchNorm the batch axis' group. A stock BatchNorm it cannot replace
// (held as a member of a custom module, whose forward calls it directly) is an error there:
// declare it as kdist::nn::SyncBatchNorm, or ask for per-replica statistics
// (DistributeModuleOptions::batch_statistics = kPerReplica: DDP's behaviour, each process
// normalising with its own rows, which differs from one process).
//
// In training (or without running statistics) each process sums its rows per channel, one
// all_reduce gives the global count and sum, hence the mean, a second one the sum of squared
// deviations from it, hence the (biased) variance; the input is normalised with those, and the
// running mean and (unbiased) variance are updated from them exactly as one process updates
// them from the whole batch, so every replica keeps the same running statistics. Backward
// all-reduces the gradients of the two sums (as SyncBatchNorm's backward all-reduces sum_dy and
// sum_dy_xmu), which with GradientSync's averaging gives one process's gradients. In eval mode
// it normalises with the running statistics and sends nothing. Statistics of bf16 or fp16
// inputs are computed in fp32. Without a group (one process, or per-replica statistics) it is
// torch::nn::BatchNorm's computation.
//
// Collective in training: every process of the group calls forward and backward the same
// number of times (a process with no rows this step still calls them). Throws
// std::invalid_argument for an input whose channel dimension differs from num_features, an
// input rank the replaced stock layer would refuse, and a global batch of one value per
// channel in training.
#include <kdist/comm.h>
#include <kdist/path_adapter.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/options/batchnorm.h>
#include <torch/nn/pimpl.h>

namespace torch::nn {
class BatchNorm1dImpl;
class BatchNorm2dImpl;
class BatchNorm3dImpl;
}  // namespace torch::nn

namespace kdist::nn {

// Whose rows BatchNorm's training statistics come from (DistributeModuleOptions).
enum class BatchStatistics {
  kGlobalBatch,  // the whole batch over the batch axis, as one process: SyncBatchNorm
  kPerReplica,   // each process's own rows (DDP's default); differs from one process
};

class SyncBatchNormImpl : public torch::nn::Cloneable<SyncBatchNormImpl>, public KerasNamed {
 public:
  explicit SyncBatchNormImpl(int64_t num_features)
      : SyncBatchNormImpl(torch::nn::BatchNormOptions(num_features)) {}
  explicit SyncBatchNormImpl(const torch::nn::BatchNormOptions& options);
  // Over a stock layer's own parameters and buffers, its training flag and its input check.
  explicit SyncBatchNormImpl(torch::nn::BatchNorm1dImpl& stock);
  explicit SyncBatchNormImpl(torch::nn::BatchNorm2dImpl& stock);
  explicit SyncBatchNormImpl(torch::nn::BatchNorm3dImpl& stock);

  void reset() override;
  void reset_running_stats();
  void reset_parameters();
  void pretty_print(std::ostream& stream) const override;
  at::Tensor forward(const at::Tensor& input);
  const char* keras_kind() const override { return "BatchNorm"; }

  torch::nn::BatchNormOptions options;
  at::Tensor weight, bias;                                    // undefined without affine
  at::Tensor running_mean, running_var, num_batches_tracked;  // undefined without track_running_stats
  // Set by distribute_module: the batch axis' group. Null, or a group of one: no communication.
  comm::GroupPtr group;
  // The stock layer's input check: 1 (BatchNorm1d: 2-D or 3-D inputs), 2 (4-D), 3 (5-D); 0 for
  // any input of at least 2 dimensions, as PyTorch's SyncBatchNorm.
  int spatial_dims = 0;
};
TORCH_MODULE(SyncBatchNorm);

}  // namespace kdist::nn
