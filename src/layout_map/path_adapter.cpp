#include <kdist/path_adapter.h>

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <algorithm>

#include "base/errors.h"
#include "base/text.h"

namespace kdist {
using detail::invalid;

namespace {

// How Keras names the parameters of a module kind. One row per kind; a kind kdist adds
// (its own tensor-parallel layers) is one more row.
struct KerasNaming {
  const char* owner_type;
  bool (*is_kind)(const torch::nn::Module&);
  const char* torch_leaf;
  const char* keras_leaf;
  bool transposed;  // the Keras variable is the transpose of the torch tensor
};

template <typename Impl>
bool is_a(const torch::nn::Module& m) {
  return dynamic_cast<const Impl*>(&m) != nullptr;
}

bool is_batch_norm(const torch::nn::Module& m) {
  return is_a<torch::nn::BatchNorm1dImpl>(m) || is_a<torch::nn::BatchNorm2dImpl>(m) ||
         is_a<torch::nn::BatchNorm3dImpl>(m);
}

const KerasNaming kKerasNamings[] = {
    {"Linear", is_a<torch::nn::LinearImpl>, "weight", "kernel", true},
    {"Embedding", is_a<torch::nn::EmbeddingImpl>, "weight", "embeddings", false},
    {"LayerNorm", is_a<torch::nn::LayerNormImpl>, "weight", "gamma", false},
    {"LayerNorm", is_a<torch::nn::LayerNormImpl>, "bias", "beta", false},
    {"BatchNorm", is_batch_norm, "weight", "gamma", false},
    {"BatchNorm", is_batch_norm, "bias", "beta", false},
};

std::string replace_dots(std::string name) {
  std::replace(name.begin(), name.end(), '.', '/');
  return name;
}

}  // namespace

std::string keras_owner_type(const torch::nn::Module& module) {
  if (auto* named = dynamic_cast<const KerasNamed*>(&module)) return named->keras_kind();
  for (const auto& row : kKerasNamings)
    if (row.is_kind(module)) return row.owner_type;
  return module.name();
}

ParameterPath make_parameter_path(const std::string& torch_name, const std::string& owner_type) {
  auto dot = torch_name.rfind('.');
  std::string prefix = dot == std::string::npos ? "" : torch_name.substr(0, dot + 1);
  std::string leaf = dot == std::string::npos ? torch_name : torch_name.substr(dot + 1);
  ParameterPath path{torch_name, replace_dots(torch_name), owner_type, false};
  for (const auto& row : kKerasNamings) {
    if (owner_type == row.owner_type && leaf == row.torch_leaf) {
      path.keras_name = replace_dots(prefix) + row.keras_leaf;
      path.keras_transposed = row.transposed;
    }
  }
  return path;
}

std::vector<ParameterPath> parameter_paths(const torch::nn::Module& module) {
  std::vector<ParameterPath> paths;
  // named_modules() lists the root as "" and children as "a.b"; a parameter's owner is the
  // module whose prefix it extends by one leaf.
  for (const auto& item : module.named_modules("", /*include_self=*/true)) {
    const auto& prefix = item.key();
    std::string owner = keras_owner_type(*item.value());
    for (const auto& param : item.value()->named_parameters(/*recurse=*/false)) {
      std::string name = prefix.empty() ? param.key() : prefix + "." + param.key();
      paths.push_back(make_parameter_path(name, owner));
    }
  }
  return paths;
}

std::optional<ParameterMatch> match_parameter(const LayoutMap& map, const ParameterPath& path) {
  // Exact keys win, as in LayoutMap::get; the two names may each have one.
  std::vector<std::string> keys;
  for (const auto& name : {path.torch_name, path.keras_name})
    if (map.contains(name) && std::find(keys.begin(), keys.end(), name) == keys.end()) keys.push_back(name);
  if (keys.empty()) keys = map.keys_matching_any({path.torch_name, path.keras_name});
  if (keys.empty()) return std::nullopt;
  if (keys.size() > 1)
    invalid("layout_map", "Path '", path.torch_name, "' (Keras name '", path.keras_name,
            "') matches multiple layout specification keys: ", detail::quoted_list(keys),
            ". Please make sure each tensor/variable path only matches at most one layout "
            "specification key in the LayoutMap.");
  const std::string& key = keys.front();
  auto matches = [&](const std::string& name) {
    auto hits = map.keys_matching_any({name});
    return std::find(hits.begin(), hits.end(), key) != hits.end();
  };
  bool via_torch = matches(path.torch_name);
  bool via_keras = matches(path.keras_name);
  TensorLayout layout = map.at(key);
  if (path.keras_transposed && via_keras) {
    TensorLayout flipped = layout.transposed();
    if (via_torch && flipped != layout)
      invalid("layout_map", "key '", key, "' matches both the torch name '", path.torch_name,
              "' and the Keras name '", path.keras_name, "' of a ", path.owner_type,
              " weight, and its layout ", layout.to_string(),
              " means different shardings in the two orientations; write a key that matches "
              "only one of the names");
    if (!via_torch) layout = flipped;
  }
  return ParameterMatch{key, layout, via_keras && !via_torch};
}

}  // namespace kdist
