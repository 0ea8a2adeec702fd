#pragma once
// Tensor-parallel layers and distribute_module: a LayoutMap in Keras style shards a model's
// parameters, and the layers compute in parallel with results equal to the single-process
// model.
//
//   struct MlpImpl : torch::nn::Module {
//     kdist::nn::Linear fc1{nullptr}, fc2{nullptr};   // drop-in for torch::nn::Linear
//     ...
//   };
//   kdist::LayoutMap map(mesh);
//   map.set("fc1/kernel", {std::nullopt, "model"});  // column parallel (Keras (in, out))
//   map.set("fc2/kernel", {"model", std::nullopt});  // row parallel
//   kdist::ModelParallel mp(map);
//   auto summary = kdist::distribute_module(*model, mp);
//   // model->forward(x) now runs fc1 column-parallel and fc2 row-parallel: one all_reduce.
//
// Parallel style, chosen from the weight's placement on the one mesh axis that shards it:
//   Linear  weight Shard(0)  column parallel: input replicated, output sharded on its last
//                            dim (or gathered with gather_output); backward all-reduces the
//                            input gradient. The bias follows the output features.
//   Linear  weight Shard(1)  row parallel: input sharded on its last dim (sliced if it
//                            arrives whole); one all_reduce forward; bias (replicated) added
//                            once after it; no collective in backward.
//   Embedding weight Shard(0) vocab parallel: out-of-range ids masked, local lookup, all_reduce.
//   Embedding weight Shard(1) embedding-dim parallel: output sharded on its last dim.
//   replicated               exactly torch::nn's computation.
//
// Errors (std::invalid_argument, raised before any parameter is changed): a LayoutMap key
// that matches no parameter (KDIST_ALLOW_UNMATCHED=1 makes it a warning), a layout whose rank
// differs from its parameter's, a sharded parameter in a module kdist cannot run in parallel
// (a stock torch::nn::Linear held as a member of a custom module, a Conv, LayerNorm, a
// weight sharded over two mesh axes), a bias sharded against its weight's style, a sharded
// Embedding with padding_idx, max_norm, scale_grad_by_freq or sparse (not applied in parallel),
// a parameter of any other module sharded over the distribution's batch axis outside a
// FullyShard unit (only kdist's layers and units gather such parameters), a stock module's
// parameter in a unit sharded over another axis, and a dimension sharded over the batch axis
// and another axis at once.
//
// Sharding over the batch axis (FSDP / ZeRO-3, DESIGN.md): a weight dimension mapped to the
// batch axis is stored sharded over the data-parallel ranks and gathered just before the
// layer uses it (BatchShard below); sharding over any other axis is tensor parallelism as
// above. So a Keras kernel layout (batch, model) is FSDP over "batch" and column parallel
// over "model", (model, batch) FSDP and row parallel, and on a 1-D mesh ("model",), whose
// batch axis Keras makes "model", every sharded weight is FSDP. keras-hub's Gemma and Llama
// maps, which shard every large weight over both axes, run as they are.
//
// Shards may be empty: the chunk rule gives trailing ranks nothing when a dimension is smaller
// than the axis (Embedding(9, 4) vocab-parallel on 4 ranks: 3, 3, 3, 0 rows). Every style still
// computes the single-process result there.
#include <kdist/comm.h>
#include <kdist/distribution.h>
#include <kdist/dtensor.h>
#include <kdist/nn/batch_norm.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace kdist::nn {

enum class ParallelStyle { kReplicated, kColumn, kRow, kVocab, kEmbeddingDim };
std::string to_string(ParallelStyle style);

// Sequence parallelism (torchtitan's SequenceParallel; DistributeModuleOptions::
// sequence_parallel_dim): between tensor-parallel regions (the LayerNorms, the residual
// stream) the activations are sharded over the model axis along the sequence dimension, so
// each process holds 1/model of them. A column-parallel Linear all-gathers the sequence
// before it computes (q, k and v reuse one gather of the same input) and its backward
// reduce-scatters the input gradient; a row-parallel Linear reduce-scatters its output
// along the sequence instead of all-reducing it (its bias then added to the piece, its
// gradient summed over the axis). The model does two things itself:
//   - scatter_sequence() the activations entering the first tensor-parallel block (after the
//     embeddings); it records the sequence's length, which every layer checks its input
//     against;
//   - sum_gradients_over_sequence() for each module run on sequence pieces (the LayerNorms),
//     whose gradients are then partial sums over this rank's tokens.
// The last column-parallel layer (the head) gathers the whole sequence again.
//
//   DistributeModuleOptions options;
//   options.sequence_parallel_dim = 1;                     // (batch, time, features)
//   distribute_module(*model, distribution, options);
//   auto& sequence = *model->head->parallel.sequence;      // shared by the model's layers
//   for (auto* norm : model->norms()) kdist::nn::sum_gradients_over_sequence(*norm, sequence);
//   // forward: x = kdist::nn::scatter_sequence(tok(ids) + pos(t), sequence); blocks; head
//
// Sequences of any length: pieces follow the chunk rule.
struct SequenceParallel {
  comm::GroupPtr group;     // the model axis' group
  int64_t dim = 1;          // the sequence dimension of the activations
  int64_t full_length = 0;  // the sequence's length, recorded by scatter_sequence
  struct Gathered;          // the gather q, k and v share (src/nn/sequence_parallel.cpp)
  std::shared_ptr<Gathered> gathered;
};
using SequenceParallelPtr = std::shared_ptr<SequenceParallel>;

// This rank's piece of the sequence (forward), the whole gradient all-gathered (backward).
// Records x's length along sequence.dim for the layers after it.
at::Tensor scatter_sequence(const at::Tensor& x, SequenceParallel& sequence);
// Makes backward sum `module`'s parameter gradients over the model axis (tensor hooks, so
// before they accumulate). Call once per module, after distribute_module.
void sum_gradients_over_sequence(torch::nn::Module& module, const SequenceParallel& sequence);

// How a layer runs across the ranks of one mesh axis; set by distribute_module.
struct TensorParallel {
  ParallelStyle style = ParallelStyle::kReplicated;
  comm::GroupPtr group;        // the mesh-axis group the weight is sharded over
  int64_t full_size = 0;       // the sharded dimension's global size
  int64_t local_offset = 0;    // this rank's first index in it
  bool gather_output = false;  // column / embedding-dim: all_gather the output
  SequenceParallelPtr sequence;  // column and row Linears under sequence parallelism
};

// The mean cross-entropy of logits whose last dimension, the vocabulary, is sharded as
// `vocabulary` says: loss parallel (torchtitan's loss_parallel). Pass a column-parallel head's
// `parallel` with gather_output off; each rank then holds 1/model of the logits and of their
// softmax, and the loss comes from two all_reduces of per-row scalars (the maximum, then the
// sum of exp and the target's logit) over the head's group, never a gather of the logits.
// Loss and gradients equal at::cross_entropy_loss of the gathered logits within rounding.
// For logits that are whole (a replicated head, gather_output on, a group of one) it is
// at::cross_entropy_loss itself, so the same program runs on one process.
//
//   model->head->parallel.gather_output = false;   // column parallel over "model"
//   auto loss = kdist::nn::parallel_cross_entropy(model->forward(x), targets, model->head->parallel);
//
// logits (..., local vocabulary), targets (...) of global vocabulary indices (int64). Throws
// std::invalid_argument for mismatched shapes, logits that are not this rank's shard, or a
// target outside the vocabulary. Collective over the head's group when sharded.
at::Tensor parallel_cross_entropy(const at::Tensor& logits, const at::Tensor& targets,
                                  const TensorParallel& vocabulary);

// A parameter stored sharded over the batch axis (FSDP, ZeRO-3; DESIGN.md "Sharding over the
// batch axis"). The layer keeps only its shard; just before it computes, the shard is
// all-gathered over `group` along `dim`, the gathered copy is released after forward and
// gathered again for backward (unless reshard_after_forward is false, which keeps it until
// backward), and the gradient of the gathered tensor is reduce-scattered, averaged over the
// group, back onto the shard: after backward the shard's .grad is the batch-averaged
// gradient of that shard, with no GradientSync needed for it. Under GradientSync::no_sync()
// (sync false) the unsharded gradient accumulates in `unsynced_grad` instead, and the next
// synchronised backward reduce-scatters the sum.
// Mixed precision in the shape of FSDP2's MixedPrecisionPolicy: parameters (and the optimizer
// state on them) stay in their own dtype, fp32, as master weights; a kdist layer computes with
// its weights and input cast to param_dtype, so its activations are param_dtype; weights
// sharded over the batch axis are cast before their all_gather, which moves param_dtype
// bytes; their gradient is reduce-scattered in reduce_dtype and lands on the shard in the
// shard's dtype. Gradients of other parameters come back in the parameter's dtype through
// the cast's backward, so GradientSync averages them in fp32 whatever reduce_dtype says.
// output_dtype, where set, casts the layer's output (the head's, for the loss).
// DistributeModuleOptions::mixed_precision sets it on every kdist layer;
// set_mixed_precision() does so for a model that is not distributed (one process).
struct MixedPrecision {
  c10::ScalarType param_dtype = c10::kBFloat16;
  c10::ScalarType reduce_dtype = c10::kFloat;
  std::optional<c10::ScalarType> output_dtype;
};

namespace detail {
struct Prefetch;  // src/nn/prefetch.h
}
struct BatchShard {
  comm::GroupPtr group;      // the batch axis' group of this process
  int64_t dim = 0;           // the sharded dimension, in torch orientation
  int64_t full_size = 0;     // its size once gathered
  bool reshard_after_forward = true;
  bool sync = true;
  at::Tensor unsynced_grad;
  // Set by distribute_module with DistributeModuleOptions::prefetch: which layer's gather
  // this one's starts, in forward and in backward, and a gather started for this one.
  std::shared_ptr<detail::Prefetch> prefetch;
  std::optional<MixedPrecision> precision;  // gathered in param_dtype, reduced in reduce_dtype
};
using BatchShardPtr = std::shared_ptr<BatchShard>;

// What distribute_module set for a layer's parameters sharded over the batch axis (null:
// replicated over it).
struct BatchSharding {
  BatchShardPtr weight;
  BatchShardPtr bias;
};
// The BatchSharding of a kdist::nn layer; null for any other module.
BatchSharding* batch_sharding_of(torch::nn::Module& module);
// Every BatchShard `module` itself keeps (a kdist layer's weight and bias, a FullyShard unit's
// parameters); GradientSync::no_sync() turns their `sync` off.
std::vector<BatchShardPtr> batch_shards_of(torch::nn::Module& module);

// The path adapter's interface: kdist's layers carry the Keras names of torch's.
class LinearImpl : public torch::nn::Cloneable<LinearImpl>, public KerasNamed {
 public:
  LinearImpl(int64_t in_features, int64_t out_features)
      : LinearImpl(torch::nn::LinearOptions(in_features, out_features)) {}
  explicit LinearImpl(const torch::nn::LinearOptions& options);
  // kdist's layer over a stock layer's own parameters: the same at::Tensor objects, with their
  // dtype, device and requires_grad, and the stock layer's training flag. Draws no random
  // numbers. distribute_module puts it in a Sequential in place of a torch::nn::Linear, so an
  // optimizer, a freeze or a dtype move made before still applies.
  explicit LinearImpl(torch::nn::LinearImpl& stock);
  void reset() override;
  void reset_parameters();  // torch::nn::Linear's initialisation
  void pretty_print(std::ostream& stream) const override;
  at::Tensor forward(const at::Tensor& input);
  const char* keras_kind() const override { return "Linear"; }
  // x @ weight^T (+ bias), gathering batch-sharded parameters first.
  at::Tensor matmul(const at::Tensor& x, bool add_bias) const;
  std::string describe() const;  // "column Linear(64, 256)", for messages
  at::Tensor forward_in_style(const at::Tensor& input);  // forward before output_dtype

  torch::nn::LinearOptions options;
  at::Tensor weight;  // (out, in), or this rank's shard of it
  at::Tensor bias;    // (out), or this rank's shard; undefined without bias
  TensorParallel parallel;
  BatchSharding batch;
  std::optional<MixedPrecision> precision;
};
TORCH_MODULE(Linear);

class EmbeddingImpl : public torch::nn::Cloneable<EmbeddingImpl>, public KerasNamed {
 public:
  EmbeddingImpl(int64_t num_embeddings, int64_t embedding_dim)
      : EmbeddingImpl(torch::nn::EmbeddingOptions(num_embeddings, embedding_dim)) {}
  explicit EmbeddingImpl(const torch::nn::EmbeddingOptions& options);
  // Over a stock layer's own weight, as LinearImpl's (torch::nn::LinearImpl&) constructor.
  explicit EmbeddingImpl(torch::nn::EmbeddingImpl& stock);
  void reset() override;
  void reset_parameters();
  void pretty_print(std::ostream& stream) const override;
  at::Tensor forward(const at::Tensor& indices);
  const char* keras_kind() const override { return "Embedding"; }

  torch::nn::EmbeddingOptions options;
  at::Tensor weight;  // (num_embeddings, embedding_dim), or this rank's shard
  TensorParallel parallel;
  BatchSharding batch;
  std::optional<MixedPrecision> precision;
};
TORCH_MODULE(Embedding);

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
      : FullyShardImpl(block.ptr(), [impl = block.ptr()](const at::Tensor& x) -> at::Tensor {
          return impl->forward(x);
        }) {}
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

  struct State;  // src/nn/fully_shard.cpp

 private:
  std::shared_ptr<torch::nn::Module> module_;
  Forward forward_;
  std::string keras_kind_;
  std::shared_ptr<State> state_;
};
TORCH_MODULE(FullyShard);

}  // namespace kdist::nn

namespace kdist {

// What distribute_module did to one parameter.
struct ParameterPlan {
  ParameterPath path;
  std::vector<int64_t> global_shape;
  TensorLayout layout;
  std::vector<Placement> placements;
  std::vector<int64_t> local_shape;  // this rank's
  std::string style;                 // "column", "row", "vocab", "embedding-dim", "replicated"
  std::optional<std::string> key;    // the LayoutMap key that asked for it
  c10::ScalarType dtype = c10::ScalarType::Float;
  bool requires_grad = true;
  bool keras_transposed = false;     // `layout` is the transpose of what a Keras kernel key gave
};

// What a layer's input is, for its plan: activation bytes depend on it.
struct LayerInput {
  int64_t rows = 0;              // the input's elements over its last dimension; an Embedding's id count
  // Under sequence parallelism: the sequence's length (rows = batch x length), whose piece
  // of this rank the layer's neighbours hold.
  int64_t sequence_length = 0;
  bool requires_grad = true;     // false (the model's data): backward sends nothing for it
  bool gathered_by_sibling = false;  // sequence parallelism: q, k and v share one gather
};

// The collectives one kdist layer or FullyShard unit issues in one forward and the backward
// through it (DESIGN.md, "Plans are values"), computed from the configuration distribute_module
// gives the layer, by the code beside the layer's own (src/nn/layer_plan.cpp).
//
//   auto summary = kdist::plan_module(*model, distribution, /*rank=*/0);
//   for (const auto& layer : summary.layers)
//     for (const auto& c : layer.collectives({/*rows=*/batch * time}))
//       std::cout << c.phase << " " << c.kind << " over " << c.axis << ": " << c.bytes << " B\n";
//
// A row-parallel Linear is planned for inputs sharded by the column-parallel layer before it
// (one that gets whole inputs slices them, and backward gathers their gradient once more).
struct LayerPlan {
  std::string layer;  // the module's path, "blocks.0.attn.q"
  std::string kind;   // "Linear", "Embedding", "SyncBatchNorm" or "FullyShard"
  nn::ParallelStyle style = nn::ParallelStyle::kReplicated;
  std::string axis;             // the tensor-parallel axis ("" when replicated)
  int64_t axis_size = 1;
  int64_t axis_rank = 0;        // this rank's index along it
  int64_t in_features = 0;      // Linear: in, out; Embedding: num_embeddings, embedding_dim
  int64_t out_features = 0;
  bool bias = false;            // a Linear's
  bool gather_output = false;
  bool sequence_parallel = false;
  int64_t activation_bytes = 4;  // per element: the parameters' dtype, or param_dtype's under mixed precision
  // A parameter sharded over the batch axis (FSDP): gathered before use, its gradient
  // reduce-scattered back.
  struct Gathered {
    std::string parameter;
    std::string axis;
    int64_t axis_size = 1;
    int64_t shard_bytes = 0;     // what the gather hands in (param_dtype under mixed precision)
    int64_t gradient_bytes = 0;  // the gathered gradient the reduce_scatter hands in (reduce_dtype)
    bool again_in_backward = false;  // released after forward and gathered again
  };
  std::vector<Gathered> gathered;
  // In the order the layer issues them: forward, then backward.
  std::vector<comm::PlannedCollective> collectives(const LayerInput& input) const;
};

struct DistributionSummary {
  std::vector<ParameterPlan> parameters;
  std::vector<LayerPlan> layers;  // each kdist layer and FullyShard unit, in module order
  int64_t local_bytes = 0;       // parameter bytes this rank holds
  int64_t sharded_bytes = 0;     // of which in sharded parameters
  int64_t replicated_bytes = 0;  // of which in replicated parameters
  int64_t global_bytes = 0;      // the whole model
  std::string to_string() const;  // a table: parameter, global shape, layout, placements, local shape
};

// Plans of the nn functions a model calls itself, beside its layers' (LayerPlan): what each
// sends in one forward and backward, in CollectiveCounter's units, so that a step's plan
// (kdist plan's, or a user's own held against a CollectiveCounter) covers the whole model.
// `layer` is the plan of a layer on the model axis they run over (the head, or any
// sequence-parallel Linear): its axis, size and rank. Each is empty on an axis of size one.
// Throw std::invalid_argument for a layer whose rank is outside its axis, a negative row
// count or a dimension out of range.
//
//   auto summary = kdist::plan_module(*model, distribution, rank, options);
//   auto plan = kdist::plan_parallel_cross_entropy(batch * time, head_plan);
//   auto more = kdist::plan_scatter_sequence({batch, time, width}, 1, 4, head_plan);
//
// parallel_cross_entropy over `rows` rows (the targets' element count): two all_reduces of
// per-row fp32 scalars where the head's logits are sharded, none where they are whole.
std::vector<comm::PlannedCollective> plan_parallel_cross_entropy(int64_t rows, const LayerPlan& head);
// scatter_sequence of an activation of `shape` along `dim` (elements of `element_bytes`):
// backward all-gathers the gradient of this rank's piece.
std::vector<comm::PlannedCollective> plan_scatter_sequence(const std::vector<int64_t>& shape, int64_t dim,
                                                           int64_t element_bytes, const LayerPlan& layer);
// sum_gradients_over_sequence of a module with these parameters (from the summary): one
// all_reduce of each gradient that requires one.
std::vector<comm::PlannedCollective> plan_sum_gradients_over_sequence(
    const std::vector<ParameterPlan>& parameters, const LayerPlan& layer);

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

namespace nn {
// `policy` on every kdist::nn layer of `module` (a model not given to distribute_module: the
// one-process reference of a mixed-precision run); changes no parameter.
void set_mixed_precision(torch::nn::Module& module, const MixedPrecision& policy);
}  // namespace nn

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
// works for meshes larger than the job (build the mesh with explicit devices). Stock torch::nn::Linear and Embedding layers
// directly inside a Sequential are planned as the kdist layers distribute_module replaces them
// by, so the two accept and refuse the same models, with the same messages.
DistributionSummary plan_module(torch::nn::Module& module, const Distribution& distribution,
                                int rank = 0, const DistributeModuleOptions& options = {});

}  // namespace kdist
