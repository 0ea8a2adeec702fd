// A build on a CPU LibTorch: no group has a CUDA transport (transports/nccl.h).
#include "comm/transports/nccl.h"

namespace kdist::comm {

std::shared_ptr<Backend> make_cuda_backend(Context&, const std::vector<int>&, const std::string&,
                                           const std::string&) {
  return nullptr;
}

std::string nccl_version() { return ""; }

}  // namespace kdist::comm
