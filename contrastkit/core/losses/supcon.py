r"""Supervised / multi-positive contrastive loss (SupCon, "L_out" form).

.. math::

    \ell_i = -\frac{1}{|P(i)|} \sum_{p \in P(i)} \log \frac{e^{s_{ip}/\tau}}{\sum_{j \ne i} e^{s_{ij}/\tau}}

Anchors without a positive leave the mean.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..engine import contrastive_loss


def supcon_loss(embeddings: Tensor, labels: Tensor, *, temperature: float | Tensor = 0.1,
                similarity: str = "cosine", **kwargs: Any) -> Tensor:
    """SupCon over ``embeddings [N, D]`` with group ``labels [N]`` (same label = positive)."""
    return contrastive_loss(embeddings, None, positives=labels, temperature=temperature,
                            similarity=similarity, form="supcon", diagonal="exclude", **kwargs)


class SupConLoss(nn.Module):
    """Module wrapper of :func:`supcon_loss`."""

    def __init__(self, temperature: float = 0.1, similarity: str = "cosine") -> None:
        super().__init__()
        self.temperature, self.similarity = temperature, similarity

    def forward(self, embeddings: Tensor, labels: Tensor, **kwargs: Any) -> Tensor:
        return supcon_loss(embeddings, labels, temperature=self.temperature,
                           similarity=self.similarity, **kwargs)
