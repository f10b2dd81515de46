r"""Decoupled contrastive learning with von-Mises positive weighting (DCL / DCLW).

Yeh et al., "Decoupled Contrastive Learning", ECCV 2022, Eq. 6 and the DCLW definition. For two
views ``u^{(1)}, u^{(2)}`` of ``B`` samples, anchor ``(i, k)`` and the other view ``k'``:

.. math::

    \ell_{i}^{(k)} = -w_i \, s(u_i^{(1)}, u_i^{(2)}) / \tau
        + \log \sum_{l \in \{1, 2\}} \sum_{j \ne i} e^{s(u_i^{(k)}, u_j^{(l)}) / \tau}

    w_i = 2 - \frac{e^{s(u_i^{(1)}, u_i^{(2)}) / \sigma}}
                   {\frac{1}{B} \sum_j e^{s(u_j^{(1)}, u_j^{(2)}) / \sigma}}
        = 2 - B \cdot \mathrm{softmax}_i(s^+ / \sigma)

DCL is ``w_i = 1``. The denominator holds the ``2B - 2`` other samples of both views: the self
pair and the positive are both removed (forgetting the cross-view positive silently gives
InfoNCE back). The weights have batch mean 1, are larger for harder positives and carry no
gradient (as in lightly's ``DCLWLoss``). The loss is averaged over both directions. It can be
negative. The arithmetic is the engine's row statistics with the positive removed from the
denominator (``LSE_i`` and the positive logit ``P_i``, blockwise for big batches, so the
``2B x 2B`` matrix is never materialised); the weight multiplies ``P_i`` here, because the
engine's pair coefficients must be non-negative while ``w_i`` is negative for a very easy
positive (``softmax_i > 2/B``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..checks import check_choice, check_embeddings, check_positive, check_same_shape
from ..distributed import all_gather_with_grad, get_rank, is_distributed
from ..engine import row_statistics
from ..pairs import Pairs

__all__ = ["dclw_weights", "dclw_loss", "DCLWLoss"]


def _check_views(z1: Any, z2: Any, finite: bool = True) -> None:
    check_embeddings("z1", z1, ndim=2, finite=finite)
    check_embeddings("z2", z2, ndim=2, finite=finite)
    check_same_shape("z1", z1, "z2", z2)
    if z1.size(0) < 2:
        raise ValueError(f"z1: expected at least 2 samples (DCL needs negatives), got shape "
                         f"{tuple(z1.shape)}")


@torch.no_grad()
def dclw_weights(z1: Tensor, z2: Tensor, *, sigma: float = 0.5, gather: bool = False) -> Tensor:
    r"""DCLW's positive weights ``w_i = 2 - B softmax_i(cos(z1_i, z2_i) / sigma)``, ``[B]``.

    Computed under no-grad.

    Args:
        z1: ``[B, D]`` first view (normalised inside).
        z2: ``[B, D]`` second view.
        sigma: von-Mises concentration ``sigma > 0`` (paper / lightly default 0.5).
        gather: in a distributed run, take the softmax over the global batch (all processes) and
            return this process's slice, so the weights equal the single-process ones.

    Returns:
        ``[B]`` weights in float32 at least, mean 1 over the (global) batch.
    """
    _check_views(z1, z2)
    check_positive("sigma", sigma)
    return _dclw_weights(z1, z2, sigma, gather)


@torch.no_grad()
def _dclw_weights(z1: Tensor, z2: Tensor, sigma: float, gather: bool) -> Tensor:
    dtype = torch.promote_types(z1.dtype, torch.float32)
    s = torch.nn.functional.cosine_similarity(z1.to(dtype), z2.to(dtype), dim=-1, eps=1e-12)
    n, offset = s.numel(), 0
    if gather and is_distributed():
        local = s
        s = all_gather_with_grad(s.contiguous())
        offset = get_rank() * local.numel()
    w = 2.0 - s.numel() * torch.softmax(s / sigma, dim=0)
    return w[offset:offset + n]


def dclw_loss(z1: Tensor, z2: Tensor, *, temperature: float | Tensor = 0.1, sigma: float = 0.5,
              weighted: bool = True, similarity: str = "cosine", reduction: str = "mean",
              block_size: int | None = None, gather: bool = False) -> Tensor:
    r"""Symmetric DCL (``weighted=False``) or DCLW (``weighted=True``, default) over two views.

    Args:
        z1: ``[B, D]`` first view (projections; normalised inside for ``similarity="cosine"``).
        z2: ``[B, D]`` second view; row ``i`` is the positive of ``z1[i]``.
        temperature: ``tau`` (0.1 in lightly and the unofficial reference code).
        sigma: DCLW's weight concentration (0.5).
        weighted: DCLW's von-Mises weights on the positive term; ``False`` gives plain DCL.
        similarity: engine similarity (``"cosine"`` as in the paper).
        reduction: ``"mean"`` (over the ``2B`` anchors), ``"sum"`` or ``"none"`` (``[2B]``:
            view-1 anchors first).
        block_size: engine row block (``None``: dense when small).
        gather: in a distributed run, contrast this process's anchors with every process's
            candidates (gradient-carrying all-gather) and compute the weights over the global
            batch; each process averages over its own anchors, so with DDP's gradient averaging
            this equals one process on the concatenated batch.

    Returns:
        Scalar loss (or per-anchor values with ``reduction="none"``).
    """
    _check_views(z1, z2, finite=False)  # the engine checks the values
    check_choice("reduction", reduction, ("mean", "sum", "none"))
    if weighted:
        check_positive("sigma", sigma)
    n = z1.size(0)
    anchors = torch.cat([z1, z2], 0)
    rows = torch.arange(2 * n, device=z1.device)
    kwargs: dict[str, Any] = dict(temperature=temperature, similarity=similarity,
                                  positives_in_denominator=False, block_size=block_size)
    if gather and is_distributed():
        Z1, Z2 = all_gather_with_grad(z1), all_gather_with_grad(z2)
        big = Z1.size(0)
        g = get_rank() * n + torch.arange(n, device=z1.device)
        stats = row_statistics(anchors, torch.cat([Z1, Z2], 0),
                               positives=Pairs(torch.stack([rows, torch.cat([big + g, g])])),
                               exclude=Pairs(torch.stack([rows, torch.cat([g, big + g])])),
                               **kwargs)
    else:
        stats = row_statistics(anchors, None, positives=n, diagonal="exclude", **kwargs)
    # the engine's pair coefficients must be >= 0 (a 0 weight is an exclusion) while DCLW's w_i
    # can be negative, so the coefficient is applied here to the positive logit P_i = s_i+ / tau
    if weighted:
        w = _dclw_weights(z1, z2, sigma, gather).to(stats.pos_sum.dtype)
        pos = torch.cat([w, w]) * stats.pos_sum
    else:
        pos = stats.pos_sum
    per_row = stats.lse - pos
    if reduction == "none":
        return per_row
    return per_row.sum() if reduction == "sum" else per_row.mean()


class DCLWLoss(nn.Module):
    """Module wrapper of :func:`dclw_loss` (``weighted=False`` gives DCL)."""

    def __init__(self, temperature: float = 0.1, sigma: float = 0.5, *, weighted: bool = True,
                 similarity: str = "cosine", gather: bool = False) -> None:
        super().__init__()
        check_positive("temperature", temperature)
        check_positive("sigma", sigma)
        self.temperature, self.sigma, self.weighted = temperature, sigma, weighted
        self.similarity, self.gather = similarity, gather

    def forward(self, z1: Tensor, z2: Tensor, **kwargs: Any) -> Tensor:
        return dclw_loss(z1, z2, temperature=self.temperature, sigma=self.sigma,
                         weighted=self.weighted, similarity=self.similarity, gather=self.gather,
                         **kwargs)
