// kdist::nn::set_mixed_precision: a mixed-precision policy on every kdist layer of a module.
#include <kdist/nn.h>

namespace kdist::nn {

void set_mixed_precision(torch::nn::Module& module, const MixedPrecision& policy) {
  for (const auto& m : module.modules()) {
    if (auto* linear = dynamic_cast<LinearImpl*>(m.get())) linear->precision = policy;
    if (auto* embedding = dynamic_cast<EmbeddingImpl*>(m.get())) embedding->precision = policy;
  }
}

}  // namespace kdist::nn
