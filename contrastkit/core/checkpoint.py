"""Atomic checkpoint files, read back safely with ``torch.load(weights_only=True)``.

A checkpoint is a plain ``dict`` of tensors, numbers, strings, lists and dicts (state dicts, RNG
states from :mod:`contrastkit.core.seed`, a log history, a config turned into a dict). Writing goes
to a temporary file in the same folder which is flushed, ``fsync``-ed and then moved over the
target with :func:`os.replace`, so a crash mid-write never leaves a half-written checkpoint in
place of a good one.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write

__all__ = ["save_checkpoint", "load_checkpoint"]


def _check_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def _short(text: str, limit: int = 160) -> str:
    """First sentence of the first line of an error message, capped at ``limit`` characters."""
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else ""
    cut = first.find(". ")
    if cut > 0:
        first = first[:cut]
    return first if len(first) <= limit else first[: limit - 3] + "..."

# what ``torch.load(weights_only=True)`` rebuilds without any registration
_LEAF_TYPES = (type(None), bool, int, float, complex, str, bytes, bytearray, torch.Size,
               torch.device, torch.dtype)
_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)


def _key(where: str, key: Any) -> str:
    return f"{where}[{key!r}]"


def _round_trips(obj: Any) -> str | None:
    """``None`` when ``obj`` survives ``torch.save`` + ``torch.load(weights_only=True)``, else
    the reason (used only for objects the type walk does not know, e.g. registered safe globals
    or tensor subclasses)."""
    buf = io.BytesIO()
    try:
        torch.save(obj, buf)
    except Exception as exc:  # noqa: BLE001 - any pickling failure is the answer
        return f"it cannot be pickled ({type(exc).__name__}: {_short(str(exc))})"
    buf.seek(0)
    try:
        torch.load(buf, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        return (f"torch.load(weights_only=True) refuses {found.group(1)}" if found else
                f"torch.load(weights_only=True) cannot read it back "
                f"({type(exc).__name__}: {_short(str(exc))})")
    return None


def _check_loadable(value: Any, where: str, seen: set[int]) -> None:
    """Raise ``TypeError`` naming the first entry of ``value`` that ``load_checkpoint`` could not
    read back. Containers and tensors are checked by type (cheap: tensors are never copied);
    anything else is tried with an in-memory save/load round trip."""
    kind = type(value)
    if kind in _LEAF_TYPES or (kind in _TENSOR_TYPES and not value.__dict__):
        return  # a tensor with Python attributes pickles them too: round trip below
    if kind in (dict, OrderedDict, Counter, list, tuple, set):
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, dict):
            for k, v in value.items():
                _check_loadable(k, f"{_key(where, k)} (the key)", seen)
                _check_loadable(v, _key(where, k), seen)
        else:
            for i, v in enumerate(value):
                _check_loadable(v, f"{where}[{i}]", seen)
        return
    reason = _round_trips(value)
    if reason is not None:
        cls = f"{kind.__module__}.{kind.__qualname__}"
        raise TypeError(f"{where}: expected tensors, numbers, strings, None, lists, tuples or "
                        f"dicts (what load_checkpoint reads with weights_only=True), got a {cls}: "
                        f"{reason}; convert it (e.g. to a dict of plain values or a string)")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically.

    The dict is saved with :func:`torch.save` into a temporary file next to ``path`` (the parent
    folder is created if needed), flushed and ``fsync``-ed, then moved over ``path`` with
    :func:`os.replace`. If anything fails in between, the temporary file is removed and an
    existing checkpoint at ``path`` is left untouched.

    Before writing, ``state`` is checked for entries that :func:`load_checkpoint` could not
    read back (a checkpoint that fails only when resuming is worse than no checkpoint): tensors,
    numbers, strings, ``None``, lists, tuples, sets and dicts pass by type; any other object must
    survive an in-memory ``torch.save`` / ``torch.load(weights_only=True)`` round trip (e.g. a
    class registered with :func:`torch.serialization.add_safe_globals`).

    Args:
        path: target file.
        state: the checkpoint; keep it to tensors, numbers, strings, ``None``, lists, tuples and
            dicts so that :func:`load_checkpoint` (``weights_only=True``) can read it.

    Returns:
        The path written, as a :class:`~pathlib.Path`.

    Raises:
        TypeError: ``path`` is not path-like, ``state`` is not a dict, or an entry of ``state``
            could not be read back by :func:`load_checkpoint` (``weights_only=True``); the
            message names the entry, e.g. ``state['method']['_extra_state']``. Nothing is
            written then.
    """
    path = _check_path(path)
    if not isinstance(state, dict):
        raise TypeError(f"state: expected a dict, got {type(state).__name__}")
    _check_loadable(state, "state", set())
    with atomic_write(path, "wb") as fh:
        torch.save(state, fh)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Loading uses ``torch.load(..., weights_only=True)``: no arbitrary code runs while unpickling.

    Args:
        path: the checkpoint file.
        map_location: where tensors go (as for :func:`torch.load`); default ``"cpu"``.

    Returns:
        The checkpoint dict.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is truncated or corrupt, holds types that ``weights_only`` loading
            refuses, or does not hold a dict.
    """
    path = _check_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist"
                                + (" (it is a folder)" if path.is_dir() else ""))
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (PermissionError, FileNotFoundError, IsADirectoryError):
        raise
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if found:  # a well-formed file holding a class that weights_only loading does not allow
            reason = f"unsupported type {found.group(1)}"
            raise ValueError(
                f"checkpoint {path} holds objects that weights_only loading refuses ({reason}); "
                f"save only tensors, numbers, strings, None, lists and dicts") from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        reason = detail.group(1).strip().splitlines()[0] if detail else _short(text)
        raise ValueError(f"checkpoint {path} is truncated or corrupt "
                         f"(UnpicklingError: {reason})") from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, OSError, ValueError, KeyError,
            IndexError, AttributeError, TypeError, MemoryError) as exc:
        msg = _short(str(exc))
        raise ValueError(f"checkpoint {path} is truncated or corrupt "
                         f"({type(exc).__name__}{': ' + msg if msg else ''})") from None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path}: expected a dict, got {type(state).__name__}")
    return state
