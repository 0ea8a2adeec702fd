// SharedMemorySegment: POSIX shared memory, per-process barrier counters and a futex.
#include "comm/transports/shared_memory_segment.h"

#include <ATen/ATen.h>
#include <c10/util/accumulate.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>
#include <vector>

#include "base/errors.h"
#include "comm/context.h"
#include "comm/pieces.h"
#include "comm/transports/gloo.h"

namespace kdist::comm {
namespace {

constexpr int64_t kPage = 4096;
constexpr int kTokenBytes = 32;
constexpr int kNameBytes = 64;
// Spins before sleeping on the futex: peers usually arrive within microseconds, but with
// more processes than cores a spinning waiter only delays the one it waits for.
constexpr int kSpins = 2000;

// At the start of the segment. Fields that processes write concurrently get a cache line each.
struct Header {
  char token[kTokenBytes];                        // proves that an opener mapped the segment rank 0 made
  alignas(64) std::atomic<uint32_t> wake;         // futex word, bumped at every arrival
  alignas(64) std::atomic<int32_t> abandoned_by;  // 1 + group rank of a process that gave up
};

struct alignas(64) Peer {
  std::atomic<uint64_t> barriers;  // how many barriers this process has reached
  int32_t pid;
  uint64_t pid_namespace;  // liveness checks by pid need one pid namespace
};

static_assert(std::atomic<uint32_t>::is_always_lock_free && std::atomic<uint64_t>::is_always_lock_free,
              "cross-process atomics must be lock-free");
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "the futex word is a plain uint32");

int64_t round_up(int64_t n, int64_t to) { return (n + to - 1) / to * to; }

std::string random_hex(int chars) {
  std::random_device device;
  std::ostringstream out;
  out << std::hex;
  while (static_cast<int>(out.tellp()) < chars) out << device();
  return out.str().substr(0, chars);
}

uint64_t pid_namespace() {
  struct stat info {};
  return stat("/proc/self/ns/pid", &info) == 0 ? static_cast<uint64_t>(info.st_ino) : 0;
}

// Gone: no such process, or a zombie whose every thread has exited (what its parent can
// reap). A process whose main thread has exited while others still wind down is not gone
// yet: it may still write, and its launcher has not seen it end (a peer that failed first
// would be blamed for its death).
bool process_gone(int pid) {
  if (kill(pid, 0) == -1 && errno == ESRCH) return true;
  std::ifstream file("/proc/" + std::to_string(pid) + "/status");
  bool zombie = false;
  int threads = 0;
  for (std::string line; std::getline(file, line);) {
    if (line.rfind("State:", 0) == 0)
      zombie = line.find('Z') != std::string::npos || line.find('X') != std::string::npos;
    if (line.rfind("Threads:", 0) == 0) threads = std::atoi(line.c_str() + 8);
  }
  return zombie && threads <= 1;  // no /proc: alive
}

void futex_wait(std::atomic<uint32_t>& word, uint32_t seen, std::chrono::microseconds limit) {
  timespec ts{static_cast<time_t>(limit.count() / 1000000),
              static_cast<long>(limit.count() % 1000000) * 1000};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT, seen, &ts, nullptr, 0);
}

void futex_wake(std::atomic<uint32_t>& word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

// Reduces `inputs` into `piece`, in order: onto the value it holds where `holds_one` (it is
// one of the values reduced), else from the first two inputs on, out of place.
void reduce_onto(at::Tensor& piece, bool holds_one, const std::vector<at::Tensor>& inputs, bool max) {
  if (piece.numel() == 0) return;
  size_t next = 0;
  if (!holds_one) {
    if (inputs.size() == 1) {
      piece.copy_(inputs[0]);
    } else if (max) {
      at::maximum_out(piece, inputs[0], inputs[1]);
    } else {
      at::add_out(piece, inputs[0], inputs[1]);
    }
    next = std::min<size_t>(2, inputs.size());
  }
  for (; next < inputs.size(); ++next) detail::accumulate(piece, inputs[next], max);
}

}  // namespace

struct SharedMemorySegment::Segment {
  void* base = nullptr;
  size_t bytes = 0;
  int64_t header_bytes = 0;
  int64_t region_bytes = 0;  // usable bytes of each region
  int64_t region_stride = 0;
  bool check_liveness = false;

  ~Segment() {
    if (base != nullptr) munmap(base, bytes);
  }
  Header& header() const { return *static_cast<Header*>(base); }
  Peer& peer(int i) const { return reinterpret_cast<Peer*>(static_cast<char*>(base) + sizeof(Header))[i]; }
  char* region(int i) const { return static_cast<char*>(base) + header_bytes + i * region_stride; }

  // Creates (create = true, exclusively) or opens the named segment and maps all of it.
  static std::shared_ptr<Segment> map(const std::string& name, size_t bytes, bool create,
                                      std::string* error) {
    int fd = open(name.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0600);
    if (fd < 0) {
      *error = detail_error("open", name, errno);
      return nullptr;
    }
    // fallocate reserves the pages now: on a full tmpfs, ftruncate alone would succeed and a
    // later page fault would kill the process with SIGBUS.
    if (create) {
      int rc = ftruncate(fd, static_cast<off_t>(bytes)) == 0 ? 0 : errno;
      if (rc == 0) rc = posix_fallocate(fd, 0, static_cast<off_t>(bytes));
      if (rc != 0) {
        *error = detail_error("reserving " + std::to_string(bytes) + " bytes in", name, rc);
        close(fd);
        unlink(name.c_str());
        return nullptr;
      }
    } else {
      struct stat info {};
      if (fstat(fd, &info) != 0 || static_cast<size_t>(info.st_size) != bytes) {
        *error = kdist::detail::cat("segment ", name, " has ", info.st_size, " bytes, expected ", bytes);
        close(fd);
        return nullptr;
      }
    }
    void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    int mmap_errno = errno;
    close(fd);
    if (base == MAP_FAILED) {
      *error = detail_error("mmap", name, mmap_errno);
      if (create) unlink(name.c_str());
      return nullptr;
    }
    auto segment = std::make_shared<Segment>();
    segment->base = base;
    segment->bytes = bytes;
    return segment;
  }

  static std::string detail_error(const std::string& what, const std::string& name, int error) {
    return kdist::detail::cat(what, " ", name, ": ", std::strerror(error));
  }
};

std::shared_ptr<SharedMemorySegment> SharedMemorySegment::create(const Group& group, int64_t region_bytes,
                                                                 std::string* why_not) {
  if (!GroupAccess::impl(group).gloo)
    kdist::detail::invalid("comm", "shared memory needs a group of two or more");
  return create(*GroupAccess::impl(group).gloo, region_bytes, detail::timeout(), detail::shared_memory_dir(),
                why_not);
}

std::shared_ptr<SharedMemorySegment> SharedMemorySegment::create(GlooBackend& setup, int64_t region_bytes,
                                                                 std::chrono::milliseconds timeout,
                                                                 const std::string& directory,
                                                                 std::string* why_not) {
  const auto& who = setup.identity();
  const int n = who.group_size, r = who.group_rank;
  const int64_t header_bytes = round_up(sizeof(Header) + n * sizeof(Peer), kPage);
  const int64_t stride = round_up(std::max<int64_t>(region_bytes, 1), kPage);
  const size_t total = static_cast<size_t>(header_bytes + n * stride);

  // Group rank 0 makes the segment and sends its file name and token: [name \0 ... | token].
  // Each process looks for the name in its own segment directory.
  auto message = at::zeros({kNameBytes + kTokenBytes}, at::kByte);
  auto* text = reinterpret_cast<char*>(message.data_ptr<uint8_t>());
  std::shared_ptr<Segment> segment;
  std::string error, name;
  if (r == 0) {
    const std::string file = "kdist." + std::to_string(getpid()) + "." + random_hex(16);
    name = directory + "/" + file;
    segment = Segment::map(name, total, /*create=*/true, &error);
    if (segment) {
      auto* header = new (segment->base) Header();
      std::memcpy(header->token, random_hex(kTokenBytes).data(), kTokenBytes);
      for (int i = 0; i < n; ++i) new (&segment->peer(i)) Peer();
      std::memcpy(text, file.data(), file.size());
      std::memcpy(text + kNameBytes, header->token, kTokenBytes);
    }
  }
  // A peer that fails inside the collectives below must not leave the file behind.
  struct UnlinkOnThrow {
    const std::string& name;
    bool armed;
    ~UnlinkOnThrow() {
      if (armed && std::uncaught_exceptions() > 0) unlink(name.c_str());
    }
  } unlink_on_throw{name, r == 0 && segment != nullptr};
  setup.broadcast(message, 0);
  if (r != 0) {
    if (text[0] == '\0') {
      error = "group rank 0 could not create a shared-memory segment";
    } else {
      name = directory + "/" + std::string(text, strnlen(text, kNameBytes));
      segment = Segment::map(name, total, /*create=*/false, &error);
      if (segment && std::memcmp(segment->header().token, text + kNameBytes, kTokenBytes) != 0) {
        error = "segment " + name + " here is not the one group rank 0 made (another host?)";
        segment.reset();
      }
    }
  }
  if (segment) {
    segment->header_bytes = header_bytes;
    segment->region_bytes = region_bytes;
    segment->region_stride = stride;
    segment->peer(r).pid = static_cast<int32_t>(getpid());
    segment->peer(r).pid_namespace = pid_namespace();
  }
  // Everyone agrees; once all have mapped it, the name can go (the memory stays).
  auto failed = at::full({1}, error.empty() ? 0 : r + 1, at::kInt);
  setup.all_reduce(failed, ReduceOp::kMax);
  if (r == 0 && segment) unlink(name.c_str());
  if (int failing = failed.item<int>(); failing != 0) {  // 1 + the highest failing group rank
    *why_not = error.empty()
                   ? kdist::detail::cat("group rank ", failing - 1, " could not map the segment ", name)
                   : error;
    return nullptr;
  }
  segment->check_liveness = true;
  for (int i = 0; i < n; ++i)
    if (segment->peer(i).pid_namespace == 0 ||
        segment->peer(i).pid_namespace != segment->peer(r).pid_namespace)
      segment->check_liveness = false;
  return std::shared_ptr<SharedMemorySegment>(
      new SharedMemorySegment(who.group_name, r, n, who.global_rank, timeout, std::move(segment)));
}

SharedMemorySegment::SharedMemorySegment(std::string group_name, int rank, int size, int global_rank,
                                         std::chrono::milliseconds timeout, std::shared_ptr<Segment> segment)
    : group_name_(std::move(group_name)),
      rank_(rank),
      size_(size),
      global_rank_(global_rank),
      timeout_(timeout),
      segment_(std::move(segment)) {}

SharedMemorySegment::~SharedMemorySegment() = default;

at::Tensor SharedMemorySegment::region(int64_t offset, int64_t numel, c10::ScalarType dtype) {
  const int64_t item = static_cast<int64_t>(c10::elementSize(dtype));
  if (offset % item != 0)
    kdist::detail::invalid("comm", "shared-memory region offset ", offset, " is not a multiple of ",
                           c10::toString(dtype), "'s ", item, " bytes");
  if (offset < 0 || numel < 0 || offset + numel * item > segment_->region_bytes)
    kdist::detail::invalid("comm", "shared-memory region [", offset, ", ", offset + numel * item, ") of ",
                           c10::toString(dtype), " does not fit the ", segment_->region_bytes,
                           "-byte region");
  auto keep = shared_from_this();  // the tensor's storage keeps the segment alive
  return at::from_blob(
      segment_->region(rank_) + offset, {numel}, [keep](void*) {}, at::TensorOptions().dtype(dtype));
}

at::Tensor SharedMemorySegment::view(int process, int64_t offset, int64_t numel,
                                     c10::ScalarType dtype) const {
  return at::from_blob(segment_->region(process) + offset, {numel}, at::TensorOptions().dtype(dtype));
}

void SharedMemorySegment::fail(const std::string& why) {
  broken_ = true;
  kdist::detail::failure("comm", operation_, " on ", group_name_, " failed on rank ", global_rank_,
                         " (shared memory): ", why);
}

void SharedMemorySegment::wait_for_all(const char* phase) {
  auto& header = segment_->header();
  const uint64_t target = ++barriers_;
  segment_->peer(rank_).barriers.store(target);
  header.wake.fetch_add(1);
  futex_wake(header.wake);

  auto give_up = [&](const std::string& why) {
    abandon();
    fail(why);
  };
  const auto limit = timeout_;
  const auto start = std::chrono::steady_clock::now();
  auto next_liveness_check = start + std::chrono::milliseconds(100);
  for (int spin = 0;; ++spin) {
    const uint32_t seen = header.wake.load();
    std::vector<int> missing;
    for (int q = 0; q < size_; ++q)
      if (segment_->peer(q).barriers.load() < target) missing.push_back(q);
    if (missing.empty()) return;
    if (int q = header.abandoned_by.load(); q > 0)
      fail(kdist::detail::cat("group rank ", q - 1, " gave up (it timed out or saw a peer exit)"));
    if (spin < kSpins) {
      __builtin_ia32_pause();
      continue;
    }
    futex_wait(header.wake, seen, std::chrono::milliseconds(20));
    const auto now = std::chrono::steady_clock::now();
    if (now - start > limit) {
      std::string ranks;
      for (int q : missing) ranks += (ranks.empty() ? "" : ",") + std::to_string(q);
      give_up(kdist::detail::cat("waited ", limit.count() / 1000.0, " s (KDIST_TIMEOUT_S) in the '", phase,
                                 "' barrier for group rank(s) ", ranks));
    }
    if (segment_->check_liveness && now >= next_liveness_check) {
      for (int q : missing)
        if (process_gone(segment_->peer(q).pid))
          give_up(kdist::detail::cat("the process of group rank ", q, " (pid ", segment_->peer(q).pid,
                                     ") has exited"));
      next_liveness_check = now + std::chrono::milliseconds(100);
    }
  }
}

void SharedMemorySegment::abandon() {
  auto& header = segment_->header();
  header.abandoned_by.store(rank_ + 1);
  header.wake.fetch_add(1);
  futex_wake(header.wake);
  broken_ = true;
}

void SharedMemorySegment::check_usable() {
  if (broken_) fail("an earlier call failed, so the group's shared memory is out of step");
}

bool SharedMemorySegment::holds(const at::Tensor& t) const {
  const auto* mine = segment_->region(rank_);
  const auto* at = static_cast<const char*>(t.data_ptr());
  return t.defined() && at >= mine && at + detail::nbytes(t) <= mine + segment_->region_bytes;
}

void SharedMemorySegment::reduce(const at::Tensor& data, ReduceOp op) {
  if (!data.is_contiguous() || !holds(data))
    kdist::detail::invalid("comm",
                           "shared-memory all_reduce needs a contiguous tensor inside "
                           "this process's region (from region())");
  at::Tensor in_place = data;
  reduce_into(data, in_place, op);
}

int64_t SharedMemorySegment::capacity() const { return segment_->region_bytes; }

// Written (every region holds its data), reduced (each process has reduced its torch.chunk
// piece over all regions, own value first, peers in rank order, and published it in its
// region), gathered (each has copied the others' pieces from their owners). A tensor inside
// this process's region (reduce) is its own staging, at the same offset on every process. A
// tensor outside it is staged at offset 0, and only the pieces the others reduce are copied
// in: this process reduces its own piece straight from `source` into `out` and publishes
// the result in the slot it never copied in (less memory traffic than staging the whole
// tensor). `out` may be `source`.
void SharedMemorySegment::reduce_into(const at::Tensor& source, at::Tensor& out, ReduceOp op, int root) {
  operation_ = root < 0 ? "all_reduce" : "reduce";
  const bool receives = root < 0 || root == rank_;
  check_usable();
  const int64_t n = source.numel();
  const auto dtype = source.scalar_type();
  const bool max = op == ReduceOp::kMax;
  auto from = source.view({n});
  const bool staged_in_place = out.is_same(source) && holds(source);
  auto staged = staged_in_place ? from : region(0, n, dtype);
  // A process that receives nothing reduces its piece straight into its region.
  auto into = receives ? out.view({n}) : staged;
  const int64_t offset = static_cast<const char*>(staged.data_ptr()) - segment_->region(rank_);
  if (!staged_in_place)
    for (int q = 0; q < size_; ++q)
      if (q != rank_) chunk_piece(staged, 0, size_, q).copy_(chunk_piece(from, 0, size_, q));
  wait_for_all("written");
  auto mine = chunk_piece(from, 0, size_, rank_);
  auto piece = chunk_piece(into, 0, size_, rank_);
  const int64_t at = chunk_offset(n, size_, rank_);
  // In place, `piece` is this process's own value already.
  const bool holds_mine = receives && out.is_same(source);
  std::vector<at::Tensor> inputs;
  if (!holds_mine) inputs.push_back(mine);
  for (int q = 0; q < size_; ++q)
    if (q != rank_) inputs.push_back(view(q, offset, n, dtype).narrow(0, at, piece.numel()));
  reduce_onto(piece, holds_mine, inputs, max);
  if (op == ReduceOp::kAvg) piece.div_(size_);
  if (!staged_in_place && receives) chunk_piece(staged, 0, size_, rank_).copy_(piece);
  wait_for_all("reduced");
  for (int q = 0; q < size_ && receives; ++q) {
    if (q == rank_) continue;
    auto theirs = chunk_piece(view(q, offset, n, dtype), 0, size_, q);
    if (theirs.numel() > 0) chunk_piece(into, 0, size_, q).copy_(theirs);
  }
  wait_for_all("gathered");
}

void SharedMemorySegment::all_reduce(at::Tensor& tensor, ReduceOp op) { reduce_into(tensor, tensor, op); }

at::Tensor SharedMemorySegment::all_reduce_copy(const at::Tensor& tensor, ReduceOp op) {
  auto out = results_.take(tensor.sizes(), tensor.options());
  reduce_into(tensor, out, op);
  return out;
}

// Every process writes its block into its region; each then reads every block (one copy
// out of shared memory, the concatenation), and a last barrier keeps the regions unchanged
// until all have read them.
at::Tensor SharedMemorySegment::all_gather(const at::Tensor& local, int64_t dim,
                                           const std::vector<int64_t>& sizes) {
  operation_ = "all_gather";
  check_usable();
  const auto dtype = local.scalar_type();
  region(0, local.numel(), dtype).view(local.sizes()).copy_(local);
  wait_for_all("written");
  const auto counts = detail::block_counts(local.sizes(), dim, sizes);
  auto shape = local.sizes().vec();
  std::vector<at::Tensor> blocks;
  for (int q = 0; q < size_; ++q) {
    shape[dim] = sizes[q];
    blocks.push_back(q == rank_ ? local : view(q, 0, counts[q], dtype).view(shape));
  }
  shape[dim] = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
  auto gathered = results_.take(shape, local.options());
  at::cat_out(gathered, blocks, dim);
  wait_for_all("read");
  return gathered;
}

// Every process writes the whole tensor into its region; each then reduces its own
// torch.chunk piece over all regions, peers in rank order (the same bits as Gloo's path).
at::Tensor SharedMemorySegment::reduce_scatter(const at::Tensor& full, int64_t dim, ReduceOp op) {
  operation_ = "reduce_scatter";
  check_usable();
  const auto dtype = full.scalar_type();
  const int64_t n = full.numel();
  region(0, n, dtype).view(full.sizes()).copy_(full);
  wait_for_all("written");
  auto piece_of = [&](int q) {
    return chunk_piece(view(q, 0, n, dtype).view(full.sizes()), dim, size_, rank_);
  };
  auto result = results_.take(piece_of(0).sizes(), full.options());
  if (op == ReduceOp::kMax)
    at::maximum_out(result, piece_of(0), piece_of(1));
  else
    at::add_out(result, piece_of(0), piece_of(1));
  for (int q = 2; q < size_; ++q) detail::accumulate(result, piece_of(q), op == ReduceOp::kMax);
  if (op == ReduceOp::kAvg) result.div_(size_);
  wait_for_all("read");
  return result;
}

// A table of where each piece starts (k int64 element offsets, a cache line or more) and then
// the pieces for group ranks 0..k-1 in order; rank q's piece for this rank is read straight
// from q's region.
int64_t SharedMemorySegment::all_to_all_bytes(const at::Tensor& local, int64_t concat_dim,
                                              int64_t concat_full_size, int k) {
  int64_t inner = 1;  // elements per index along concat_dim
  for (int64_t d = 0; d < local.dim(); ++d)
    if (d != concat_dim) inner *= local.size(d);
  const int64_t widest = inner * chunk_size(concat_full_size, k, 0);  // piece 0 is never smaller
  return round_up(k * static_cast<int64_t>(sizeof(int64_t)), 64) +
         widest * static_cast<int64_t>(local.element_size());
}

at::Tensor SharedMemorySegment::all_to_all(const at::Tensor& local, int64_t split_dim, int64_t concat_dim,
                                           int64_t concat_full_size) {
  operation_ = "all_to_all";
  check_usable();
  const auto dtype = local.scalar_type();
  const int64_t item = static_cast<int64_t>(local.element_size());
  const int64_t table_bytes = round_up(size_ * static_cast<int64_t>(sizeof(int64_t)), 64);
  auto table = region(0, size_, at::kLong);
  auto* starts = table.data_ptr<int64_t>();
  auto pieces = detail::split_by_chunk_rule(local, split_dim, size_);
  int64_t offset = 0;  // elements after the table
  for (int j = 0; j < size_; ++j) {
    starts[j] = offset;
    region(table_bytes + offset * item, pieces[j].numel(), dtype).view(pieces[j].sizes()).copy_(pieces[j]);
    offset += pieces[j].numel();
  }
  wait_for_all("written");
  std::vector<at::Tensor> parts;
  for (int q = 0; q < size_; ++q) {
    const auto shape =
        detail::all_to_all_piece_shape(local, split_dim, concat_dim, concat_full_size, size_, q, rank_);
    const int64_t start = reinterpret_cast<const int64_t*>(segment_->region(q))[rank_];
    parts.push_back(view(q, table_bytes + start * item, c10::multiply_integers(shape), dtype).view(shape));
  }
  auto shape = parts[0].sizes().vec();
  shape[concat_dim] = concat_full_size;
  auto result = results_.take(shape, local.options());
  at::cat_out(result, parts, concat_dim);
  wait_for_all("read");
  return result;
}

void SharedMemorySegment::broadcast(at::Tensor& tensor, int root) {
  operation_ = "broadcast";
  check_usable();
  const auto dtype = tensor.scalar_type();
  if (rank_ == root) region(0, tensor.numel(), dtype).view(tensor.sizes()).copy_(tensor);
  wait_for_all("written");
  if (rank_ != root) tensor.copy_(view(root, 0, tensor.numel(), dtype).view(tensor.sizes()));
  wait_for_all("read");
}

// Written (each process has staged the pieces the others reduce, as in reduce_into), reduced
// (each has reduced its piece into the root's region, over the root's staged value there),
// crossed (the root has run `between` on the whole) and read (each has its copy). Against
// a reduction to the root and a broadcast, the root neither gathers the pieces nor copies the result into
// its region, and nobody copies the result twice: on the leader, which also runs the step
// between hosts, that is the critical path.
void SharedMemorySegment::all_reduce_around(at::Tensor& tensor, ReduceOp op, int root,
                                            const std::function<void(at::Tensor&)>& between) {
  operation_ = "all_reduce";
  check_usable();
  const int64_t n = tensor.numel();
  const auto dtype = tensor.scalar_type();
  const bool max = op == ReduceOp::kMax;
  auto from = tensor.view({n});
  const bool in_place = holds(tensor);
  auto staged = in_place ? from : region(0, n, dtype);
  const int64_t offset = static_cast<const char*>(staged.data_ptr()) - segment_->region(rank_);
  if (!in_place)
    for (int q = 0; q < size_; ++q)
      if (q != rank_) chunk_piece(staged, 0, size_, q).copy_(chunk_piece(from, 0, size_, q));
  wait_for_all("written");
  auto result = view(root, offset, n, dtype);
  auto piece = chunk_piece(result, 0, size_, rank_);
  auto mine = chunk_piece(from, 0, size_, rank_);
  const int64_t at = chunk_offset(n, size_, rank_);
  // Every piece of the root's region holds one value already (the root's own), except the
  // root's piece of a tensor staged outside it.
  const bool holds_one = rank_ != root || in_place;
  std::vector<at::Tensor> inputs;
  if (rank_ != root || !in_place) inputs.push_back(mine);
  for (int q = 0; q < size_; ++q)
    if (q != rank_ && q != root) inputs.push_back(view(q, offset, n, dtype).narrow(0, at, piece.numel()));
  reduce_onto(piece, holds_one, inputs, max);
  if (piece.numel() > 0 && op == ReduceOp::kAvg) piece.div_(size_);
  wait_for_all("reduced");
  if (rank_ == root) {
    try {
      auto whole = result.view(tensor.sizes());
      between(whole);
    } catch (...) {
      abandon();
      throw;
    }
  }
  wait_for_all("crossed");
  if (!(rank_ == root && in_place)) from.copy_(result);
  wait_for_all("read");
}

// Written (every block in its place in the root's region), crossed (the root has run
// `between`) and read (each has its copy).
at::Tensor SharedMemorySegment::all_gather_around(const at::Tensor& local, int64_t dim,
                                                  const std::vector<int64_t>& sizes, int64_t full_size,
                                                  int64_t offset, int root,
                                                  const std::function<void(at::Tensor&)>& between) {
  operation_ = "all_gather";
  check_usable();
  auto shape = local.sizes().vec();
  shape[dim] = full_size;
  auto full = view(root, 0, c10::multiply_integers(shape), local.scalar_type()).view(shape);
  full.narrow(dim, offset + detail::offset_of(sizes, rank_), sizes[rank_]).copy_(local);
  wait_for_all("written");
  if (rank_ == root) {
    try {
      between(full);
    } catch (...) {
      abandon();
      throw;
    }
  }
  wait_for_all("crossed");
  auto result = results_.take(shape, local.options());
  result.copy_(full);
  wait_for_all("read");
  return result;
}

void SharedMemorySegment::barrier() {
  operation_ = "barrier";
  check_usable();
  wait_for_all("barrier");
}

}  // namespace kdist::comm
