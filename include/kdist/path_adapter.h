#pragma once
// The path adapter: lets Keras-style LayoutMap keys address LibTorch parameters.
//
// LibTorch names parameters "fc1.weight", "blocks.0.attn.qkv.bias"; Keras names them
// "fc1/kernel". Each parameter gets both names: '.' -> '/', and per owner module type
// Linear weight -> kernel, Embedding weight -> embeddings, LayerNorm and BatchNorm weight/bias ->
// gamma/beta. A LayoutMap key matches a parameter if it matches either name.
//
// Keras kernels are (in, out), torch Linear weights (out, in): a layout that matched
// through the Keras name of a Linear weight is transposed, so (None, "model") on
// "fc1/kernel" shards the output features (column parallel) as in Keras on JAX.
//
//   torch::nn::Sequential model(...);
//   for (const auto& p : kdist::parameter_paths(*model)) {
//     auto m = kdist::match_parameter(layout_map, p);   // layout in torch orientation
//   }
//
// Throws std::invalid_argument when a parameter matches several keys, or when one key
// matches a Linear weight through both names with a layout whose transpose differs
// (the orientation would be a guess).
#include <kdist/layout_map.h>

#include <optional>
#include <string>
#include <vector>

namespace torch::nn {
class Module;
}

namespace kdist {

// A module type that names its parameters the way a Keras layer does ("Linear": weight ->
// kernel, transposed; "Embedding": weight -> embeddings). kdist's own layers implement it,
// so the adapter needs no knowledge of them.
class KerasNamed {
 public:
  virtual ~KerasNamed() = default;
  virtual const char* keras_kind() const = 0;
};

struct ParameterPath {
  std::string torch_name;         // "blocks.0.fc1.weight"
  std::string keras_name;         // "blocks/0/fc1/kernel"
  std::string owner_type;         // "Linear", "Embedding", "LayerNorm" or the module's own name()
  bool keras_transposed = false;  // the Keras variable is the transpose of the torch tensor
};

// The Keras name of one parameter, given the kind of module that owns it
// ("Linear", "Embedding", "LayerNorm"; anything else keeps the torch leaf name).
ParameterPath make_parameter_path(const std::string& torch_name, const std::string& owner_type);

// The kind of module that owns parameters, for their Keras names: "Linear", "Embedding",
// "LayerNorm" (torch's or a KerasNamed layer's), else the module's own name().
std::string keras_owner_type(const torch::nn::Module& module);

// Every parameter of `module` (recursively, in named_parameters() order) with its names.
std::vector<ParameterPath> parameter_paths(const torch::nn::Module& module);

struct ParameterMatch {
  std::string key;      // the LayoutMap key that matched
  TensorLayout layout;  // in torch orientation
  bool via_keras_name;  // matched the Keras name only (and was transposed if a kernel)
};

// The layout a LayoutMap gives a parameter, in torch orientation; std::nullopt if no key matches.
std::optional<ParameterMatch> match_parameter(const LayoutMap& map, const ParameterPath& path);

}  // namespace kdist
