// Collectives: kdist's all_reduce, all_gather and reduce_scatter (even and uneven), on the
// transport comm chooses for the job's ranks and on a Gloo group of the same ranks, with raw
// ProcessGroupGloo calls beside them, in one run. bench/collectives_torch.py times PyTorch's
// own collectives the same way; bench/run_collectives_bench.sh alternates both.
//
//   build/tools/kdist launch -n 2 -- build/bench/collectives_bench [--rounds 20]
//
// One line per operation and size: "<who> <operation> <MB> <ms>", the median over
// interleaved rounds of the slowest rank. MB is the full tensor N (float32): all_reduce's
// tensor, all_gather's result, reduce_scatter's input; "uneven" runs N - 1 elements split
// by the chunk rule.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <kdist/comm.h>
#include <kdist/runtime.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "bench_util.h"
#include "raw_gloo.h"

using kdist::bench::Op;
using kdist::comm::ReduceOp;

int main(int argc, char** argv) {
  const int rounds = kdist::bench::rounds_from_args(argc, argv, 20);
  at::set_num_threads(1);
  kdist::initialize();
  auto mesh = std::make_shared<kdist::DeviceMesh>(std::vector<int64_t>{kdist::num_processes()},
                                                  std::vector<std::string>{"x"});
  auto chosen = kdist::comm::world();
  auto gloo = kdist::comm::axis_group(*mesh, "x", {kdist::comm::Transport::kGloo});
  auto raw_backend = kdist::bench::raw_gloo();  // c10d Gloo among the same ranks, beside kdist
  auto& raw = *raw_backend;
  const int k = chosen->size(), me = chosen->rank();
  std::string transport = kdist::comm::to_string(kdist::comm::transport(*chosen));
  std::replace(transport.begin(), transport.end(), ' ', '_');  // one word: "shared_memory"
  for (int64_t mb : {1, 8, 32}) {
    const int64_t n = mb * 1024 * 1024 / 4;
    auto full = at::randn({n});
    auto full_uneven = at::randn({n - 1});
    auto shard = at::randn({n / k});
    auto shard_uneven = at::randn({kdist::chunk_size(n - 1, k, me)});
    auto gathered = at::empty({n});
    auto out = at::empty({n / k});
    const auto even = std::vector<int64_t>(k, n / k), uneven = kdist::chunk_sizes(n - 1, k);
    std::vector<Op> ops;
    for (auto* group : {chosen.get(), gloo.get()}) {
      const std::string who = "kdist " + (group == chosen.get() ? transport : std::string("gloo"));
      auto& g = *group;
      ops.push_back({who + " all_reduce", 0, [&] { kdist::comm::all_reduce(full, ReduceOp::kSum, g); }});
      ops.push_back({who + " all_gather", 0, [&] { kdist::comm::all_gather(shard, 0, g, even); }});
      ops.push_back(
          {who + " all_gather_uneven", 0, [&] { kdist::comm::all_gather(shard_uneven, 0, g, uneven); }});
      ops.push_back(
          {who + " reduce_scatter", 0, [&] { kdist::comm::reduce_scatter(full, 0, ReduceOp::kSum, g); }});
      ops.push_back({who + " reduce_scatter_uneven", 0,
                     [&] { kdist::comm::reduce_scatter(full_uneven, 0, ReduceOp::kSum, g); }});
    }
    ops.push_back({"raw gloo all_reduce", 0, [&] {
                     std::vector<at::Tensor> t{full};
                     raw.allreduce(t)->wait();
                   }});
    ops.push_back({"raw gloo all_gather", 0, [&] { raw._allgather_base(gathered, shard)->wait(); }});
    ops.push_back({"raw gloo reduce_scatter", 0, [&] { raw._reduce_scatter_base(out, full)->wait(); }});
    kdist::bench::measure(ops, rounds);
    if (me == 0)
      for (const auto& op : ops) std::printf("%s %lld %.3f\n", op.name.c_str(), (long long)mb, op.median_ms);
  }
  kdist::shutdown();
  return 0;
}
