// kdist::load: each process reads the saved chunks that overlap its own block of every tensor
// and copies the overlap (the resharding rule), after checking the checkpoint matches.
#include <ATen/ATen.h>
#include <kdist/checkpoint.h>
#include <kdist/runtime.h>

#include <set>

#include "base/errors.h"
#include "base/text.h"
#include "checkpoint/agreement.h"
#include "checkpoint/files.h"
#include "checkpoint/metadata.h"
#include "checkpoint/read.h"
#include "checkpoint/state.h"

namespace kdist {
namespace checkpoint {
namespace {
std::string shape_text(const std::vector<int64_t>& shape) { return detail::tuple_string(shape); }

// The first few names, and how many more: a file of another model differs in every tensor.
std::string abridged(const std::vector<std::string>& names, size_t shown = 32) {
  if (names.size() <= shown) return detail::quoted_list(names);
  std::string text = detail::quoted_list({names.begin(), names.begin() + shown});
  return text.substr(0, text.size() - 1) + ", ... and " + std::to_string(names.size() - shown) + " more]";
}
}  // namespace

void check_match(const std::string& source, const std::string& noun, const Metadata& saved,
                 const std::vector<Item>& items, bool with_optimizer, const LoadOptions& options) {
  std::vector<std::string> missing, unexpected, different;
  std::set<std::string> wanted;
  for (const auto& item : items) {
    wanted.insert(item.name);
    auto it = saved.tensors.find(item.name);
    if (it == saved.tensors.end()) {
      if (!options.allow_missing) missing.push_back(item.name);
      continue;
    }
    const std::string dtype = dtype_name(item.local.scalar_type());
    if (it->second.shape != item.global_shape || it->second.dtype != dtype)
      different.push_back(item.name + " " + shape_text(it->second.shape) + " " + it->second.dtype + " in " +
                          noun + ", " + shape_text(item.global_shape) + " " + dtype + " here");
  }
  if (!options.allow_unexpected)
    for (const auto& [name, record] : saved.tensors) {
      if (auto optimizer_tensor = split_optimizer_tensor_name(name)) {  // follows its parameter
        if (with_optimizer && !wanted.count(optimizer_tensor->first)) unexpected.push_back(name);
      } else if (!wanted.count(name)) {
        unexpected.push_back(name);
      }
    }
  if (missing.empty() && unexpected.empty() && different.empty()) return;
  std::string message = source + " does not match the module";
  if (!missing.empty()) message += "; missing from " + noun + ": " + abridged(missing);
  if (!unexpected.empty()) message += "; not in the module: " + abridged(unexpected);
  if (!different.empty()) message += "; different shape or dtype: " + abridged(different);
  if (!missing.empty() || !unexpected.empty())
    message += " (LoadOptions allow_missing / allow_unexpected accept those)";
  detail::invalid("checkpoint", message);
}

void read_block(const std::string& directory, const Item& item, const TensorRecord& record) {
  at::NoGradGuard no_grad;
  const auto local_sizes = item.local.sizes().vec();
  int64_t covered = 0;
  for (const auto& chunk : record.chunks) {
    std::vector<int64_t> low(local_sizes.size()), high(local_sizes.size());
    bool overlaps = true;
    for (size_t d = 0; d < local_sizes.size(); ++d) {
      low[d] = std::max(item.offset[d], chunk.offsets[d]);
      high[d] = std::min(item.offset[d] + local_sizes[d], chunk.offsets[d] + chunk.sizes[d]);
      overlaps = overlaps && low[d] < high[d];
    }
    if (!overlaps) continue;
    const std::string what = "tensor '" + item.name + "'";
    auto bytes = read_range(directory + "/" + chunk.file, chunk.byte_offset, chunk.byte_length, what);
    if (crc32(bytes.data(), bytes.size()) != chunk.crc32)
      detail::failure("checkpoint", "checksum mismatch in ", what, " (block at ", shape_text(chunk.offsets),
                      ") in file '", directory, "/", chunk.file, "' bytes [", chunk.byte_offset, ", ",
                      chunk.byte_offset + chunk.byte_length, "): the file was altered or damaged");
    at::Tensor saved = at::from_blob(bytes.data(), chunk.sizes, item.local.options().requires_grad(false));
    at::Tensor source = saved, target = item.local;
    int64_t volume = 1;
    for (size_t d = 0; d < local_sizes.size(); ++d) {
      source = source.narrow(d, low[d] - chunk.offsets[d], high[d] - low[d]);
      target = target.narrow(d, low[d] - item.offset[d], high[d] - low[d]);
      volume *= high[d] - low[d];
    }
    target.copy_(source);
    covered += volume;
  }
  if (covered != item.local.numel())
    detail::failure("checkpoint", "the chunks of tensor '", item.name, "' cover ", covered, " of the ",
                    item.local.numel(), " elements of this rank's block: the metadata is inconsistent");
}

}  // namespace checkpoint

using namespace checkpoint;

void load(const std::string& path, torch::nn::Module& module, torch::optim::Optimizer* optimizer,
          LoadOptions options) {
  run_agreed("load", [&] {
    const std::string metadata_path = path + "/metadata.json";
    const Metadata saved = metadata_from_json(read_text_file(metadata_path), metadata_path);
    std::vector<Item> items = module_items(module);
    if (optimizer) {
      const std::string kind = optimizer_kind(*optimizer);
      if (saved.optimizer_kind.empty() && !options.allow_missing)
        detail::invalid("checkpoint", "checkpoint '", path,
                        "' holds no optimizer state (saved without an "
                        "optimizer); load without one or set LoadOptions allow_missing");
      if (!saved.optimizer_kind.empty() && saved.optimizer_kind != kind)
        detail::invalid("checkpoint", "checkpoint '", path, "' holds ", saved.optimizer_kind,
                        " state, the optimizer is ", kind);
    }
    // Check the module before touching the optimizer's state.
    check_match("checkpoint '" + path + "'", "the checkpoint", saved, items, optimizer != nullptr, options);
    if (optimizer && !saved.optimizer_kind.empty()) {
      std::map<std::string, std::set<std::string>> fields;
      for (const auto& [name, record] : saved.tensors)
        if (auto optimizer_tensor = split_optimizer_tensor_name(name))
          fields[optimizer_tensor->first].insert(optimizer_tensor->second);
      auto state = fresh_optimizer_state(*optimizer, module, fields, saved.steps);
      items.insert(items.end(), state.begin(), state.end());
    }
    for (const auto& item : items) {
      auto it = saved.tensors.find(item.name);
      if (it != saved.tensors.end() && item.local.numel() > 0) read_block(path, item, it->second);
    }
  });
}

}  // namespace kdist
