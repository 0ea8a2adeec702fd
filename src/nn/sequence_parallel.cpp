// Sequence parallelism (torchtitan's SequenceParallel): the activations between
// tensor-parallel regions are sharded along the sequence over the model axis.
#include "nn/sequence_parallel.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <optional>

#include "base/errors.h"
#include "nn/autograd_state.h"

namespace kdist::nn {

// The gather q, k and v share: the input it was made from and the result, both held weakly,
// so the cache never keeps an activation alive that the graph has let go of.
struct SequenceParallel::Gathered {
  using Weak = c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>;
  std::optional<Weak> input, output;  // empty before the first gather
  uint32_t input_version = 0;
  bool grad_mode = false;
};

namespace detail {
namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void save(AutogradContext* ctx, SequenceParallelPtr s) { stash(ctx, "sequence", std::move(s)); }

const SequenceParallel& saved(AutogradContext* ctx) { return *stashed<SequenceParallelPtr>(ctx, "sequence"); }

// The autograd functions outlive the call and the next scatter_sequence: they keep what they
// need (group, dim, length) by value.
SequenceParallelPtr by_value(const SequenceParallel& s) {
  return std::make_shared<SequenceParallel>(SequenceParallel{s.group, s.dim, s.full_length, nullptr});
}

std::vector<int64_t> pieces(const SequenceParallel& s) {
  return comm::chunk_sizes(s.full_length, s.group->size());
}

at::Tensor gather(const at::Tensor& piece, const SequenceParallel& s) {
  return comm::all_gather(piece.contiguous(), s.dim, *s.group, pieces(s));
}

at::Tensor reduce_scatter(const at::Tensor& whole, const SequenceParallel& s) {
  return comm::reduce_scatter(whole.contiguous(), s.dim, comm::ReduceOp::kSum, *s.group);
}

at::Tensor piece_of(const at::Tensor& whole, const SequenceParallel& s) {
  return comm::chunk_piece(whole, s.dim, s.group->size(), s.group->rank()).contiguous();
}

struct ScatterSequence : torch::autograd::Function<ScatterSequence> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, SequenceParallelPtr s) {
    save(ctx, s);
    return piece_of(x, *s).clone();
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {gather(grads[0], saved(ctx)), at::Tensor()};
  }
};

struct GatherSequence : torch::autograd::Function<GatherSequence> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, SequenceParallelPtr s) {
    save(ctx, s);
    return gather(x, *s);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {reduce_scatter(grads[0], saved(ctx)), at::Tensor()};
  }
};

struct ReduceScatterSequence : torch::autograd::Function<ReduceScatterSequence> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, SequenceParallelPtr s) {
    save(ctx, s);
    return reduce_scatter(x, *s);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {gather(grads[0], saved(ctx)), at::Tensor()};
  }
};

}  // namespace

at::Tensor gather_sequence(const at::Tensor& piece, SequenceParallel& s, const std::string& layer) {
  if (s.full_length == 0)
    kdist::detail::invalid("nn", "sequence-parallel ", layer,
                           " ran before any kdist::nn::scatter_sequence: "
                           "scatter the activations entering the first tensor-parallel block");
  const int64_t dim = s.dim < 0 ? s.dim + piece.dim() : s.dim;
  const int64_t expected = comm::chunk_size(s.full_length, s.group->size(), s.group->rank());
  if (dim < 0 || dim >= piece.dim() || piece.size(dim) != expected)
    kdist::detail::invalid("nn", "sequence-parallel ", layer, " got an input of shape ", piece.sizes(),
                           ", expected this rank's piece of the sequence (", expected, " of ", s.full_length,
                           " along dim ", s.dim, ")");
  if (!s.gathered) s.gathered = std::make_shared<SequenceParallel::Gathered>();
  auto& cache = *s.gathered;
  const bool grad_mode = at::GradMode::is_enabled();
  if (cache.input && cache.output && cache.input_version == piece._version() && cache.grad_mode == grad_mode)
    if (auto input = cache.input->lock(); input.get() == piece.unsafeGetTensorImpl())
      if (auto output = cache.output->lock()) return at::Tensor(std::move(output));
  at::Tensor whole = GatherSequence::apply(piece, by_value(s));
  cache.input = SequenceParallel::Gathered::Weak(piece.getIntrusivePtr());
  cache.output = SequenceParallel::Gathered::Weak(whole.getIntrusivePtr());
  cache.input_version = piece._version();
  cache.grad_mode = grad_mode;
  return whole;
}

at::Tensor reduce_scatter_sequence(const at::Tensor& partial, SequenceParallel& s) {
  return ReduceScatterSequence::apply(partial, by_value(s));
}

}  // namespace detail

at::Tensor scatter_sequence(const at::Tensor& x, SequenceParallel& sequence) {
  const int64_t dim = sequence.dim < 0 ? sequence.dim + x.dim() : sequence.dim;
  if (dim < 0 || dim >= x.dim())
    kdist::detail::invalid("nn", "scatter_sequence: dim ", sequence.dim,
                           " is out of range for a tensor of shape ", x.sizes());
  sequence.full_length = x.size(dim);
  return detail::ScatterSequence::apply(x, detail::by_value(sequence));
}

void sum_gradients_over_sequence(torch::nn::Module& module, const SequenceParallel& sequence) {
  for (auto& p : module.parameters()) {
    if (!p.requires_grad()) continue;
    p.register_hook([group = sequence.group](const at::Tensor& grad) {
      auto sum = grad.contiguous().clone();
      comm::all_reduce(sum, comm::ReduceOp::kSum, *group);
      return sum;
    });
  }
}

}  // namespace kdist::nn
