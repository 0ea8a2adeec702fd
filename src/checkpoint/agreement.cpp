#include "agreement.h"

#include <ATen/ATen.h>
#include <kdist/comm.h>
#include <kdist/runtime.h>

#include <cstring>
#include <exception>

#include "../errors.h"

namespace kdist::checkpoint {
namespace {
bool multi_process() { return is_initialized() && num_processes() > 1; }
}  // namespace

void run_agreed(const std::string& operation, const std::function<void()>& step) {
  std::exception_ptr error;
  try {
    step();
  } catch (...) {
    error = std::current_exception();
  }
  if (multi_process()) {
    auto flags = comm::all_gather(at::full({1}, error ? 1.0f : 0.0f), 0, *comm::world());
    auto failed = flags.nonzero();
    if (!error && failed.numel() > 0)
      kdist::detail::failure("checkpoint", operation, " failed on rank ", failed[0].item<int64_t>(),
                             " (its error is in its output)");
  }
  if (error) std::rethrow_exception(error);
}

std::vector<std::string> all_gather_text(const std::string& text) {
  if (!multi_process()) return {text};
  const auto& world = *comm::world();
  auto sizes_tensor = comm::all_gather(at::full({1}, static_cast<int64_t>(text.size()), at::kLong), 0, world);
  std::vector<int64_t> sizes(sizes_tensor.data_ptr<int64_t>(), sizes_tensor.data_ptr<int64_t>() + sizes_tensor.numel());
  auto bytes = at::empty({static_cast<int64_t>(text.size())}, at::kByte);
  std::memcpy(bytes.data_ptr(), text.data(), text.size());
  auto all = comm::all_gather(bytes, 0, world, sizes);
  std::vector<std::string> texts;
  int64_t at = 0;
  for (auto size : sizes) {
    texts.emplace_back(static_cast<const char*>(all.data_ptr()) + at, static_cast<size_t>(size));
    at += size;
  }
  return texts;
}

}  // namespace kdist::checkpoint
