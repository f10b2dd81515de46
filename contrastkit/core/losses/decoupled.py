r"""Decoupled contrastive loss (DCL): the positive is removed from the denominator.

.. math::

    \ell_i = -s_{i,i^+}/\tau + \log \sum_{j \ne i, i^+} e^{s_{ij}/\tau}
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..checks import check_embeddings, check_same_shape
from ..engine import contrastive_loss


def decoupled_loss(z1: Tensor, z2: Tensor, *, temperature: float | Tensor = 0.1,
                   similarity: str = "cosine", **kwargs: Any) -> Tensor:
    """Symmetric two-view DCL over ``z1, z2 [N, D]`` (every other row of both views negative)."""
    check_embeddings("z1", z1, finite=False)  # the engine checks the values
    check_embeddings("z2", z2, finite=False)
    check_same_shape("z1", z1, "z2", z2)
    z = torch.cat([z1, z2], 0)
    return contrastive_loss(z, None, positives=z1.size(0), temperature=temperature,
                            similarity=similarity, form="decoupled", diagonal="exclude", **kwargs)


class DecoupledLoss(nn.Module):
    """Module wrapper of :func:`decoupled_loss`."""

    def __init__(self, temperature: float = 0.1, similarity: str = "cosine") -> None:
        super().__init__()
        self.temperature, self.similarity = temperature, similarity

    def forward(self, z1: Tensor, z2: Tensor, **kwargs: Any) -> Tensor:
        return decoupled_loss(z1, z2, temperature=self.temperature, similarity=self.similarity,
                              **kwargs)
