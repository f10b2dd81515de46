"""Small helpers for multi-process (``torchrun``) training.

Everything here degrades to the single-process case when :mod:`torch.distributed` is not
initialised: rank 0, world size 1, and :func:`all_gather_with_grad` is the identity.

Typical use in a script launched with ``torchrun --nproc_per_node=N train.py``::

    from contrastkit.core.distributed import init_from_env
    init_from_env()                     # gloo on CPU, nccl on CUDA
    trainer.fit(method, loader)         # the trainer wraps the method in DDP by itself

Contrastive losses that need negatives from every process gather the projections with
:func:`all_gather_with_grad`, which keeps the autograd graph across processes.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "is_distributed", "get_rank", "get_world_size", "get_local_rank", "is_main_process",
    "init_from_env", "barrier", "all_gather_with_grad",
]


def is_distributed() -> bool:
    """Whether a :mod:`torch.distributed` process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Global rank of this process (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def get_local_rank() -> int:
    """Rank of this process on its node: ``LOCAL_RANK`` as set by ``torchrun`` (default 0)."""
    return _env_int("LOCAL_RANK", 0)


def is_main_process() -> bool:
    """True on rank 0 (and always when not distributed)."""
    return get_rank() == 0


def barrier() -> None:
    """Synchronise all processes (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def _env_int(name: str, default: int | None = None) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}: expected an int, got {raw!r}") from None


def init_from_env(backend: str | None = None, *, init_method: str = "env://",
                  timeout: datetime.timedelta | None = None) -> bool:
    """Initialise the default process group from ``torchrun``'s environment variables.

    Reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and, through ``init_method="env://"``,
    ``MASTER_ADDR`` / ``MASTER_PORT``). On CUDA the current device is set to ``LOCAL_RANK``
    before the group is created.

    Args:
        backend: ``"gloo"``, ``"nccl"``, ... ; ``None`` picks ``"nccl"`` when CUDA is available
            and ``"gloo"`` otherwise.
        init_method: rendezvous URL; the default reads ``MASTER_ADDR`` / ``MASTER_PORT``. A
            ``"file://..."`` or ``"tcp://host:port"`` URL works too (``RANK`` / ``WORLD_SIZE``
            still come from the environment).
        timeout: collective timeout (PyTorch's default when ``None``).

    Returns:
        ``True`` when a process group is (now or already) initialised, ``False`` when the
        environment does not describe a distributed launch (no ``RANK`` / ``WORLD_SIZE``), in
        which case nothing is done and training runs single-process.

    Raises:
        RuntimeError: :mod:`torch.distributed` is not available in this build.
        ValueError: the environment variables are malformed or inconsistent.
    """
    if is_distributed():
        return True
    rank = _env_int("RANK")
    world_size = _env_int("WORLD_SIZE")
    if rank is None or world_size is None:
        return False
    if not dist.is_available():
        raise RuntimeError("init_from_env: torch.distributed is not available in this "
                           "PyTorch build")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"init_from_env: expected 0 <= RANK < WORLD_SIZE, got RANK={rank} "
                         f"and WORLD_SIZE={world_size}")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not isinstance(backend, str):
        raise TypeError(f"backend: expected a str or None, got {type(backend).__name__}")
    if "nccl" in backend and torch.cuda.is_available():
        torch.cuda.set_device(get_local_rank() % max(torch.cuda.device_count(), 1))
    kwargs: dict[str, Any] = {}
    if timeout is not None:
        kwargs["timeout"] = timeout
    dist.init_process_group(backend=backend, init_method=init_method, rank=rank,
                            world_size=world_size, **kwargs)
    return True


def _gather_shapes(x: Tensor, world_size: int) -> list[tuple[int, ...]]:
    """Every process's shape of ``x`` (two tiny collectives: the ranks, then the shapes)."""
    ndim = torch.tensor([x.dim()], dtype=torch.int64, device=x.device)
    ndims = [torch.empty_like(ndim) for _ in range(world_size)]
    dist.all_gather(ndims, ndim)
    dims = [int(t.item()) for t in ndims]
    if len(set(dims)) != 1:
        raise ValueError(f"all_gather_with_grad: x: expected the same number of dimensions on "
                         f"every process, got {dims} (by rank)")
    shape = torch.tensor(list(x.shape), dtype=torch.int64, device=x.device)
    shapes = [torch.empty_like(shape) for _ in range(world_size)]
    dist.all_gather(shapes, shape)
    return [tuple(int(v) for v in s.tolist()) for s in shapes]


class _AllGatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sends each process its slice of the summed grads."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        world_size = dist.get_world_size()
        rank = dist.get_rank()
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(world_size)]
        dist.all_gather(parts, x)
        ctx.rank = rank
        ctx.rows = x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> Tensor:  # type: ignore[override]
        # Every process's loss may depend on every gathered row: the gradient of the summed
        # objective w.r.t. this process's rows is the sum over processes of their gradients.
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad.narrow(0, ctx.rank * ctx.rows, ctx.rows)


def all_gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every process along dim 0, keeping gradients.

    Forward: ``torch.cat([x_0, x_1, ..., x_{W-1}])`` (rank order). Backward: the incoming
    gradient is summed over processes (``all_reduce(SUM)``) and this process receives the rows of
    its own ``x``, so the gradient is that of the *sum* of all processes' losses. With
    :class:`~torch.nn.parallel.DistributedDataParallel`, which averages parameter gradients over
    processes, a loss that averages over its local anchors therefore yields exactly the gradient of
    the global mean over all anchors.

    When :mod:`torch.distributed` is not initialised (or the world size is 1) this is the identity.

    Args:
        x: tensor ``[n, ...]``; every process must pass the same shape.

    Returns:
        Tensor ``[W * n, ...]``.

    Raises:
        TypeError: ``x`` is not a tensor.
        ValueError: the processes passed different shapes (raised on every process, so none of
            them hangs).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if not is_distributed() or get_world_size() == 1:
        return x
    if x.dim() == 0:
        raise ValueError("x: expected a tensor with at least one dimension, got a 0-D tensor")
    world_size = get_world_size()
    shapes = _gather_shapes(x, world_size)
    if len(set(shapes)) != 1:
        raise ValueError(f"all_gather_with_grad: x: expected the same shape on every process "
                         f"(equal batch sizes; use drop_last=True or pad), got {shapes} (by rank)")
    return _AllGatherWithGrad.apply(x)
