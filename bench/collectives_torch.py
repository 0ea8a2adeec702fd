"""PyTorch's own Gloo collectives (same wheel), timed as bench/collectives_bench.cpp times
kdist's: `torchrun --nproc-per-node K bench/collectives_torch.py [--rounds 20]`. Prints
"torch gloo <operation> <MB> <ms>" lines on rank 0. PyTorch has no uneven all_gather on
Gloo: the even one of the same bytes stands for both."""
import argparse

import torch
import torch.distributed as dist

from torch_timing import median_ms_of_slowest_rank


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    k, me = dist.get_world_size(), dist.get_rank()
    for mb in (1, 8, 32):
        n = mb * 1024 * 1024 // 4
        full = torch.randn(n)
        shard = torch.randn(n // k)
        gathered = torch.empty(n)
        out = torch.empty(n // k)
        ops = {
            "all_reduce": lambda: dist.all_reduce(full),
            "all_gather": lambda: dist.all_gather_into_tensor(gathered, shard),
            "reduce_scatter": lambda: dist.reduce_scatter_tensor(out, full),
        }
        times = {name: [] for name in ops}
        for _ in range(max(1, args.rounds // 5)):  # interleaved, as kdist's bench does
            for name, op in ops.items():
                times[name].append(median_ms_of_slowest_rank(op, 5, warmup=1))
        if me == 0:
            for name, t in times.items():
                print(f"torch gloo {name} {mb} {sorted(t)[len(t) // 2]:.3f}")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
