"""The peer of bench/checkpoint_async_bench.cpp with torch.distributed.checkpoint: the same
four Linear(2048, 2048) layers, column/row parallel over 2 ranks (parallelize_module), Adam on
64 rows, a checkpoint every 5 steps by dcp.save or dcp.async_save (on a Gloo group of its own,
so that its collectives in the background never interleave with the training's). The same
windows: the asynchronous one starts with a save in flight and waits for its last after the
clock stops. Prints the median ms per step of each configuration, on the slowest rank.

    torchrun --standalone --nproc-per-node 2 bench/checkpoint_async_torch.py DIR [--rounds 5]
"""
import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

STEPS, EVERY = 10, 5


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    saving_group = dist.new_group(backend="gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    torch.manual_seed(0)
    model = nn.Sequential(*(nn.Linear(2048, 2048) for _ in range(4)))
    plan = {str(i): ColwiseParallel() if i % 2 == 0 else RowwiseParallel() for i in range(4)}
    model = parallelize_module(model, mesh, plan)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(64, 2048)

    def step():
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()

    pending = [None]

    def wait():
        if pending[0] is not None:
            pending[0].result()
            pending[0] = None

    def path(kind, s):
        return os.path.join(args.dir, f"dcp-{kind}-{s % (2 * EVERY)}")

    def state():
        model_state, optimizer_state = get_state_dict(model, optimizer)
        return {"model": model_state, "optimizer": optimizer_state}

    def save_sync(s):
        if s % EVERY == 0:
            dcp.save(state(), checkpoint_id=path("sync", s))

    def save_async(s):
        if s % EVERY == 0:
            wait()
            pending[0] = dcp.async_save(state(), checkpoint_id=path("async", s), process_group=saving_group)

    configs = [("none", lambda s: None), ("sync", save_sync), ("async", save_async)]
    per_step = {name: [] for name, _ in configs}
    step()  # the optimizer's state exists from here on
    for round in range(-1, args.rounds):  # round -1 warms up
        for k in range(len(configs)):
            name, after = configs[(k + max(round, 0)) % len(configs)]
            if name == "async":
                save_async(0)
            dist.barrier()
            start = time.perf_counter()
            for s in range(1, STEPS + 1):
                step()
                after(s)
            ms = (time.perf_counter() - start) * 1000
            wait()
            slowest = torch.tensor([ms / STEPS], dtype=torch.float64)
            dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
            if round >= 0:
                per_step[name].append(slowest.item())
    if dist.get_rank() == 0:
        print(" ".join(f"dcp_{name}_step_ms {sorted(v)[len(v) // 2]:.2f}" for name, v in per_step.items()),
              flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
