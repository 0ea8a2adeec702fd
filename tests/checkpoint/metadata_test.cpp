// Unit tests of src/checkpoint/metadata.cpp: a checkpoint's metadata.json is read strictly. Each
// tampered file below was accepted before (resumed with wrong values, read out of bounds, or
// named a file outside the checkpoint); each is now refused, naming the value.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "../test_util.h"
#include "checkpoint/files.h"
#include "checkpoint/metadata.h"

namespace kdist::checkpoint {
namespace {

using nlohmann::json;

// "w" (64, 128) in two chunks, Adam's exp_avg of it in one, at step 3.
Metadata sample() {
  Metadata m;
  m.processes = 2;
  const int64_t half = 32 * 128 * 4;
  m.tensors["w"] = {
      "float32",
      {64, 128},
      {{{0, 0}, {32, 128}, "shard-0.bin", 0, half, 1}, {{32, 0}, {32, 128}, "shard-1.bin", 0, half, 2}}};
  m.tensors["optimizer/w/exp_avg"] = {
      "float32", {64, 128}, {{{0, 0}, {64, 128}, "shard-0.bin", half, 2 * half, 3}}};
  m.optimizer_kind = "adam";
  m.steps["w"] = 3;
  return m;
}

// The JSON a writer with a consistent checksum would produce: what a crafted file looks like.
std::string sealed(json j) {
  j.erase("checksum");
  const std::string text = j.dump(1);
  j["checksum"] = crc32(text.data(), text.size());
  return j.dump(1);
}

json sample_json() { return json::parse(to_json(sample())); }

void expect_refused(const json& j, const std::string& fragment) {
  EXPECT_THROW_WITH(metadata_from_json(sealed(j), "ck/metadata.json"), std::invalid_argument,
                    "[kdist.checkpoint] metadata 'ck/metadata.json' is damaged: " + fragment);
}

TEST(CheckpointMetadata, RoundTrips) {
  const Metadata m = metadata_from_json(to_json(sample()), "ck/metadata.json");
  EXPECT_EQ(m.version, kFormatVersion);
  EXPECT_EQ(m.processes, 2);
  ASSERT_EQ(m.tensors.at("w").chunks.size(), 2u);
  EXPECT_EQ(m.tensors.at("w").chunks[1].offsets, (std::vector<int64_t>{32, 0}));
  EXPECT_EQ(m.tensors.at("w").chunks[1].crc32, 2u);
  EXPECT_EQ(m.steps.at("w"), 3);
}

TEST(CheckpointMetadata, AFlippedByteIsAChecksumMismatch) {
  std::string text = to_json(sample());
  const auto at = text.find("\"processes\": 2");
  ASSERT_NE(at, std::string::npos);
  text[at + 13] = '3';
  EXPECT_THROW_WITH(
      metadata_from_json(text, "ck/metadata.json"), std::runtime_error,
      "[kdist.checkpoint] checksum mismatch in metadata 'ck/metadata.json': the file was altered or damaged");
}

TEST(CheckpointMetadata, ChunksLieInsideTheirTensor) {
  auto j = sample_json();
  j["tensors"]["w"]["chunks"][0]["sizes"] = {64, 188};
  expect_refused(j, "tensor 'w' chunk 0 spans [0, 188) of dimension 1, whose size is 128");
  j = sample_json();
  j["tensors"]["w"]["chunks"][1]["sizes"] = {32, 128, 1};
  expect_refused(j, "tensor 'w' chunk 1 has 2 offsets and 3 sizes for a tensor of 2 dimensions");
}

TEST(CheckpointMetadata, NumbersAreIntegers) {
  auto j = sample_json();
  j["tensors"]["w"]["chunks"][0]["sizes"] = {64, 1e8};
  expect_refused(j, "tensor 'w'.chunks[0].sizes[1] is 100000000.0, expected an integer");
  j = sample_json();
  j["tensors"]["w"]["chunks"][0]["byte_length"] = -4;
  expect_refused(j, "tensor 'w'.chunks[0].byte_length is -4, expected at least 0");
  j = sample_json();
  j["tensors"]["w"]["shape"] = {64, "128"};
  expect_refused(j, "tensor 'w'.shape[1] is \"128\", expected an integer");
}

TEST(CheckpointMetadata, ByteLengthsAreTheBlocksBytes) {
  auto j = sample_json();
  j["tensors"]["w"]["chunks"][0]["byte_length"] = 100;
  expect_refused(j, "tensor 'w' chunk 0 has byte_length 100, but its block holds 16384 bytes of float32");
}

TEST(CheckpointMetadata, ChunksCoverTheirTensorOnce) {
  auto j = sample_json();
  j["tensors"]["w"]["chunks"][1]["offsets"] = {16, 0};
  expect_refused(j, "tensor 'w' chunk 1 overlaps chunk 0");
  j = sample_json();
  j["tensors"]["w"]["chunks"].erase(1);
  expect_refused(j, "tensor 'w' has chunks holding 4096 of its 8192 elements");
}

TEST(CheckpointMetadata, FilesAreInsideTheCheckpoint) {
  for (const std::string file : {"../../../../etc/passwd", "/etc/passwd", "..", "sub/shard-0.bin", ""}) {
    auto j = sample_json();
    j["tensors"]["w"]["chunks"][0]["file"] = file;
    expect_refused(j, "tensor 'w' chunk 0 names file '" + file +
                          "', which is not a plain file name inside the checkpoint directory");
  }
}

TEST(CheckpointMetadata, OptimizerFieldsAreInRange) {
  auto j = sample_json();
  j["optimizer"]["steps"]["w"] = -1;
  expect_refused(j, "optimizer.steps['w'] is -1, expected at least 0");
  j = sample_json();
  j["optimizer"]["kind"] = "lamb";
  expect_refused(j, "optimizer.kind is 'lamb', expected sgd, adam or adamw");
  j = sample_json();
  j["optimizer"]["steps"]["v"] = 1;
  expect_refused(j, "optimizer.steps names 'v', which is not a saved tensor");
  j = sample_json();
  j["tensors"]["optimizer/w/momentum_buffer"] = j["tensors"]["optimizer/w/exp_avg"];
  expect_refused(j, "tensor 'optimizer/w/momentum_buffer' is not a field of adam's state");
}

TEST(CheckpointMetadata, VersionOneHasNoChecksumButIsChecked) {
  auto j = sample_json();
  j.erase("checksum");
  j["version"] = 1;
  EXPECT_EQ(metadata_from_json(j.dump(), "ck/metadata.json").version, 1);
  j["tensors"]["w"]["chunks"][0]["sizes"] = {64, 188};
  EXPECT_THROW_WITH(metadata_from_json(j.dump(), "ck/metadata.json"), std::invalid_argument,
                    "spans [0, 188)");
  j["version"] = 7;
  EXPECT_THROW_WITH(metadata_from_json(j.dump(), "ck/metadata.json"), std::invalid_argument,
                    "'ck/metadata.json' has format version 7; this kdist reads versions 1 and 2");
  EXPECT_THROW_WITH(metadata_from_json("{\"format\": \"kdist-checkpoint\", ", "ck/metadata.json"),
                    std::invalid_argument, "metadata 'ck/metadata.json' is damaged: not JSON");
}

}  // namespace
}  // namespace kdist::checkpoint
