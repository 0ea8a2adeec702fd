// kdist::nn::parallel_cross_entropy: the cross-entropy of vocabulary-sharded logits (loss
// parallel), from two all_reduces of per-row scalars instead of a gather of the logits.
#include <ATen/ATen.h>
#include <kdist/nn.h>
#include <torch/csrc/autograd/custom_function.h>

#include "base/errors.h"

namespace kdist::nn {
namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Rows (N, local vocabulary) of logits, targets (N) in global vocabulary indices.
struct VocabParallelCrossEntropy : torch::autograd::Function<VocabParallelCrossEntropy> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& targets,
                            comm::GroupPtr group, int64_t offset) {
    const int64_t rows = logits.size(0), local = logits.size(1);
    // Every rank's rows agree on the maximum, so exp never overflows and the sum is the
    // gathered computation's.
    auto max = local > 0 ? std::get<0>(logits.max(1)) : at::full({rows}, -INFINITY, logits.options());
    comm::all_reduce(max, comm::ReduceOp::kMax, *group);
    auto shifted = logits - max.unsqueeze(1);
    auto exp = shifted.exp();
    const auto mine = (targets >= offset).logical_and(targets < offset + local);
    const auto local_targets = (targets - offset).clamp(0, std::max<int64_t>(0, local - 1));
    // Per row: the sum of exp over this rank's vocabulary and the target's shifted logit if
    // this rank holds it; one all_reduce sums both over the vocabulary's shards.
    auto sums = at::zeros({rows, 2}, logits.options());
    sums.select(1, 0).copy_(exp.sum(1));
    if (local > 0) sums.select(1, 1).copy_(shifted.gather(1, local_targets.unsqueeze(1)).squeeze(1) * mine);
    comm::all_reduce(sums, comm::ReduceOp::kSum, *group);
    auto sum_exp = sums.select(1, 0);
    auto loss = (sum_exp.log() - sums.select(1, 1)).mean();
    // The softmax of this rank's vocabulary, for backward: 1/model of the gathered one's.
    ctx->save_for_backward({exp.div_(sum_exp.unsqueeze(1)), local_targets, mine});
    return loss;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto grad = saved[0].clone();  // d mean(loss) / d logits = (softmax - one_hot) / N
    const auto& local_targets = saved[1];
    const auto& mine = saved[2];
    if (grad.size(1) > 0)
      grad.scatter_add_(1, local_targets.unsqueeze(1), -mine.to(grad.scalar_type()).unsqueeze(1));
    grad.mul_(grads[0] / static_cast<double>(std::max<int64_t>(1, grad.size(0))));
    return {grad, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor parallel_cross_entropy(const at::Tensor& logits, const at::Tensor& targets,
                                  const TensorParallel& vocabulary) {
  if (logits.dim() < 1 || targets.dim() != logits.dim() - 1 ||
      !std::equal(targets.sizes().begin(), targets.sizes().end(), logits.sizes().begin()))
    kdist::detail::invalid("nn", "parallel_cross_entropy: targets of shape ", targets.sizes(),
                           " do not match logits of shape ", logits.sizes(),
                           " (expected the logits' shape without its last dimension)");
  const bool sharded = vocabulary.style == ParallelStyle::kColumn && !vocabulary.gather_output &&
                       vocabulary.group && vocabulary.group->size() > 1;
  const int64_t full = sharded ? vocabulary.full_size : logits.size(-1);
  if (sharded &&
      logits.size(-1) != comm::chunk_size(full, vocabulary.group->size(), vocabulary.group->rank()))
    kdist::detail::invalid("nn", "parallel_cross_entropy: logits' last dimension ", logits.size(-1),
                           " is not this rank's shard of the vocabulary (",
                           comm::chunk_size(full, vocabulary.group->size(), vocabulary.group->rank()), " of ",
                           full, ")");
  auto flat_targets = targets.reshape({-1});
  if (flat_targets.numel() > 0) {
    const auto [min, max] = at::aminmax(flat_targets);  // one pass
    const int64_t low = min.item<int64_t>(), high = max.item<int64_t>();
    if (low < 0 || high >= full)
      kdist::detail::invalid("nn", "parallel_cross_entropy: target ", low < 0 ? low : high,
                             " is outside the vocabulary [0, ", full, ")");
  }
  auto rows = logits.reshape({flat_targets.numel(), logits.size(-1)});
  if (!sharded) return at::cross_entropy_loss(rows, flat_targets);
  return VocabParallelCrossEntropy::apply(rows, flat_targets, vocabulary.group, vocabulary.local_offset);
}

}  // namespace kdist::nn
