"""Distributed helpers: a 2-process gloo group on CPU must reproduce a single-process run exactly.

One spawn of two processes (module-scoped fixture) runs every distributed check and saves what it
saw; the tests compare that against single-process references computed here, in float64.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.core import distributed as D
from contrastkit.core.losses import nt_xent as engine_nt_xent
from contrastkit.core.checkpoint import load_checkpoint
from contrastkit.core.method import ContrastiveMethod
from contrastkit.core.trainer import Trainer

WORLD = 2
N_LOCAL = 4          # samples per process
IN_DIM, OUT_DIM = 6, 3
TAU = 0.5
TOL = 1e-10
EPOCHS = 3


pytestmark = pytest.mark.usefixtures("restore_global_state")


# ---- the toy problem (shared by the workers and the single-process references) --------------
def nt_xent(h1: Tensor, h2: Tensor, tau: float = TAU) -> Tensor:
    """NT-Xent over all processes' samples, averaged over this process's anchors.

    Anchors: the local rows of both views. Candidates: the gathered rows of both views, minus the
    anchor itself. Positive: the other view of the same global sample.
    """
    n = h1.shape[0]
    z1, z2 = F.normalize(h1, dim=1), F.normalize(h2, dim=1)
    a1, a2 = D.all_gather_with_grad(z1), D.all_gather_with_grad(z2)
    n_global = a1.shape[0]
    candidates = torch.cat([a1, a2])                      # [2N, d]
    anchors = torch.cat([z1, z2])                         # [2n, d]
    g = D.get_rank() * n + torch.arange(n)
    self_idx = torch.cat([g, n_global + g])
    pos_idx = torch.cat([n_global + g, g])
    rows = torch.arange(2 * n)
    logits = anchors @ candidates.T / tau
    is_self = torch.zeros_like(logits, dtype=torch.bool)
    is_self[rows, self_idx] = True
    logits = logits.masked_fill(is_self, float("-inf"))
    per_anchor = torch.logsumexp(logits, dim=1) - logits[rows, pos_idx]
    return per_anchor.mean()


class ToyContrast(ContrastiveMethod):
    """Linear encoder on float64 features; the views add pre-drawn noise from the batch."""

    name = "toy_contrast"

    def __init__(self) -> None:
        super().__init__(None)
        self.encoder = nn.Linear(IN_DIM, OUT_DIM, dtype=torch.float64)

    def views(self, batch: Any) -> list[Tensor]:
        x, n1, n2 = batch
        return [x + n1, x + n2]

    def loss(self, projections: Any, batch: Any) -> Tensor:
        # the engine's NT-Xent with gathered candidates; the plain-torch nt_xent above is the
        # independent reference (test_engine_nt_xent_matches_reference)
        return engine_nt_xent(projections[0], projections[1], temperature=TAU, gather=True)

    def configure_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.5)


def full_batch() -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(1234)
    n = WORLD * N_LOCAL
    x = torch.randn(n, IN_DIM, generator=g, dtype=torch.float64)
    return x, 0.1 * torch.randn(n, IN_DIM, generator=g, dtype=torch.float64), \
        0.1 * torch.randn(n, IN_DIM, generator=g, dtype=torch.float64)


def local_batch(rank: int) -> tuple[Tensor, ...]:
    return tuple(t[rank * N_LOCAL:(rank + 1) * N_LOCAL] for t in full_batch())


def fresh_method() -> ToyContrast:
    torch.manual_seed(0)
    return ToyContrast()


def gather_input() -> Tensor:
    g = torch.Generator().manual_seed(7)
    return torch.randn(WORLD * 3, 5, generator=g, dtype=torch.float64)


def gather_objective(y: Tensor, rank: int) -> Tensor:
    """A rank-dependent nonlinear function of the gathered tensor."""
    g = torch.Generator().manual_seed(100 + rank)
    w = torch.randn(y.shape, generator=g, dtype=torch.float64)
    return (w * y).sum() + (rank + 1) * (y.sin() ** 2).sum()


class _RecordingSampler:
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)


class _OneBatchLoader:
    """A re-iterable loader with a sampler that records set_epoch calls."""

    def __init__(self, batch: Any) -> None:
        self.batch = batch
        self.sampler = _RecordingSampler()

    def __iter__(self):
        yield self.batch


# ---- the worker ----------------------------------------------------------------------------
def _worker(rank: int, world_size: int, tmp: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    ok = D.init_from_env("gloo", init_method=f"file://{tmp}/rendezvous",
                         timeout=datetime.timedelta(seconds=60))
    out: dict[str, Any] = {"init": ok, "rank": D.get_rank(), "world": D.get_world_size(),
                           "is_distributed": D.is_distributed()}
    try:
        # (a) all_gather_with_grad: forward and gradient
        x = gather_input()[rank * 3:(rank + 1) * 3].clone().requires_grad_(True)
        y = D.all_gather_with_grad(x)
        gather_objective(y, rank).backward()
        out["gathered"] = y.detach()
        out["gather_grad"] = x.grad.detach()

        # (b) unequal sizes: a clear error on every process (and no hang)
        try:
            D.all_gather_with_grad(torch.zeros(rank + 2, 3, dtype=torch.float64))
        except ValueError as exc:
            out["unequal_error"] = str(exc)

        # (c) DDP over a method whose loss gathers negatives from every process
        method = fresh_method()
        ddp = nn.parallel.DistributedDataParallel(method, find_unused_parameters=False)
        loss = ddp(local_batch(rank))
        loss.backward()
        out["ddp_loss"] = loss.detach()
        out["ddp_grads"] = {k: p.grad.detach().clone() for k, p in method.named_parameters()}

        # (d) the trainer under DDP
        method = fresh_method()
        loader = _OneBatchLoader(local_batch(rank))
        seen: list[str] = []

        def evaluator(m: nn.Module) -> dict[str, float]:
            seen.append(type(m).__name__)
            return {"eval_rank": float(D.get_rank())}

        trainer = Trainer(EPOCHS, seed=0, progress=True, eval_every=1, evaluator=evaluator,
                          out_dir=Path(tmp) / "ddp_run")
        trained = trainer.fit(method, loader)
        out["trainer_params"] = {k: p.detach().clone() for k, p in trained.named_parameters()}
        out["set_epoch"] = list(loader.sampler.epochs)
        out["evaluated_on"] = seen
        out["history"] = trainer.history
    finally:
        dist.destroy_process_group()
    torch.save(out, Path(tmp) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def spawned(tmp_path_factory) -> list[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("dist")
    mp.spawn(_worker, args=(WORLD, str(tmp)), nprocs=WORLD, join=True)
    results = [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for r in results:
        r["tmp"] = tmp
    return results


# ---- tests -----------------------------------------------------------------------------------
def test_single_process_defaults(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert not D.is_distributed()
    assert D.get_rank() == 0 and D.get_world_size() == 1 and D.get_local_rank() == 0
    assert D.is_main_process()
    assert D.init_from_env() is False          # no torchrun environment: nothing to do
    x = torch.randn(3, 2, requires_grad=True)
    assert D.all_gather_with_grad(x) is x      # identity
    with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
        D.all_gather_with_grad([1, 2])
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="RANK < WORLD_SIZE"):
        D.init_from_env("gloo")
    monkeypatch.setenv("RANK", "zero")
    with pytest.raises(ValueError, match="RANK: expected an int"):
        D.init_from_env("gloo")


def test_group_initialised_from_env(spawned):
    for rank, out in enumerate(spawned):
        assert out["init"] is True and out["is_distributed"] is True
        assert out["rank"] == rank and out["world"] == WORLD


def test_all_gather_with_grad_forward_and_gradient(spawned):
    full = gather_input().clone().requires_grad_(True)
    total = sum(gather_objective(full, r) for r in range(WORLD))   # what the ranks optimise
    total.backward()
    for rank, out in enumerate(spawned):
        assert torch.equal(out["gathered"], full.detach())
        ref = full.grad[rank * 3:(rank + 1) * 3]
        assert torch.allclose(out["gather_grad"], ref, rtol=0, atol=TOL)


def test_all_gather_with_grad_unequal_sizes_error(spawned):
    for out in spawned:
        msg = out["unequal_error"]
        assert "same shape on every process" in msg and "(2, 3)" in msg and "(3, 3)" in msg


def test_ddp_loss_and_grads_match_single_process(spawned):
    method = fresh_method()
    loss = method(full_batch())
    loss.backward()
    ddp_loss = sum(out["ddp_loss"] for out in spawned) / WORLD
    assert abs(float(ddp_loss) - loss.item()) < TOL
    for out in spawned:
        for name, p in method.named_parameters():
            assert torch.allclose(out["ddp_grads"][name], p.grad, rtol=0, atol=TOL), name


def test_trainer_under_ddp_matches_single_process(spawned, tmp_path):
    method = fresh_method()
    ref = Trainer(EPOCHS, seed=0, progress=False)
    ref.fit(method, [full_batch()])
    for out in spawned:
        for name, p in method.named_parameters():
            assert torch.allclose(out["trainer_params"][name], p.detach(), rtol=0, atol=TOL), name
        assert out["set_epoch"] == list(range(EPOCHS))
    # evaluation on rank 0 only, on the unwrapped method
    assert spawned[0]["evaluated_on"] == ["ToyContrast"] * EPOCHS
    assert spawned[1]["evaluated_on"] == []
    # only rank 0 writes: exactly one log line per epoch, and the checkpoint holds both RNG states
    run = spawned[0]["tmp"] / "ddp_run"
    lines = (run / "log.jsonl").read_text().splitlines()
    assert len(lines) == EPOCHS
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "log.jsonl"]
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["epoch"] == EPOCHS and len(ckpt["rng"]) == WORLD
    assert ckpt["trainer"]["world_size"] == WORLD
    # the logged loss is the mean over processes == the single-process loss of that epoch
    for rec, rec0, rec1 in zip(ref.history, spawned[0]["history"], spawned[1]["history"]):
        assert rec0["loss"] == pytest.approx(rec["loss"], rel=0, abs=TOL)
        assert rec1["loss"] == pytest.approx(rec["loss"], rel=0, abs=TOL)
    assert spawned[0]["history"][-1]["eval_rank"] == 0.0
    assert "eval_rank" not in spawned[1]["history"][-1]


def test_engine_nt_xent_matches_reference():
    """Single process: the engine's NT-Xent equals the plain-torch reference used above."""
    x, n1, n2 = full_batch()
    w = torch.randn(IN_DIM, OUT_DIM, dtype=torch.float64, requires_grad=True)
    h1, h2 = (x + n1) @ w, (x + n2) @ w
    ref, = torch.autograd.grad(nt_xent(h1, h2), [w], retain_graph=True)
    out = engine_nt_xent(h1, h2, temperature=TAU, gather=True)
    got, = torch.autograd.grad(out, [w])
    assert torch.allclose(out, nt_xent(h1, h2), atol=TOL) and torch.allclose(got, ref, atol=TOL)
