// kdist::export_safetensors and kdist::load_safetensors: whole weights out of a checkpoint,
// and a whole-weights file onto any mesh and layout, each process mapping the file and copying
// only its own block of each tensor.
#include <ATen/ATen.h>
#include <fcntl.h>
#include <kdist/checkpoint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "base/errors.h"
#include "checkpoint/agreement.h"
#include "checkpoint/files.h"
#include "checkpoint/metadata.h"
#include "checkpoint/read.h"
#include "checkpoint/safetensors_format.h"
#include "checkpoint/state.h"

namespace kdist {
namespace {
using namespace checkpoint;

// A file mapped read-only; pages are read as a block touches them.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      detail::invalid("checkpoint", "cannot open safetensors file '", path, "': ", std::strerror(errno));
    struct stat info {};
    if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
      ::close(fd);
      detail::invalid("checkpoint", "safetensors file '", path, "' is not a regular file");
    }
    size_ = info.st_size;
    if (size_ > 0) data_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (data_ == MAP_FAILED) detail::failure("checkpoint", "cannot map '", path, "': ", std::strerror(errno));
  }
  ~MappedFile() {
    if (data_ && data_ != MAP_FAILED) ::munmap(data_, size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const char* data() const { return static_cast<const char*>(data_); }
  int64_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  int64_t size_ = 0;
};

// The header as checkpoint metadata (names, dtypes, shapes), for check_match.
Metadata as_metadata(const SafetensorsHeader& header) {
  Metadata m;
  for (const auto& e : header.entries) m.tensors[e.name] = {dtype_name(e.dtype), e.shape, {}};
  return m;
}

}  // namespace

void export_safetensors(const std::string& checkpoint, const std::string& out) {
  const std::string metadata_path = checkpoint + "/metadata.json";
  const Metadata saved = metadata_from_json(read_text_file(metadata_path), metadata_path);
  std::vector<SafetensorsEntry> entries;
  for (const auto& [name, record] : saved.tensors)
    if (!split_optimizer_tensor_name(name))
      entries.push_back({name, dtype_named(record.dtype, metadata_path), record.shape});
  const std::string header = encode_safetensors_header(entries);
  // Written beside its final name and renamed once complete: a reader never sees half a file.
  const std::string partial = out + ".partial";
  std::filesystem::remove(partial);
  {
    FileWriter writer(partial);
    writer.append(header.data(), header.size());
    for (const auto& e : entries) {  // one whole tensor in memory at a time
      Item whole{e.name, at::empty(e.shape, at::TensorOptions().dtype(e.dtype)), e.shape,
                 std::vector<int64_t>(e.shape.size(), 0)};
      if (whole.local.numel() > 0) read_block(checkpoint, whole, saved.tensors.at(e.name));
      writer.append(whole.local.data_ptr(), static_cast<size_t>(e.end - e.begin));
    }
    writer.sync_and_close();
  }
  std::error_code error;
  std::filesystem::rename(partial, out, error);
  if (error) detail::failure("checkpoint", "cannot rename '", partial, "' to '", out, "': ", error.message());
}

void load_safetensors(const std::string& path, torch::nn::Module& module, LoadOptions options) {
  run_agreed("load_safetensors", [&] {
    MappedFile file(path);
    const auto header = decode_safetensors_header(file.data(), file.size(), path);
    const auto items = module_items(module);
    check_match("safetensors file '" + path + "'", "the file", as_metadata(header), items,
                /*with_optimizer=*/false, options);
    std::map<std::string, const SafetensorsEntry*> by_name;
    for (const auto& e : header.entries) by_name[e.name] = &e;
    at::NoGradGuard no_grad;
    for (const auto& item : items) {
      auto it = by_name.find(item.name);
      if (it == by_name.end() || item.local.numel() == 0) continue;
      const SafetensorsEntry& e = *it->second;
      // A view of the mapped bytes; narrowing it to this process's block reads only its pages.
      at::Tensor source = at::from_blob(const_cast<char*>(file.data() + header.data_start + e.begin), e.shape,
                                        at::TensorOptions().dtype(e.dtype));
      for (int64_t d = 0; d < item.local.dim(); ++d)
        source = source.narrow(d, item.offset[d], item.local.size(d));
      item.local.copy_(source);
    }
  });
}

}  // namespace kdist
