#pragma once
// The safetensors file format (Hugging Face): an 8-byte little-endian header length N, N
// bytes of JSON {name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]},
// "__metadata__": {...}}, then the tensors' bytes, row-major, little-endian, offsets relative
// to the end of the header.
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string>
#include <vector>

namespace kdist::checkpoint {

struct SafetensorsEntry {
  std::string name;
  c10::ScalarType dtype = c10::kFloat;
  std::vector<int64_t> shape;
  int64_t begin = 0, end = 0;  // byte range within the data
};

// The header bytes (length prefix included, JSON padded with spaces to a multiple of 8) for
// `entries` laid out back to back in their order; fills their begin and end. Metadata
// {"format": "pt"}, which transformers expects of PyTorch weights.
std::string encode_safetensors_header(std::vector<SafetensorsEntry>& entries);

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;
  int64_t data_start = 0;  // the data's first byte in the file
};
// The largest header a safetensors reader accepts (the reference reader's limit).
constexpr uint64_t kMaxSafetensorsHeader = 100000000;

// Parses and checks the header of a file of `file_size` bytes starting at `file` by the format's
// rules, as Python's reader does: a header length within the file and kMaxSafetensorsHeader, a
// JSON object starting with '{' that names each tensor once, entries of known dtypes with
// integer shapes and data_offsets, each range holding exactly its shape's bytes (sizes computed
// without overflow), and the ranges back to back from the first data byte to the file's end (no
// overlap, no gap, nothing after). Throws std::invalid_argument naming `path` and the tensor.
SafetensorsHeader decode_safetensors_header(const char* file, int64_t file_size, const std::string& path);

}  // namespace kdist::checkpoint
