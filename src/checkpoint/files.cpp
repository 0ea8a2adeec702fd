#include "checkpoint/files.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "base/errors.h"

namespace kdist::checkpoint {
namespace {

[[noreturn]] void io_error(const std::string& what, const std::string& path) {
  kdist::detail::failure("checkpoint", what, " '", path, "': ", std::strerror(errno));
}

}  // namespace

uint32_t crc32(const void* data, size_t size) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  const auto* bytes = static_cast<const Bytef*>(data);
  while (size > 0) {  // zlib takes at most uInt bytes at a time
    const uInt piece = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
    crc = ::crc32(crc, bytes, piece);
    bytes += piece;
    size -= piece;
  }
  return static_cast<uint32_t>(crc);
}

FileWriter::FileWriter(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) io_error("cannot create", path);
}

FileWriter::~FileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

int64_t FileWriter::append(const void* data, size_t size) {
  const int64_t at = size_;
  const char* bytes = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd_, bytes, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) io_error("cannot write", path_);
    bytes += n;
    size -= static_cast<size_t>(n);
    size_ += n;
  }
  // Start writing these bytes back now, so that the final fsync finds little left to do
  // while the caller prepares the next block.
  ::sync_file_range(fd_, at, size_ - at, SYNC_FILE_RANGE_WRITE);
  return at;
}

void FileWriter::sync_and_close() {
  if (::fsync(fd_) != 0) io_error("cannot sync", path_);
  if (::close(fd_) != 0) {
    fd_ = -1;
    io_error("cannot close", path_);
  }
  fd_ = -1;
}

std::vector<char> read_range(const std::string& path, int64_t offset, int64_t length,
                             const std::string& what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) io_error("cannot open checkpoint file for " + what + ":", path);
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    ::close(fd);
    io_error("cannot stat checkpoint file for " + what + ":", path);
  }
  if (info.st_size < offset + length) {
    ::close(fd);
    kdist::detail::failure("checkpoint", "file '", path, "' is truncated: ", what, " needs bytes [", offset,
                           ", ", offset + length, ") but the file has ", info.st_size);
  }
  std::vector<char> bytes(static_cast<size_t>(length));
  int64_t done = 0;
  while (done < length) {
    const ssize_t n = ::pread(fd, bytes.data() + done, static_cast<size_t>(length - done), offset + done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      io_error("cannot read " + what + " from", path);
    }
    done += n;
  }
  ::close(fd);
  return bytes;
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) kdist::detail::invalid("checkpoint", "cannot read '", path, "'");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_text_file_synced(const std::string& path, const std::string& text) {
  FileWriter file(path);
  file.append(text.data(), text.size());
  file.sync_and_close();
}

void sync_directory(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) io_error("cannot open directory", path);
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) io_error("cannot sync directory", path);
}

void publish_directory(const std::string& staged, const std::string& target) {
  namespace fs = std::filesystem;
  const std::string parent = fs::absolute(target).parent_path().string();
  if (!fs::exists(target)) {
    if (::rename(staged.c_str(), target.c_str()) != 0) io_error("cannot publish checkpoint as", target);
  } else if (::renameat2(AT_FDCWD, staged.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) == 0) {
    fs::remove_all(staged);  // now the previous checkpoint
  } else if (errno == EINVAL || errno == ENOSYS) {
    publish_by_two_renames(staged, target);
  } else {
    io_error("cannot publish checkpoint as", target);
  }
  sync_directory(parent);
}

void publish_by_two_renames(const std::string& staged, const std::string& target) {
  namespace fs = std::filesystem;
  const std::string old = target + ".old";
  fs::remove_all(old);
  if (::rename(target.c_str(), old.c_str()) != 0) io_error("cannot move aside", target);
  if (::rename(staged.c_str(), target.c_str()) != 0) io_error("cannot publish checkpoint as", target);
  fs::remove_all(old);
}

}  // namespace kdist::checkpoint
