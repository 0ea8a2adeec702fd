"""The transitions of bench/redistribute_bench.cpp in PyTorch's own DTensor (same wheel).

    torchrun --standalone --nproc-per-node 2 bench/redistribute_torch.py [--rounds 20]

Prints "<transition> <rows>x<cols> <ms>" per line on rank 0: the median over interleaved
rounds of the slowest rank, as the C++ side measures.
"""
import sys
import time

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor


def main():
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 20
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    k = dist.get_world_size()
    mesh = init_device_mesh("cpu", (k,))
    for side in (1024, 2048):
        torch.manual_seed(0)
        full = torch.randn(side, side)
        s0 = distribute_tensor(full, mesh, [Shard(0)])
        s1 = distribute_tensor(full, mesh, [Shard(1)])
        r = DTensor.from_local(full, mesh, [Replicate()])
        p = DTensor.from_local(full, mesh, [Partial()])
        ops = {
            "S(0)->R": lambda: s0.redistribute(mesh, [Replicate()]).to_local(),
            "S(1)->R": lambda: s1.redistribute(mesh, [Replicate()]).to_local(),
            "R->S(0)": lambda: r.redistribute(mesh, [Shard(0)]).to_local(),
            "S(0)->S(1)": lambda: s0.redistribute(mesh, [Shard(1)]).to_local(),
            "P->R": lambda: p.redistribute(mesh, [Replicate()]).to_local(),
            "P->S(0)": lambda: p.redistribute(mesh, [Shard(0)]).to_local(),
        }
        times = {name: [] for name in ops}
        for op in ops.values():
            op(), op()
        for _ in range(rounds):
            for name, op in ops.items():
                dist.barrier()
                start = time.perf_counter()
                op()
                times[name].append((time.perf_counter() - start) * 1000)
        for name, t in times.items():
            median = torch.tensor([sorted(t)[len(t) // 2]], dtype=torch.float64)
            dist.all_reduce(median, op=dist.ReduceOp.MAX)
            if dist.get_rank() == 0:
                print(f"{name} {side}x{side} {median.item():.3f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
