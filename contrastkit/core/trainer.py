"""The shared training loop: one trainer for every contrastive method.

:class:`Trainer` runs a :class:`~contrastkit.core.method.ContrastiveMethod` over a re-iterable of
batches: seeding, device moves, optional mixed precision, finite-loss checks, gradient clipping,
hooks, periodic evaluation, a JSON-lines log, atomic checkpoints with *exact* resume, and
DistributedDataParallel when launched with ``torchrun``.

Exact resume
------------
A checkpoint holds the method and optimizer state, the grad-scaler state, the next epoch, the log
history and the state of every global random-number generator (Python, NumPy, PyTorch CPU and
CUDA) captured at the end of the epoch. Resuming restores all of it, so on CPU a run interrupted
after epoch ``k`` and resumed gives bit-identical parameters to an uninterrupted run, provided the
randomness of the run comes from those generators:

* augmentations should draw from the global generators (``torch.rand``, ``random``, ...);
* a shuffling :class:`~torch.utils.data.DataLoader` should either have no explicit ``generator``
  (it then seeds each epoch's order from the global torch generator) or one that the trainer can
  see: ``loader.generator`` / ``loader.sampler.generator`` are saved and restored too.
  Other private generators are not captured.
* :class:`~torch.utils.data.distributed.DistributedSampler` is deterministic given its seed and
  the epoch, which the trainer sets through ``sampler.set_epoch(epoch)``.

Hook order
----------
``fit`` moves the method to the device, seeds (fresh runs), calls ``method.on_fit_start(trainer)``,
builds the optimizer with ``method.configure_optimizer()`` and *then* restores a checkpoint, so
anything the hook creates is overwritten by the saved state. Each epoch:
``on_epoch_start(epoch)`` -> steps -> ``on_epoch_end(epoch)`` -> evaluation -> log -> checkpoint.
Epochs are 0-based everywhere (hooks, log, checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from contrastkit.core import distributed as _dist
from contrastkit.core.checkpoint import load_checkpoint, save_checkpoint
from contrastkit.core.seed import get_rng_state, seed_everything, set_deterministic, set_rng_state

__all__ = ["Trainer", "NonFiniteLossError", "move_to_device", "CHECKPOINT_NAME"]

#: file name of the checkpoint inside ``out_dir``
CHECKPOINT_NAME = "checkpoint.pt"
_FORMAT_VERSION = 1
_RESERVED_KEYS = ("epoch", "loss", "time_s", "lr", "eval_time_s")


class NonFiniteLossError(FloatingPointError, ValueError):
    """The training loss became NaN or infinite (both a FloatingPointError and a ValueError)."""


def move_to_device(batch: Any, device: torch.device | str) -> Any:
    """Move a batch to ``device``.

    Tensors are moved with ``non_blocking=True``; objects with a ``to`` method (e.g. PyG
    ``Data`` / ``Batch``) via ``obj.to(device)``; tuples (named tuples included), lists and
    mappings recursively; anything else is returned unchanged.

    Args:
        batch: the batch.
        device: target device.

    Returns:
        The batch on ``device``.
    """
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (str, bytes)):
        return batch
    if isinstance(batch, Mapping):
        moved = {k: move_to_device(v, device) for k, v in batch.items()}
        if type(batch) is dict:
            return moved
        try:
            return type(batch)(moved)
        except TypeError:
            return moved
    if isinstance(batch, tuple):
        moved = [move_to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else tuple(moved)
    if isinstance(batch, list):
        return [move_to_device(v, device) for v in batch]
    to = getattr(batch, "to", None)
    if callable(to) and not isinstance(batch, type):
        return to(device)
    return batch


def _plain(value: Any) -> Any:
    """A copy of ``value`` made of types that ``torch.load(weights_only=True)`` accepts."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return _plain(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def _class_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # Linux reports KiB


def _parse_amp(amp: Any) -> torch.dtype | None:
    if amp is None or amp is False:
        return None
    if amp is True:
        return torch.bfloat16
    if isinstance(amp, str):
        key = amp.lower()
        if key in ("bf16", "bfloat16"):
            return torch.bfloat16
        if key in ("fp16", "float16", "half"):
            return torch.float16
    raise ValueError(f"amp: expected False, True, 'bf16' or 'fp16', got {amp!r}")


def _resolve_device(device: Any) -> torch.device:
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device: expected a str or torch.device, got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device: expected a device such as 'cpu', 'cuda' or 'cuda:1', "
                         f"got {device!r} ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {str(device)!r} requested but CUDA is not available")
    return dev


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


class Trainer:
    """Runs a contrastive method for a number of epochs.

    Args:
        epochs: number of epochs (>= 1). When resuming, training continues up to this many
            epochs in total.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a :class:`torch.device`, or ``"auto"``.
            Under ``torchrun`` with CUDA, a device without an index becomes ``cuda:LOCAL_RANK``.
        seed: seed for :func:`~contrastkit.core.seed.seed_everything` at the start of a fresh run
            (plus the rank under DDP, so processes draw different augmentations); ``None`` leaves
            the generators alone. Seed before building the method if its initialisation must be
            reproducible too.
        deterministic: switch on deterministic algorithms (process-wide, stays on).
        amp: mixed precision on CUDA: ``False``, ``True`` / ``"bf16"`` (bfloat16 autocast) or
            ``"fp16"`` (float16 autocast with a :class:`torch.amp.GradScaler`). Ignored with a
            warning on CPU.
        progress: show a tqdm bar over epochs with the loss (rank 0 only).
        eval_every: call ``evaluator`` after every this many epochs (epochs ``eval_every - 1``,
            ``2 * eval_every - 1``, ... 0-based); ``0`` means only after the last epoch. Needs
            ``evaluator`` when > 0.
        evaluator: ``evaluator(method) -> {"metric": value}``, run with the method in eval mode
            under ``torch.no_grad()`` (on rank 0, on the unwrapped method). It runs with the random
            generators saved and restored around it, so it does not perturb training.
        out_dir: folder for the log and the checkpoint; ``None`` writes nothing.
        checkpoint_every: save ``out_dir/checkpoint.pt`` every this many epochs; ``0`` saves only
            after the last epoch. Needs ``out_dir``.
        log_name: file name of the JSON-lines log inside ``out_dir``.
        grad_clip: clip the global gradient norm to this value (``None``: no clipping).

    Early stopping: a method that sets ``method.stop_training = True`` (e.g. in
    ``on_epoch_end``) ends training after that epoch, which then counts as the last one
    (evaluated and checkpointed). If the flag is set again by the restored state on resume (e.g.
    a patience counter saved through ``get_extra_state``), nothing more is trained.

    Attributes:
        history: one dict per epoch (``epoch``, ``loss``, ``time_s``, ``lr`` and, when evaluated,
            ``eval_time_s`` and the evaluator's metrics); also written to the log.
        stats: after :meth:`fit`: ``time_per_epoch_s`` (mean ``time_s`` over every epoch of the
            run, those restored from a checkpoint included, so a resumed run reports the cost of
            the whole run and one that trains nothing keeps the saved figure; 0.0 if no epoch),
            ``train_time_s`` (this call's ``total_time_s`` plus the ``time_s`` of the restored
            epochs), ``peak_mem_bytes`` (CUDA max allocated on GPU, process peak RSS on CPU;
            this call's), ``epochs_run``, ``steps``, ``start_epoch`` and ``total_time_s`` (this
            call's wall time).
        optimizer: the optimizer of the last :meth:`fit` call.
        scaler: its :class:`torch.amp.GradScaler` (``None`` unless fp16 on CUDA).
        epoch: the epoch being run (0-based).
        loader: the loader passed to :meth:`fit` (available to ``on_fit_start``).

    Under ``torchrun`` (a process group initialised, e.g. by
    :func:`~contrastkit.core.distributed.init_from_env`) the method is wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel` (``find_unused_parameters=False``: every
    trainable parameter must receive a gradient each step), each process is seeded with
    ``seed + rank``, the logged loss is the mean over processes, and only rank 0 shows the bar,
    evaluates, and writes the log and the checkpoint (which holds every process's RNG state; all
    processes read it back on resume, so ``out_dir`` must be on a shared file system). The loss is
    checked on each process separately: make a non-finite loss non-finite everywhere (e.g. by
    computing it from gathered tensors) or one process stops while the others wait.
    """

    def __init__(self, epochs: int, *, device: str | torch.device = "cpu", seed: int | None = 0,
                 deterministic: bool = True, amp: bool | str = False, progress: bool = True,
                 eval_every: int = 0,
                 evaluator: Callable[[nn.Module], dict[str, float]] | None = None,
                 out_dir: str | Path | None = None, checkpoint_every: int = 0,
                 log_name: str = "log.jsonl", grad_clip: float | None = None) -> None:
        self.epochs = _check_int("epochs", epochs, 1)
        self.device = _resolve_device(device)
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise TypeError(f"seed: expected an int or None, got {type(seed).__name__}")
            if not 0 <= seed <= 2**32 - 1024:
                raise ValueError(f"seed: expected an int in [0, 2**32 - 1024], got {seed}")
        self.seed = seed
        if not isinstance(deterministic, bool):
            raise TypeError(f"deterministic: expected a bool, got {type(deterministic).__name__}")
        self.deterministic = deterministic
        self.amp = amp
        self._amp_dtype = _parse_amp(amp)
        if self._amp_dtype is not None and self.device.type != "cuda":
            warnings.warn(f"amp={amp!r} is ignored on device {self.device} (autocast is used on "
                          f"CUDA only); training runs in full precision", UserWarning, stacklevel=2)
            self._amp_dtype = None
        if not isinstance(progress, bool):
            raise TypeError(f"progress: expected a bool, got {type(progress).__name__}")
        self.progress = progress
        self.eval_every = _check_int("eval_every", eval_every, 0)
        if evaluator is not None and not callable(evaluator):
            raise TypeError(f"evaluator: expected a callable(method) -> dict or None, "
                            f"got {type(evaluator).__name__}")
        if eval_every > 0 and evaluator is None:
            raise ValueError(f"eval_every: set to {eval_every} but no evaluator was given")
        self.evaluator = evaluator
        if out_dir is not None and not isinstance(out_dir, (str, os.PathLike)):
            raise TypeError(f"out_dir: expected a str, a Path or None, "
                            f"got {type(out_dir).__name__}")
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.checkpoint_every = _check_int("checkpoint_every", checkpoint_every, 0)
        if checkpoint_every > 0 and self.out_dir is None:
            raise ValueError(f"checkpoint_every: set to {checkpoint_every} but out_dir is None "
                             f"(checkpoints need a folder)")
        if not isinstance(log_name, str) or not log_name or os.sep in log_name:
            raise ValueError(f"log_name: expected a plain file name, got {log_name!r}")
        self.log_name = log_name
        if grad_clip is not None:
            if isinstance(grad_clip, bool) or not isinstance(grad_clip, (int, float)):
                raise TypeError(f"grad_clip: expected a positive float or None, "
                                f"got {type(grad_clip).__name__}")
            if not (math.isfinite(grad_clip) and grad_clip > 0):
                raise ValueError(f"grad_clip: expected a positive finite float, got {grad_clip}")
            grad_clip = float(grad_clip)
        self.grad_clip = grad_clip

        self.history: list[dict[str, Any]] = []
        self.stats: dict[str, Any] = {}
        self.optimizer: torch.optim.Optimizer | None = None
        self.scaler: torch.amp.GradScaler | None = None
        self.epoch = 0
        self.loader: Iterable[Any] | None = None
        self.method: nn.Module | None = None

    # ---- paths -------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        """``out_dir / "checkpoint.pt"`` (``None`` without ``out_dir``)."""
        return None if self.out_dir is None else self.out_dir / CHECKPOINT_NAME

    @property
    def log_path(self) -> Path | None:
        """``out_dir / log_name`` (``None`` without ``out_dir``)."""
        return None if self.out_dir is None else self.out_dir / self.log_name

    # ---- helpers -----------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "seed": self.seed, "deterministic": self.deterministic,
                "amp": self.amp if isinstance(self.amp, (bool, str)) else str(self.amp),
                "grad_clip": self.grad_clip, "world_size": _dist.get_world_size(),
                "device": str(self.device)}

    @staticmethod
    def _loader_generators(loader: Any) -> list[torch.Generator]:
        """Generators a DataLoader shuffles with that the checkpoint can capture (deduplicated)."""
        found: list[torch.Generator] = []
        candidates = [getattr(loader, "generator", None)]
        sampler = getattr(loader, "sampler", None)
        candidates.append(getattr(sampler, "generator", None))
        batch_sampler = getattr(loader, "batch_sampler", None)
        candidates.append(getattr(getattr(batch_sampler, "sampler", None), "generator", None))
        for g in candidates:
            if isinstance(g, torch.Generator) and all(g is not f for f in found):
                found.append(g)
        return found

    @staticmethod
    def _epoch_setters(loader: Any) -> list[Any]:
        """Objects of the loader with a ``set_epoch`` method (sampler, batch sampler, loader)."""
        found: list[Any] = []
        batch_sampler = getattr(loader, "batch_sampler", None)
        for obj in (loader, getattr(loader, "sampler", None), batch_sampler,
                    getattr(batch_sampler, "sampler", None)):
            if obj is not None and callable(getattr(obj, "set_epoch", None)) \
                    and all(obj is not f for f in found):
                found.append(obj)
        return found

    def _rng_snapshot(self, loader: Any) -> dict[str, Any]:
        return {"global": get_rng_state(),
                "loader": [g.get_state() for g in self._loader_generators(loader)]}

    def _restore_rng(self, snapshot: dict[str, Any], loader: Any) -> None:
        set_rng_state(snapshot["global"])
        gens = self._loader_generators(loader)
        states = snapshot.get("loader") or []
        if len(states) != len(gens):
            warnings.warn(f"resume: the checkpoint holds {len(states)} loader generator states but "
                          f"the loader exposes {len(gens)}; the data order may differ from an "
                          f"uninterrupted run", RuntimeWarning, stacklevel=3)
        for g, s in zip(gens, states):
            g.set_state(s)

    def _autocast(self) -> Any:
        if self._amp_dtype is None:
            return torch.autocast(device_type=self.device.type, enabled=False)
        return torch.autocast(device_type="cuda", dtype=self._amp_dtype)

    def _write_log(self, lines: list[dict[str, Any]], *, append: bool) -> None:
        path = self.log_path
        if path is None or not _dist.is_main_process():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a" if append else "w", encoding="utf-8") as fh:
            for record in lines:
                fh.write(json.dumps(record) + "\n")
            fh.flush()

    def _evaluate(self, method: nn.Module) -> dict[str, float]:
        assert self.evaluator is not None
        was_training = method.training
        rng = get_rng_state()
        method.eval()
        try:
            with torch.no_grad():
                metrics = self.evaluator(method)
        finally:
            method.train(was_training)
            set_rng_state(rng)
        if not isinstance(metrics, Mapping):
            raise TypeError(f"evaluator: expected it to return a dict of metric -> float, "
                            f"got {type(metrics).__name__}")
        out: dict[str, float] = {}
        for key, value in metrics.items():
            if not isinstance(key, str):
                raise TypeError(f"evaluator: expected str metric names, got {key!r}")
            if key in _RESERVED_KEYS:
                raise ValueError(f"evaluator: metric name {key!r} clashes with a log field "
                                 f"{list(_RESERVED_KEYS)}; rename it")
            try:
                out[key] = float(value)
            except (TypeError, ValueError):
                raise TypeError(f"evaluator: metric {key!r}: expected a number, "
                                f"got {type(value).__name__}") from None
        return out

    def _resolve_resume(self, resume: bool | str | Path) -> Path | None:
        if resume is False or resume is None:
            return None
        if resume is True:
            if self.checkpoint_path is None:
                raise ValueError("resume: resume=True needs out_dir (the checkpoint is "
                                 "out_dir/checkpoint.pt); pass a path or set out_dir")
            return self.checkpoint_path
        if isinstance(resume, (str, os.PathLike)):
            return Path(resume)
        raise TypeError(f"resume: expected a bool, a str or a Path, got {type(resume).__name__}")

    def _run_device(self) -> torch.device:
        """The device of this process: a CUDA device always gets an explicit index
        (``LOCAL_RANK`` under DDP, the current device otherwise)."""
        if self.device.type == "cuda" and self.device.index is None:
            if _dist.is_distributed():
                return torch.device("cuda", _dist.get_local_rank() % torch.cuda.device_count())
            return torch.device("cuda", torch.cuda.current_device())
        return self.device

    # ---- checkpoints ---------------------------------------------------------------------
    def _checkpoint_state(self, method: nn.Module, next_epoch: int, loader: Any) -> dict[str, Any]:
        snapshot = self._rng_snapshot(loader)
        if _dist.is_distributed():
            gathered: list[Any] = [None] * _dist.get_world_size()
            torch.distributed.all_gather_object(gathered, snapshot)
            rng = gathered
        else:
            rng = [snapshot]
        config = getattr(method, "config", None)
        state: dict[str, Any] = {
            "format": _FORMAT_VERSION,
            "method_class": _class_name(method),
            "method": method.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": next_epoch,
            "rng": rng,
            "history": _plain(self.history),
            "trainer": self._settings(),
        }
        if dataclasses.is_dataclass(config) and not isinstance(config, type):
            state["config"] = _plain(dataclasses.asdict(config))
        return state

    def _save(self, method: nn.Module, next_epoch: int, loader: Any) -> None:
        state = self._checkpoint_state(method, next_epoch, loader)  # collective under DDP
        if _dist.is_main_process() and self.checkpoint_path is not None:
            save_checkpoint(self.checkpoint_path, state)
        _dist.barrier()

    def _restore(self, method: nn.Module, path: Path, loader: Any) -> int:
        ckpt = load_checkpoint(path, map_location="cpu")
        missing = [k for k in ("method_class", "method", "epoch", "rng") if k not in ckpt]
        if missing:
            raise ValueError(f"checkpoint {path}: not a contrastkit trainer checkpoint "
                             f"(missing {missing})")
        saved_cls, this_cls = ckpt["method_class"], _class_name(method)
        if saved_cls != this_cls:
            raise ValueError(f"resume: checkpoint {path} was written for method class {saved_cls}, "
                             f"got a {this_cls}; resume with the same method class")
        settings = ckpt.get("trainer") or {}
        if settings.get("seed", self.seed) != self.seed:
            warnings.warn(f"resume: the checkpoint was trained with seed={settings.get('seed')}, "
                          f"this trainer has seed={self.seed}; the saved RNG state is used",
                          RuntimeWarning, stacklevel=3)
        config = getattr(method, "config", None)
        if "config" in ckpt and dataclasses.is_dataclass(config) and not isinstance(config, type):
            now = _plain(dataclasses.asdict(config))
            if now != ckpt["config"]:
                diff = sorted(k for k in set(now) | set(ckpt["config"])
                              if now.get(k) != ckpt["config"].get(k))
                warnings.warn(f"resume: the method config differs from the checkpoint's in {diff}",
                              RuntimeWarning, stacklevel=3)
        try:
            method.load_state_dict(ckpt["method"])
        except RuntimeError as exc:
            raise ValueError(f"resume: checkpoint {path} does not fit this method "
                             f"({str(exc).splitlines()[0]})") from None
        if self.optimizer is not None and ckpt.get("optimizer") is not None:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.history = list(ckpt.get("history") or [])
        rng = ckpt["rng"]
        rank, world = _dist.get_rank(), _dist.get_world_size()
        if len(rng) != world:
            warnings.warn(f"resume: the checkpoint was written by {len(rng)} processes, this run "
                          f"has {world}; random streams will differ from an uninterrupted run",
                          RuntimeWarning, stacklevel=3)
        self._restore_rng(rng[rank % len(rng)], loader)
        return int(ckpt["epoch"])

    # ---- the loop ----------------------------------------------------------------------
    def fit(self, method: nn.Module, loader: Iterable[Any], *,
            resume: bool | str | Path = False) -> nn.Module:
        """Train ``method`` on ``loader``.

        Args:
            method: a :class:`~contrastkit.core.method.ContrastiveMethod` (any ``nn.Module`` whose
                ``forward(batch)`` returns the scalar loss and that has ``configure_optimizer``).
            loader: a re-iterable of batches (a DataLoader, a list such as ``[data]`` for
                full-batch graph methods, ...). Each batch is moved to the device.
            resume: ``True`` resumes from ``out_dir/checkpoint.pt``, a path resumes from that
                file; ``False`` starts fresh (and truncates an existing log).

        Returns:
            The trained method (unwrapped, in training mode).

        Raises:
            TypeError / ValueError: bad arguments, an empty loader, a loss that is not a scalar
                tensor, or a checkpoint written for another method class.
            NonFiniteLossError: the loss became NaN or infinite (names epoch and step).
            FileNotFoundError: the checkpoint to resume from does not exist.
        """
        if not isinstance(method, nn.Module):
            raise TypeError(f"method: expected a ContrastiveMethod (nn.Module), "
                            f"got {type(method).__name__}")
        if not callable(getattr(method, "configure_optimizer", None)):
            raise TypeError(f"method: expected a configure_optimizer() method on "
                            f"{type(method).__name__}")
        if isinstance(loader, Iterator) or not isinstance(loader, Iterable):
            raise TypeError(f"loader: expected a re-iterable of batches (a DataLoader, a list), "
                            f"got {type(loader).__name__}"
                            + (" (a one-shot iterator)" if isinstance(loader, Iterator) else ""))
        ckpt_path = self._resolve_resume(resume)
        rank, world = _dist.get_rank(), _dist.get_world_size()
        distributed = _dist.is_distributed() and world > 1
        device = self._run_device()
        if device.type == "cuda":
            torch.cuda.set_device(device)
            torch.cuda.reset_peak_memory_stats(device)

        method.to(device)
        method.train()
        self.method, self.loader, self.history = method, loader, []
        if self.deterministic:
            set_deterministic(True)
        if ckpt_path is None and self.seed is not None:
            seed_everything(self.seed + rank, deterministic=self.deterministic)

        if hasattr(method, "stop_training"):
            method.stop_training = False  # a flag left by an earlier fit does not carry over
        hook = getattr(method, "on_fit_start", None)
        if callable(hook):
            hook(self)
        self.optimizer = method.configure_optimizer()
        if not isinstance(self.optimizer, torch.optim.Optimizer):
            raise TypeError(f"method.configure_optimizer(): expected a torch.optim.Optimizer, "
                            f"got {type(self.optimizer).__name__}")
        self.scaler = (torch.amp.GradScaler("cuda") if self._amp_dtype == torch.float16 else None)

        start_epoch, first_epoch = 0, 0
        if ckpt_path is not None:
            start_epoch = self._restore(method, ckpt_path, loader)
            stopped = bool(getattr(method, "stop_training", False))
            if start_epoch >= self.epochs:
                warnings.warn(f"resume: the checkpoint already covers {start_epoch} epochs "
                              f"(epochs={self.epochs}); nothing to train", RuntimeWarning,
                              stacklevel=2)
            elif stopped:
                warnings.warn(f"resume: the method had stopped early after {start_epoch} epochs "
                              f"(its restored state says so); nothing to train", RuntimeWarning,
                              stacklevel=2)
            first_epoch = self.epochs if stopped else start_epoch
        self._write_log(self.history, append=False)  # log == history (fresh: empty file)

        model: nn.Module = method
        if distributed:
            model = nn.parallel.DistributedDataParallel(
                method, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=False)

        bar = None
        if self.progress and rank == 0:
            from .progress import progress_bar
            bar = progress_bar(total=self.epochs, initial=min(start_epoch, self.epochs),
                               desc=str(getattr(method, "name", type(method).__name__)),
                               unit="epoch", dynamic_ncols=True)
        epoch_times: list[float] = []
        steps_total = 0
        t_fit = time.perf_counter()
        try:
            for epoch in range(first_epoch, self.epochs):
                self.epoch = epoch
                for obj in self._epoch_setters(loader):
                    obj.set_epoch(epoch)
                hook = getattr(method, "on_epoch_start", None)
                if callable(hook):
                    hook(epoch)
                t0 = time.perf_counter()
                loss_sum, steps = self._run_epoch(model, method, loader, epoch, device)
                if distributed:
                    buf = torch.tensor([loss_sum / steps], dtype=torch.float64, device=device)
                    torch.distributed.all_reduce(buf)
                    mean_loss = float(buf.item()) / world
                else:
                    mean_loss = loss_sum / steps
                hook = getattr(method, "on_epoch_end", None)
                if callable(hook):
                    hook(epoch)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                elapsed = time.perf_counter() - t0
                epoch_times.append(elapsed)
                steps_total += steps
                lr = self.optimizer.param_groups[0].get("lr", float("nan"))
                record: dict[str, Any] = {"epoch": epoch, "loss": mean_loss,
                                          "time_s": elapsed, "lr": float(lr)}
                # a method may stop early (e.g. patience on its loss) by setting stop_training
                stop = bool(getattr(method, "stop_training", False))
                last = epoch == self.epochs - 1 or stop
                due = ((epoch + 1) % self.eval_every == 0) if self.eval_every > 0 else last
                if self.evaluator is not None and rank == 0 and due:
                    t1 = time.perf_counter()
                    metrics = self._evaluate(method)
                    record["eval_time_s"] = time.perf_counter() - t1
                    record.update(metrics)
                self.history.append(record)
                self._write_log([record], append=True)
                if bar is not None:
                    shown = {"loss": f"{mean_loss:.4f}"}
                    shown.update({k: f"{v:.4f}" for k, v in record.items()
                                  if k not in _RESERVED_KEYS})
                    bar.set_postfix(shown, refresh=False)  # drawn by update (at its interval)
                    bar.update(1)
                if self.out_dir is not None and (
                        last or (self.checkpoint_every > 0
                                 and (epoch + 1) % self.checkpoint_every == 0)):
                    self._save(method, epoch + 1, loader)
                if stop:
                    break
        finally:
            if bar is not None:
                bar.close()
            del model

        n = len(epoch_times)
        total = time.perf_counter() - t_fit
        # the whole run's epochs: those restored from the checkpoint (their logged time_s) and
        # this call's, so that a resumed run does not report only the epochs it added
        restored = [float(r["time_s"]) for r in self.history[:len(self.history) - n]
                    if isinstance(r.get("time_s"), (int, float))]
        times = restored + epoch_times
        self.stats = {
            "time_per_epoch_s": sum(times) / len(times) if times else 0.0,
            "train_time_s": sum(restored) + total,
            "total_time_s": total,
            "epochs_run": n,
            "start_epoch": start_epoch,
            "steps": steps_total,
            "peak_mem_bytes": (int(torch.cuda.max_memory_allocated(device))
                               if device.type == "cuda" else _peak_rss_bytes()),
        }
        return method

    def _run_epoch(self, model: nn.Module, method: nn.Module, loader: Iterable[Any], epoch: int,
                   device: torch.device) -> tuple[float, int]:
        """One pass over ``loader``; returns (sum of step losses, number of steps)."""
        assert self.optimizer is not None
        optimizer, scaler = self.optimizer, self.scaler
        loss_sum, steps = 0.0, 0
        for step, batch in enumerate(loader):
            batch = move_to_device(batch, device)
            optimizer.zero_grad(set_to_none=True)
            method.zero_grad(set_to_none=True)
            with self._autocast():
                loss = model(batch)
            if not isinstance(loss, Tensor) or loss.numel() != 1:
                got = (f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, Tensor)
                       else type(loss).__name__)
                raise TypeError(f"training_step at epoch {epoch} step {step}: expected a scalar "
                                f"loss tensor, got {got}")
            value = float(loss.detach().item())
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"non-finite loss ({value}) at epoch {epoch} step {step}: try a lower "
                    f"learning rate, grad_clip, a higher temperature, amp='bf16' instead of "
                    f"'fp16', or check the batch for NaN/inf inputs")
            if not loss.requires_grad:
                raise ValueError(f"training_step at epoch {epoch} step {step}: the loss does not "
                                 f"require grad (was it computed under no_grad or detached?)")
            if scaler is not None:
                scaler.scale(loss).backward()
                if self.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(method.parameters(), self.grad_clip)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                if self.grad_clip is not None:
                    nn.utils.clip_grad_norm_(method.parameters(), self.grad_clip)
                optimizer.step()
            loss_sum += value
            steps += 1
        if steps == 0:
            raise ValueError(f"loader: expected at least one batch per epoch, got none at "
                             f"epoch {epoch}")
        return loss_sum, steps
