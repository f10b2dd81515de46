r"""Positive-mass loss (SCGC*): the log of the total weighted positive mass over the partition.

.. math::

    \ell_i = -\log \frac{\sum_{j \in P(i)} q_{ij} e^{s_{ij}}}{\sum_j e^{s_{ij}}}
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..engine import contrastive_loss


def positive_mass_loss(anchors: Tensor, candidates: Tensor | None = None, *, positives: Any,
                       temperature: float | Tensor = 1.0, similarity: str = "cosine",
                       **kwargs: Any) -> Tensor:
    """Positive-mass loss; ``positives`` as in ``contrastive_loss`` (weighted pairs typical)."""
    return contrastive_loss(anchors, candidates, positives=positives, temperature=temperature,
                            similarity=similarity, form="positive_mass", **kwargs)
