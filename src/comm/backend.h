#pragma once
// Backend: one transport's implementation of comm's collectives for one group: the
// collectives, their async forms, allocate_buffer and send/recv, nothing else (a transport is one file
// behind this interface; see transports/). A group holds one, chosen when comm creates the
// group (transport_choice.h, backend_factory.cpp):
//
//   transports/gloo.cpp          c10d's ProcessGroupGloo: TCP, any placement
//   transports/shared_memory.cpp one segment in /dev/shm: every process of the group on one host,
//                                Gloo once it cannot be had (transports/fallback.cpp)
//   transports/hierarchical.cpp  shared memory on each host, Gloo between one leader per host
//
// collectives.cpp checks arguments, counts (CollectiveCounter), short-cuts groups of one and
// then calls the group's backend for the tensor's device (its CPU transport, or NCCL for CUDA
// tensors: transports/nccl.h), so a backend sees valid input: contiguous tensors on its
// device, dims normalised, sizes with one entry per rank that match this rank's tensor. A backend
// never calls comm's public collectives (they would count twice); one that builds on another
// calls that backend directly. Failures throw std::runtime_error naming the operation, the
// group and the rank; a backend that has failed may refuse every later call.
#include <kdist/comm.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace kdist::comm {

// What a pending collective does when waited for, per backend.
struct PendingCollective::Impl {
  virtual ~Impl() = default;
  virtual void wait() = 0;  // called once
};
struct PendingGather::Impl {
  virtual ~Impl() = default;
  virtual at::Tensor wait() = 0;  // called once
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Transport transport() const = 0;
  virtual int group_rank() const = 0;  // this process's rank in the group

  virtual void all_reduce(at::Tensor& tensor, ReduceOp op) = 0;
  // The reduction in a new tensor, `tensor` unchanged. By default a copy reduced in place.
  virtual at::Tensor all_reduce_copy(const at::Tensor& tensor, ReduceOp op);
  virtual at::Tensor all_gather(const at::Tensor& local, int64_t dim, const std::vector<int64_t>& sizes) = 0;
  virtual at::Tensor reduce_scatter(const at::Tensor& full, int64_t dim, ReduceOp op) = 0;
  virtual at::Tensor all_to_all(const at::Tensor& local, int64_t split_dim, int64_t concat_dim,
                                int64_t concat_full_size) = 0;
  virtual void broadcast(at::Tensor& tensor, int root) = 0;
  virtual void barrier() = 0;

  // Started now, or (where the transport runs collectives on the caller's thread) run when
  // waited for: either way every rank waits in the order it launched.
  virtual PendingCollective all_reduce_async(const at::Tensor& tensor, ReduceOp op) = 0;
  // An invalid PendingGather where a gather cannot run beside the caller.
  virtual PendingGather all_gather_async(const at::Tensor&, int64_t, const std::vector<int64_t>&) {
    return PendingGather();
  }
  // comm::allocate_buffer: memory whose all_reduce this backend runs without copying in and
  // out. Collective where the memory is shared.
  virtual at::Tensor allocate_buffer(int64_t bytes);

  // Point-to-point between two group ranks, blocking. By default refused, naming the
  // transport: comm sends CPU tensors through the group's Gloo.
  virtual void send(const at::Tensor& tensor, int dst);
  virtual void recv(at::Tensor& tensor, int src);
};

// Who runs a backend's collectives, for its messages: "<group name>" and this process's rank.
struct BackendIdentity {
  std::string group_name;
  int group_rank = 0;
  int group_size = 1;
  int global_rank = 0;
};

// A PendingCollective that does its work when waited for: collectives that run on the
// caller's thread (shared memory) keep all_reduce_async's order without a thread of their own.
PendingCollective deferred(std::function<void()> work);

}  // namespace kdist::comm
