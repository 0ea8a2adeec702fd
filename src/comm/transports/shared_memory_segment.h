#pragma once
// SharedMemorySegment: comm's collectives across the processes of one group that share a
// host, through one shared-memory segment instead of Gloo's TCP loopback. The shared-memory
// backend (shared_memory_backend.cpp) owns one per group and grows it; allocate_buffer gives
// callers memory inside one of their own.
//
//   std::string why_not;
//   auto shm = SharedMemorySegment::create(gloo, bytes, timeout, &why_not);  // collective
//   if (shm) {
//     auto data = shm->region(0, n, at::kFloat);  // this process's memory in the segment
//     data.copy_(gradients);                      // (or compute straight into it)
//     shm->reduce(data, ReduceOp::kSum);          // every process now holds the sum
//   }
//
// The segment holds a header and one region per process. reduce() takes three barriers:
// written (every region holds its data), reduced (each process has reduced its torch.chunk
// piece of the range over all regions, in its own region) and gathered (each has copied the
// other pieces from their owners). The last keeps a process from writing its region again
// while a peer still reads it. One process reduces each piece, peers in rank order, so every
// process ends with the same bits. For 2 processes that is 1.5 passes over the data per
// process, where TCP loopback costs several copies through the kernel and Gloo's thread. The
// other collectives write into their own region, pass one barrier, read what they need from
// the others' regions into their result, and pass a second before a region is written again.
//
// Contract: every process of the group calls create(), then the same collectives with the
// same shapes in the same order. A peer that does not arrive within the timeout, or whose
// process has exited, makes the call throw std::runtime_error naming it, on every process
// still waiting (a dead peer is seen within about 100 ms). The segment is a file in the
// directory create() is given (the job's KDIST_SHM_DIR, read once by runtime into its
// JobConfig, else /dev/shm; a tmpfs every process of the host sees), reserved in full
// at creation and unlinked as soon as every process has mapped it, so nothing is left behind
// when the job ends, even if it crashes. Tensors from region() keep the mapping alive.
#include <kdist/comm.h>

#include "comm/result_pool.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace kdist::comm {

class GlooBackend;

class SharedMemorySegment : public std::enable_shared_from_this<SharedMemorySegment> {
 public:
  struct Segment;

  // Collective over the group of `setup` (one broadcast and one all_reduce through it).
  // Returns null on every process alike when they cannot all map one segment (different
  // hosts, separate /dev/shm, too little room); `why_not` then says why.
  // The segment is a file in `directory`, a tmpfs every process of the host sees.
  static std::shared_ptr<SharedMemorySegment> create(GlooBackend& setup, int64_t region_bytes,
                                                     std::chrono::milliseconds timeout,
                                                     const std::string& directory, std::string* why_not);
  // The same through a group's own Gloo backend, in the job's directory (tests).
  static std::shared_ptr<SharedMemorySegment> create(const Group& group, int64_t region_bytes,
                                                     std::string* why_not);
  ~SharedMemorySegment();
  SharedMemorySegment(const SharedMemorySegment&) = delete;
  SharedMemorySegment& operator=(const SharedMemorySegment&) = delete;

  // `numel` elements of this process's region from byte `offset` on (aligned to the dtype).
  // The tensor keeps this object alive.
  at::Tensor region(int64_t offset, int64_t numel, c10::ScalarType dtype);
  // Whether `t` lies inside this process's region (a tensor from region(), or a view of one).
  bool holds(const at::Tensor& t) const;
  // Reduces `data`, a contiguous tensor inside this process's region, over the group, in
  // place (every process passes the same range).
  void reduce(const at::Tensor& data, ReduceOp op);
  void sum(const at::Tensor& data) { reduce(data, ReduceOp::kSum); }

  // comm's collectives on any contiguous tensor, through this process's region (from offset
  // 0; what a call writes must fit capacity(), see bytes_needed). Same bits as GlooBackend's.
  int64_t capacity() const;
  void all_reduce(at::Tensor& tensor, ReduceOp op);
  at::Tensor all_reduce_copy(const at::Tensor& tensor, ReduceOp op);  // `tensor` left as it is
  at::Tensor all_gather(const at::Tensor& local, int64_t dim, const std::vector<int64_t>& sizes);
  at::Tensor reduce_scatter(const at::Tensor& full, int64_t dim, ReduceOp op);
  at::Tensor all_to_all(const at::Tensor& local, int64_t split_dim, int64_t concat_dim,
                        int64_t concat_full_size);
  void broadcast(at::Tensor& tensor, int root);
  // HostSteps::all_reduce_around: each process reduces its piece straight into the root's
  // region, the root runs `between` there, and each process copies the result out once. A
  // tensor inside this process's region is reduced where it lies (the root's needs no copy).
  // Where `between` throws, the others fail at once rather than time out.
  void all_reduce_around(at::Tensor& tensor, ReduceOp op, int root,
                         const std::function<void(at::Tensor&)>& between);
  // HostSteps::all_gather_around: each process writes its block straight into its place in
  // the root's region, the root runs `between` there, and each process copies the whole out
  // once. Where `between` throws, the others fail at once.
  at::Tensor all_gather_around(const at::Tensor& local, int64_t dim, const std::vector<int64_t>& sizes,
                               int64_t full_size, int64_t offset, int root,
                               const std::function<void(at::Tensor&)>& between);
  void barrier();
  // The region bytes all_to_all needs, alike on every process of the group.
  static int64_t all_to_all_bytes(const at::Tensor& local, int64_t concat_dim, int64_t concat_full_size,
                                  int k);

 private:
  SharedMemorySegment(std::string group_name, int rank, int size, int global_rank,
                      std::chrono::milliseconds timeout, std::shared_ptr<Segment> segment);
  // The reduction into `out` on every process, or (root >= 0) on `root` alone, whose `out`
  // is the only one used.
  void reduce_into(const at::Tensor& source, at::Tensor& out, ReduceOp op, int root = -1);
  void wait_for_all(const char* phase);
  // Tells the others this process gave up (they fail at their next barrier) and refuses
  // every later call here.
  void abandon();
  [[noreturn]] void fail(const std::string& why);
  at::Tensor view(int process, int64_t offset, int64_t numel, c10::ScalarType dtype) const;

  std::string group_name_;
  int rank_, size_, global_rank_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<Segment> segment_;
  ResultPool results_;
  uint64_t barriers_ = 0;  // how many this process has passed
  bool broken_ = false;
  const char* operation_ = "all_reduce";  // for messages: the collective in progress
  void check_usable();
};

}  // namespace kdist::comm
