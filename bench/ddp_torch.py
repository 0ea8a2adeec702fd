"""The step of bench/ddp_bench.cpp under PyTorch's DistributedDataParallel (Gloo, same wheel).

    torchrun --standalone --nproc-per-node 2 bench/ddp_torch.py [--rounds 20]

Prints on rank 0: "step <median ms of the slowest rank>".
"""
import sys

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch_timing import median_sgd_step_ms


def main():
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 20
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = DDP(nn.Sequential(nn.Linear(1024, 4096), nn.ReLU(), nn.Linear(4096, 1024)))
    median = median_sgd_step_ms(model, torch.randn(64, 1024), rounds)
    if dist.get_rank() == 0:
        print(f"step {median:.3f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
