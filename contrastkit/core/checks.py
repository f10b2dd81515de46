"""Input validation shared by every module: clear errors that name the argument.

Every public entry point validates what it is given and raises a :class:`ValueError` or
:class:`TypeError` that names the argument, says what was expected and what came, instead of
letting a bad value turn into a silent NaN or a deep stack trace.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Sequence

import torch
from torch import Tensor


def as_scalar(value: Any) -> Any:
    """A numpy scalar or a 0-d (non-bool) tensor as the Python ``int`` / ``float`` it holds;
    anything else unchanged (bools stay bools, so the checks below still refuse them)."""
    if isinstance(value, Tensor):
        if value.dim() == 0 and value.dtype != torch.bool:
            return value.item()
        return value
    if isinstance(value, (bool, int, float)) or type(value).__module__ != "numpy":
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def check_tensor(name: str, value: Any, *, ndim: int | Sequence[int] | None = None,
                 floating: bool = False, integer: bool = False) -> Tensor:
    """Check that ``value`` is a tensor of the given rank and dtype kind; return it."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.dim() not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name}: expected a {want} tensor, got shape {tuple(value.shape)}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {value.dtype}")
    if integer and (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
        raise TypeError(f"{name}: expected an integer tensor, got dtype {value.dtype}")
    return value


def check_embeddings(name: str, value: Any, *, ndim: int | Sequence[int] | None = 2,
                     finite: bool = True) -> Tensor:
    """Check a floating-point embedding tensor ``[..., N, D]``: the rank, at least one row, a
    feature size ``D >= 1`` and (``finite``) finite values; return it.

    ``finite=False`` skips the value check (a host-device sync) where the tensor goes on to the
    engine, whose :func:`~contrastkit.core.engine.row_statistics` checks its inputs anyway."""
    check_tensor(name, value, ndim=ndim, floating=True)
    if value.dim() >= 1 and value.size(-1) == 0:
        raise ValueError(f"{name}: expected a feature size >= 1 (last dimension), got shape "
                         f"{tuple(value.shape)}")
    if value.dim() >= 2 and value.size(-2) == 0:
        raise ValueError(f"{name}: expected at least one row, got shape {tuple(value.shape)}")
    return check_finite(name, value) if finite else value


def check_finite(name: str, value: Tensor) -> Tensor:
    """Raise ``ValueError`` if ``value`` holds NaN or infinite entries."""
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        n_nan = int(torch.isnan(value).sum())
        n_inf = int(torch.isinf(value).sum())
        raise ValueError(
            f"{name}: expected finite values, got {n_nan} NaN and {n_inf} infinite entries "
            f"in a tensor of shape {tuple(value.shape)}")
    return value


def check_ids(name: str, value: Any, upper: int, *, lower: int = 0,
              ndim: int | Sequence[int] | None = None, what: str = "ids") -> Tensor:
    """Check an integer index tensor whose entries must lie in ``[lower, upper)``; return it.

    One min/max reduction, so a wrong id is a clear ``ValueError`` naming ``name``, the allowed
    range and the offending min/max instead of an index error (or a silent clamp) further down.
    """
    check_tensor(name, value, ndim=ndim, integer=True)
    if value.numel():
        lo, hi = (int(v) for v in torch.stack(torch.aminmax(value)).tolist())
        if lo < lower or hi >= upper:
            raise ValueError(f"{name}: expected {what} in [{lower}, {upper}), got values in "
                             f"[{lo}, {hi}]")
    return value


def check_edge_index(name: str, value: Any, num_nodes: int | None = None) -> Tensor:
    """Check an ``edge_index``: an integer tensor ``[2, E]`` whose node ids lie in
    ``[0, num_nodes)`` (only ``>= 0`` when ``num_nodes`` is ``None``); return it.

    One ``aminmax`` reduction (a single host sync), so it is cheap enough for every forward pass;
    an id out of range would otherwise be an index error deep inside message passing (on a GPU,
    a device-side assert)."""
    check_tensor(name, value, ndim=2, integer=True)
    if value.size(0) != 2:
        raise ValueError(f"{name}: expected shape [2, E], got {tuple(value.shape)}")
    if num_nodes is not None:
        num_nodes = as_scalar(num_nodes)
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, int):
            raise TypeError(f"num_nodes: expected a non-negative int, got "
                            f"{type(num_nodes).__name__}")
        if num_nodes < 0:
            raise ValueError(f"num_nodes: expected a non-negative int, got {num_nodes}")
    if value.numel():
        lo, hi = (int(v) for v in torch.stack(torch.aminmax(value)).tolist())
        if lo < 0 or (num_nodes is not None and hi >= num_nodes):
            want = f"in [0, {num_nodes}) (num_nodes={num_nodes})" if num_nodes is not None \
                else ">= 0"
            raise ValueError(f"{name}: expected node indices {want}, got values in "
                             f"[{lo}, {hi}]")
    return value


def check_no_nan_or_posinf(name: str, value: Tensor) -> Tensor:
    """Raise ``ValueError`` if a score tensor holds NaN or ``+inf`` (``-inf`` is allowed: it is
    how excluded entries are marked). One max reduction: NaN propagates through ``max``."""
    if value.is_floating_point() and value.numel():
        top = float(value.max())
        if top != top or top == float("inf"):
            n_nan = int(torch.isnan(value).sum())
            n_inf = int(torch.isposinf(value).sum())
            raise ValueError(f"{name}: expected finite values (or -inf for excluded entries), "
                             f"got {n_nan} NaN and {n_inf} +inf entries in a tensor of shape "
                             f"{tuple(value.shape)}")
    return value


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> Any:
    """Raise ``ValueError`` unless ``value`` (a number or tensor) is > 0 (or >= 0)."""
    if isinstance(value, Tensor):
        bad = (value < 0) if allow_zero else (value <= 0)
        if value.numel() == 0 or bool(bad.any()) or not bool(torch.isfinite(value).all()):
            lo = float(value.min()) if value.numel() else float("nan")
            raise ValueError(f"{name}: expected {'non-negative' if allow_zero else 'positive'} "
                             f"finite values, got minimum {lo}")
        return value
    value = as_scalar(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    if not (value >= 0 if allow_zero else value > 0) or value != value or value == float("inf"):
        raise ValueError(f"{name}: expected a {'non-negative' if allow_zero else 'positive'} "
                         f"finite number, got {value}")
    return value


def check_probability(name: str, value: Any) -> float:
    """Raise unless ``value`` is a number in [0, 1] (numpy scalars and 0-d tensors accepted);
    return it as a ``float``."""
    value = as_scalar(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a probability (float in [0, 1]), got {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value}")
    return float(value)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def check_same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    """Raise ``ValueError`` if two tensors differ in shape or device."""
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b}: expected the same shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    check_same_device(name_a, a, name_b, b)


def check_same_device(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    """Raise ``ValueError`` if two tensors are on different devices."""
    if a.device != b.device:
        raise ValueError(f"{name_a} and {name_b}: expected tensors on one device, got "
                         f"{a.device} and {b.device}")


def check_weights(name: str, value: Tensor) -> Tensor:
    """Raise ``ValueError`` unless every entry is finite and non-negative.

    Pair and denominator weights use 0 for "not selected", so a NaN or a negative weight would
    otherwise pass silently as an exclusion.
    """
    bad = ~torch.isfinite(value) | (value < 0)
    if bool(bad.any()):
        raise ValueError(f"{name}: expected finite, non-negative weights, got {int(bad.sum())} "
                         f"NaN, infinite or negative entries")
    return value


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """Check that ``value`` is an int ``>= minimum`` (not a bool); returns it.

    Raises TypeError for a non-int and ValueError for a too small one, naming ``name``. Numpy
    ints and 0-d integer tensors are accepted (returned as ``int``).
    """
    value = as_scalar(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def scalar_temperature(temperature: Any, dtype: torch.dtype, device: Any) -> Tensor:
    """A positive scalar temperature (float or one-element, possibly learnable, tensor) as a
    0-d tensor of ``dtype`` on ``device`` (gradients kept)."""
    if isinstance(temperature, Tensor):
        if temperature.numel() != 1:
            raise ValueError(f"temperature: expected a scalar, got shape "
                             f"{tuple(temperature.shape)}")
        check_positive("temperature", temperature.detach())
        return check_temperature_range(temperature.reshape(()).to(dtype=dtype, device=device))
    check_positive("temperature", temperature)
    check_temperature_range(float(temperature), dtype)
    return torch.tensor(float(temperature), dtype=dtype, device=device)


def check_temperature_range(tau: Tensor | float, dtype: torch.dtype | None = None
                            ) -> Tensor | float:
    """Raise ``ValueError`` if a positive temperature (a float for ``dtype``, or a tensor in
    its own dtype) is so small that ``1 / temperature`` overflows, which would make the logits
    infinite; return ``tau``. A float is checked without touching a device."""
    if isinstance(tau, Tensor):
        if tau.device.type != "cpu":  # no extra sync on an accelerator: the trainer's
            return tau                # per-step non-finite check covers the overflow
        dtype, low = tau.dtype, float(tau.detach().min())
    else:
        low = float(tau)
    limit = 1.0 / torch.finfo(dtype).max
    if low < limit:
        raise ValueError(f"temperature: expected a value whose inverse fits {dtype} "
                         f"(>= {limit:.3g}), got {low:.3g}")
    return tau


def check_ints(owner: Any, names: Sequence[str], *, minimum: int = 1,
               allow_none: bool = False) -> None:
    """Check that each attribute ``names`` of ``owner`` (a config) is an int ``>= minimum``.

    ``minimum`` 1 says "a positive int", 0 "a non-negative int"; ``allow_none`` also accepts
    ``None``. Raises ValueError naming the field, what was expected and what came.
    """
    kind = "a positive int" if minimum == 1 else ("a non-negative int" if minimum == 0
                                                  else f"an int >= {minimum}")
    for name in names:
        v = getattr(owner, name)
        if v is None and allow_none:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"{name}: expected {kind}{' or None' if allow_none else ''}, "
                             f"got {v!r}")


def check_config_numbers(config: Any) -> None:
    """Check the float hyperparameters of a config dataclass by their names.

    Every float field (and every float in a list/tuple field) must be finite: NaN or infinity
    is never a usable hyperparameter and would otherwise surface as a NaN loss many steps
    later. By name, for floats and ints: ``lr`` and ``*_lr`` must be > 0, ``*weight_decay``
    >= 0, and a field whose name contains ``dropout`` must lie in [0, 1].

    Args:
        config: a dataclass instance (a method's configuration).

    Raises:
        ValueError: naming the field, what was expected and what came.
    """
    for field in dataclasses.fields(config):
        name, value = field.name, getattr(config, field.name)
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"{name}: expected a finite number, got {value!r}")
            if (name == "lr" or name.endswith("_lr")) and item <= 0:
                raise ValueError(f"{name}: expected a learning rate > 0, got {value!r}")
            if name.endswith("weight_decay") and item < 0:
                raise ValueError(f"{name}: expected a weight decay >= 0, got {value!r}")
            if "dropout" in name and not 0.0 <= item <= 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1], got {value!r}")
