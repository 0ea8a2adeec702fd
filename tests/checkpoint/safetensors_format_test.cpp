// Unit tests of src/checkpoint/safetensors_format.cpp: headers are checked by the format's rules,
// as Python's reader checks them. Each refused file below was accepted before (a tensor reading
// another's bytes, a repeated name whose last entry won, truncated offsets, junk in the data, an
// unbounded header, a size that overflowed).
#include <gtest/gtest.h>

#include <string>

#include "../test_util.h"
#include "checkpoint/safetensors_format.h"

namespace kdist::checkpoint {
namespace {

// A file: the 8-byte length, `header` as written, then `data` zero bytes.
std::string file_of(const std::string& header, size_t data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((uint64_t(header.size()) >> (8 * i)) & 0xff);
  return out + header + std::string(data, '\0');
}

SafetensorsHeader decode(const std::string& file) {
  return decode_safetensors_header(file.data(), static_cast<int64_t>(file.size()), "w.safetensors");
}

const std::string kTwo =
    R"({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}, "b": {"dtype": "I64", "shape": [2], "data_offsets": [16, 32]}})";

void expect_refused(const std::string& file, const std::string& fragment) {
  EXPECT_THROW_WITH(decode(file), std::invalid_argument,
                    "[kdist.checkpoint] safetensors file 'w.safetensors'" + fragment);
}

TEST(SafetensorsFormat, WritesWhatItReads) {
  std::vector<SafetensorsEntry> entries{{"a", c10::kFloat, {2, 3}}, {"b", c10::kLong, {4}}};
  std::string header = encode_safetensors_header(entries);
  const auto read = decode(header + std::string(24 + 32, '\0'));
  ASSERT_EQ(read.entries.size(), 2u);
  EXPECT_EQ(read.entries[1].begin, 24);
  EXPECT_EQ(read.entries[1].end, 56);
  EXPECT_EQ(read.data_start, static_cast<int64_t>(header.size()));
  EXPECT_EQ(decode(file_of(kTwo, 32)).entries.size(), 2u);
}

TEST(SafetensorsFormat, RangesDoNotOverlap) {
  expect_refused(
      file_of(
          R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})",
          24),
      ": tensor 'b' has data_offsets [8, 24], but the end of tensor 'a' is at 16 (the two overlap)");
}

TEST(SafetensorsFormat, NamesAreUnique) {
  expect_refused(
      file_of(
          R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "a": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}})",
          32),
      " names tensor 'a' twice");
}

TEST(SafetensorsFormat, OffsetsAndShapesAreIntegers) {
  expect_refused(file_of(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16.0]}})", 16),
                 ": tensor 'a' has data_offsets [0,16.0], expected two integers >= 0");
  expect_refused(file_of(R"({"a": {"dtype": "F32", "shape": [4.5], "data_offsets": [0, 16]}})", 16),
                 ": tensor 'a' has shape [4.5], expected a list of integers >= 0");
  expect_refused(file_of(R"({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}})", 16),
                 ": tensor 'a' has shape [-4]");
}

TEST(SafetensorsFormat, NothingBetweenHeaderAndDataOrAfterIt) {
  expect_refused(file_of(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})", 24),
                 ": tensor 'a' has data_offsets [8, 24], but the data's start is at 0 (bytes between them "
                 "belong to no tensor)");
  expect_refused(file_of(kTwo, 40),
                 ": its tensors' data ends at byte 32 after the header, but 40 bytes follow the header (junk "
                 "after the data)");
  expect_refused(
      file_of(kTwo, 20),
      ": its tensors' data ends at byte 32 after the header, but 20 bytes follow the header (truncated?)");
}

TEST(SafetensorsFormat, TheHeaderIsBounded) {
  std::string huge(8, '\0');
  const uint64_t length = 200000000;
  for (int i = 0; i < 8; ++i) huge[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  expect_refused(huge + "{}",
                 " declares a header of 200000000 bytes; safetensors readers refuse more than 100000000");
  expect_refused(file_of(" {}", 0), " has a header that does not start with '{'");
}

TEST(SafetensorsFormat, SizesDoNotOverflow) {
  expect_refused(
      file_of(R"({"a": {"dtype": "F64", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})", 0),
      ": tensor 'a' has shape [4294967296,4294967296], too large for any file");
}

}  // namespace
}  // namespace kdist::checkpoint
