"""The method contract: a method declares views, encoder, heads, loss and hooks; the trainer runs it.

A method is an :class:`torch.nn.Module` so that its parameters, ``state_dict`` and device moves
work as usual, and so that :class:`torch.nn.parallel.DistributedDataParallel` can wrap it
(``forward`` is the training step).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn


class ContrastiveMethod(nn.Module):
    """Base class for every contrastive method.

    Subclasses set ``self.encoder`` (and usually ``self.head``) and override :meth:`views` and
    :meth:`loss`. The default :meth:`training_step` is::

        views = self.views(batch)                       # stochastic augmentations
        z = [self.encode(v) for v in views]            # shared encoder
        h = [self.project(zi) for zi in z]             # projection head (loss only)
        return self.loss(h, batch)

    Hooks (all optional): :meth:`on_fit_start`, :meth:`on_epoch_start`, :meth:`on_epoch_end`.
    """

    #: short registry name, e.g. ``"grace"``
    name: str = "method"

    def __init__(self, config: Any = None) -> None:
        super().__init__()
        self.config = config
        self.encoder: nn.Module | None = None
        self.head: nn.Module | None = None

    # ---- declarations -------------------------------------------------------------------
    def views(self, batch: Any) -> Sequence[Any]:
        """Return the augmented views of ``batch`` (called once per training step)."""
        raise NotImplementedError

    def encode(self, view: Any) -> Tensor:
        """Encoder output ``[N, D]`` for one view."""
        if self.encoder is None:
            raise NotImplementedError(f"{type(self).__name__} has no encoder")
        return self.encoder(view)

    def project(self, z: Tensor) -> Tensor:
        """Projection head used by the loss only (identity when ``self.head`` is None)."""
        return z if self.head is None else self.head(z)

    def loss(self, projections: Sequence[Tensor], batch: Any) -> Tensor:
        """Scalar loss from the projected views."""
        raise NotImplementedError

    # ---- running ------------------------------------------------------------------------
    def training_step(self, batch: Any) -> Tensor:
        views = self.views(batch)
        projections = [self.project(self.encode(v)) for v in views]
        return self.loss(projections, batch)

    def forward(self, batch: Any) -> Tensor:  # DDP calls forward
        return self.training_step(batch)

    @torch.no_grad()
    def embed(self, batch: Any) -> Tensor:
        """Embeddings ``[N, D]`` for evaluation: encoder output on the clean input."""
        return self.encode(batch)

    def configure_optimizer(self) -> torch.optim.Optimizer:
        """Adam with ``config.lr`` and ``config.weight_decay`` (defaults 1e-3 and 0)."""
        lr = float(getattr(self.config, "lr", 1e-3))
        weight_decay = float(getattr(self.config, "weight_decay", 0.0))
        return torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)

    # ---- hooks --------------------------------------------------------------------------
    def on_fit_start(self, trainer: Any) -> None:
        """Called once before the first epoch (after a resume, too)."""

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each epoch (0-based)."""

    def on_epoch_end(self, epoch: int) -> None:
        """Called after each epoch (0-based)."""
