// Multi-process tests of comm's NCCL transport (src/comm/transports/nccl.cpp): every
// collective on CUDA tensors gives what the same collective gives on CPU tensors of the same
// group (Gloo or shared memory). ctest label gpu; each test skips, saying so, where this
// process sees no GPU (every CPU build). On one GPU several ranks share it: the device check
// (scripts/device-check.sh) gives each its own NCCL_HOSTID.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <kdist/comm.h>
#include <kdist/runtime.h>

#include "../mp_util.h"

namespace kdist::comm {
namespace {

#define KDIST_NEEDS_GPU()                                                                            \
  if (!at::hasCUDA())                                                                                \
  GTEST_SKIP() << "no GPU visible to this process (or a LibTorch without CUDA): NCCL is not tested " \
                  "here"

at::Tensor on_gpu(const at::Tensor& t) { return t.to(at::kCUDA); }

// Rank-dependent data, the same on CPU and GPU.
at::Tensor data(std::vector<int64_t> shape) {
  return testing::global_arange(std::move(shape)) * (process_id() + 1) - 3.0f;
}

TEST(CommCuda, AllReduceSumAvgMax) {
  KDIST_NEEDS_GPU();
  auto g = world();
  for (auto op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax}) {
    auto cpu = data({3, 5});
    auto gpu = on_gpu(cpu);
    all_reduce(cpu, op, *g);
    all_reduce(gpu, op, *g);
    EXPECT_TRUE(at::allclose(gpu.cpu(), cpu)) << static_cast<int>(op);
    EXPECT_TRUE(
        at::allclose(all_reduce_copy(on_gpu(data({4})), op, *g).cpu(), all_reduce_copy(data({4}), op, *g)));
  }
}

TEST(CommCuda, AllGatherEvenAndUneven) {
  KDIST_NEEDS_GPU();
  auto g = world();
  for (int64_t dim : {0, 1}) {
    auto even = data({2, 3});
    EXPECT_TRUE(at::equal(all_gather(on_gpu(even), dim, *g).cpu(), all_gather(even, dim, *g)));
    auto uneven = data(dim == 0 ? std::vector<int64_t>{process_id() + 1, 3}
                                : std::vector<int64_t>{2, process_id() % 2});
    EXPECT_TRUE(at::equal(all_gather(on_gpu(uneven), dim, *g).cpu(), all_gather(uneven, dim, *g)));
  }
}

TEST(CommCuda, ReduceScatterEvenAndUneven) {
  KDIST_NEEDS_GPU();
  auto g = world();
  for (int64_t n : {int64_t{2} * num_processes(), int64_t{2} * num_processes() + 1})
    for (int64_t dim : {0, 1}) {
      auto full = data(dim == 0 ? std::vector<int64_t>{n, 3} : std::vector<int64_t>{3, n});
      for (auto op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax})
        EXPECT_TRUE(
            at::allclose(reduce_scatter(on_gpu(full), dim, op, *g).cpu(), reduce_scatter(full, dim, op, *g)))
            << "n " << n << " dim " << dim;
    }
}

TEST(CommCuda, AllToAllBroadcastBarrierAsync) {
  KDIST_NEEDS_GPU();
  auto g = world();
  const int64_t k = g->size();
  auto local = data({2 * k + 1, chunk_size(3 * k, k, g->rank())});
  EXPECT_TRUE(
      at::equal(all_to_all(on_gpu(local), 0, 1, 3 * k, *g).cpu(), all_to_all(local, 0, 1, 3 * k, *g)));
  auto cpu = data({4}), gpu = on_gpu(cpu);
  broadcast(cpu, 1 % k, *g);
  broadcast(gpu, 1 % k, *g);
  EXPECT_TRUE(at::equal(gpu.cpu(), cpu));
  barrier(*g);
  auto pending_cpu = data({6}), pending_gpu = on_gpu(pending_cpu);
  auto a = all_reduce_async(pending_gpu, ReduceOp::kSum, *g);
  all_reduce(pending_cpu, ReduceOp::kSum, *g);
  a.wait();
  EXPECT_TRUE(at::equal(pending_gpu.cpu(), pending_cpu));
}

TEST(CommCuda, CpuAndGpuTensorsOnOneGroup) {
  KDIST_NEEDS_GPU();
  auto g = world();
  auto gpu = on_gpu(at::ones({3}));
  auto cpu = at::ones({3});
  all_reduce(gpu, ReduceOp::kSum, *g);
  all_reduce(cpu, ReduceOp::kSum, *g);
  EXPECT_TRUE(at::equal(gpu.cpu(), cpu));
  EXPECT_EQ(gpu.device().type(), at::kCUDA);
}

}  // namespace
}  // namespace kdist::comm
