r"""InfoNCE and its symmetric two-view form NT-Xent (SimCLR, GRACE).

.. math::

    \ell_i = -\log \frac{e^{s_{i,i^+}/\tau}}{\sum_{j \ne i} w_{ij} e^{s_{ij}/\tau}}
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..checks import check_embeddings, check_same_shape
from ..distributed import all_gather_with_grad, get_rank, is_distributed
from ..engine import contrastive_loss
from ..pairs import Pairs, check_aligned_fits


def info_nce(anchors: Tensor, candidates: Tensor | None = None, *, positives: Any = "aligned",
             temperature: float | Tensor = 0.5, similarity: str = "cosine", **kwargs: Any) -> Tensor:
    """InfoNCE of ``anchors [N, D]`` against ``candidates [M, D]`` (see ``contrastive_loss``).

    With ``positives="aligned"`` anchor ``i``'s positive is candidate ``i``: ``M >= N`` is
    required (candidates beyond ``N`` are extra negatives); ``M < N`` raises ``ValueError``
    instead of wrapping around to candidate ``i mod M``.
    """
    if candidates is not None and isinstance(anchors, Tensor) and isinstance(candidates, Tensor) \
            and anchors.dim() >= 2 and candidates.dim() >= 2:
        check_aligned_fits(positives, anchors.size(-2), candidates.size(-2))
    return contrastive_loss(anchors, candidates, positives=positives, temperature=temperature,
                            similarity=similarity, form="infonce", **kwargs)


def nt_xent(z1: Tensor, z2: Tensor, *, temperature: float | Tensor = 0.5,
            similarity: str = "cosine", reduction: str = "mean", block_size: int | None = None,
            gather: bool = False, **kwargs: Any) -> Tensor:
    r"""Symmetric two-view InfoNCE (NT-Xent; GRACE's objective :math:`\mathcal{J}`).

    Every row of ``z = [z1; z2]`` (``[2N, D]``) is an anchor; its positive is the same sample in the
    other view; every other row of both views is a negative; the self pair is excluded. This is
    GRACE's :math:`\mathcal{J} = \frac{1}{2N}\sum_i [\ell(u_i, v_i) + \ell(v_i, u_i)]` (Eq. 1–2 of
    the GRACE paper): the denominator has ``2N - 1`` terms.

    Args:
        z1: ``[N, D]`` first view.
        z2: ``[N, D]`` second view.
        gather: in a distributed run, compare this process's anchors with the candidates of all
            processes (autograd-aware all-gather). Each process averages over its own anchors and
            DDP averages the gradients, so the result equals one process on the combined batch.

    Returns:
        Scalar loss (or ``[2N]`` per anchor with ``reduction="none"``).
    """
    check_embeddings("z1", z1, ndim=2, finite=False)  # the engine checks the values
    check_embeddings("z2", z2, ndim=2, finite=False)
    check_same_shape("z1", z1, "z2", z2)
    if gather and is_distributed():
        return _gathered_nt_xent(z1, z2, temperature=temperature, similarity=similarity,
                                 reduction=reduction, block_size=block_size, **kwargs)
    z = torch.cat([z1, z2], 0)
    return contrastive_loss(z, None, positives=z1.size(0), temperature=temperature,
                            similarity=similarity, form="infonce", reduction=reduction,
                            diagonal="exclude", block_size=block_size, **kwargs)


def _gathered_nt_xent(z1: Tensor, z2: Tensor, **kwargs: Any) -> Tensor:
    """NT-Xent with local anchors ``[z1; z2]`` and gathered candidates ``[Z1; Z2]`` (``2N`` rows)."""
    n = z1.size(0)
    Z1, Z2 = all_gather_with_grad(z1), all_gather_with_grad(z2)
    N = Z1.size(0)
    g = get_rank() * n + torch.arange(n, device=z1.device)
    rows = torch.arange(2 * n, device=z1.device)
    positives = Pairs(torch.stack([rows, torch.cat([N + g, g])]))
    self_pairs = Pairs(torch.stack([rows, torch.cat([g, N + g])]))
    return contrastive_loss(torch.cat([z1, z2]), torch.cat([Z1, Z2]), positives=positives,
                            exclude=self_pairs, form="infonce", **kwargs)


class InfoNCE(nn.Module):
    """Module wrapper of :func:`info_nce` with a fixed or learnable temperature."""

    def __init__(self, temperature: float = 0.5, *, learnable: bool = False,
                 similarity: str = "cosine", block_size: int | None = None) -> None:
        super().__init__()
        t = torch.tensor(float(temperature))
        self.temperature = nn.Parameter(t) if learnable else t
        self.similarity, self.block_size = similarity, block_size

    def forward(self, anchors: Tensor, candidates: Tensor | None = None, **kwargs: Any) -> Tensor:
        return info_nce(anchors, candidates, temperature=self.temperature,
                        similarity=self.similarity, block_size=self.block_size, **kwargs)


class NTXent(InfoNCE):
    """Module wrapper of :func:`nt_xent`."""

    def forward(self, z1: Tensor, z2: Tensor, **kwargs: Any) -> Tensor:  # type: ignore[override]
        return nt_xent(z1, z2, temperature=self.temperature, similarity=self.similarity,
                       block_size=self.block_size, **kwargs)
