#pragma once
// kdist::save in its three stages, so that AsyncSaver can run the middle one in a thread:
//   stage_save      collective: lists the tensors, process 0 makes "<path>.partial" afresh
//   write_blocks    this process alone, no communication: writes and syncs its shard file
//   publish_save    collective: gathers the chunk lists, process 0 writes the metadata and
//                   publishes the directory with one atomic rename
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <map>
#include <string>
#include <vector>

#include "checkpoint/metadata.h"
#include "checkpoint/state.h"

namespace kdist::checkpoint {

struct StagedSave {
  std::string path;    // where it is published
  std::string staged;  // "<path>.partial", where it is written
  std::vector<Item> items;
  Metadata metadata;
};

using ChunkLists = std::map<std::string, std::vector<Chunk>>;

StagedSave stage_save(const std::string& path, torch::nn::Module& module, torch::optim::Optimizer* optimizer);

// Writes this process's blocks of `items` into `staged`; returns their chunk records.
ChunkLists write_blocks(const std::vector<Item>& items, const std::string& staged);

void publish_save(StagedSave& save, const ChunkLists& mine);

}  // namespace kdist::checkpoint
