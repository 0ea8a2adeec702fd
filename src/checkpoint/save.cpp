// kdist::save: each process writes its own blocks; process 0 writes the metadata and
// publishes the directory with one atomic rename.
#include <kdist/checkpoint.h>
#include <kdist/runtime.h>

#include <cstdlib>
#include <filesystem>

#include "base/errors.h"
#include "checkpoint/agreement.h"
#include "checkpoint/files.h"
#include "checkpoint/metadata.h"
#include "checkpoint/state.h"

namespace kdist {
namespace {
using namespace checkpoint;

// KDIST_CHECKPOINT_FAULT="<rank>:<stage>" kills that rank at that stage of a save ("writing":
// after its first chunk; "publishing": process 0 just before the rename), as a crash would.
// The fault tests use it.
void fault_point(const char* stage) {
  const char* fault = std::getenv("KDIST_CHECKPOINT_FAULT");
  if (fault && std::string(fault) == std::to_string(process_id()) + ":" + stage) std::_Exit(9);
}

std::string shard_file(int rank) { return "shard-" + std::to_string(rank) + ".bin"; }

// Writes this process's blocks; returns their chunk records.
std::map<std::string, std::vector<Chunk>> write_blocks(const std::vector<Item>& items,
                                                       const std::string& directory) {
  std::map<std::string, std::vector<Chunk>> chunks;
  const std::string file = shard_file(process_id());
  FileWriter out(directory + "/" + file);
  for (const auto& item : items) {
    if (!item.writer || item.local.numel() == 0) continue;
    at::Tensor bytes = item.local.detach().contiguous();
    const size_t length = bytes.numel() * bytes.element_size();
    Chunk chunk{item.offset, item.local.sizes().vec(),     file,
                0,           static_cast<int64_t>(length), crc32(bytes.data_ptr(), length)};
    chunk.byte_offset = out.append(bytes.data_ptr(), length);
    chunks[item.name].push_back(chunk);
    fault_point("writing");
  }
  out.sync_and_close();
  return chunks;
}

}  // namespace

void save(const std::string& path, torch::nn::Module& module, torch::optim::Optimizer* optimizer) {
  namespace fs = std::filesystem;
  if (path.empty()) detail::invalid("checkpoint", "save needs a path");
  const std::string staged = path + ".partial";
  std::vector<Item> items;
  Metadata metadata;
  metadata.processes = num_processes();
  run_agreed("save", [&] {
    items = module_items(module);
    if (optimizer) {
      auto state = optimizer_state(*optimizer, module);
      metadata.optimizer_kind = state.kind;
      metadata.steps = state.steps;
      items.insert(items.end(), state.tensors.begin(), state.tensors.end());
    }
    for (const auto& item : items)
      metadata.tensors[item.name] = TensorRecord{dtype_name(item.local.scalar_type()), item.global_shape, {}};
    if (process_id() == 0) {  // a crashed save's leftovers are never published: start afresh
      fs::remove_all(staged);
      fs::create_directories(staged);
    }
  });
  std::map<std::string, std::vector<Chunk>> mine;
  run_agreed("save", [&] { mine = write_blocks(items, staged); });
  const auto all = all_gather_text(chunks_to_json(mine));
  run_agreed("save", [&] {
    if (process_id() != 0) return;
    for (const auto& text : all)
      for (auto& [name, chunks] : chunks_from_json(text))
        for (auto& chunk : chunks) metadata.tensors[name].chunks.push_back(chunk);
    write_text_file_synced(staged + "/metadata.json", to_json(metadata));
    sync_directory(staged);
    fault_point("publishing");
    publish_directory(staged, path);
  });
}

}  // namespace kdist
