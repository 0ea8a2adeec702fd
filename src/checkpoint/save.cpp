// kdist::save: each process writes its own blocks; process 0 writes the metadata and
// publishes the directory with one atomic rename.
#include <kdist/checkpoint.h>
#include <kdist/runtime.h>

#include <cstdlib>
#include <filesystem>

#include "base/errors.h"
#include "checkpoint/agreement.h"
#include "checkpoint/files.h"
#include "checkpoint/save_stages.h"

namespace kdist {
namespace checkpoint {
namespace {

// KDIST_CHECKPOINT_FAULT="<rank>:<stage>" kills that rank at that stage of a save ("writing":
// after its first chunk; "publishing": process 0 just before the rename), as a crash would.
// The fault tests use it.
void fault_point(const char* stage) {
  const char* fault = std::getenv("KDIST_CHECKPOINT_FAULT");
  if (fault && std::string(fault) == std::to_string(process_id()) + ":" + stage) std::_Exit(9);
}

std::string shard_file(int rank) { return "shard-" + std::to_string(rank) + ".bin"; }

}  // namespace

StagedSave stage_save(const std::string& path, torch::nn::Module& module,
                      torch::optim::Optimizer* optimizer) {
  namespace fs = std::filesystem;
  if (path.empty()) detail::invalid("checkpoint", "save needs a path");
  StagedSave save{path, path + ".partial", {}, {}};
  save.metadata.processes = num_processes();
  run_agreed("save", [&] {
    save.items = module_items(module);
    if (optimizer) {
      auto state = optimizer_state(*optimizer, module);
      save.metadata.optimizer_kind = state.kind;
      save.metadata.steps = state.steps;
      save.items.insert(save.items.end(), state.tensors.begin(), state.tensors.end());
    }
    for (const auto& item : save.items)
      save.metadata.tensors[item.name] =
          TensorRecord{dtype_name(item.local.scalar_type()), item.global_shape, {}};
    if (process_id() == 0) {  // a crashed save's leftovers are never published: start afresh
      fs::remove_all(save.staged);
      fs::create_directories(save.staged);
    }
  });
  return save;
}

ChunkLists write_blocks(const std::vector<Item>& items, const std::string& staged) {
  ChunkLists chunks;
  const std::string file = shard_file(process_id());
  FileWriter out(staged + "/" + file);
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

void publish_save(StagedSave& save, const ChunkLists& mine) {
  const auto all = all_gather_text(chunks_to_json(mine));
  run_agreed("save", [&] {
    if (process_id() != 0) return;
    for (const auto& text : all)
      for (auto& [name, chunks] : chunks_from_json(text))
        for (auto& chunk : chunks) save.metadata.tensors[name].chunks.push_back(chunk);
    write_text_file_synced(save.staged + "/metadata.json", to_json(save.metadata));
    sync_directory(save.staged);
    fault_point("publishing");
    publish_directory(save.staged, save.path);
  });
}

}  // namespace checkpoint

void save(const std::string& path, torch::nn::Module& module, torch::optim::Optimizer* optimizer) {
  auto staged = checkpoint::stage_save(path, module, optimizer);
  checkpoint::ChunkLists mine;
  checkpoint::run_agreed("save", [&] { mine = checkpoint::write_blocks(staged.items, staged.staged); });
  checkpoint::publish_save(staged, mine);
}

}  // namespace kdist
