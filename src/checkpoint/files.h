#pragma once
// The file operations checkpoints need: synced writes, ranged reads that detect truncation,
// CRC-32, and publishing a directory with one atomic rename.
#include <cstdint>
#include <string>
#include <vector>

namespace kdist::checkpoint {

uint32_t crc32(const void* data, size_t size);

// Appends to a new file; sync_and_close() makes the bytes durable (fsync) before returning.
class FileWriter {
 public:
  explicit FileWriter(const std::string& path);  // throws std::runtime_error
  ~FileWriter();
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;
  int64_t append(const void* data, size_t size);  // returns the offset written at
  void sync_and_close();

 private:
  std::string path_;
  int fd_ = -1;
  int64_t size_ = 0;
};

// Bytes [offset, offset + length) of a file; throws std::runtime_error naming `what` when
// the file is shorter (truncated) or unreadable.
std::vector<char> read_range(const std::string& path, int64_t offset, int64_t length,
                             const std::string& what);

std::string read_text_file(const std::string& path);  // throws std::invalid_argument if absent
void write_text_file_synced(const std::string& path, const std::string& text);
void sync_directory(const std::string& path);

// Makes `staged` visible as `target` atomically: a plain rename when target does not exist,
// else an exchange (renameat2 RENAME_EXCHANGE) after which the old target is removed. On a
// filesystem without exchange, publish_by_two_renames.
void publish_directory(const std::string& staged, const std::string& target);
// The fallback: target moves aside to "<target>.old", staged takes its name, the old one is
// removed. Not atomic: a crash between the two renames leaves "<target>.old" and no target.
void publish_by_two_renames(const std::string& staged, const std::string& target);

}  // namespace kdist::checkpoint
