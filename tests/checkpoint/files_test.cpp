// Unit tests of src/checkpoint/files.cpp: checksums, ranged reads and publishing a directory.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "../test_util.h"
#include "checkpoint/files.h"

namespace kdist::checkpoint {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class CheckpointFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/kdist-files-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    root = pattern;
  }
  void TearDown() override { fs::remove_all(root); }

  // A directory holding one file `marker` with `text` in it.
  std::string make_dir(const std::string& name, const std::string& text) {
    const std::string dir = root + "/" + name;
    fs::create_directory(dir);
    std::ofstream(dir + "/marker") << text;
    return dir;
  }
  std::string marker(const std::string& dir) { return read_text_file(dir + "/marker"); }

  std::string root;
};

TEST_F(CheckpointFiles, Crc32IsZlibs) {
  EXPECT_EQ(crc32("123456789", 9), 0xCBF43926u);  // the CRC-32 check value
  EXPECT_EQ(crc32("", 0), 0u);
}

TEST_F(CheckpointFiles, ReadRangeNamesATruncatedFile) {
  FileWriter writer(root + "/data");
  writer.append("abcdef", 6);
  writer.sync_and_close();
  auto bytes = read_range(root + "/data", 2, 3, "shard-0.bin");
  EXPECT_EQ(std::string(bytes.begin(), bytes.end()), "cde");
  EXPECT_THROW_WITH(read_range(root + "/data", 4, 10, "shard-0.bin"), std::runtime_error,
                    "[kdist.checkpoint] file '" + root +
                        "/data' is truncated: shard-0.bin needs "
                        "bytes [4, 14) but the file has 6");
}

TEST_F(CheckpointFiles, PublishCreatesThenReplacesAtomically) {
  const std::string target = root + "/step-1";
  publish_directory(make_dir("staged-a", "first"), target);
  EXPECT_EQ(marker(target), "first");
  EXPECT_FALSE(fs::exists(root + "/staged-a"));
  publish_directory(make_dir("staged-b", "second"), target);  // RENAME_EXCHANGE here
  EXPECT_EQ(marker(target), "second");
  EXPECT_FALSE(fs::exists(root + "/staged-b")) << "the previous checkpoint is removed";
}

// What publish_directory does on filesystems without RENAME_EXCHANGE (not ext4 or tmpfs).
TEST_F(CheckpointFiles, TwoRenamesReplaceAndLeaveNothingBehind) {
  const std::string target = make_dir("step-1", "first");
  fs::create_directory(target + ".old");  // left by an earlier crash: cleared first
  publish_by_two_renames(make_dir("staged", "second"), target);
  EXPECT_EQ(marker(target), "second");
  EXPECT_FALSE(fs::exists(target + ".old"));
  EXPECT_FALSE(fs::exists(root + "/staged"));
  EXPECT_THROW_WITH(publish_by_two_renames(root + "/missing", root + "/absent"), std::runtime_error,
                    "[kdist.checkpoint] cannot move aside '" + root + "/absent'");
}

}  // namespace
}  // namespace kdist::checkpoint
