#pragma once
// Small models of the tensor-parallel tests, written with kdist::nn layers (which behave as
// torch::nn's until distribute_module makes them parallel).
#include <ATen/ATen.h>
#include <kdist/layout_map.h>
#include <kdist/nn.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/normalization.h>

#include <functional>
#include <string>

namespace kdist::testing {

struct MlpImpl : torch::nn::Module {
  MlpImpl(int64_t in, int64_t hidden, int64_t out)
      : fc1(register_module("fc1", nn::Linear(in, hidden))),
        fc2(register_module("fc2", nn::Linear(hidden, out))) {}
  at::Tensor forward(const at::Tensor& x) { return fc2(at::relu(fc1(x))); }
  nn::Linear fc1, fc2;
};
TORCH_MODULE(Mlp);

// Mlp's tensor-parallel plan in Keras names: fc1 column parallel, fc2 row parallel over "model".
inline LayoutMap keras_mlp_plan(DeviceMeshPtr mesh) {
  LayoutMap map(std::move(mesh));
  map.set("fc1/kernel", {std::nullopt, "model"});  // Keras (in, out): column parallel
  map.set("fc2/kernel", {"model", std::nullopt});  // row parallel
  return map;
}

// A decoder block with its embeddings and LM head: heads split over the model axis by the
// column-parallel q/k/v (the local head count comes from the local width), the output
// projection and MLP down projection row parallel, LayerNorms replicated.
// With norms_in_units each LayerNorm sits in a kdist::nn::FullyShard unit (same parameter
// names), so a layout may shard it over the batch axis. Distributed with sequence
// parallelism (its head's parallel.sequence set), the residual stream runs on pieces of the
// sequence from the embeddings on.
struct TinyGptImpl : torch::nn::Module {
  TinyGptImpl(int64_t vocab, int64_t context, int64_t width, int64_t heads, bool norms_in_units = false)
      : head_dim(width / heads),
        tok(register_module("tok", nn::Embedding(vocab, width))),
        pos(register_module("pos", nn::Embedding(context, width))),
        ln1(norm("ln1", width, norms_in_units)),
        q(register_module("q", nn::Linear(width, width))),
        k(register_module("k", nn::Linear(width, width))),
        v(register_module("v", nn::Linear(width, width))),
        o(register_module("o", nn::Linear(width, width))),
        ln2(norm("ln2", width, norms_in_units)),
        up(register_module("up", nn::Linear(width, 4 * width))),
        down(register_module("down", nn::Linear(4 * width, width))),
        ln_f(norm("ln_f", width, norms_in_units)),
        head(register_module("head", nn::Linear(torch::nn::LinearOptions(width, vocab).bias(false)))) {
    head->parallel.gather_output = true;  // logits whole for the loss
  }

  // A LayerNorm registered as `name`, alone or in a unit; returns its forward.
  std::function<at::Tensor(const at::Tensor&)> norm(const std::string& name, int64_t width, bool in_unit) {
    torch::nn::LayerNorm layer(torch::nn::LayerNormOptions({width}));
    if (!in_unit) return [m = register_module(name, layer)](const at::Tensor& x) { return m->forward(x); };
    return [m = register_module(name, nn::FullyShard(layer))](const at::Tensor& x) { return m->forward(x); };
  }

  at::Tensor forward(const at::Tensor& ids) {
    const int64_t batch = ids.size(0), time = ids.size(1);
    auto x = tok(ids) + pos(at::arange(time, at::kLong));
    if (head->parallel.sequence) x = nn::scatter_sequence(x, *head->parallel.sequence);
    auto h = ln1(x);
    auto split = [&](const at::Tensor& t) {  // (B, T, local width) -> (B, local heads, T, hd)
      return t.view({batch, time, -1, head_dim}).transpose(1, 2);
    };
    auto qh = split(q(h)), kh = split(k(h)), vh = split(v(h));
    auto scores = at::matmul(qh, kh.transpose(-2, -1)) / std::sqrt(static_cast<double>(head_dim));
    auto causal = at::ones({time, time}, at::kBool).triu(1);
    auto attended = at::matmul(at::softmax(scores.masked_fill(causal, -1e9), -1), vh);
    x = x + o(attended.transpose(1, 2).reshape({batch, time, -1}));
    x = x + down(at::gelu(up(ln2(x))));
    return head(ln_f(x));
  }

  int64_t head_dim;
  nn::Embedding tok, pos;
  std::function<at::Tensor(const at::Tensor&)> ln1;
  nn::Linear q, k, v, o;
  std::function<at::Tensor(const at::Tensor&)> ln2;
  nn::Linear up, down;
  std::function<at::Tensor(const at::Tensor&)> ln_f;
  nn::Linear head;
};
TORCH_MODULE(TinyGpt);

// TinyGpt's tensor-parallel plan in Keras names over "model": vocab-parallel embeddings,
// heads split by column-parallel q/k/v, row-parallel o and down, a column-parallel head.
inline LayoutMap gpt_tensor_parallel_map(DeviceMeshPtr mesh) {
  LayoutMap map(std::move(mesh));
  map.set("tok/embeddings", {"model", std::nullopt});
  map.set("(q|k|v|up)/kernel", {std::nullopt, "model"});
  map.set("(o|down)/kernel", {"model", std::nullopt});
  map.set("head/kernel", {std::nullopt, "model"});
  return map;
}

// keras-hub's 2-D pattern on TinyGpt over (batch, model): each tensor-parallel weight also
// FSDP over "batch" on its other dimension, embeddings (model, batch), the head FSDP alone.
inline LayoutMap gpt_gemma_map(DeviceMeshPtr mesh) {
  LayoutMap map(std::move(mesh));
  map.set("tok/embeddings", {"model", "batch"});
  map.set("(q|k|v|up)/kernel", {"batch", "model"});
  map.set("(o|down)/kernel", {"model", "batch"});
  map.set("head/kernel", {"batch", std::nullopt});
  return map;
}

}  // namespace kdist::testing
