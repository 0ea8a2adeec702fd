#pragma once
// What an autograd function's backward needs of its forward beyond tensors (a group, a batch
// shard's state), kept in the context's saved_data as a capsule.
#include <torch/csrc/autograd/custom_function.h>

#include <utility>

namespace kdist::nn::detail {

template <typename T>
struct SavedValue : torch::CustomClassHolder {
  T value;
  explicit SavedValue(T v) : value(std::move(v)) {}
};

template <typename T>
void stash(torch::autograd::AutogradContext* ctx, const char* key, T value) {
  ctx->saved_data[key] = c10::IValue::make_capsule(c10::make_intrusive<SavedValue<T>>(std::move(value)));
}

template <typename T>
T& stashed(torch::autograd::AutogradContext* ctx, const char* key) {
  return static_cast<SavedValue<T>*>(ctx->saved_data[key].toCapsule().get())->value;
}

}  // namespace kdist::nn::detail
