// The collectives of comm.h on c10d backends. ProcessGroupGloo in LibTorch 2.13 has
// all_reduce (sum, avg, max), even all_gather, reduce_scatter, all_to_all with uneven
// splits, broadcast and barrier; uneven all_gather is built here by padding (one collective).
#include <ATen/ATen.h>
#include <kdist/runtime.h>

#include <atomic>
#include <numeric>

#include "../debug_log.h"
#include "../errors.h"
#include "context.h"
#include "shared_memory.h"

namespace kdist::comm {
namespace {

std::atomic<ReduceScatterAlgorithm> g_reduce_scatter{ReduceScatterAlgorithm::kAllToAll};
std::atomic<AllGatherAlgorithm> g_all_gather{AllGatherAlgorithm::kAllToAll};

void record(const std::string& kind, int64_t bytes);

c10d::ReduceOp to_c10d(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return c10d::ReduceOp::SUM;
    case ReduceOp::kAvg: return c10d::ReduceOp::AVG;
    case ReduceOp::kMax: return c10d::ReduceOp::MAX;
  }
  return c10d::ReduceOp::SUM;
}

int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op) {
  if (dim < -ndim || dim >= ndim)
    kdist::detail::invalid("comm", op, ": dim ", dim, " is out of range for a tensor of ", ndim,
                           " dimensions");
  return dim < 0 ? dim + ndim : dim;
}

void check_cpu(const at::Tensor& t, const char* op) {
  if (!t.defined()) kdist::detail::invalid("comm", op, ": the tensor is undefined");
  if (!t.device().is_cpu())
    kdist::detail::invalid("comm", op, ": tensor on ", t.device().str(),
                           "; this build's collectives run on CPU tensors (Gloo)");
}

// A failed collective, as an error naming the operation, the group and the rank.
[[noreturn]] void collective_failed(const char* op, const Group& group, const std::exception& e) {
  kdist::detail::failure("comm", op, " on ", group.name(), " failed on rank ", process_id(),
                         " (timeout ", detail::timeout().count() / 1000.0,
                         " s): ", std::string(e.what()).substr(0, 400));
}

// Runs one c10d collective and waits for it, within the timeout.
template <typename Launch>
void run(const char* op, const Group& group, int64_t bytes, Launch launch) {
  record(op, bytes);
  try {
    c10::intrusive_ptr<c10d::Work> work = launch(*group.impl().backend);
    work->wait(detail::timeout());
  } catch (const std::exception& e) {
    collective_failed(op, group, e);
  }
}

int64_t nbytes(const at::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

// The group's shared-memory transport with room for `bytes`, or null (Gloo then). Collective
// on first use and when it grows: every rank makes the same call with the same size, so all
// decide alike.
SharedMemoryAllReduce* shared_memory_for(const char* op, const Group& group, int64_t bytes) {
  auto& impl = group.impl();
  if (impl.transport == "gloo" || impl.shared_memory_unavailable) return nullptr;
  if (impl.shared_memory && impl.shared_memory->capacity() >= bytes) return impl.shared_memory.get();
  const int64_t old = impl.shared_memory ? impl.shared_memory->capacity() : 0;
  const int64_t capacity = std::max<int64_t>({bytes, 2 * old, 1 << 20});
  impl.shared_memory.reset();
  std::string why_not;
  try {
    detail::UncountedScope uncounted;
    impl.shared_memory = SharedMemoryAllReduce::create(group, capacity, &why_not);
  } catch (const std::exception& e) {  // a peer missing or dead while the segment is agreed
    kdist::detail::failure("comm", op, " on ", group.name(), " failed on rank ", process_id(),
                           " (setting up shared memory): ", std::string(e.what()).substr(0, 400));
  }
  if (!impl.shared_memory) {
    if (impl.transport == "shm")
      kdist::detail::failure("comm", "KDIST_TRANSPORT=shm, but the processes of ", group.name(),
                             " cannot share memory: ", why_not);
    impl.shared_memory_unavailable = true;
    kdist::detail::debug_log("comm: " + group.name() + " uses Gloo: no shared memory (" + why_not + ")");
    return nullptr;
  }
  kdist::detail::debug_log("comm: " + group.name() + " uses shared memory (" + std::to_string(capacity) +
                           " bytes per process)");
  return impl.shared_memory.get();
}

// One alltoall_base of flat pieces: pieces[j] goes to group rank j, and rank i's elements
// (recv_counts[i] of them) arrive in arrived[i], a view of `buffer`'s receive half. Every
// message carries one spare element: Gloo's alltoallv mis-sizes messages when a rank's whole
// send or receive buffer is empty (a rank with no rows under the chunk rule), and padding
// every message keeps all ranks' counts consistent.
struct Exchange {
  at::Tensor send, received;
  std::vector<int64_t> send_counts, recv_counts;  // padded
  std::vector<at::Tensor> arrived;

  // `buffer(numel)` gives the flat memory for both halves (the group's staging buffer, or a
  // fresh one where the exchange outlives the call).
  template <typename Buffer>
  Exchange(const std::vector<at::Tensor>& pieces, const std::vector<int64_t>& counts, Buffer buffer) {
    for (const auto& p : pieces) send_counts.push_back(p.numel() + 1);
    for (int64_t c : counts) recv_counts.push_back(c + 1);
    const int64_t send_total = std::accumulate(send_counts.begin(), send_counts.end(), int64_t{0});
    const int64_t recv_total = std::accumulate(recv_counts.begin(), recv_counts.end(), int64_t{0});
    at::Tensor memory = buffer(pieces.front().scalar_type(), send_total + recv_total);
    send = memory.narrow(0, 0, send_total);
    received = memory.narrow(0, send_total, recv_total);
    int64_t offset = 0;
    for (size_t j = 0; j < pieces.size(); ++j) {
      send.narrow(0, offset, pieces[j].numel()).view(pieces[j].sizes()).copy_(pieces[j]);
      offset += send_counts[j];
    }
    offset = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
      arrived.push_back(received.narrow(0, offset, counts[i]));
      offset += recv_counts[i];
    }
  }
  c10::intrusive_ptr<c10d::Work> launch(c10d::Backend& backend) {
    // alltoall_base takes the split sizes by reference and moves from them: it gets copies.
    std::vector<int64_t> out_counts = recv_counts, in_counts = send_counts;
    return backend.alltoall_base(received, send, out_counts, in_counts);
  }
};

// An Exchange through the group's staging buffer, waited for: the views are valid until the
// next collective on the group.
std::vector<at::Tensor> exchange(const char* op, const Group& group,
                                 const std::vector<at::Tensor>& pieces,
                                 const std::vector<int64_t>& recv_counts, int64_t bytes) {
  Exchange e(pieces, recv_counts, [&](c10::ScalarType dtype, int64_t numel) {
    return group.impl().staging(dtype, numel);
  });
  run(op, group, bytes, [&](c10d::Backend& b) { return e.launch(b); });
  return e.arrived;
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

// The blocks of an all_gather by exchange, as they arrive, concatenated along dim.
at::Tensor concat_blocks(const std::vector<at::Tensor>& arrived, at::IntArrayRef local_shape,
                         int64_t dim, const std::vector<int64_t>& sizes) {
  std::vector<at::Tensor> pieces;
  auto block_shape = local_shape.vec();
  for (size_t i = 0; i < arrived.size(); ++i) {
    block_shape[dim] = sizes[i];
    pieces.push_back(arrived[i].view(block_shape));
  }
  return at::cat(pieces, dim);
}

std::vector<int64_t> block_counts(const at::Tensor& local, int64_t dim, const std::vector<int64_t>& sizes) {
  int64_t inner = 1;  // elements per index along dim
  for (int64_t d = 0; d < local.dim(); ++d)
    if (d != dim) inner *= local.size(d);
  std::vector<int64_t> counts;
  for (int64_t size : sizes) counts.push_back(size * inner);
  return counts;
}

std::vector<at::Tensor> split_by_chunk_rule(const at::Tensor& t, int64_t dim, int64_t k) {
  std::vector<at::Tensor> pieces;
  int64_t offset = 0;
  for (int64_t size : chunk_sizes(t.size(dim), k)) {
    pieces.push_back(t.narrow(dim, offset, size));
    offset += size;
  }
  return pieces;
}

}  // namespace

int64_t chunk_size(int64_t n, int64_t k, int64_t index) {
  int64_t chunk = (n + k - 1) / k;
  return std::max<int64_t>(0, std::min(chunk, n - index * chunk));
}

int64_t chunk_offset(int64_t n, int64_t k, int64_t index) {
  int64_t offset = 0;
  for (int64_t j = 0; j < index; ++j) offset += chunk_size(n, k, j);
  return offset;
}

at::Tensor chunk_piece(const at::Tensor& tensor, int64_t dim, int64_t k, int64_t index) {
  const int64_t n = tensor.size(dim);
  return tensor.narrow(dim, chunk_offset(n, k, index), chunk_size(n, k, index));
}

std::vector<int64_t> chunk_sizes(int64_t n, int64_t k) {
  std::vector<int64_t> sizes(k);
  for (int64_t i = 0; i < k; ++i) sizes[i] = chunk_size(n, k, i);
  return sizes;
}

void set_reduce_scatter_algorithm(ReduceScatterAlgorithm algorithm) { g_reduce_scatter = algorithm; }
void set_all_gather_algorithm(AllGatherAlgorithm algorithm) { g_all_gather = algorithm; }

void all_reduce(at::Tensor& tensor, ReduceOp op, const Group& group) {
  check_cpu(tensor, "all_reduce");
  if (group.size() == 1) return;
  if (op != ReduceOp::kMax)
    if (auto* shm = shared_memory_for("all_reduce", group, nbytes(tensor))) return shm->all_reduce(tensor, op);
  std::vector<at::Tensor> buffer{tensor.is_contiguous() ? tensor : tensor.contiguous()};
  c10d::AllreduceOptions options;
  options.reduceOp = to_c10d(op);
  run("all_reduce", group, nbytes(tensor),
      [&](c10d::Backend& b) { return b.allreduce(buffer, options); });
  if (!buffer[0].is_same(tensor)) tensor.copy_(buffer[0]);
}

at::Tensor all_gather(const at::Tensor& local, int64_t dim, const Group& group,
                      std::optional<std::vector<int64_t>> sizes) {
  check_cpu(local, "all_gather");
  dim = normalize_dim(dim, local.dim(), "all_gather");
  const int k = group.size();
  if (k == 1) return local;
  if (!sizes) {
    auto mine = at::full({1}, local.size(dim), at::kLong);
    auto all = at::empty({k}, at::kLong);
    run("all_gather", group, nbytes(mine),
        [&](c10d::Backend& b) { return b._allgather_base(all, mine); });
    sizes = std::vector<int64_t>(all.data_ptr<int64_t>(), all.data_ptr<int64_t>() + k);
  }
  check_sizes("all_gather", group, local, dim, *sizes);
  const int64_t widest = *std::max_element(sizes->begin(), sizes->end());
  if (widest > 0)
    if (auto* shm = shared_memory_for("all_gather", group, nbytes(local) / std::max<int64_t>(1, local.size(dim)) * widest))
      return shm->all_gather(local.contiguous(), dim, *sizes);
  auto rows = local.movedim(dim, 0);
  auto shape = rows.sizes().vec();
  if (widest == 0) {
    shape[0] = 0;
    return at::empty(shape, local.options()).movedim(0, dim);
  }
  int64_t inner = 1;
  for (size_t d = 1; d < shape.size(); ++d) inner *= shape[d];
  if (g_all_gather.load() == AllGatherAlgorithm::kAllToAll) {
    // Every rank's block travels as it is (contiguous, not transposed) and the blocks are
    // concatenated along `dim` once, as PyTorch's functional all_gather does.
    auto block = local.contiguous();
    auto arrived = exchange("all_gather", group, std::vector<at::Tensor>(k, block),
                            block_counts(local, dim, *sizes), nbytes(local));
    return concat_blocks(arrived, local.sizes(), dim, *sizes);
  }
  bool even = std::all_of(sizes->begin(), sizes->end(), [&](int64_t s) { return s == widest; });
  if (even && rows.is_contiguous()) {
    shape[0] = widest * k;
    auto gathered = at::empty(shape, local.options());
    run("all_gather", group, nbytes(local),
        [&](c10d::Backend& b) { return b._allgather_base(gathered, rows); });
    return dim == 0 ? gathered : gathered.movedim(0, dim).contiguous();
  }
  // Gloo gathers equal pieces: pad this rank's rows to the widest in the group's staging
  // buffer, gather there, and concatenate the real rows into a fresh tensor.
  auto staging = group.impl().staging(local.scalar_type(), inner * widest * (k + 1));
  shape[0] = widest;
  auto send = staging.narrow(0, 0, inner * widest).view(shape);
  send.narrow(0, 0, rows.size(0)).copy_(rows);
  shape[0] = widest * k;
  auto gathered = staging.narrow(0, inner * widest, inner * widest * k).view(shape);
  run("all_gather", group, nbytes(local),
      [&](c10d::Backend& b) { return b._allgather_base(gathered, send); });
  std::vector<at::Tensor> pieces;
  for (int i = 0; i < k; ++i) pieces.push_back(gathered.narrow(0, i * widest, (*sizes)[i]));
  auto rows_out = at::cat(pieces, 0);
  return dim == 0 ? rows_out : rows_out.movedim(0, dim).contiguous();
}

at::Tensor reduce_scatter(const at::Tensor& full, int64_t dim, ReduceOp op, const Group& group) {
  check_cpu(full, "reduce_scatter");
  dim = normalize_dim(dim, full.dim(), "reduce_scatter");
  const int k = group.size();
  const int me = group.rank();
  if (k == 1) return full;
  if (auto* shm = shared_memory_for("reduce_scatter", group, nbytes(full)))
    return shm->reduce_scatter(full.contiguous(), dim, op);
  auto pieces = split_by_chunk_rule(full, dim, k);
  auto mine_shape = pieces[me].sizes().vec();
  switch (g_reduce_scatter.load()) {
    case ReduceScatterAlgorithm::kAllReduce: {
      auto copy = full.contiguous().clone();
      all_reduce(copy, op, group);
      return split_by_chunk_rule(copy, dim, k)[me].contiguous();
    }
    case ReduceScatterAlgorithm::kGloo: {
      std::vector<at::Tensor> out{at::empty(mine_shape, full.options())};
      std::vector<std::vector<at::Tensor>> in(1);
      for (auto& p : pieces) in[0].push_back(p.contiguous());
      c10d::ReduceScatterOptions options;
      options.reduceOp = to_c10d(op);
      run("reduce_scatter", group, nbytes(full),
          [&](c10d::Backend& b) { return b.reduce_scatter(out, in, options); });
      return out[0];
    }
    case ReduceScatterAlgorithm::kAllToAll:
      break;
  }
  // Each rank receives every rank's copy of its own piece (the bytes a ring reduce_scatter
  // moves) and reduces locally.
  auto arrived = exchange("reduce_scatter", group, pieces,
                          std::vector<int64_t>(k, pieces[me].numel()), nbytes(full));
  auto result = arrived[0].clone();  // out of the staging buffer: it is the caller's
  for (int i = 1; i < k; ++i) {
    if (op == ReduceOp::kMax)
      at::maximum_out(result, result, arrived[i]);
    else
      result.add_(arrived[i]);
  }
  if (op == ReduceOp::kAvg) result.div_(k);
  return result.view(mine_shape);
}

at::Tensor all_to_all(const at::Tensor& local, int64_t split_dim, int64_t concat_dim,
                      int64_t concat_full_size, const Group& group) {
  check_cpu(local, "all_to_all");
  split_dim = normalize_dim(split_dim, local.dim(), "all_to_all");
  concat_dim = normalize_dim(concat_dim, local.dim(), "all_to_all");
  const int k = group.size();
  const int me = group.rank();
  if (local.size(concat_dim) != chunk_size(concat_full_size, k, me))
    kdist::detail::invalid("comm", "all_to_all on ", group.name(), ": local size ",
                           local.size(concat_dim), " along dim ", concat_dim,
                           " is not piece ", me, " of ", concat_full_size, " split in ", k);
  if (k == 1) return local;
  auto pieces = split_by_chunk_rule(local, split_dim, k);
  // From rank i arrives piece `me` of its split dim, with rank i's size along concat_dim.
  std::vector<std::vector<int64_t>> shapes;
  std::vector<int64_t> recv_counts;
  for (int i = 0; i < k; ++i) {
    auto shape = pieces[me].sizes().vec();
    shape[concat_dim] = chunk_size(concat_full_size, k, i);
    recv_counts.push_back(std::accumulate(shape.begin(), shape.end(), int64_t{1},
                                          std::multiplies<int64_t>()));
    shapes.push_back(shape);
  }
  auto arrived = exchange("all_to_all", group, pieces, recv_counts, nbytes(local));
  std::vector<at::Tensor> parts;
  for (int i = 0; i < k; ++i) parts.push_back(arrived[i].view(shapes[i]));
  return at::cat(parts, concat_dim);  // a fresh tensor: the staging buffer is reused
}

struct PendingCollective::Impl {
  c10::intrusive_ptr<c10d::Work> work;  // null for a group of one
  const Group* group;
};

PendingCollective all_reduce_async(const at::Tensor& tensor, ReduceOp op, const Group& group) {
  check_cpu(tensor, "all_reduce_async");
  if (!tensor.is_contiguous())
    kdist::detail::invalid("comm", "all_reduce_async needs a contiguous tensor");
  auto impl = std::make_shared<PendingCollective::Impl>();
  impl->group = &group;
  if (group.size() == 1) return PendingCollective(impl);
  std::vector<at::Tensor> buffer{tensor};
  c10d::AllreduceOptions options;
  options.reduceOp = to_c10d(op);
  record("all_reduce", nbytes(tensor));
  try {
    impl->work = group.impl().backend->allreduce(buffer, options);
  } catch (const std::exception& e) {
    collective_failed("all_reduce", group, e);
  }
  return PendingCollective(impl);
}

void PendingCollective::wait() {
  if (!impl_ || !impl_->work) return;
  try {
    impl_->work->wait(detail::timeout());
  } catch (const std::exception& e) {
    collective_failed("all_reduce", *impl_->group, e);
  }
  impl_->work.reset();
}

struct PendingGather::Impl {
  Exchange exchange;
  c10::intrusive_ptr<c10d::Work> work;
  const Group* group;
  std::vector<int64_t> local_shape;
  int64_t dim;
  std::vector<int64_t> sizes;
};

PendingGather all_gather_async(const at::Tensor& local, int64_t dim, const Group& group,
                               const std::vector<int64_t>& sizes) {
  check_cpu(local, "all_gather_async");
  dim = normalize_dim(dim, local.dim(), "all_gather_async");
  const int k = group.size();
  auto& impl = group.impl();
  check_sizes("all_gather_async", group, local, dim, sizes);
  const bool gloo = impl.transport == "gloo" || impl.shared_memory_unavailable;
  if (k == 1 || !gloo) return PendingGather();
  // The exchange's own buffer, not the group's staging one: other collectives run on the
  // group before this one is waited for.
  Exchange exchange(std::vector<at::Tensor>(k, local.contiguous()), block_counts(local, dim, sizes),
                    [&](c10::ScalarType dtype, int64_t numel) { return at::empty({numel}, local.options().dtype(dtype)); });
  auto pending = std::shared_ptr<PendingGather::Impl>(
      new PendingGather::Impl{std::move(exchange), nullptr, &group, local.sizes().vec(), dim, sizes});
  record("all_gather", nbytes(local));
  try {
    pending->work = pending->exchange.launch(*impl.backend);
  } catch (const std::exception& e) {
    collective_failed("all_gather", group, e);
  }
  return PendingGather(pending);
}

at::Tensor PendingGather::wait() {
  if (!impl_) kdist::detail::invalid("comm", "PendingGather::wait on a gather that was not launched");
  auto impl = std::move(impl_);
  try {
    impl->work->wait(detail::timeout());
  } catch (const std::exception& e) {
    collective_failed("all_gather", *impl->group, e);
  }
  return concat_blocks(impl->exchange.arrived, impl->local_shape, impl->dim, impl->sizes);
}

void broadcast(at::Tensor& tensor, int root, const Group& group) {
  check_cpu(tensor, "broadcast");
  if (root < 0 || root >= group.size())
    kdist::detail::invalid("comm", "broadcast root ", root, " is outside ", group.name());
  if (group.size() == 1) return;
  std::vector<at::Tensor> buffer{tensor.is_contiguous() ? tensor : tensor.contiguous()};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  run("broadcast", group, nbytes(tensor),
      [&](c10d::Backend& b) { return b.broadcast(buffer, options); });
  if (!buffer[0].is_same(tensor)) tensor.copy_(buffer[0]);
}

void barrier(const Group& group) {
  if (group.size() == 1) return;
  run("barrier", group, 0, [&](c10d::Backend& b) { return b.barrier(); });
}

int first_failed_rank(bool failed) {
  if (!is_initialized() || num_processes() == 1) return failed ? process_id() : -1;
  auto flags = all_gather(at::full({1}, failed ? 1.0f : 0.0f), 0, *world());
  auto failing = flags.nonzero();
  return failing.numel() > 0 ? static_cast<int>(failing[0].item<int64_t>()) : -1;
}

// ---- CollectiveCounter ---------------------------------------------------------------------

namespace {
std::mutex g_counters_mutex;
std::vector<CollectiveCounter*> g_counters;

thread_local int t_uncounted = 0;

void record(const std::string& kind, int64_t bytes) {
  if (t_uncounted > 0) return;
  std::lock_guard<std::mutex> lock(g_counters_mutex);
  for (auto* counter : g_counters) counter->record(kind, bytes);
}
}  // namespace

void detail::record_collective(const std::string& kind, int64_t bytes) { record(kind, bytes); }
detail::UncountedScope::UncountedScope() { ++t_uncounted; }
detail::UncountedScope::~UncountedScope() { --t_uncounted; }

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
