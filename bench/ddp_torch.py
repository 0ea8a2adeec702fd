"""The step of bench/ddp_bench.cpp under PyTorch's DistributedDataParallel (Gloo, same wheel).

    torchrun --standalone --nproc-per-node 2 bench/ddp_torch.py [--rounds 20]

Prints on rank 0: "step <median ms of the slowest rank>".
"""
import sys

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch_timing import median_ms_of_slowest_rank


def main():
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 20
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = DDP(nn.Sequential(nn.Linear(1024, 4096), nn.ReLU(), nn.Linear(4096, 1024)))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(64, 1024)

    def step():
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()

    median = median_ms_of_slowest_rank(step, rounds)
    if dist.get_rank() == 0:
        print(f"step {median:.3f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
