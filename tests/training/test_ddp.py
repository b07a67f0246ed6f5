"""nodelib composes with PyTorch's own scaling: an ODE block trained under
DistributedDataParallel on 2 CPU processes (gloo), each with half the batch, ends with the same
parameters as one process trained on the whole batch.

A fixed-step method keeps every sample's computation independent of the others (an adaptive
step size would be chosen from each process's own half of the batch), and the loss is a mean, so
DDP's averaged gradient is exactly the whole batch's gradient."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from nodelib import MLPField, ODEBlock

F64 = torch.float64
STEPS, BATCH, DIM = 3, 8, 2


def make_model() -> ODEBlock:
    torch.manual_seed(0)
    field = MLPField(DIM, hidden=16).to(F64)
    return ODEBlock(field, method="rk4", options={"step_size": 0.25}, adjoint="checkpoint")


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return (torch.randn(BATCH, DIM, generator=g, dtype=F64),
            torch.randn(BATCH, DIM, generator=g, dtype=F64))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(STEPS):
        optimizer.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        optimizer.step()


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        torch.set_num_threads(1)
        model = nn.parallel.DistributedDataParallel(make_model())
        x, y = data()
        half = BATCH // world
        train(model, x[rank * half:(rank + 1) * half], y[rank * half:(rank + 1) * half])
        if rank == 0:
            torch.save([p.detach() for p in model.module.parameters()],
                       os.path.join(out_dir, "ddp.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="needs torch.distributed with the gloo backend")
def test_ddp_on_two_processes_matches_one_process_on_the_whole_batch(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ddp = torch.load(tmp_path / "ddp.pt")
    single = make_model()
    train(single, *data())
    before = list(make_model().parameters())
    for p_ddp, p_one, p0 in zip(ddp, single.parameters(), before):
        assert not torch.equal(p_one, p0)            # training moved the parameters
        # (1e-12: the two processes' gradients are summed in another order than one batch's)
        assert torch.allclose(p_ddp, p_one.detach(), rtol=1e-12, atol=1e-12)
