// AsyncSaver: save's stages with the write in a thread. The stages around it are collectives
// on the world group, which must run on the caller's thread, so publishing waits for a poll.
#include <kdist/checkpoint.h>
#include <kdist/comm.h>

#include <ATen/ATen.h>

#include <atomic>
#include <exception>
#include <thread>

#include "checkpoint/agreement.h"
#include "checkpoint/save_stages.h"

namespace kdist {

struct AsyncSaver::Pending {
  checkpoint::StagedSave save;
  checkpoint::ChunkLists chunks;
  std::exception_ptr error;
  std::atomic<bool> written{false};
  std::thread writer;
};

namespace {

// Replaces each block this process writes by its copy in `buffers` (allocated on first use,
// or when a block changed shape or dtype) and drops the others, so that the staged save
// holds no tensor of the module or optimizer.
void snapshot(std::vector<checkpoint::Item>& items, std::vector<at::Tensor>& buffers) {
  at::NoGradGuard no_grad;
  size_t used = 0;
  for (auto& item : items) {
    if (!item.writer) {
      item.local = at::Tensor();
      continue;
    }
    if (used == buffers.size()) buffers.emplace_back();
    auto& buffer = buffers[used++];
    if (!buffer.defined() || buffer.sizes() != item.local.sizes() || buffer.dtype() != item.local.dtype())
      buffer = at::empty(item.local.sizes(), item.local.options().device(at::kCPU));
    buffer.copy_(item.local.detach());
    item.local = buffer;
  }
}

}  // namespace

AsyncSaver::AsyncSaver() = default;

AsyncSaver::~AsyncSaver() {
  if (pending_ && pending_->writer.joinable()) pending_->writer.join();
}

void AsyncSaver::save(const std::string& path, torch::nn::Module& module,
                      torch::optim::Optimizer* optimizer) {
  wait();
  auto pending = std::make_unique<Pending>();
  pending->save = checkpoint::stage_save(path, module, optimizer);
  checkpoint::run_agreed("save", [&] { snapshot(pending->save.items, buffers_); });
  Pending* p = pending.get();
  p->writer = std::thread([p] {
    try {
      p->chunks = checkpoint::write_blocks(p->save.items, p->save.staged);
    } catch (...) {
      p->error = std::current_exception();
    }
    p->written.store(true, std::memory_order_release);
  });
  pending_ = std::move(pending);
}

std::optional<std::string> AsyncSaver::poll() {
  if (!pending_) return std::nullopt;
  const bool still_writing = !pending_->written.load(std::memory_order_acquire);
  if (comm::first_failed_rank(still_writing) >= 0) return std::nullopt;
  return publish_pending();
}

std::optional<std::string> AsyncSaver::wait() {
  if (!pending_) return std::nullopt;
  return publish_pending();
}

std::optional<std::string> AsyncSaver::publish_pending() {
  auto pending = std::move(pending_);
  pending->writer.join();
  checkpoint::run_agreed("save", [&] {
    if (pending->error) std::rethrow_exception(pending->error);
  });
  checkpoint::publish_save(pending->save, pending->chunks);
  return pending->save.path;
}

}  // namespace kdist
