#pragma once
// SharedMemoryAllReduce: a sum across the processes of one group that share a host, through
// one shared-memory segment instead of Gloo's TCP loopback.
//
//   std::string why_not;
//   auto shm = SharedMemoryAllReduce::create(group, bytes, &why_not);  // collective
//   if (shm) {
//     auto data = shm->region(0, n, at::kFloat);  // this process's memory in the segment
//     data.copy_(gradients);                      // (or compute straight into it)
//     shm->sum(data);                             // every process now holds the sum
//   }
//
// The segment holds a header and one region per process. sum() takes three barriers:
// written (every region holds its data), reduced (each process has summed its torch.chunk
// piece of the range over all regions, in its own region) and gathered (each has copied the
// other pieces from their owners). The last keeps a process from writing its region again
// while a peer still reads it. One process sums each piece, so every process ends with the
// same bits. For 2 processes that is 1.5 passes over the data per process, where TCP
// loopback costs several copies through the kernel and Gloo's thread.
//
// Contract: every process of the group calls create(), then sum() on the same ranges in the
// same order. A peer that does not arrive within KDIST_TIMEOUT_S, or whose process has
// exited, makes sum() throw std::runtime_error naming it, on every process still waiting.
// Tensors from region() keep the mapping alive. The segment is a file in /dev/shm (or
// KDIST_SHM_DIR, which must be a tmpfs every process of the host sees), reserved in full
// at creation and unlinked as soon as every process has mapped it, so nothing is left
// behind when the job ends, even if it crashes.
#include <kdist/comm.h>

#include <cstdint>
#include <memory>
#include <string>

namespace kdist::comm {

class SharedMemoryAllReduce {
 public:
  struct Segment;

  // Collective over `group` (one broadcast and one all_reduce on its backend). Returns null
  // on every process alike when they cannot all map one segment (different hosts, separate
  // /dev/shm, too little room); `why_not` then says why.
  static std::unique_ptr<SharedMemoryAllReduce> create(const Group& group, int64_t region_bytes,
                                                       std::string* why_not);
  ~SharedMemoryAllReduce();
  SharedMemoryAllReduce(const SharedMemoryAllReduce&) = delete;
  SharedMemoryAllReduce& operator=(const SharedMemoryAllReduce&) = delete;

  // `numel` elements of this process's region from byte `offset` on (aligned to the dtype).
  at::Tensor region(int64_t offset, int64_t numel, c10::ScalarType dtype) const;
  // Sums `data`, a contiguous tensor inside this process's region, over the group, in place.
  void sum(const at::Tensor& data);

  // comm's collectives on any tensor, through this process's region (from offset 0; the
  // tensor's bytes must fit capacity()). Same results as the Gloo versions in collectives.cpp.
  int64_t capacity() const;
  void all_reduce(at::Tensor& tensor, ReduceOp op);  // kSum or kAvg
  at::Tensor all_gather(const at::Tensor& local, int64_t dim, const std::vector<int64_t>& sizes);
  at::Tensor reduce_scatter(const at::Tensor& full, int64_t dim, ReduceOp op);

 private:
  SharedMemoryAllReduce(const Group& group, std::shared_ptr<Segment> segment);
  void barrier(const char* phase);
  [[noreturn]] void fail(const std::string& why);
  at::Tensor view(int process, int64_t offset, int64_t numel, c10::ScalarType dtype) const;

  std::string group_name_;
  int rank_, size_;
  std::shared_ptr<Segment> segment_;
  uint64_t barriers_ = 0;  // how many this process has passed
  bool broken_ = false;
  const char* operation_ = "all_reduce";  // for messages: the collective in progress
  void check_usable();
};

}  // namespace kdist::comm
