// kdist::nn::Linear: torch::nn::Linear that runs column- or row-parallel when sharded.
#include <ATen/ATen.h>
#include <kdist/nn.h>
#include <torch/nn/init.h>

#include "base/errors.h"
#include "nn/batch_shard_ops.h"
#include "nn/route.h"

namespace kdist::nn {

LinearImpl::LinearImpl(const torch::nn::LinearOptions& options_) : options(options_) { reset(); }

LinearImpl::LinearImpl(torch::nn::LinearImpl& stock) : options(stock.options) {
  weight = register_parameter("weight", stock.weight, stock.weight.requires_grad());
  bias = register_parameter("bias", stock.bias, stock.bias.defined() && stock.bias.requires_grad());
  train(stock.is_training());
}

void LinearImpl::reset() {
  weight = register_parameter("weight", at::empty({options.out_features(), options.in_features()}));
  if (options.bias())
    bias = register_parameter("bias", at::empty(options.out_features()));
  else
    bias = register_parameter("bias", {}, /*requires_grad=*/false);
  reset_parameters();
}

void LinearImpl::reset_parameters() {
  // torch::nn::Linear's: the same seed gives the same weights.
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5));
  if (bias.defined()) {
    auto [fan_in, fan_out] = torch::nn::init::_calculate_fan_in_and_fan_out(weight);
    const double bound = 1 / std::sqrt(static_cast<double>(fan_in));
    torch::nn::init::uniform_(bias, -bound, bound);
  }
}

void LinearImpl::pretty_print(std::ostream& stream) const {
  stream << "kdist::nn::Linear(in_features=" << options.in_features()
         << ", out_features=" << options.out_features() << ", bias=" << options.bias()
         << ", parallel=" << to_string(parallel.style) << ")";
}

namespace {

// A replicated or column-parallel layer needs its whole input; one fed by a column-parallel
// layer without gather_output gets that layer's shard, which at::linear reports only as a
// shape mismatch.
void check_whole_input(const at::Tensor& input, const LinearImpl& layer) {
  const int64_t in = layer.options.in_features();
  if (input.dim() == 0 || input.size(-1) == in) return;
  const int64_t got = input.size(-1);
  kdist::detail::invalid(
      "nn", to_string(layer.parallel.style), " Linear(", in, ", ", layer.options.out_features(),
      ") got inputs of last dimension ", got,
      in % got == 0 ? " (a 1/" + std::to_string(in / got) + " shard?)" : std::string(), ", expected ", in,
      ": if the layer before it is column parallel, make this one row parallel (Keras kernel "
      "layout (model, None)) or set that layer's parallel.gather_output");
}

// The bias as the layer adds it: gathered over the batch axis (in the gather's dtype) or cast.
at::Tensor bias_to_add(const LinearImpl& layer) {
  return layer.batch.bias ? detail::gather_batch_shard(layer.bias, layer.batch.bias)
                          : detail::in_param_dtype(layer.bias, layer.precision);
}

}  // namespace

// x @ W^T (+ b), with W and b gathered over the batch axis first where they are sharded there,
// in the precision's param_dtype if the layer has one.
at::Tensor LinearImpl::matmul(const at::Tensor& input, bool add_bias) const {
  const at::Tensor x = detail::in_param_dtype(input, precision);
  at::Tensor b = add_bias && bias.defined() ? bias_to_add(*this) : at::Tensor();
  if (!batch.weight) return at::linear(x, detail::in_param_dtype(weight, precision), b);
  auto y = detail::linear_with_batch_shard(x, weight, batch.weight);
  return b.defined() ? y + b : y;
}

at::Tensor LinearImpl::forward(const at::Tensor& input) {
  auto y = forward_in_style(input);
  return precision && precision->output_dtype ? y.to(*precision->output_dtype) : y;
}

// The route (src/nn/route.h) decides the steps; their table, which the plan reads too, runs them.
at::Tensor LinearImpl::forward_in_style(const at::Tensor& input) {
  if (parallel.style != ParallelStyle::kRow) check_whole_input(input, *this);
  const auto route = detail::linear_route(parallel.style, parallel.sequence != nullptr,
                                          parallel.gather_output, bias.defined());
  // Only the sequence gather's errors name the layer: the string is not built on every forward.
  const bool names_layer = route.input == detail::InputStep::kGatherSequence;
  const detail::StepContext context{parallel, weight.size(1), options.in_features(),
                                    names_layer ? describe() : std::string()};
  auto x = detail::run(route.input, input, context);
  auto y = detail::run(route.output, matmul(x, route.bias == detail::BiasStep::kInMatmul), context);
  if (route.bias == detail::BiasStep::kNone || route.bias == detail::BiasStep::kInMatmul) return y;
  return detail::run(route.bias, y, bias_to_add(*this), context);
}

std::string LinearImpl::describe() const {
  return to_string(parallel.style) + " Linear(" + std::to_string(options.in_features()) + ", " +
         std::to_string(options.out_features()) + ")";
}

std::string to_string(ParallelStyle style) {
  switch (style) {
    case ParallelStyle::kColumn:
      return "column";
    case ParallelStyle::kRow:
      return "row";
    case ParallelStyle::kVocab:
      return "vocab";
    case ParallelStyle::kEmbeddingDim:
      return "embedding-dim";
    case ParallelStyle::kReplicated:
      break;
  }
  return "replicated";
}

}  // namespace kdist::nn
