#pragma once
// What load and load_safetensors share: checking that saved tensors match the module, and
// reading this process's block of a saved tensor.
#include <kdist/checkpoint.h>

#include <string>
#include <vector>

#include "checkpoint/metadata.h"
#include "checkpoint/state.h"

namespace kdist::checkpoint {

// Names, shapes and dtypes of `saved` against the items to load into; throws
// std::invalid_argument("<source> does not match the module; missing from <noun>: ...")
// listing every difference.
void check_match(const std::string& source, const std::string& noun, const Metadata& saved,
                 const std::vector<Item>& items, bool with_optimizer, const LoadOptions& options);

// Copies, from every chunk of `record` (files under `directory`) overlapping the item's
// block, the overlap into the block, checking each chunk's CRC-32.
void read_block(const std::string& directory, const Item& item, const TensorRecord& record);

}  // namespace kdist::checkpoint
