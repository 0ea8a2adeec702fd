"""The step of bench/tp_mlp_bench.cpp in PyTorch's own tensor parallelism (same wheel):
parallelize_module with ColwiseParallel on fc1 and RowwiseParallel on fc2.

    torchrun --standalone --nproc-per-node 2 bench/tp_mlp_torch.py --hidden 4096 [--rounds 20]

Prints on rank 0: "step_ms <median ms> param_bytes <bytes on this rank>".
"""
import sys

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module
from torch_timing import median_sgd_step_ms


class Mlp(nn.Module):
    def __init__(self, d_in, hidden):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, d_in)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def arg(name, default):
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


def main():
    hidden, rounds = arg("--hidden", 4096), arg("--rounds", 20)
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    torch.manual_seed(0)
    model = parallelize_module(Mlp(1024, hidden), mesh,
                               {"fc1": ColwiseParallel(), "fc2": RowwiseParallel()})
    median = median_sgd_step_ms(model, torch.randn(64, 1024), rounds)
    local_bytes = sum(p.to_local().numel() * p.element_size() for p in model.parameters())
    if dist.get_rank() == 0:
        print(f"step_ms {median:.3f} param_bytes {local_bytes}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
