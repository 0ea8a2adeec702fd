// Collective bandwidth: kdist's all_reduce, all_gather and reduce_scatter (each algorithm)
// against raw ProcessGroupGloo calls on the same bytes, same process group, same run.
//
//   build/tools/kdist launch -n 2 -- build/bench/collectives_bench [--rounds 30]
//
// Times are the median over interleaved rounds, of the slowest rank. "bus GB/s" uses the tensor's
// full size N: all_reduce moves 2(k-1)/k N per rank, all_gather and reduce_scatter (k-1)/k N.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <kdist/comm.h>
#include <kdist/runtime.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench_util.h"
#include "comm/context.h"  // the raw c10d backend behind kdist's world group

using kdist::bench::Op;
using kdist::comm::ReduceOp;

int main(int argc, char** argv) {
  const int rounds = kdist::bench::rounds_from_args(argc, argv, 30);
  at::set_num_threads(1);
  kdist::initialize();
  auto world = kdist::comm::world();
  auto& raw = *world->impl().backend;
  const int k = world->size();
  const bool print = kdist::process_id() == 0;
  if (print)
    std::printf("collectives on %d ranks (Gloo, 127.0.0.1), median of %d interleaved rounds, "
                "slowest rank\n%-34s %5s %9s %9s %12s\n",
                k, rounds, "operation", "MB", "ms", "bus GB/s", "time/raw a_r");
  using Algo = kdist::comm::ReduceScatterAlgorithm;
  for (int64_t mb : {1, 8, 32}) {
    const int64_t n = mb * 1024 * 1024 / 4;  // float32 elements
    const double ar = 2.0 * (k - 1) / k, ag = double(k - 1) / k;
    auto full = at::randn({n});
    auto shard = at::randn({n / k});
    auto gathered = at::empty({n});
    auto out = at::empty({n / k});
    auto uneven = at::randn({kdist::comm::chunk_size(n - 1, k, world->rank())});
    auto rs = [&](Algo algo) {
      return [&, algo] {
        kdist::comm::set_reduce_scatter_algorithm(algo);
        kdist::comm::reduce_scatter(full, 0, ReduceOp::kSum, *world);
      };
    };
    using AG = kdist::comm::AllGatherAlgorithm;
    auto ag_even = [&](AG algo) {
      return [&, algo] {
        kdist::comm::set_all_gather_algorithm(algo);
        kdist::comm::all_gather(shard, 0, *world, std::vector<int64_t>(k, n / k));
      };
    };
    auto ag_uneven = [&](AG algo) {
      return [&, algo] {
        kdist::comm::set_all_gather_algorithm(algo);
        kdist::comm::all_gather(uneven, 0, *world, kdist::comm::chunk_sizes(n - 1, k));
      };
    };
    std::vector<Op> ops{
        {"raw gloo all_reduce", ar, [&] { std::vector<at::Tensor> t{full}; raw.allreduce(t)->wait(); }},
        {"kdist all_reduce", ar, [&] { kdist::comm::all_reduce(full, ReduceOp::kSum, *world); }},
        {"raw gloo _allgather_base", ag, [&] { raw._allgather_base(gathered, shard)->wait(); }},
        {"kdist all_gather (gloo, even)", ag, ag_even(AG::kGloo)},
        {"kdist all_gather (gloo, uneven N-1)", ag, ag_uneven(AG::kGloo)},
        {"kdist all_gather (all_to_all, even)", ag, ag_even(AG::kAllToAll)},
        {"kdist all_gather (all_to_all, uneven)", ag, ag_uneven(AG::kAllToAll)},
        {"raw gloo _reduce_scatter_base", ag, [&] { raw._reduce_scatter_base(out, full)->wait(); }},
        {"kdist reduce_scatter (all_to_all)", ag, rs(Algo::kAllToAll)},
        {"kdist reduce_scatter (gloo list)", ag, rs(Algo::kGloo)},
        {"kdist reduce_scatter (all_reduce)", ag, rs(Algo::kAllReduce)},
    };
    kdist::bench::measure(ops, rounds);
    const double raw_allreduce = ops[0].median_ms;
    for (const auto& op : ops)
      if (print)
        std::printf("%-38s %5lld %9.2f %9.2f %12.2f\n", op.name.c_str(), (long long)mb,
                    op.median_ms, op.bus_factor * n * 4 / (op.median_ms / 1000) / 1e9,
                    op.median_ms / raw_allreduce);
  }
  kdist::comm::set_reduce_scatter_algorithm(Algo::kAllToAll);
  kdist::comm::set_all_gather_algorithm(kdist::comm::AllGatherAlgorithm::kAllToAll);
  kdist::shutdown();
  return 0;
}
