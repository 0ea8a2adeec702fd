#include "checkpoint/agreement.h"

#include <ATen/ATen.h>
#include <kdist/comm.h>
#include <kdist/runtime.h>

#include <cstring>
#include <exception>

#include "base/errors.h"

namespace kdist::checkpoint {
namespace {
bool multi_process() { return is_initialized() && num_processes() > 1; }
}  // namespace

void run_agreed(const std::string& operation, const std::function<void()>& step) {
  std::exception_ptr error;
  std::string message;
  try {
    step();
  } catch (const std::exception& e) {
    error = std::current_exception();
    message = e.what();
  } catch (...) {
    error = std::current_exception();
    message = "an exception that is not a std::exception";
  }
  const int first_failed = comm::first_failed_rank(error != nullptr);
  if (first_failed < 0) return;
  // Every process learns the first failing rank's own words, so that rank 0 can print them.
  const auto messages = all_gather_text(message);
  if (error) std::rethrow_exception(error);
  kdist::detail::failure("checkpoint", operation, " failed on rank ", first_failed, ": ",
                         messages[first_failed]);
}

std::vector<std::string> all_gather_text(const std::string& text) {
  if (!multi_process()) return {text};
  const auto& world = *comm::world();
  auto sizes_tensor = comm::all_gather(at::full({1}, static_cast<int64_t>(text.size()), at::kLong), 0, world);
  std::vector<int64_t> sizes(sizes_tensor.data_ptr<int64_t>(),
                             sizes_tensor.data_ptr<int64_t>() + sizes_tensor.numel());
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
