// kdist's redistribute transitions on a 1-D mesh, against the raw Gloo collective each one
// rests on (same group, same bytes). bench/run_redistribute_bench.sh runs this beside the
// same transitions in PyTorch's DTensor (bench/redistribute_torch.py) and joins the tables.
//
//   build/tools/kdist launch -n 2 -- build/bench/redistribute_bench [--rounds 20]
//
// Prints: "<transition> <rows>x<cols> <kdist ms> <raw ms or ->" per line, rank 0 only.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <kdist/dtensor.h>
#include <kdist/runtime.h>

#include <cstdio>

#include "bench_util.h"
#include "raw_gloo.h"

int main(int argc, char** argv) {
  const int rounds = kdist::bench::rounds_from_args(argc, argv, 20);
  at::set_num_threads(1);
  kdist::initialize();
  using namespace kdist;
  auto world = comm::world();
  auto raw_backend = kdist::bench::raw_gloo();  // c10d Gloo among the same ranks, beside kdist
  auto& raw = *raw_backend;
  const int k = world->size();
  auto mesh = std::make_shared<DeviceMesh>(std::vector<int64_t>{k}, std::vector<std::string>{"x"});
  for (int64_t side : {1024, 2048}) {
    auto full = at::randn({side, side});
    auto s0 = distribute_tensor(full, mesh, {Shard{0}});
    auto s1 = distribute_tensor(full, mesh, {Shard{1}});
    auto r = DTensor::from_local(full, mesh, {Replicate{}});
    auto p = DTensor::from_local(full, mesh, {Partial{}});
    auto shard = s0.to_local().contiguous();
    auto gathered = at::empty_like(full);
    auto out_shard = at::empty_like(shard);
    auto flat = full.view({-1});
    auto flat_out = at::empty_like(flat);
    std::vector<bench::Op> ops{
        {"S(0)->R", 0, [&] { s0.redistribute({Replicate{}}); }},
        {"raw _allgather_base", 0, [&] { raw._allgather_base(gathered, shard)->wait(); }},
        {"S(1)->R", 0, [&] { s1.redistribute({Replicate{}}); }},
        {"R->S(0)", 0, [&] { r.redistribute({Shard{0}}); }},
        {"S(0)->S(1)", 0, [&] { s0.redistribute({Shard{1}}); }},
        {"raw alltoall_base", 0,
         [&] {
           std::vector<int64_t> none;
           auto in = shard.view({-1});
           auto out = at::empty_like(in);
           raw.alltoall_base(out, in, none, none)->wait();
         }},
        {"P->R", 0, [&] { p.redistribute({Replicate{}}); }},
        {"raw allreduce", 0,
         [&] {
           std::vector<at::Tensor> t{full};
           raw.allreduce(t)->wait();
         }},
        {"P->S(0)", 0, [&] { p.redistribute({Shard{0}}); }},
        {"raw alltoall_base (full)", 0,
         [&] {
           std::vector<int64_t> none;
           raw.alltoall_base(flat_out, flat, none, none)->wait();
         }},
    };
    bench::measure(ops, rounds);
    if (process_id() != 0) continue;
    auto ms = [&](const std::string& name) {
      for (const auto& op : ops)
        if (op.name == name) return op.median_ms;
      return -1.0;
    };
    auto line = [&](const char* transition, const char* raw_name) {
      double raw_ms = raw_name ? ms(raw_name) : -1;
      if (raw_ms >= 0)
        std::printf("%s %lldx%lld %.3f %.3f\n", transition, (long long)side, (long long)side, ms(transition),
                    raw_ms);
      else
        std::printf("%s %lldx%lld %.3f -\n", transition, (long long)side, (long long)side, ms(transition));
    };
    line("S(0)->R", "raw _allgather_base");
    line("S(1)->R", "raw _allgather_base");
    line("R->S(0)", nullptr);
    line("S(0)->S(1)", "raw alltoall_base");
    line("P->R", "raw allreduce");
    line("P->S(0)", "raw alltoall_base (full)");
  }
  kdist::shutdown();
  return 0;
}
