// comm.h's collectives: argument checks, counting, groups of one; then the group's backend
// (backend.h), the transport comm chose when it made the group.
#include <ATen/ATen.h>
#include <kdist/job.h>

#include <mutex>

#include "base/errors.h"
#include "comm/backend.h"
#include "comm/context.h"
#include "comm/pieces.h"
#include "comm/transports/gloo.h"
#include "comm/transports/nccl.h"

namespace kdist::comm {
namespace {
using detail::nbytes;

void record(const std::string& kind, int64_t bytes);

int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op) {
  if (dim < -ndim || dim >= ndim)
    kdist::detail::invalid("comm", op, ": dim ", dim, " is out of range for a tensor of ", ndim,
                           " dimensions");
  return dim < 0 ? dim + ndim : dim;
}

void check_defined(const at::Tensor& t, const char* op) {
  if (!t.defined()) kdist::detail::invalid("comm", op, ": the tensor is undefined");
}

// The group's transport for a tensor's device: its CPU transport, or NCCL for CUDA tensors.
Backend& backend_for(const Group& group, const at::Tensor& t, const char* op) {
  auto& impl = GroupAccess::impl(group);
  if (t.device().is_cpu()) return *impl.backend;
  if (t.device().is_cuda() && impl.cuda) return *impl.cuda;
  kdist::detail::invalid(
      "comm", op, " on ", group.name(), ": tensor on ", t.device().str(),
      t.device().is_cuda() && nccl_version().empty()
          ? "; this kdist was built on a LibTorch without CUDA, whose collectives run on CPU "
            "tensors (Gloo, shared memory)"
          : "; collectives run on CPU tensors, and on CUDA tensors where a GPU is visible");
}

// An all_gather's sizes: one per rank of the group, this rank's its tensor's along dim.
void check_sizes(const char* op, const Group& group, const at::Tensor& local, int64_t dim,
                 const std::vector<int64_t>& sizes) {
  if (static_cast<int>(sizes.size()) != group.size())
    kdist::detail::invalid("comm", op, " on ", group.name(), ": sizes has ", sizes.size(),
                           " entries, expected one per rank (", group.size(), ")");
  if (sizes[group.rank()] != local.size(dim))
    kdist::detail::invalid("comm", op, " on ", group.name(), ": sizes says ", sizes[group.rank()],
                           " for group rank ", group.rank(), ", whose tensor has ", local.size(dim),
                           " along dim ", dim);
}

// Runs `body` on a contiguous copy of `tensor` where it is not contiguous, and copies back.
template <typename Body>
void in_place(at::Tensor& tensor, Body body) {
  if (tensor.is_contiguous()) return body(tensor);
  auto contiguous = tensor.contiguous();
  body(contiguous);
  tensor.copy_(contiguous);
}

struct Deferred final : PendingCollective::Impl {
  std::function<void()> work;
  void wait() override { work(); }
};

}  // namespace

at::Tensor Backend::allocate_buffer(int64_t bytes) { return at::zeros({bytes}, at::kByte); }

void Backend::send(const at::Tensor&, int) {
  kdist::detail::invalid("comm", "send: the ", to_string(transport()), " transport has no point-to-point");
}
void Backend::recv(at::Tensor&, int) {
  kdist::detail::invalid("comm", "recv: the ", to_string(transport()), " transport has no point-to-point");
}

at::Tensor Backend::all_reduce_copy(const at::Tensor& tensor, ReduceOp op) {
  auto out = tensor.clone();
  all_reduce(out, op);
  return out;
}

PendingCollective deferred(std::function<void()> work) {
  auto impl = std::make_shared<Deferred>();
  impl->work = std::move(work);
  return PendingCollective(impl);
}

at::Tensor chunk_piece(const at::Tensor& tensor, int64_t dim, int64_t k, int64_t index) {
  const int64_t n = tensor.size(dim);
  return tensor.narrow(dim, chunk_offset(n, k, index), chunk_size(n, k, index));
}

void all_reduce(at::Tensor& tensor, ReduceOp op, const Group& group) {
  check_defined(tensor, "all_reduce");
  if (group.size() == 1) return;
  record("all_reduce", nbytes(tensor));
  in_place(tensor, [&](at::Tensor& t) { backend_for(group, t, "all_reduce").all_reduce(t, op); });
}

at::Tensor all_reduce_copy(const at::Tensor& tensor, ReduceOp op, const Group& group) {
  check_defined(tensor, "all_reduce");
  if (group.size() == 1) return tensor.clone();
  record("all_reduce", nbytes(tensor));
  return backend_for(group, tensor, "all_reduce").all_reduce_copy(tensor.contiguous(), op);
}

at::Tensor all_gather(const at::Tensor& local, int64_t dim, const Group& group,
                      std::optional<std::vector<int64_t>> sizes) {
  check_defined(local, "all_gather");
  dim = normalize_dim(dim, local.dim(), "all_gather");
  const int k = group.size();
  if (k == 1) return local;
  if (!sizes) {
    auto mine = at::full({1}, local.size(dim), at::kLong);
    record("all_gather", nbytes(mine));
    auto all = backend_for(group, mine, "all_gather").all_gather(mine, 0, std::vector<int64_t>(k, 1));
    sizes = std::vector<int64_t>(all.data_ptr<int64_t>(), all.data_ptr<int64_t>() + k);
  }
  check_sizes("all_gather", group, local, dim, *sizes);
  record("all_gather", nbytes(local));
  return backend_for(group, local, "all_gather").all_gather(local.contiguous(), dim, *sizes);
}

at::Tensor reduce_scatter(const at::Tensor& full, int64_t dim, ReduceOp op, const Group& group) {
  check_defined(full, "reduce_scatter");
  dim = normalize_dim(dim, full.dim(), "reduce_scatter");
  if (group.size() == 1) return full;
  record("reduce_scatter", nbytes(full));
  return backend_for(group, full, "reduce_scatter").reduce_scatter(full.contiguous(), dim, op);
}

at::Tensor all_to_all(const at::Tensor& local, int64_t split_dim, int64_t concat_dim,
                      int64_t concat_full_size, const Group& group) {
  check_defined(local, "all_to_all");
  split_dim = normalize_dim(split_dim, local.dim(), "all_to_all");
  concat_dim = normalize_dim(concat_dim, local.dim(), "all_to_all");
  const int k = group.size();
  const int me = group.rank();
  if (local.size(concat_dim) != chunk_size(concat_full_size, k, me))
    kdist::detail::invalid("comm", "all_to_all on ", group.name(), ": local size ", local.size(concat_dim),
                           " along dim ", concat_dim, " is not piece ", me, " of ", concat_full_size,
                           " split in ", k);
  if (k == 1) return local;
  record("all_to_all", nbytes(local));
  return backend_for(group, local, "all_to_all")
      .all_to_all(local.contiguous(), split_dim, concat_dim, concat_full_size);
}

PendingCollective all_reduce_async(const at::Tensor& tensor, ReduceOp op, const Group& group) {
  check_defined(tensor, "all_reduce_async");
  if (!tensor.is_contiguous()) kdist::detail::invalid("comm", "all_reduce_async needs a contiguous tensor");
  if (group.size() == 1) return deferred([] {});
  record("all_reduce", nbytes(tensor));
  return backend_for(group, tensor, "all_reduce_async").all_reduce_async(tensor, op);
}

void PendingCollective::wait() {
  if (!impl_) return;
  auto impl = std::move(impl_);
  impl->wait();
}

PendingGather all_gather_async(const at::Tensor& local, int64_t dim, const Group& group,
                               const std::vector<int64_t>& sizes) {
  check_defined(local, "all_gather_async");
  dim = normalize_dim(dim, local.dim(), "all_gather_async");
  check_sizes("all_gather_async", group, local, dim, sizes);
  if (group.size() == 1) return PendingGather();
  auto pending =
      backend_for(group, local, "all_gather_async").all_gather_async(local.contiguous(), dim, sizes);
  if (pending.valid()) record("all_gather", nbytes(local));
  return pending;
}

at::Tensor PendingGather::wait() {
  if (!impl_) kdist::detail::invalid("comm", "PendingGather::wait on a gather that was not launched");
  auto impl = std::move(impl_);
  return impl->wait();
}

void broadcast(at::Tensor& tensor, int root, const Group& group) {
  check_defined(tensor, "broadcast");
  if (root < 0 || root >= group.size())
    kdist::detail::invalid("comm", "broadcast root ", root, " is outside ", group.name());
  if (group.size() == 1) return;
  record("broadcast", nbytes(tensor));
  in_place(tensor, [&](at::Tensor& t) { backend_for(group, t, "broadcast").broadcast(t, root); });
}

namespace {

// The backend that carries a point-to-point transfer with group rank `peer`: the group's Gloo
// for CPU tensors, its CUDA transport for CUDA ones.
Backend& peer_backend(const Group& group, const at::Tensor& t, int peer, const char* op) {
  check_defined(t, op);
  if (peer < 0 || peer >= group.size() || peer == group.rank())
    kdist::detail::invalid("comm", op, " on ", group.name(), ": peer ", peer,
                           " is not another rank of the group (", group.size(), " ranks, this one ",
                           group.rank(), ")");
  auto& impl = GroupAccess::impl(group);
  if (t.device().is_cpu()) return *impl.gloo;
  return backend_for(group, t, op);
}

}  // namespace

void send(const at::Tensor& tensor, int dst, const Group& group) {
  Backend& backend = peer_backend(group, tensor, dst, "send");
  record("send", nbytes(tensor));
  backend.send(tensor.contiguous(), dst);
}

void recv(at::Tensor& tensor, int src, const Group& group) {
  Backend& backend = peer_backend(group, tensor, src, "recv");
  record("recv", nbytes(tensor));
  in_place(tensor, [&](at::Tensor& t) { backend.recv(t, src); });
}

void barrier(const Group& group) {
  if (group.size() == 1) return;
  record("barrier", 0);
  GroupAccess::impl(group).backend->barrier();
}

at::Tensor allocate_buffer(const Group& group, int64_t bytes) {
  if (bytes < 0) kdist::detail::invalid("comm", "allocate_buffer: ", bytes, " bytes");
  if (group.size() == 1) return at::zeros({bytes}, at::kByte);
  return GroupAccess::impl(group).backend->allocate_buffer(bytes);
}

int first_failed_rank(bool failed) {
  const Job job = current_job();
  if (!detail::started() || job.num_processes == 1) return failed ? job.process_id : -1;
  auto flags = all_gather(at::full({1}, failed ? 1.0f : 0.0f), 0, *world());
  auto failing = flags.nonzero();
  return failing.numel() > 0 ? static_cast<int>(failing[0].item<int64_t>()) : -1;
}

// ---- CollectiveCounter ---------------------------------------------------------------------

namespace {
std::mutex g_counters_mutex;
std::vector<CollectiveCounter*> g_counters;

void record(const std::string& kind, int64_t bytes) {
  std::lock_guard<std::mutex> lock(g_counters_mutex);
  for (auto* counter : g_counters) counter->record(kind, bytes);
}
}  // namespace

CollectiveCounter::CollectiveCounter() {
  std::lock_guard<std::mutex> lock(g_counters_mutex);
  g_counters.push_back(this);
}

CollectiveCounter::~CollectiveCounter() {
  std::lock_guard<std::mutex> lock(g_counters_mutex);
  g_counters.erase(std::remove(g_counters.begin(), g_counters.end(), this), g_counters.end());
}

void CollectiveCounter::record(const std::string& kind, int64_t bytes) {
  auto& entry = by_kind_[kind];
  entry.first += 1;
  entry.second += bytes;
}

int64_t CollectiveCounter::count(const std::string& kind) const {
  auto it = by_kind_.find(kind);
  return it == by_kind_.end() ? 0 : it->second.first;
}

int64_t CollectiveCounter::bytes(const std::string& kind) const {
  auto it = by_kind_.find(kind);
  return it == by_kind_.end() ? 0 : it->second.second;
}

int64_t CollectiveCounter::total_count() const {
  int64_t total = 0;
  for (const auto& [kind, entry] : by_kind_) total += entry.first;
  return total;
}

std::map<std::string, int64_t> CollectiveCounter::counts() const {
  std::map<std::string, int64_t> out;
  for (const auto& [kind, entry] : by_kind_) out[kind] = entry.first;
  return out;
}

}  // namespace kdist::comm
