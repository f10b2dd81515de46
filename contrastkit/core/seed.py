"""Seeding and random-number-generator state capture for reproducible, exactly resumable runs.

:func:`seed_everything` seeds Python's :mod:`random`, NumPy's global generator, PyTorch's CPU
generator and every CUDA generator. :func:`get_rng_state` / :func:`set_rng_state` capture and
restore all of them in a form made only of tensors, ints, floats, strings and ``None``, so that a
checkpoint holding it can be read back with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import os
import random
import warnings
from typing import Any

import numpy as np
import torch

__all__ = ["seed_everything", "set_deterministic", "get_rng_state", "set_rng_state"]

_MAX_SEED = 2**32 - 1


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"seed: expected an int in [0, 2**32 - 1], got {seed}")
    return seed


def set_deterministic(enabled: bool = True) -> None:
    """Switch PyTorch's deterministic-algorithm mode on or off (process-wide).

    When enabled: ``torch.use_deterministic_algorithms(True, warn_only=True)`` (an op without a
    deterministic implementation warns instead of failing), cuDNN deterministic and not
    benchmarking, and ``CUBLAS_WORKSPACE_CONFIG`` set (if unset) so cuBLAS is reproducible.

    Args:
        enabled: turn the deterministic mode on (``True``) or off (``False``).
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def seed_everything(seed: int, deterministic: bool = True) -> int:
    """Seed Python, NumPy, PyTorch (CPU) and all CUDA generators.

    Args:
        seed: the seed, an int in ``[0, 2**32 - 1]``.
        deterministic: also switch on deterministic algorithms (see :func:`set_deterministic`).
            This is a process-wide setting and stays on after the call.

    Returns:
        The seed.

    Raises:
        TypeError: ``seed`` is not an int.
        ValueError: ``seed`` is out of range.
    """
    seed = _check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too (lazily if CUDA is not initialised)
    os.environ["PYTHONHASHSEED"] = str(seed)  # affects child processes only
    if deterministic:
        set_deterministic(True)
    return seed


def _cuda_ready() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def get_rng_state() -> dict[str, Any]:
    """Capture the state of every global random-number generator.

    Returns:
        A dict ``{"python": ..., "numpy": ..., "torch": ByteTensor, "cuda": [ByteTensor, ...]}``
        made only of tensors, ints, floats, strings and ``None`` (loadable with
        ``torch.load(..., weights_only=True)``). ``"cuda"`` is empty when CUDA is unavailable or
        not initialised (nothing has drawn from it then).
    """
    version, internal, gauss_next = random.getstate()
    name, key, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    return {
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": None if gauss_next is None else float(gauss_next),
        },
        "numpy": {
            "bit_generator": str(name),
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64).copy()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if _cuda_ready() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generator states captured by :func:`get_rng_state`.

    Args:
        state: the dict returned by :func:`get_rng_state` (possibly after a save/load round trip).

    Raises:
        TypeError: ``state`` is not a dict.
        ValueError: ``state`` lacks one of the expected entries or holds malformed values.
    """
    if not isinstance(state, dict):
        raise TypeError(f"state: expected a dict from get_rng_state(), got {type(state).__name__}")
    missing = [k for k in ("python", "numpy", "torch") if k not in state]
    if missing:
        raise ValueError(f"state: expected entries 'python', 'numpy', 'torch' (and 'cuda'), "
                         f"missing {missing}")
    try:
        py = state["python"]
        internal = tuple(int(v) for v in py["state"].tolist())
        random.setstate((int(py["version"]), internal, py["gauss_next"]))

        npst = state["numpy"]
        key = npst["key"].numpy().astype(np.uint32)
        np.random.set_state((npst["bit_generator"], key, int(npst["pos"]),
                             int(npst["has_gauss"]), float(npst["cached_gaussian"])))

        torch.set_rng_state(state["torch"].to("cpu", torch.uint8))
    except (KeyError, AttributeError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"state: malformed RNG state ({type(exc).__name__}: {exc})") from None

    cuda_states = state.get("cuda") or []
    if cuda_states:
        if not torch.cuda.is_available():
            warnings.warn("set_rng_state: the saved state holds CUDA generator states but CUDA is "
                          "not available here; they are ignored", RuntimeWarning, stacklevel=2)
            return
        n = torch.cuda.device_count()
        if n != len(cuda_states):
            warnings.warn(f"set_rng_state: the saved state holds {len(cuda_states)} CUDA generator "
                          f"states but {n} devices are visible; restoring the first "
                          f"{min(n, len(cuda_states))}", RuntimeWarning, stacklevel=2)
        for i, s in enumerate(cuda_states[:n]):
            torch.cuda.set_rng_state(s.to("cpu", torch.uint8), i)
