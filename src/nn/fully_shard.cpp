// FullyShard: a unit that gathers the batch-sharded parameters of stock layers around their
// forward and backward (nn.h).
//
// A stock module reads its parameters through its own members, which share the parameter's
// TensorImpl, so the unit swaps that TensorImpl's data (set_data) between the local shard and
// the gathered tensor; the optimizer, the DTensor spec and the module all keep seeing the same
// parameter. The swaps, in step order:
//   forward          gather, set_data(whole), run the block, set_data(shard)
//   output's hook    (backward reaches the block) stash .grad, set_data(whole) again
//   AccumulateGrad   (the parameter's whole gradient is in .grad) reduce-scatter it,
//   post hook        set_data(shard), .grad = stash + shard gradient
//   end of backward  any parameter still whole (unused this step) goes back to its shard
// Autograd saves a leaf parameter itself, not a copy, so what backward reads is what the
// unit put there; set_data changes neither the version counter nor the identity.
#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <optional>
#include <ostream>
#include <utility>

#include "base/errors.h"
#include "nn/batch_shard_ops.h"

namespace kdist::nn {

struct FullyShardImpl::State {
  struct Managed {
    at::Tensor param;  // the module's own parameter
    std::string name;  // its name in the model, for errors
    BatchShardPtr shard;
    at::Tensor local;         // the shard's data while the parameter holds the whole
    at::Tensor kept;          // the gathered tensor, kept until backward
    at::Tensor stashed_grad;  // the shard's .grad from before this backward
    bool whole = false;       // the parameter holds the gathered tensor now
    // The accumulator its post hook is on (autograd keeps one per leaf while a graph holds it).
    std::optional<c10::weak_intrusive_ptr<torch::autograd::Node>> hooked;
  };
  std::vector<Managed> params;
  bool restore_queued = false;

  void make_whole(Managed& m, at::Tensor whole) {
    m.local = m.param.variable_data();
    m.param.set_data(whole);
    m.whole = true;
  }
  void make_local(Managed& m) {
    m.param.set_data(m.local);
    m.local = at::Tensor();
    m.whole = false;
  }
  // Back on its shard, with `shard_grad` (undefined: none this backward) added to the
  // shard's gradient from before it.
  void make_local(Managed& m, const at::Tensor& shard_grad) {
    make_local(m);
    const at::Tensor before = std::exchange(m.stashed_grad, at::Tensor());
    m.param.mutable_grad() = !shard_grad.defined() ? before
                             : before.defined()    ? before + shard_grad
                                                   : shard_grad;
  }
  void release_all() {
    for (auto& m : params)
      if (m.whole) make_local(m);
  }
  at::Tensor gathered(Managed& m) const {
    return m.kept.defined() ? std::exchange(m.kept, at::Tensor())
                            : detail::gather(m.param.variable_data(), *m.shard);
  }

  // Backward reached the block: its parameters whole again, their shard gradients set aside.
  void before_backward(const std::weak_ptr<State>& self) {
    for (auto& m : params) {
      if (m.whole) continue;  // the block ran twice in this graph: gathered already
      m.stashed_grad = m.param.grad();
      m.param.mutable_grad() = at::Tensor();
      make_whole(m, gathered(m));
    }
    if (restore_queued) return;
    restore_queued = true;
    torch::autograd::Engine::get_default_engine().queue_callback([self] {
      if (auto state = self.lock()) state->after_backward();
    });
  }

  // Its AccumulateGrad ran: every use of the parameter in this graph has given its gradient.
  void on_whole_gradient(Managed& m) {
    if (!m.whole)
      kdist::detail::invalid("nn", "parameter '", m.name,
                             "' of a kdist::nn::FullyShard unit got a gradient "
                             "outside the unit's backward: use the block's parameters only through the "
                             "unit's forward");
    at::Tensor whole_grad = std::exchange(m.param.mutable_grad(), at::Tensor());
    make_local(m, whole_grad.defined() ? detail::shard_gradient(whole_grad, *m.shard) : at::Tensor());
  }

  void after_backward() {
    restore_queued = false;
    for (auto& m : params)
      if (m.whole) make_local(m, at::Tensor());  // not used this step: no gradient came
  }

  void hook_accumulator(size_t index, const std::weak_ptr<State>& self) {
    auto& m = params[index];
    auto accumulator = torch::autograd::impl::grad_accumulator(m.param);
    if (!accumulator || (m.hooked && m.hooked->lock() == accumulator)) return;
    accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [self, index](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          if (auto state = self.lock()) state->on_whole_gradient(state->params[index]);
          return outputs;
        }));
    m.hooked.emplace(accumulator);
  }
};

FullyShardImpl::FullyShardImpl(std::shared_ptr<torch::nn::Module> module, Forward forward)
    : module_(std::move(module)),
      forward_(std::move(forward)),
      keras_kind_(keras_owner_type(*module_)),
      state_(std::make_shared<State>()) {
  // The block's own members, registered here under their own names: the unit adds no level.
  for (const auto& p : module_->named_parameters(/*recurse=*/false))
    register_parameter(p.key(), p.value(), p.value().requires_grad());
  for (const auto& b : module_->named_buffers(/*recurse=*/false)) register_buffer(b.key(), b.value());
  for (const auto& c : module_->named_children()) register_module(c.key(), c.value());
}

FullyShardImpl::~FullyShardImpl() { state_->release_all(); }

at::Tensor FullyShardImpl::forward(const at::Tensor& input) {
  auto& params = state_->params;
  for (const auto& m : params)
    if (m.whole)
      kdist::detail::invalid("nn", "the kdist::nn::FullyShard unit holding '", m.name,
                             "' ran its "
                             "forward again inside its own backward");
  // Back to the shards however the block's forward ends.
  struct Release {
    State& state;
    ~Release() { state.release_all(); }
  } release{*state_};
  for (auto& m : params) state_->make_whole(m, detail::gather(m.param.variable_data(), *m.shard));
  at::Tensor output = forward_(input);
  if (params.empty() || !at::GradMode::is_enabled() || !output.requires_grad()) return output;

  std::weak_ptr<State> self = state_;
  for (size_t i = 0; i < params.size(); ++i) {
    state_->hook_accumulator(i, self);
    if (!params[i].shard->reshard_after_forward) params[i].kept = params[i].param.variable_data();
  }
  output.register_hook([self](const at::Tensor&) {
    if (auto state = self.lock()) state->before_backward(self);
  });
  return output;
}

void FullyShardImpl::train(bool on) {
  torch::nn::Module::train(on);
  module_->train(on);  // the block's own flag (a wrapped BatchNorm or Dropout reads it)
}

void FullyShardImpl::pretty_print(std::ostream& stream) const {
  stream << "kdist::nn::FullyShard(";
  module_->pretty_print(stream);
  stream << ")";
}

void FullyShardImpl::shard_parameter(const at::Tensor& param, const std::string& name, BatchShardPtr shard) {
  State::Managed managed;
  managed.param = param;
  managed.name = name;
  managed.shard = std::move(shard);
  state_->params.push_back(std::move(managed));
}

void FullyShardImpl::clear_shards() { state_->params.clear(); }

std::vector<BatchShardPtr> FullyShardImpl::batch_shards() const {
  std::vector<BatchShardPtr> shards;
  for (const auto& m : state_->params) shards.push_back(m.shard);
  return shards;
}

}  // namespace kdist::nn
