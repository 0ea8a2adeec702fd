"""torch.distributed.checkpoint on the tensors of bench/checkpoint_bench.cpp: four 2048x2048
Linear layers, alternately Shard(0) and Shard(1) over a 1-D mesh (biases Shard(0) on the
column layers, replicated on the row ones). Prints the median save and load times.

    torchrun --standalone --nproc-per-node 2 bench/checkpoint_torch.py DIR [--rounds 5]
"""
import argparse
import os
import shutil

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard, distribute_tensor

from torch_timing import median_ms_of_slowest_rank


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    torch.manual_seed(0)
    state = {}
    for i in range(4):
        column = i % 2 == 0
        state[f"l{i}.weight"] = distribute_tensor(torch.randn(2048, 2048), mesh, [Shard(0 if column else 1)])
        state[f"l{i}.bias"] = distribute_tensor(torch.randn(2048), mesh, [Shard(0) if column else Replicate()])
    path = os.path.join(args.dir, "dcp")

    def save():
        if dist.get_rank() == 0 and os.path.exists(path):
            shutil.rmtree(path)  # kdist replaces its checkpoint too
        dist.barrier()
        dcp.save(state, checkpoint_id=path)

    save_ms = median_ms_of_slowest_rank(save, args.rounds)
    load_ms = median_ms_of_slowest_rank(lambda: dcp.load(state, checkpoint_id=path), args.rounds)
    if dist.get_rank() == 0:
        print(f"dcp_save_ms {save_ms:.2f} dcp_load_ms {load_ms:.2f}", flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
