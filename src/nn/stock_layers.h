#pragma once
// The stock LibTorch layers distribute_module swaps for kdist's: torch::nn::Linear and
// Embedding directly inside a torch::nn::Sequential outside any FullyShard unit (a unit gathers
// what it holds), and, where the batch statistics must be the global batch's, BatchNorm1d/2d/3d
// directly inside any Sequential. Only a Sequential calls its children through a list that can
// be changed; a stock layer held as a member is called by its owner's forward directly.
// The replacement holds the stock layer's own tensors (their identity, dtype, device and
// requires_grad), so optimizers and freezes made before keep working.
#include <kdist/nn.h>

#include <map>

namespace kdist::nn::detail {

// The FullyShard unit that gathers each module's parameters: every module inside a unit
// belongs to the innermost one.
using Units = std::map<const torch::nn::Module*, FullyShardImpl*>;
Units units_of(torch::nn::Module& root);

struct StockSwap {
  // A Linear or Embedding after which its Sequential holds no parameters: its output is the
  // Sequential's, whole in one process, so a column- or embedding-dim-parallel one gathers it.
  bool gathers_output = false;
};
using StockSwaps = std::map<const torch::nn::Module*, StockSwap>;
StockSwaps replaceable_stock_layers(torch::nn::Module& root, const Units& units, bool batch_norm);

// Swaps them; returns whether it swapped any.
bool replace_stock_layers(torch::nn::Module& root, bool batch_norm);

bool is_stock_batch_norm(const torch::nn::Module& module);

}  // namespace kdist::nn::detail
