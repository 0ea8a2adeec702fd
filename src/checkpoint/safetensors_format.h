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
// Parses and checks the header of a file of `file_size` bytes starting at `file`: its length
// fits, the JSON is an object of well-formed entries of known dtypes, each entry's byte range
// holds exactly its shape's elements and lies within the file. Throws std::invalid_argument
// naming `path` and the tensor.
SafetensorsHeader decode_safetensors_header(const char* file, int64_t file_size, const std::string& path);

}  // namespace kdist::checkpoint
