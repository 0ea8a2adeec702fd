"""The step of bench/fsdp_bench.cpp under PyTorch's FSDP2 (fully_shard per Linear, then the
root; Gloo, same wheel).

    torchrun --standalone --nproc-per-node 2 bench/fsdp_torch.py [--rounds 20]

Prints on rank 0: "step <median ms of the slowest rank>".
"""
import sys

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.fsdp import fully_shard
from torch_timing import median_ms_of_slowest_rank


def main():
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 20
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1024, 4096), nn.ReLU(), nn.Linear(4096, 1024))
    mesh = dist.device_mesh.init_device_mesh("cpu", (dist.get_world_size(),))
    for layer in (model[0], model[2]):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(64, 1024)

    def step():
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()

    median = median_ms_of_slowest_rank(step, rounds)
    if dist.get_rank() == 0:
        print(f"step {median:.3f}", flush=True)
    # Every rank done before any tears Gloo down: without it a rank now and then aborts in
    # the teardown ("terminate called without an active exception").
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
