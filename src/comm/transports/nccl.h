#pragma once
// The transport of a group's CUDA tensors: c10d's ProcessGroupNCCL, as PyTorch's
// "cpu:gloo,cuda:nccl" pairs them. A group has one beside its CPU transport where kdist was
// built on a CUDA LibTorch (nccl.cpp) and this process sees a GPU; collectives.cpp hands it
// the calls whose tensors are on a CUDA device. In a CPU build (no_nccl.cpp) there is none.
//
// Its collectives are stream-ordered, as NCCL's are: they return once queued on NCCL's stream
// with the caller's current stream made to wait for them, so the result is ready for any
// kernel queued after it; a host read (.item(), .cpu()) waits. A collective that does not end
// within the timeout is caught by ProcessGroupNCCL's watchdog, which ends the process with its
// message (the launcher then names the rank).
#include <memory>
#include <string>
#include <vector>

#include "comm/backend.h"
#include "comm/context.h"

namespace kdist::comm {

// NCCL among `ranks` (global, in group order; this process among them), its store keys under
// `prefix`; null where the build has no CUDA or no GPU is visible. Talks to no peer: NCCL's
// communicator is made by the group's first CUDA collective, on every rank alike.
std::shared_ptr<Backend> make_cuda_backend(Context& ctx, const std::vector<int>& ranks,
                                           const std::string& prefix, const std::string& name);

// "2.27.3" where this build has NCCL, else "".
std::string nccl_version();

}  // namespace kdist::comm
