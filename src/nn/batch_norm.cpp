// kdist::nn::SyncBatchNorm: BatchNorm with the global batch's statistics (nn/batch_norm.h).
#include <ATen/ATen.h>
#include <kdist/nn/batch_norm.h>
#include <torch/nn/functional/batchnorm.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/batchnorm.h>

#include <ostream>

#include "base/errors.h"
#include "nn/parallel_ops.h"

namespace kdist::nn {
namespace {

// The stock layer's options, parameters and buffers: the same tensors.
template <typename Stock>
void adopt(SyncBatchNormImpl& layer, Stock& stock) {
  layer.weight = layer.register_parameter("weight", stock.weight,
                                          stock.weight.defined() && stock.weight.requires_grad());
  layer.bias =
      layer.register_parameter("bias", stock.bias, stock.bias.defined() && stock.bias.requires_grad());
  layer.running_mean = layer.register_buffer("running_mean", stock.running_mean);
  layer.running_var = layer.register_buffer("running_var", stock.running_var);
  layer.num_batches_tracked = layer.register_buffer("num_batches_tracked", stock.num_batches_tracked);
  layer.train(stock.is_training());
}

std::vector<int64_t> reduced_dims(const at::Tensor& x) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  return dims;
}

// (1, C, 1, ...): a per-channel vector against an input of x's rank.
std::vector<int64_t> channel_shape(const at::Tensor& x) {
  std::vector<int64_t> shape(x.dim(), 1);
  shape[1] = x.size(1);
  return shape;
}

}  // namespace

SyncBatchNormImpl::SyncBatchNormImpl(const torch::nn::BatchNormOptions& options_) : options(options_) {
  reset();
}
SyncBatchNormImpl::SyncBatchNormImpl(torch::nn::BatchNorm1dImpl& stock)
    : options(stock.options), spatial_dims(1) {
  adopt(*this, stock);
}
SyncBatchNormImpl::SyncBatchNormImpl(torch::nn::BatchNorm2dImpl& stock)
    : options(stock.options), spatial_dims(2) {
  adopt(*this, stock);
}
SyncBatchNormImpl::SyncBatchNormImpl(torch::nn::BatchNorm3dImpl& stock)
    : options(stock.options), spatial_dims(3) {
  adopt(*this, stock);
}

void SyncBatchNormImpl::reset() {
  const int64_t c = options.num_features();
  if (options.affine()) {
    weight = register_parameter("weight", at::empty({c}));
    bias = register_parameter("bias", at::empty({c}));
  } else {
    weight = register_parameter("weight", at::Tensor(), /*requires_grad=*/false);
    bias = register_parameter("bias", at::Tensor(), /*requires_grad=*/false);
  }
  const bool track = options.track_running_stats();
  running_mean = register_buffer("running_mean", track ? at::zeros({c}) : at::Tensor());
  running_var = register_buffer("running_var", track ? at::ones({c}) : at::Tensor());
  num_batches_tracked =
      register_buffer("num_batches_tracked", track ? at::zeros({}, at::kLong) : at::Tensor());
  reset_parameters();
}

void SyncBatchNormImpl::reset_running_stats() {
  if (!options.track_running_stats()) return;
  running_mean.zero_();
  running_var.fill_(1);
  num_batches_tracked.zero_();
}

void SyncBatchNormImpl::reset_parameters() {
  reset_running_stats();
  if (!options.affine()) return;
  torch::nn::init::ones_(weight);
  torch::nn::init::zeros_(bias);
}

void SyncBatchNormImpl::pretty_print(std::ostream& stream) const {
  stream << "kdist::nn::SyncBatchNorm(" << options.num_features() << ", eps=" << options.eps()
         << ", affine=" << options.affine() << ", track_running_stats=" << options.track_running_stats()
         << ", over=" << (group ? std::to_string(group->size()) + " processes" : std::string("this process"))
         << ")";
}

namespace {

void check_input(const SyncBatchNormImpl& layer, const at::Tensor& x) {
  const int64_t d = x.dim();
  const int spatial = layer.spatial_dims;
  const bool rank_ok = spatial == 0 ? d >= 2 : spatial == 1 ? (d == 2 || d == 3) : d == spatial + 2;
  if (!rank_ok) {
    const std::string expected = spatial == 0   ? "at least 2-D"
                                 : spatial == 1 ? "2-D or 3-D"
                                                : std::to_string(spatial + 2) + "-D";
    kdist::detail::invalid("nn", "SyncBatchNorm(", layer.options.num_features(), ") expects ", expected,
                           " inputs (N, C, ...), got ", d, "-D input of shape ", x.sizes());
  }
  if (x.size(1) != layer.options.num_features())
    kdist::detail::invalid("nn", "SyncBatchNorm(", layer.options.num_features(), ") got ", x.size(1),
                           " channels (dimension 1 of input ", x.sizes(), ")");
}

// Training statistics of the whole batch over `group`: count and sum, then the sum of squared
// deviations from the global mean (two passes, as one process computes them).
struct Statistics {
  at::Tensor mean, var;  // biased variance
  double count = 0;
};
Statistics global_statistics(const at::Tensor& x, const comm::GroupPtr& group, int64_t channels) {
  const auto dims = reduced_dims(x);
  const auto shape = channel_shape(x);
  const double local_count = channels == 0 ? 0.0 : double(x.numel() / channels);
  auto sums = at::cat({x.sum(dims), at::full({1}, local_count, x.options().requires_grad(false))});
  sums = detail::sum_over_group(sums, group);
  Statistics s;
  s.count = sums[channels].item<double>();
  if (s.count <= 1)
    kdist::detail::invalid("nn", "SyncBatchNorm expected more than 1 value per channel when training, got ",
                           s.count, " over the batch axis' ", group->size(), " processes (input ", x.sizes(),
                           " on this one)");
  s.mean = sums.narrow(0, 0, channels) / s.count;
  s.var = detail::sum_over_group((x - s.mean.view(shape)).square().sum(dims), group) / s.count;
  return s;
}

}  // namespace

at::Tensor SyncBatchNormImpl::forward(const at::Tensor& input) {
  check_input(*this, input);
  const bool track = options.track_running_stats();
  double momentum = options.momentum().value_or(0.0);
  if (is_training() && track) {
    at::NoGradGuard no_grad;
    num_batches_tracked += 1;
    if (!options.momentum()) momentum = 1.0 / num_batches_tracked.item<double>();  // cumulative average
  }
  const bool batch_statistics = is_training() || !track;
  if (!batch_statistics || !group || group->size() == 1)
    return torch::nn::functional::detail::batch_norm(input, running_mean, running_var, weight, bias,
                                                     batch_statistics, momentum, options.eps());

  const bool reduced = input.scalar_type() == at::kHalf || input.scalar_type() == at::kBFloat16;
  const at::Tensor x = reduced ? input.to(at::kFloat) : input;
  const auto shape = channel_shape(x);
  const auto stats = global_statistics(x, group, options.num_features());
  auto y = (x - stats.mean.view(shape)) * at::rsqrt(stats.var + options.eps()).view(shape);
  if (weight.defined()) y = y * weight.view(shape) + bias.view(shape);
  if (is_training() && track) {
    at::NoGradGuard no_grad;
    running_mean.mul_(1 - momentum).add_(stats.mean.detach().to(running_mean.scalar_type()), momentum);
    const double unbiased = stats.count / (stats.count - 1);
    running_var.mul_(1 - momentum)
        .add_(stats.var.detach().to(running_var.scalar_type()), momentum * unbiased);
  }
  return reduced ? y.to(input.scalar_type()) : y;
}

}  // namespace kdist::nn
