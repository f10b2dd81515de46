"""Pair selectors: which (anchor, candidate) pairs are positives or exclusions.

A selector never builds an ``N x M`` mask. The engine asks it for one row block at a time:
``selector.block(start, stop, num_candidates)`` returns the ``[stop - start, M]`` coefficient tile
(0 = not selected, otherwise the pair's weight, 1 for plain positives).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .checks import check_tensor, check_weights


class PairSelector:
    """Base class. Subclasses implement :meth:`block` and may override :meth:`validate`."""

    def validate(self, num_anchors: int, num_candidates: int) -> None:
        """Raise ``ValueError`` if the selector does not fit ``num_anchors x num_candidates``."""

    def block(self, start: int, stop: int, num_candidates: int, *, device: torch.device,
              dtype: torch.dtype) -> Tensor:
        """Coefficients ``[stop - start, num_candidates]`` for anchors ``start..stop-1``."""
        raise NotImplementedError

    def sparse_block(self, start: int, stop: int, num_candidates: int, *,
                     device: torch.device, dtype: torch.dtype
                     ) -> tuple[Tensor, Tensor, Tensor] | None:
        """The block's pairs as ``(local_rows, cols, weights)``, or ``None`` if only dense.

        Selectors with few pairs per row implement this so that the engine's fast path can gather
        and scatter them instead of forming a ``[B, M]`` coefficient tile.
        """
        return None


class Aligned(PairSelector):
    r"""Anchor ``i`` is paired with candidate ``(i + offset) mod M``.

    ``offset=0`` is the usual cross-view positive; with stacked views ``[z_1; z_2]`` compared with
    themselves, ``offset=N`` pairs every row with its partner view (NT-Xent).
    """

    def __init__(self, offset: int = 0) -> None:
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"offset: expected an int, got {type(offset).__name__}")
        self.offset = offset

    def block(self, start, stop, num_candidates, *, device, dtype):
        rows = torch.arange(start, stop, device=device)
        cols = (rows + self.offset) % num_candidates
        out = torch.zeros(stop - start, num_candidates, device=device, dtype=dtype)
        out[torch.arange(stop - start, device=device), cols] = 1
        return out

    def sparse_block(self, start, stop, num_candidates, *, device, dtype):
        rows = torch.arange(start, stop, device=device)
        return (rows - start, (rows + self.offset) % num_candidates,
                torch.ones(stop - start, device=device, dtype=dtype))

    def __repr__(self) -> str:
        return f"Aligned(offset={self.offset})"


class SameLabel(PairSelector):
    r"""Group labels: pair ``(i, j)`` is selected when ``labels_a[i] == labels_b[j]``.

    Negative labels mean "no group" and never match. When the candidates are the anchors
    themselves the engine removes the diagonal separately (see ``diagonal``).

    Args:
        labels_a: ``[N]`` integer labels of the anchors.
        labels_b: ``[M]`` labels of the candidates (default: ``labels_a``).
    """

    def __init__(self, labels_a: Tensor, labels_b: Tensor | None = None) -> None:
        self.labels_a = check_tensor("labels_a", labels_a, ndim=1, integer=True)
        self.labels_b = self.labels_a if labels_b is None else check_tensor(
            "labels_b", labels_b, ndim=1, integer=True)

    def validate(self, num_anchors, num_candidates):
        if self.labels_a.numel() != num_anchors:
            raise ValueError(f"labels_a: expected {num_anchors} labels (one per anchor), "
                             f"got {self.labels_a.numel()}")
        if self.labels_b.numel() != num_candidates:
            raise ValueError(f"labels_b: expected {num_candidates} labels (one per candidate), "
                             f"got {self.labels_b.numel()}")

    def block(self, start, stop, num_candidates, *, device, dtype):
        la = self.labels_a[start:stop].to(device)
        lb = self.labels_b.to(device)
        return ((la[:, None] == lb[None, :]) & (la[:, None] >= 0)).to(dtype)


class Pairs(PairSelector):
    r"""Explicit pairs from a sparse ``[2, P]`` index ``(anchor, candidate)``, optionally weighted.

    Duplicate pairs add their weights. Only the pairs of one row block are expanded at a time.

    Args:
        index: ``[2, P]`` integer tensor of (anchor row, candidate column) pairs.
        weight: optional ``[P]`` non-negative weights (default 1).
    """

    def __init__(self, index: Tensor, weight: Tensor | None = None) -> None:
        check_tensor("index", index, ndim=2, integer=True)
        if index.size(0) != 2:
            raise ValueError(f"index: expected shape [2, P], got {tuple(index.shape)}")
        if weight is not None:
            check_tensor("weight", weight, ndim=1, floating=True)
            if weight.numel() != index.size(1):
                raise ValueError(f"weight: expected {index.size(1)} entries (one per pair), "
                                 f"got {weight.numel()}")
            check_weights("weight", weight)
        order = torch.argsort(index[0], stable=True)
        self.rows = index[0, order].contiguous()
        self.cols = index[1, order].contiguous()
        self.weight = None if weight is None else weight[order].contiguous()

    def validate(self, num_anchors, num_candidates):
        if self.rows.numel() == 0:
            return
        for name, idx, n in (("index[0]", self.rows, num_anchors), ("index[1]", self.cols, num_candidates)):
            lo, hi = int(idx.min()), int(idx.max())
            if lo < 0 or hi >= n:
                raise ValueError(f"{name}: expected indices in [0, {n - 1}], got range [{lo}, {hi}]")

    def sparse_block(self, start, stop, num_candidates, *, device, dtype):
        lo = int(torch.searchsorted(self.rows, torch.tensor(start, device=self.rows.device)))
        hi = int(torch.searchsorted(self.rows, torch.tensor(stop, device=self.rows.device)))
        r = (self.rows[lo:hi] - start).to(device)
        c = self.cols[lo:hi].to(device)
        w = (torch.ones(hi - lo, device=device, dtype=dtype) if self.weight is None
             else self.weight[lo:hi].to(device=device, dtype=dtype))
        return r, c, w

    def block(self, start, stop, num_candidates, *, device, dtype):
        out = torch.zeros(stop - start, num_candidates, device=device, dtype=dtype)
        lo = int(torch.searchsorted(self.rows, torch.tensor(start, device=self.rows.device)))
        hi = int(torch.searchsorted(self.rows, torch.tensor(stop, device=self.rows.device)))
        if hi > lo:
            r = (self.rows[lo:hi] - start).to(device)
            c = self.cols[lo:hi].to(device)
            w = (torch.ones(hi - lo, device=device, dtype=dtype) if self.weight is None
                 else self.weight[lo:hi].to(device=device, dtype=dtype))
            out.index_put_((r, c), w, accumulate=True)
        return out


class Dense(PairSelector):
    """Soft or dense pair weights given as a full ``[N, M]`` tensor (e.g. SwAV's codes)."""

    def __init__(self, weight: Tensor) -> None:
        self.weight = check_weights("weight", check_tensor("weight", weight, ndim=2, floating=True))

    def validate(self, num_anchors, num_candidates):
        if tuple(self.weight.shape) != (num_anchors, num_candidates):
            raise ValueError(f"weight: expected shape {(num_anchors, num_candidates)}, "
                             f"got {tuple(self.weight.shape)}")

    def block(self, start, stop, num_candidates, *, device, dtype):
        return self.weight[start:stop].to(device=device, dtype=dtype)


def check_aligned_fits(positives: Any, num_anchors: int, num_candidates: int,
                       name: str = "positives") -> None:
    """Raise ``ValueError`` if ``positives="aligned"`` meets fewer candidates than anchors.

    The engine's :class:`Aligned` pairs anchor ``i`` with candidate ``i mod M`` (which the
    stacked-view offsets rely on); a loss that pairs two views row by row calls this so that
    views of different lengths are an error instead of a silent wrap-around. More candidates
    than anchors (extra negatives after the positives) is fine.
    """
    if isinstance(positives, str) and positives == "aligned" and num_anchors > num_candidates:
        raise ValueError(
            f"{name}: 'aligned' pairs anchor i with candidate i, so it needs at least as many "
            f"candidates as anchors; got {num_anchors} anchors and {num_candidates} candidates "
            f"(anchors {num_candidates}..{num_anchors - 1} would wrap around to candidate "
            f"i mod {num_candidates}); pass views with the same number of rows, or explicit "
            f"[2, P] pairs")


def as_selector(value: Any, name: str) -> PairSelector | None:
    """Turn the engine's user-facing forms into a selector.

    ``None`` → none; ``"aligned"`` → ``Aligned(0)``; an ``int`` → ``Aligned(offset)``; a 1-D integer
    tensor → ``SameLabel``; a ``[2, P]`` integer tensor → ``Pairs``; a 2-D float tensor → ``Dense``.
    """
    if value is None or isinstance(value, PairSelector):
        return value
    if isinstance(value, str):
        if value == "aligned":
            return Aligned(0)
        raise ValueError(f"{name}: expected 'aligned', an int offset, a label tensor, a [2, P] "
                         f"index or a PairSelector, got the string {value!r}")
    if isinstance(value, int) and not isinstance(value, bool):
        return Aligned(value)
    if isinstance(value, Tensor):
        if value.dim() == 1 and not value.is_floating_point():
            return SameLabel(value)
        if value.dim() == 2 and not value.is_floating_point() and value.size(0) == 2:
            return Pairs(value)
        if value.dim() == 2 and value.is_floating_point():
            return Dense(value)
    raise TypeError(f"{name}: expected 'aligned', an int offset, a 1-D label tensor, a [2, P] "
                    f"index tensor, a 2-D float weight tensor or a PairSelector, got "
                    f"{type(value).__name__}" + (f" of shape {tuple(value.shape)}"
                                                  if isinstance(value, Tensor) else ""))
