"""Timing shared by the PyTorch peers under bench/: the same rule as bench/bench_util.h."""
import time

import torch
import torch.distributed as dist


def median_ms_of_slowest_rank(step, rounds, warmup=2):
    """Median over `rounds` calls of `step` (barrier before each) on the slowest rank."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(rounds):
        dist.barrier()
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    median = torch.tensor([sorted(times)[len(times) // 2]], dtype=torch.float64)
    dist.all_reduce(median, op=dist.ReduceOp.MAX)
    return median.item()


def median_sgd_step_ms(model, x, rounds):
    """median_ms_of_slowest_rank of one SGD step (lr 1e-3) on the loss mean(model(x)**2): the
    training step both kdist's and PyTorch's MLP benchmarks time."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()

    return median_ms_of_slowest_rank(step, rounds)
