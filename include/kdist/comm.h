#pragma once
// comm: the collectives kdist's layers use, over process groups that follow a DeviceMesh.
// It is the only part of kdist that talks to c10d (Gloo on CPU).
//
//   kdist::initialize();                                   // from the launcher's environment
//   auto model = kdist::comm::axis_group(*mesh, "model");  // this rank's group along "model"
//   kdist::comm::all_reduce(t, kdist::comm::ReduceOp::kSum, *model);
//   auto full = kdist::comm::all_gather(shard, /*dim=*/0, *model, /*sizes=*/{3, 3, 3, 1});
//
// Groups are created collectively: every rank of the job must ask for the groups of a mesh
// axis (axis_group) in the same order; results are cached per rank set. A group of size 1
// makes every collective a no-op that costs nothing.
//
// Sizes along a dimension follow torch.chunk (chunk_size, layout.h): reduce_scatter and all_to_all split
// by that rule; all_gather takes each rank's size, so uneven shards work everywhere.
//
// Transport: comm picks one per group when it creates the group, from where its processes
// run (agreed at the rendezvous: same host = same hostname, boot id and /dev/shm device):
// shared memory for every collective when all run on one host; hierarchical (shared memory
// on each host, Gloo between one leader per host) when they span hosts and share some; Gloo
// otherwise. The layers above ask for collectives on a group and never name a transport.
// KDIST_TRANSPORT=gloo makes every group use Gloo, =shm makes shared memory that cannot be
// had an error, =auto (the default) falls back to Gloo and says why under
// KERAS_DISTRIBUTION_DEBUG=1; GroupOptions forces one group's transport (tests, benchmarks).
// All give the same results (the same bits for all_gather, reduce_scatter and all_to_all on
// one host; all_reduce within rounding for more than 2 ranks or across hosts).
//
// Every collective waits at most KDIST_TIMEOUT_S seconds (default 300) and then throws
// std::runtime_error naming the operation, the group and the rank; a dead peer is reported
// the same way. Tensors must be contiguous-able CPU tensors of the same dtype on every rank.
#include <ATen/core/Tensor.h>  // at::Tensor is torch::Tensor
#include <kdist/layout.h>
#include <kdist/mesh.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kdist::comm {

enum class ReduceOp { kSum, kAvg, kMax };

// A set of processes that run collectives together, on the transport comm chose for it;
// cheap to share.
class Group {
 public:
  struct Impl;
  explicit Group(std::shared_ptr<Impl> impl);
  int rank() const;  // this process's index in the group
  int size() const;
  const std::vector<int>& ranks() const;  // global ranks, in group order
  const std::string& name() const;        // "world" or "<axis> (ranks 1,3)"

 private:
  friend struct GroupAccess;  // comm's own files
  std::shared_ptr<Impl> impl_;
};
using GroupPtr = std::shared_ptr<const Group>;

// How a group's processes move data (see Transport above).
enum class Transport {
  kAuto,          // by where the processes run (and KDIST_TRANSPORT)
  kGloo,          // c10d's ProcessGroupGloo, TCP: anywhere
  kSharedMemory,  // one shared-memory segment: a group on one host (over hosts: kHierarchical)
  kHierarchical,  // shared memory on each host, Gloo between the hosts' leaders
  kNccl,          // c10d's ProcessGroupNCCL: a group's CUDA tensors, in builds on a CUDA LibTorch
};
// "auto", "gloo", "shared memory", "hierarchical", "nccl"
std::string to_string(Transport transport);

struct GroupOptions {
  // Asked for, not guaranteed: kSharedMemory throws std::runtime_error where the processes
  // cannot share a segment; kHierarchical throws std::invalid_argument on one host.
  Transport transport = Transport::kAuto;
};

// Every process of the job. Throws std::runtime_error before initialize().
GroupPtr world();
// This process's group along one axis of `mesh`: the ranks that differ from it only there.
// Cached per rank set and transport asked.
GroupPtr axis_group(const DeviceMesh& mesh, const std::string& axis, GroupOptions options = {});
GroupPtr axis_group(const DeviceMesh& mesh, int64_t axis, GroupOptions options = {});
// What the group runs on: kGloo, kSharedMemory or kHierarchical (kGloo for a group of one,
// which communicates nothing, and for a shared-memory group that fell back).
Transport transport(const Group& group);

// `bytes` of zeroed memory (a kByte tensor; view it as the dtype you need) whose all_reduce
// and all_reduce_async on `group` copy nothing in or out: on shared memory it lies in a
// segment of its own, elsewhere it is ordinary memory. Collective: every process of the
// group calls it with the same bytes. The tensor keeps the memory alive.
at::Tensor allocate_buffer(const Group& group, int64_t bytes);

// In place on every rank.
void all_reduce(at::Tensor& tensor, ReduceOp op, const Group& group);
// The same reduction into a new tensor, `tensor` left as it is (DTensor's Partial ->
// Replicate): on shared memory one pass less than clone() and all_reduce, into memory
// reused between calls.
at::Tensor all_reduce_copy(const at::Tensor& tensor, ReduceOp op, const Group& group);
// Rank i contributes `local`, whose size along `dim` is sizes[i] (other dims equal);
// returns the concatenation along `dim`. Without sizes, the sizes are exchanged first (one
// more, tiny all_gather).
at::Tensor all_gather(const at::Tensor& local, int64_t dim, const Group& group,
                      std::optional<std::vector<int64_t>> sizes = std::nullopt);
// Reduces `full` (same shape on every rank) and returns this rank's torch.chunk piece along dim.
at::Tensor reduce_scatter(const at::Tensor& full, int64_t dim, ReduceOp op, const Group& group);
// Splits `local` along split_dim by torch.chunk, sends piece j to group rank j, and
// concatenates what arrives along concat_dim. concat_full_size is the size of the
// concatenated dimension summed over the group (the pieces follow torch.chunk of it).
at::Tensor all_to_all(const at::Tensor& local, int64_t split_dim, int64_t concat_dim,
                      int64_t concat_full_size, const Group& group);
// A collective launched without waiting. wait() blocks until it is done (at most the
// timeout) and throws like the blocking collectives; the tensor must stay alive until then.
class PendingCollective {
 public:
  struct Impl;
  PendingCollective() = default;
  explicit PendingCollective(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  void wait();
  bool valid() const { return impl_ != nullptr; }

 private:
  std::shared_ptr<Impl> impl_;
};
// all_reduce of a contiguous tensor, in place, returning at once: Gloo runs it on its worker
// thread (the overlap of gradient synchronisation with backward); shared memory, which runs
// on the caller's thread, runs it in wait(), so launching never waits for a peer.
PendingCollective all_reduce_async(const at::Tensor& tensor, ReduceOp op, const Group& group);

// An all_gather launched without waiting (all_gather_async). wait() returns what all_gather
// would have and throws like it; call it once, on every rank that launched it.
class PendingGather {
 public:
  struct Impl;
  PendingGather() = default;
  explicit PendingGather(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  at::Tensor wait();
  bool valid() const { return impl_ != nullptr; }

 private:
  std::shared_ptr<Impl> impl_;
};
// all_gather with known sizes, run by Gloo's worker thread while the caller computes (FSDP's
// prefetch). `local` is copied before it returns. Where nothing would overlap it communicates
// nothing and returns an invalid PendingGather, and the caller uses all_gather: a group of
// one, or a group on shared memory, whose collectives run in the caller's thread. Every rank
// of the group gets the same answer.
PendingGather all_gather_async(const at::Tensor& local, int64_t dim, const Group& group,
                               const std::vector<int64_t>& sizes);

// Copies group rank `root`'s tensor into every rank's `tensor`, in place.
void broadcast(at::Tensor& tensor, int root, const Group& group);
void barrier(const Group& group);

// Point-to-point, for pipeline stages: send() hands `tensor` to group rank `dst`, whose recv()
// from this rank fills a tensor of the same shape and dtype, agreed beforehand: Gloo aborts
// the receiving process when more bytes arrive than its tensor holds, so a caller agrees the
// shapes once (as pipeline stages must) before the first transfer. Both block until the transfer is done,
// within the job's timeout: a send may wait for the peer's recv, so pair them (two ranks that both send first
// wait for each other); messages between two ranks arrive in the order they were sent.
// CPU tensors go through the group's Gloo whatever transport its collectives use (shared
// memory has no point-to-point yet). Counted as "send" and "recv".
//
//   if (stage == 0) kdist::comm::send(activations, 1, *pipe);
//   else            kdist::comm::recv(activations, 0, *pipe);   // preallocated, same shape
void send(const at::Tensor& tensor, int dst, const Group& group);
void recv(at::Tensor& tensor, int src, const Group& group);

// Collective over every process of the job: the global rank of the first process that
// passed failed = true, or -1 if none did, so that all processes agree a step failed
// somewhere. Before initialize() (or with one process) it answers for this process alone.
int first_failed_rank(bool failed);

// torch.chunk's rule lives beside Shard in layout.h; comm splits by it.
using kdist::chunk_offset;
using kdist::chunk_size;
using kdist::chunk_sizes;
// Piece `index` of `tensor` along `dim` by that rule (a view).
at::Tensor chunk_piece(const at::Tensor& tensor, int64_t dim, int64_t k, int64_t index);

// Counts the collectives this process runs while it is alive (like DTensor's CommDebugMode):
// by kind ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast",
// "barrier", "send", "recv") and by bytes this rank hands in: the whole tensor of an
// all_reduce, broadcast, reduce_scatter, send or recv, this rank's piece of an all_gather or
// all_to_all. Collectives on groups of
// size 1 are not counted: they do not communicate. Counters nest; each sees everything in its lifetime.
class CollectiveCounter {
 public:
  CollectiveCounter();
  ~CollectiveCounter();
  CollectiveCounter(const CollectiveCounter&) = delete;
  CollectiveCounter& operator=(const CollectiveCounter&) = delete;

  int64_t count(const std::string& kind) const;
  int64_t bytes(const std::string& kind) const;
  int64_t total_count() const;
  std::map<std::string, int64_t> counts() const;
  void record(const std::string& kind, int64_t bytes);  // called by comm

 private:
  std::map<std::string, std::pair<int64_t, int64_t>> by_kind_;  // count, bytes
};

}  // namespace kdist::comm
