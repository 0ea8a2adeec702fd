// The gpt and mlp workloads of `kdist train`.
#include "workload.h"

#include <ATen/CPUGeneratorImpl.h>
#include <kdist/nn.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/normalization.h>

#include <unistd.h>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

namespace kdist::tools {
namespace {

at::Generator generator_for(uint64_t seed, int64_t step) {
  return at::make_generator<at::CPUGeneratorImpl>(seed * 1000003u + static_cast<uint64_t>(step) + 1);
}

// ---------------------------------------------------------------- gpt

struct AttentionImpl : torch::nn::Module {
  AttentionImpl(int64_t width, int64_t heads)
      : head_dim(width / heads),
        q(register_module("q", nn::Linear(width, width))),
        k(register_module("k", nn::Linear(width, width))),
        v(register_module("v", nn::Linear(width, width))),
        o(register_module("o", nn::Linear(width, width))) {}

  at::Tensor forward(const at::Tensor& x) {
    // Under sequence parallelism x is this rank's piece of the sequence and q, k, v return
    // the whole of it: the length comes from their output.
    auto qx = q(x), kx = k(x), vx = v(x);
    const int64_t batch = qx.size(0), time = qx.size(1);
    // (B, T, local width) -> (B, local heads, T, head_dim): a column-parallel q/k/v holds
    // whole heads, so attention runs on this rank's heads alone.
    auto split = [&](const at::Tensor& t) { return t.view({batch, time, -1, head_dim}).transpose(1, 2); };
    auto scores = at::matmul(split(qx), split(kx).transpose(-2, -1)) / std::sqrt(double(head_dim));
    auto causal = at::ones({time, time}, at::kBool).triu(1);
    auto attended = at::matmul(at::softmax(scores.masked_fill(causal, -1e9), -1), split(vx));
    return o(attended.transpose(1, 2).reshape({batch, time, -1}));
  }

  int64_t head_dim;
  nn::Linear q, k, v, o;
};
TORCH_MODULE(Attention);

struct FeedForwardImpl : torch::nn::Module {
  explicit FeedForwardImpl(int64_t width)
      : up(register_module("up", nn::Linear(width, 4 * width))),
        down(register_module("down", nn::Linear(4 * width, width))) {}
  at::Tensor forward(const at::Tensor& x) { return down(at::gelu(up(x))); }
  nn::Linear up, down;
};
TORCH_MODULE(FeedForward);

torch::nn::LayerNorm layer_norm(int64_t width) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}));
}

struct BlockImpl : torch::nn::Module {
  BlockImpl(int64_t width, int64_t heads)
      : ln1(register_module("ln1", layer_norm(width))),
        attn(register_module("attn", Attention(width, heads))),
        ln2(register_module("ln2", layer_norm(width))),
        mlp(register_module("mlp", FeedForward(width))) {}
  at::Tensor forward(at::Tensor x) {
    x = x + attn(ln1(x));
    return x + mlp(ln2(x));
  }
  torch::nn::LayerNorm ln1;
  Attention attn;
  torch::nn::LayerNorm ln2;
  FeedForward mlp;
};
TORCH_MODULE(Block);

struct GptImpl : torch::nn::Module {
  GptImpl(int64_t vocab, int64_t context, int64_t width, int64_t layers, int64_t heads)
      : tok(register_module("tok", nn::Embedding(vocab, width))),
        pos(register_module("pos", nn::Embedding(context, width))),
        blocks(register_module("blocks", torch::nn::ModuleList())),
        ln_f(register_module("ln_f", layer_norm(width))),
        head(register_module("head", nn::Linear(torch::nn::LinearOptions(width, vocab).bias(false)))) {
    for (int64_t i = 0; i < layers; ++i) blocks->push_back(Block(width, heads));
    head->parallel.gather_output = true;  // whole logits for the loss, if a layout shards it
  }
  at::Tensor forward(const at::Tensor& ids) {
    auto x = tok(ids) + pos(at::arange(ids.size(1), at::kLong));
    if (head->parallel.sequence) x = nn::scatter_sequence(x, *head->parallel.sequence);
    for (const auto& block : *blocks) x = block->as<BlockImpl>()->forward(x);
    return head(ln_f(x));
  }
  nn::Embedding tok, pos;
  torch::nn::ModuleList blocks;
  torch::nn::LayerNorm ln_f;
  nn::Linear head;
};
TORCH_MODULE(Gpt);

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) bad_option("cannot read data file '" + path + "': no such file or not readable");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class GptWorkload : public Workload {
 public:
  GptWorkload(const TrainOptions& o, const std::string& path)
      : seed_(o.seed),
        context_(o.context),
        width_(o.width ? o.width : 128),
        layers_(o.layers),
        heads_(o.heads),
        loss_parallel_(o.loss_parallel),
        sequence_parallel_(o.sequence_parallel),
        path_(path) {
    const std::string text = read_text(path);
    if (static_cast<int64_t>(text.size()) < context_ + 2)
      bad_option("data file '" + path + "' has " + std::to_string(text.size()) + " bytes; --context " +
                 std::to_string(context_) + " needs at least " + std::to_string(context_ + 2));
    if (width_ % heads_ != 0)
      bad_option("--width " + std::to_string(width_) + " does not divide into --heads " +
                 std::to_string(heads_));
    std::set<unsigned char> chars(text.begin(), text.end());
    vocab_.assign(chars.begin(), chars.end());
    int64_t index_of[256] = {};
    for (size_t i = 0; i < vocab_.size(); ++i) index_of[vocab_[i]] = static_cast<int64_t>(i);
    ids_ = at::empty({static_cast<int64_t>(text.size())}, at::kLong);
    auto* out = ids_.data_ptr<int64_t>();
    for (size_t i = 0; i < text.size(); ++i) out[i] = index_of[static_cast<unsigned char>(text[i])];
    prompt_ =
        text.substr(0, text.find_first_of(" \n") == std::string::npos ? 1 : text.find_first_of(" \n") + 1);
  }

  std::shared_ptr<torch::nn::Module> build() const override {
    at::manual_seed(seed_);
    auto gpt = Gpt(static_cast<int64_t>(vocab_.size()), context_, width_, layers_, heads_);
    gpt->head->parallel.gather_output = !loss_parallel_;  // the loss takes the shards
    return gpt.ptr();
  }
  std::vector<std::pair<std::string, std::vector<AxisSpec>>> default_layout() const override {
    std::vector<std::pair<std::string, std::vector<AxisSpec>>> map{
        {".*attn/(q|k|v)/kernel", {std::nullopt, "model"}},
        {".*attn/o/kernel", {"model", std::nullopt}},
        {".*mlp/up/kernel", {std::nullopt, "model"}},
        {".*mlp/down/kernel", {"model", std::nullopt}}};
    // The vocabulary over "model": the loss from its shards, or the sequence gathered again.
    if (loss_parallel_ || sequence_parallel_) map.push_back({"head/kernel", {std::nullopt, "model"}});
    return map;
  }
  Batch global_batch(int64_t step, int64_t batch_size) const override {
    auto gen = generator_for(seed_, step);
    auto starts = at::randint(0, ids_.size(0) - context_ - 1, {batch_size, 1}, gen, at::kLong);
    auto index = starts + at::arange(context_, at::kLong);
    return {ids_.index_select(0, index.flatten()).view({batch_size, context_}),
            ids_.index_select(0, (index + 1).flatten()).view({batch_size, context_})};
  }
  at::Tensor loss(torch::nn::Module& model, const Batch& batch) const override {
    auto& gpt = static_cast<GptImpl&>(model);
    auto logits = gpt.forward(batch.inputs);
    if (loss_parallel_) return nn::parallel_cross_entropy(logits, batch.targets, gpt.head->parallel);
    return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), batch.targets.reshape({-1}));
  }
  void after_distribute(torch::nn::Module& model) const override {
    auto& gpt = static_cast<GptImpl&>(model);
    if (gpt.head->precision) gpt.head->precision->output_dtype = at::kFloat;  // the loss in fp32
    if (!gpt.head->parallel.sequence) return;
    // The LayerNorms run on pieces of the sequence: their gradients are summed over "model".
    for (const auto& m : model.modules())
      if (dynamic_cast<torch::nn::LayerNormImpl*>(m.get()))
        nn::sum_gradients_over_sequence(*m, *gpt.head->parallel.sequence);
  }
  int64_t rows_per_sample() const override { return context_; }
  LayerInput layer_input(const std::string& layer, int64_t samples) const override {
    LayerInput input{samples * context_, context_};
    if (layer == "pos") input.rows = context_;  // looks up arange(context), for every sample at once
    // q, k and v take one input: under sequence parallelism q's gather serves all three.
    auto ends_with = [&](const std::string& tail) {
      return layer.size() >= tail.size() && layer.compare(layer.size() - tail.size(), tail.size(), tail) == 0;
    };
    input.gathered_by_sibling = sequence_parallel_ && (ends_with("attn.k") || ends_with("attn.v"));
    return input;
  }
  std::vector<PlannedCollective> model_collectives(const DistributionSummary& summary,
                                                   int64_t samples) const override {
    const LayerPlan* head = nullptr;
    for (const auto& layer : summary.layers)
      if (layer.layer == "head") head = &layer;
    if (!head || head->axis_size <= 1) return {};
    std::vector<PlannedCollective> out;
    auto append = [&](std::vector<PlannedCollective> more) {
      out.insert(out.end(), more.begin(), more.end());
    };
    if (loss_parallel_) append(plan_parallel_cross_entropy(samples * context_, *head));
    if (!sequence_parallel_) return out;
    // The embeddings' sum is scattered over the sequence; after_distribute sums each
    // LayerNorm's gradients over the model axis.
    append(plan_scatter_sequence({samples, context_, head->in_features}, 1, head->activation_bytes, *head));
    std::vector<ParameterPlan> norms;
    for (const auto& p : summary.parameters)
      if (p.path.owner_type == "LayerNorm") norms.push_back(p);
    append(plan_sum_gradients_over_sequence(norms, *head));
    return out;
  }
  const char* unit() const override { return "tokens"; }
  std::string describe() const override {
    return "gpt: " + std::to_string(layers_) + " blocks, width " + std::to_string(width_) + ", " +
           std::to_string(heads_) + " heads, context " + std::to_string(context_) + ", vocabulary " +
           std::to_string(vocab_.size()) + " characters of " + path_ + " (" + std::to_string(ids_.size(0)) +
           " characters)";
  }
  void check_model_axis(int64_t size) const override {
    if (heads_ % size != 0)
      bad_option("gpt's " + std::to_string(heads_) +
                 " attention heads do not split over a model axis of size " + std::to_string(size) +
                 ": choose --heads divisible by it");
  }
  std::string sample(torch::nn::Module& model, int64_t length) const override {
    torch::NoGradGuard no_grad;
    auto& gpt = static_cast<GptImpl&>(model);
    const bool sharded_logits = !gpt.head->parallel.gather_output;
    gpt.head->parallel.gather_output = true;  // sampling needs every character's logit
    auto gen = generator_for(seed_, -1);
    std::vector<int64_t> ids;
    for (unsigned char c : prompt_)
      ids.push_back(std::find(vocab_.begin(), vocab_.end(), c) - vocab_.begin());
    std::string text = prompt_;
    for (int64_t i = 0; i < length; ++i) {
      const int64_t first = std::max<int64_t>(0, static_cast<int64_t>(ids.size()) - context_);
      auto window = at::tensor(std::vector<int64_t>(ids.begin() + first, ids.end()), at::kLong).unsqueeze(0);
      auto logits = gpt.forward(window).select(1, -1).squeeze(0);
      auto next = at::multinomial(at::softmax(logits / 0.8, -1), 1, false, gen).item<int64_t>();
      ids.push_back(next);
      text += static_cast<char>(vocab_[next]);
    }
    gpt.head->parallel.gather_output = !sharded_logits;
    return text;
  }

 private:
  uint64_t seed_;
  int64_t context_, width_, layers_, heads_;
  bool loss_parallel_, sequence_parallel_;
  std::string path_, prompt_;
  std::vector<unsigned char> vocab_;
  at::Tensor ids_;
};

// ---------------------------------------------------------------- mlp

struct MlpImpl : torch::nn::Module {
  MlpImpl(int64_t in, int64_t hidden, int64_t out)
      : fc1(register_module("fc1", nn::Linear(in, hidden))),
        fc2(register_module("fc2", nn::Linear(hidden, out))) {}
  at::Tensor forward(const at::Tensor& x) { return fc2(at::relu(fc1(x))); }
  nn::Linear fc1, fc2;
};
TORCH_MODULE(Mlp);

class MlpWorkload : public Workload {
 public:
  static constexpr int64_t kIn = 32, kOut = 8;
  explicit MlpWorkload(const TrainOptions& o) : seed_(o.seed), width_(o.width ? o.width : 256) {
    at::manual_seed(seed_ + 1);
    teacher_ = Mlp(kIn, 64, kOut);  // the function to learn; never distributed
  }
  std::shared_ptr<torch::nn::Module> build() const override {
    at::manual_seed(seed_);
    return Mlp(kIn, width_, kOut).ptr();
  }
  std::vector<std::pair<std::string, std::vector<AxisSpec>>> default_layout() const override {
    return {{"fc1/kernel", {std::nullopt, "model"}}, {"fc2/kernel", {"model", std::nullopt}}};
  }
  Batch global_batch(int64_t step, int64_t batch_size) const override {
    torch::NoGradGuard no_grad;
    auto x = at::randn({batch_size, kIn}, generator_for(seed_, step));
    return {x, teacher_->forward(x)};
  }
  void after_distribute(torch::nn::Module& model) const override {
    auto& mlp = static_cast<MlpImpl&>(model);
    if (mlp.fc2->precision) mlp.fc2->precision->output_dtype = at::kFloat;  // the loss in fp32
  }
  at::Tensor loss(torch::nn::Module& model, const Batch& batch) const override {
    return at::mse_loss(static_cast<MlpImpl&>(model).forward(batch.inputs), batch.targets);
  }
  int64_t rows_per_sample() const override { return 1; }
  LayerInput layer_input(const std::string& layer, int64_t samples) const override {
    return {samples, 0, /*requires_grad=*/layer != "fc1"};  // fc1 takes the data
  }
  const char* unit() const override { return "samples"; }
  std::string describe() const override {
    return "mlp: " + std::to_string(kIn) + " -> " + std::to_string(width_) + " -> " + std::to_string(kOut) +
           " regression of a random teacher network";
  }

 private:
  uint64_t seed_;
  int64_t width_;
  mutable Mlp teacher_{nullptr};  // forward is not const in torch::nn
};

bool readable(const std::string& path) { return !path.empty() && access(path.c_str(), R_OK) == 0; }

}  // namespace

std::string default_corpus_path() {
  if (const char* env = std::getenv("KDIST_CORPUS"); env && *env) return env;
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    std::string dir(exe, static_cast<size_t>(n));
    dir = dir.substr(0, dir.rfind('/'));
    const std::string installed = dir + "/../share/kdist/corpus.txt";
    if (readable(installed)) return installed;
  }
  return KDIST_SOURCE_CORPUS;
}

std::unique_ptr<Workload> make_workload(const TrainOptions& options) {
  if (options.model == "gpt")
    return std::make_unique<GptWorkload>(options,
                                         options.data.empty() ? default_corpus_path() : options.data);
  if (options.model == "mlp") return std::make_unique<MlpWorkload>(options);
  bad_option("--model '" + options.model + "' is not one of gpt, mlp");
}

}  // namespace kdist::tools
