#pragma once
// A parameter stored sharded over the batch axis (FSDP, ZeRO-3; docs/fsdp.md "Sharding over the
// batch axis"). The layer keeps only its shard; just before it computes, the shard is
// all-gathered over `group` along `dim`, the gathered copy is released after forward and
// gathered again for backward (unless reshard_after_forward is false, which keeps it until
// backward), and the gradient of the gathered tensor is reduce-scattered, averaged over the
// group, back onto the shard: after backward the shard's .grad is the batch-averaged
// gradient of that shard, with no GradientSync needed for it. Under GradientSync::no_sync()
// (sync false) the unsharded gradient accumulates in the layer instead, and the next
// synchronised backward reduce-scatters the sum.
//
#include <ATen/core/Tensor.h>
#include <kdist/nn/parallel.h>
#include <kdist/path_adapter.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

namespace kdist::nn {

// A unit of stock LibTorch layers (LayerNorm, Conv2d, a Sequential of anything) whose
// parameters may be sharded over the batch axis: FSDP2's fully_shard unit. LibTorch modules
// have no forward hooks, so a stock module cannot gather its own parameters; this wrapper does
// it for the block it holds. distribute_module shards the block's parameters as the layout
// map says and hands their batch shards to the unit; then each forward all-gathers them,
// runs the block and releases them, backward gathers them again (or keeps them:
// reshard_after_forward) and reduce-scatters their gradients, averaged, back onto the shards.
// After backward each shard's .grad is the batch-averaged gradient of that shard, as for
// kdist's layers; GradientSync::no_sync() accumulates the unsharded gradient instead.
//
//   struct BlockImpl : torch::nn::Module {
//     kdist::nn::FullyShard ln{torch::nn::LayerNorm(torch::nn::LayerNormOptions({64}))};
//     kdist::nn::Linear fc{64, 64};
//     BlockImpl() { register_module("ln", ln); register_module("fc", fc); }
//     at::Tensor forward(const at::Tensor& x) { return fc(ln(x)); }
//   };
//   map.set("ln/gamma", {"batch"});   // LayerNorm's weight sharded over the batch axis
//   distribute_module(*block, kdist::ModelParallel(map));
//
// Transparent names: the unit registers the block's own parameters, buffers and children as
// its own, so the parameters keep the names they had without it ("ln.weight", Keras
// "ln/gamma") and layout maps, summaries and checkpoints read the same. kdist layers inside
// a unit gather their own parameters; every other parameter of the block is the unit's.
// A unit shards only over the batch axis: a stock module's parameter sharded over another
// axis is still an error (distribute_module), and so is a batch-sharded stock parameter
// outside any unit. The block's forward must take and return one tensor, and the block's
// parameters must be used only through the unit's forward (an error otherwise).
// Not copyable with clone(). Memory: an op that saves a view of a weight for backward (a
// stock Linear saves weight.t()) keeps the gathered copy alive until backward; LayerNorm,
// Conv and Embedding save the weight itself, which the unit releases.
class FullyShardImpl : public torch::nn::Module, public KerasNamed {
 public:
  using Forward = std::function<at::Tensor(const at::Tensor&)>;
  template <typename ModuleHolder>
  explicit FullyShardImpl(ModuleHolder block)
      : FullyShardImpl(block.ptr(),
                       [impl = block.ptr()](const at::Tensor& x) -> at::Tensor { return impl->forward(x); }) {
  }
  FullyShardImpl(std::shared_ptr<torch::nn::Module> module, Forward forward);
  ~FullyShardImpl() override;

  at::Tensor forward(const at::Tensor& input);
  void train(bool on = true) override;
  void pretty_print(std::ostream& stream) const override;
  const char* keras_kind() const override { return keras_kind_.c_str(); }
  torch::nn::Module& block() { return *module_; }

  // Set by distribute_module: `param` (one of the block's, in its local batch shard) is
  // gathered by this unit as `shard` says. clear_shards() forgets every one.
  void shard_parameter(const at::Tensor& param, const std::string& name, BatchShardPtr shard);
  void clear_shards();
  std::vector<BatchShardPtr> batch_shards() const;

 private:
  struct State;  // src/nn/fully_shard.cpp
  std::shared_ptr<torch::nn::Module> module_;
  Forward forward_;
  std::string keras_kind_;
  std::shared_ptr<State> state_;
};
TORCH_MODULE(FullyShard);

}  // namespace kdist::nn
