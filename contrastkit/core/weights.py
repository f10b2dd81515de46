r"""Negative weights: factors ``w_ij`` on ``e^{s_ij}`` in the denominator of a contrastive loss.

A weight ``w_ij`` adds ``log w_ij`` to the logit of pair ``(i, j)`` in the denominator; ``w = 0``
excludes the pair. Weights are expanded one row block at a time, like pair selectors:
``weight.block(s_block, start, stop)`` returns ``[stop - start, M]`` non-negative weights.
Several weights given as a list are summed (e.g. MEOW's :math:`\sum_m [c^m_i \ne c^m_j]`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from .checks import check_tensor, check_weights


class NegativeWeight:
    """Base class for denominator weights."""

    def validate(self, num_anchors: int, num_candidates: int) -> None:
        """Raise ``ValueError`` if the weight does not fit ``num_anchors x num_candidates``."""

    def block(self, s: Tensor, start: int, stop: int) -> Tensor:
        """Weights ``[stop - start, M]`` for the similarity tile ``s`` of anchors ``start..stop-1``."""
        raise NotImplementedError

    def tensors(self) -> tuple[Tensor, ...]:
        """Tensors the weights depend on that may need gradients (re-run in backward)."""
        return ()


class LabelTable(NegativeWeight):
    r"""Weights from a ``[K, K]`` table indexed by group labels: ``w_ij = T[g_a(i), g_b(j)]``.

    Used by gCooL (:math:`\omega(k, l)` between communities) and MEOW (``[c_i != c_j]``).

    Args:
        table: ``[K, K]`` non-negative table (may require grad).
        labels_a: ``[N]`` labels of the anchors in ``0..K-1``.
        labels_b: ``[M]`` labels of the candidates (default ``labels_a``).
    """

    def __init__(self, table: Tensor, labels_a: Tensor, labels_b: Tensor | None = None) -> None:
        check_tensor("table", table, ndim=2, floating=True)
        if table.size(0) != table.size(1):
            raise ValueError(f"table: expected a square [K, K] table, got {tuple(table.shape)}")
        check_weights("table", table)
        self.table = table
        self.labels_a = check_tensor("labels_a", labels_a, ndim=1, integer=True)
        self.labels_b = self.labels_a if labels_b is None else check_tensor(
            "labels_b", labels_b, ndim=1, integer=True)
        k = table.size(0)
        for name, lab in (("labels_a", self.labels_a), ("labels_b", self.labels_b)):
            if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= k):
                raise ValueError(f"{name}: expected labels in [0, {k - 1}] to index the [K, K] "
                                 f"table, got range [{int(lab.min())}, {int(lab.max())}]")

    def validate(self, num_anchors, num_candidates):
        if self.labels_a.numel() != num_anchors:
            raise ValueError(f"labels_a: expected {num_anchors} labels, got {self.labels_a.numel()}")
        if self.labels_b.numel() != num_candidates:
            raise ValueError(f"labels_b: expected {num_candidates} labels, got {self.labels_b.numel()}")

    def block(self, s, start, stop):
        la = self.labels_a[start:stop].to(s.device)
        lb = self.labels_b.to(s.device)
        return self.table.to(device=s.device, dtype=s.dtype)[la[:, None], lb[None, :]]

    def tensors(self):
        return (self.table,) if self.table.requires_grad else ()


class VectorWeight(NegativeWeight):
    """Per-anchor (``axis="anchor"``, ``[N]``) or per-candidate (``axis="candidate"``, ``[M]``) weights."""

    def __init__(self, weight: Tensor, axis: str = "candidate") -> None:
        self.weight = check_tensor("weight", weight, ndim=1, floating=True)
        check_weights("weight", weight)
        if axis not in ("anchor", "candidate"):
            raise ValueError(f"axis: expected 'anchor' or 'candidate', got {axis!r}")
        self.axis = axis

    def validate(self, num_anchors, num_candidates):
        want = num_anchors if self.axis == "anchor" else num_candidates
        if self.weight.numel() != want:
            raise ValueError(f"weight: expected {want} entries (one per {self.axis}), "
                             f"got {self.weight.numel()}")

    def block(self, s, start, stop):
        w = self.weight.to(device=s.device, dtype=s.dtype)
        if self.axis == "anchor":
            return w[start:stop, None].expand(stop - start, s.size(1))
        return w[None, :].expand(stop - start, s.size(1))

    def tensors(self):
        return (self.weight,) if self.weight.requires_grad else ()


class BlockWeight(NegativeWeight):
    r"""Weights from a callable evaluated on each tile: ``w = fn(s_block, rows)``.

    ``fn`` receives the ``[B, M]`` logit tile (after the temperature) and the ``[B]`` global anchor
    indices, and returns ``[B, M]`` non-negative weights. It may close over embeddings and hold
    parameters (AdaMEOW's MLP on ``v_i + u_j``, tilting ``exp(beta s)``). Because the engine
    re-runs ``fn`` per tile in backward, it must know every tensor ``fn`` reads that needs a
    gradient: the parameters of an ``nn.Module`` ``fn``, and the tensors and modules ``fn`` closes
    over (its closure cells, e.g. a lambda or nested function), are found automatically; list
    anything else (globals, attributes of other objects) in ``tensors``.
    """

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], tensors: Sequence[Tensor] = ()) -> None:
        if not callable(fn):
            raise TypeError(f"fn: expected a callable (s_block, rows) -> weights, got {type(fn).__name__}")
        self.fn = fn
        extra = list(tensors)
        found: list[Any] = [fn] + [c.cell_contents for c in (getattr(fn, "__closure__", None) or ())
                                   if _cell_filled(c)]
        for obj in found:
            if isinstance(obj, nn.Module):
                extra += list(obj.parameters())
            elif isinstance(obj, Tensor):
                extra.append(obj)
        unique: dict[int, Tensor] = {}
        for t in extra:
            if isinstance(t, Tensor) and t.requires_grad:
                unique.setdefault(id(t), t)
        self._tensors = tuple(unique.values())

    def block(self, s, start, stop):
        rows = torch.arange(start, stop, device=s.device)
        w = self.fn(s, rows)
        if not isinstance(w, Tensor) or w.shape != s.shape:
            raise ValueError(f"fn: expected a weight tensor of shape {tuple(s.shape)}, got "
                             f"{tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__}")
        check_weights("fn output", w.detach())
        return w

    def tensors(self):
        return self._tensors


def _cell_filled(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # an empty cell
        return False
    return True


class SumOfWeights(NegativeWeight):
    """The sum of several weights (e.g. one :class:`LabelTable` per clustering)."""

    def __init__(self, parts: Sequence[NegativeWeight]) -> None:
        if not parts:
            raise ValueError("negative_weight: expected at least one weight in the list, got none")
        self.parts = [as_weight(p, "negative_weight") for p in parts]

    def validate(self, num_anchors, num_candidates):
        for p in self.parts:
            p.validate(num_anchors, num_candidates)

    def block(self, s, start, stop):
        total = self.parts[0].block(s, start, stop)
        for p in self.parts[1:]:
            total = total + p.block(s, start, stop)
        return total

    def tensors(self):
        return tuple(t for p in self.parts for t in p.tensors())


def as_weight(value: Any, name: str = "negative_weight") -> NegativeWeight | None:
    """``None`` → none; a :class:`NegativeWeight` as is; a list → :class:`SumOfWeights`;
    a callable → :class:`BlockWeight`."""
    if value is None or isinstance(value, NegativeWeight):
        return value
    if isinstance(value, (list, tuple)):
        return SumOfWeights(value)
    if callable(value):
        return BlockWeight(value)
    raise TypeError(f"{name}: expected a NegativeWeight (LabelTable, VectorWeight, BlockWeight), a "
                    f"list of them or a callable, got {type(value).__name__}")
