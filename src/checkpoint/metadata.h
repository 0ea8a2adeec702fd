#pragma once
// metadata.json of a checkpoint: format version, every tensor's dtype, global shape and
// chunks, the optimizer's kind and step counts, and (version 2) the CRC-32 of all of that.
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace kdist::checkpoint {

constexpr int kFormatVersion = 2;  // 2 added the metadata's own checksum

struct Chunk {
  std::vector<int64_t> offsets, sizes;  // the block within the global tensor
  std::string file;                     // relative to the checkpoint directory
  int64_t byte_offset = 0, byte_length = 0;
  uint32_t crc32 = 0;
};

struct TensorRecord {
  std::string dtype;  // "float32", "int64", ...
  std::vector<int64_t> shape;
  std::vector<Chunk> chunks;
};

struct Metadata {
  int version = kFormatVersion;
  int processes = 1;
  std::map<std::string, TensorRecord> tensors;
  std::string optimizer_kind;  // empty: no optimizer state
  std::map<std::string, int64_t> steps;
};

std::string dtype_name(c10::ScalarType type);  // "float32", ...; throws for other dtypes
c10::ScalarType dtype_named(const std::string& name, const std::string& path);  // its inverse

std::string to_json(const Metadata& metadata);
// Reads and checks everything a load would otherwise trust: every value of its JSON type (integers
// as integers), known dtypes, shapes and chunk blocks inside their tensors, each chunk's
// byte_length its block's bytes, chunks disjoint and covering their tensor exactly, files named
// plainly inside the checkpoint directory, an optimizer kind kdist knows with step counts >= 0
// and state tensors shaped as their parameters. Throws std::invalid_argument naming `path` and
// the value, and std::runtime_error for a checksum mismatch (a byte changed since it was saved).
// Version 1 files, which have no checksum, are checked for the rest.
Metadata metadata_from_json(const std::string& text, const std::string& path);

// One process's chunks, exchanged as JSON text while saving.
std::string chunks_to_json(const std::map<std::string, std::vector<Chunk>>& chunks);
std::map<std::string, std::vector<Chunk>> chunks_from_json(const std::string& text);

}  // namespace kdist::checkpoint
