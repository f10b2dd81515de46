r"""MCLRec: meta-optimized contrastive learning for sequential recommendation (Qin et al., SIGIR 2023).

Spec: ``../shared/specs/sequence/mclrec.md``. On top of CL4SRec's data-augmented views
``h1 = f(s~1)``, ``h2 = f(s~2)`` (crop keeps 50 %, mask 50 % with id **0**, reorder 80 %), two
learnable *model augmenters* ``w_phi1, w_phi2`` (MLPs 64-32-16-64, GELU, L2-normalised output)
give ``z1 = w_phi1(h1)``, ``z2 = w_phi2(h2)``. With ``L_con`` = NT-Xent over ``2B`` vectors
(dot product, ``tau = 1``; :func:`contrastkit.core.losses.nt_xent`, the engine with
``positives=B``):

.. math::

    L_{cl1} = L_{con}(h_1, h_2), \qquad
    L_{cl2} = L_{con}(z_1, z_2) + L_{con}(h_1, z_2) + L_{con}(h_2, z_1)

and the contrastive regulariser (code form: per anchor row, over the three ``L_cl2`` pairs)

.. math::

    R(x_1, x_2) = \mathrm{mean}_a [p_a - \min(p_a, \max_b n_{ab})]_+
                + \mathrm{mean}_{a, b} [\max(p_a, \max_b n_{ab}) - n_{ab}]_+

(:func:`margin_regularizer`). Stage losses (code): encoder
``L0 = L_rec + lambda L_cl1 + beta (L_cl2 + 0.1 R)``, augmenters ``L1 = L_cl2 + gamma' R`` with
``gamma' = 0.1`` (``augmenter_reg_weight``; the paper writes ``0.1 beta``).

Schedules (``schedule``):

* ``"official"`` (default; the code that produced Table 3): per batch, three optimiser steps on
  the same batch and the same data-augmented views: encoder step (augmenters frozen), augmenter
  step (``h1, h2`` recomputed with the updated encoder, fresh dropout), encoder step again.
* ``"paper"``: Algorithm 1 as printed: one encoder step, then one augmenter step.
* ``"joint"``: MCLRec-J, one step of ``L0`` over encoder and augmenters together.

The augmenter step needs no encoder gradient (the reference computes and discards it): ``h1, h2``
are recomputed in training mode under ``no_grad``, which gives the augmenters the same gradient.
One Adam holds two parameter groups (encoder ``lr``, augmenters ``augmenter_lr``); a step only
moves the parameters that received a gradient, so this equals the reference's two optimisers.
At test time only the encoder and the item table are used.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.checks import check_choice, check_positive
from ..core.losses import nt_xent
from ..core.similarity import l2_normalize
from ..registry import MethodSpec, RunContext, RunResult, register
from .augment_seq import TwoViewAugment
from .sasrec import SASRec, SeqRecConfig, evaluate, run_method

__all__ = ["MCLRecConfig", "MCLRec", "Augmenter", "margin_regularizer", "SCHEDULES", "run"]

SCHEDULES = ("official", "paper", "joint")


@dataclass
class MCLRecConfig(SeqRecConfig):
    """MCLRec hyperparameters (official ``MCLRec.yaml`` / ``scripts/train_beauty.sh``).

    Attributes (beyond :class:`~contrastkit.seqcl.sasrec.SeqRecConfig`):
        cl_weight: ``lambda`` of ``L_cl1`` (Beauty 0.0, Sports 0.04, Yelp 0.03).
        beta: weight of ``L_cl2 + 0.1 R`` in the encoder stage (Beauty 0.05, Sports 0.4).
        reg_weight: the 0.1 in front of ``R`` in the encoder stage (``gamma = 0.1 beta``).
        augmenter_reg_weight: ``gamma'`` of ``R`` in the augmenter stage (code 0.1).
        augmenter_lr: Adam learning rate of the augmenters.
        augmenter_sizes: layer sizes of each augmenter MLP (first and last = ``hidden_size``).
        schedule: ``"official"`` (three steps), ``"paper"`` (Algorithm 1), ``"joint"``.
    """

    epochs: int = 100
    cl_weight: float = 0.0
    beta: float = 0.05
    reg_weight: float = 0.1
    augmenter_reg_weight: float = 0.1
    augmenter_lr: float = 1e-3
    augmenter_sizes: tuple = (64, 32, 16, 64)
    schedule: str = "official"
    crop_keep: float = 0.5
    mask_ratio: float = 0.5
    reorder_ratio: float = 0.8
    mask_token: str = "padding"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("beta", self.beta, allow_zero=True)
        check_positive("reg_weight", self.reg_weight, allow_zero=True)
        check_positive("augmenter_reg_weight", self.augmenter_reg_weight, allow_zero=True)
        check_positive("augmenter_lr", self.augmenter_lr)
        check_choice("schedule", self.schedule, SCHEDULES)
        sizes = tuple(self.augmenter_sizes)
        if len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                                 for s in sizes):
            raise ValueError(f"augmenter_sizes: expected >= 2 positive ints, got {sizes!r}")
        if sizes[0] != self.hidden_size or sizes[-1] != self.hidden_size:
            raise ValueError(f"augmenter_sizes: expected first and last = hidden_size="
                             f"{self.hidden_size}, got {sizes!r}")
        self.augmenter_sizes = sizes


class Augmenter(nn.Module):
    """Model augmenter ``z = normalize(W_k GELU(... GELU(W_1 h + b_1) ...) + b_k)`` (``Extractor``).

    PyTorch's default Linear initialisation (not the encoder's ``N(0, 0.02)``).
    """

    def __init__(self, sizes: tuple[int, ...] = (64, 32, 16, 64)) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, h: Tensor) -> Tensor:
        for i, lin in enumerate(self.layers):
            h = lin(h)
            if i < len(self.layers) - 1:
                h = F.gelu(h)
        return l2_normalize(h, dim=-1)


def margin_regularizer(x1: Tensor, x2: Tensor) -> Tensor:
    r"""MCLRec's contrastive regulariser ``R(x1, x2)`` (code form, per anchor row).

    Scores ``S = X X^T`` of ``X = [x1; x2]`` (``[2B, D]``, dot product, ``tau = 1``); for row ``a``
    the positive is ``p_a = S_{a, a +- B}`` and the negatives ``n_ab`` are the other ``2B - 2``
    entries (self excluded):

    .. math::

        R = \frac{1}{2B}\sum_a [p_a - \min(p_a, m_a)]_+ +
            \frac{1}{2B(2B-2)} \sum_a \sum_{b \ne a, a^+} [\max(p_a, m_a) - n_{ab}]_+,
        \quad m_a = \max_b n_{ab}

    Args:
        x1, x2: ``[B, D]`` paired views (``B >= 2``).

    Returns:
        Scalar.
    """
    if x1.shape != x2.shape or x1.dim() != 2:
        raise ValueError(f"x1, x2: expected two [B, D] tensors of the same shape, got "
                         f"{tuple(x1.shape)} and {tuple(x2.shape)}")
    B = x1.size(0)
    if B < 2:
        raise ValueError(f"x1: expected at least 2 rows (negatives are needed), got {B}")
    X = torch.cat([x1, x2], 0)
    S = X @ X.t()
    rows = torch.arange(2 * B, device=X.device)
    partner = (rows + B) % (2 * B)
    p = S[rows, partner]
    negs = S.index_put((rows, rows), S.new_tensor(float("-inf"))).index_put(
        (rows, partner), S.new_tensor(float("-inf")))
    m = negs.amax(1)
    o_min, o_max = torch.minimum(p, m), torch.maximum(p, m)
    first = F.relu(p - o_min).mean()
    gaps = F.relu(o_max[:, None] - S)
    # drop the self and positive columns from the sum (they are not negatives)
    total = gaps.sum() - gaps[rows, rows].sum() - gaps[rows, partner].sum()
    return first + total / (2 * B * (2 * B - 2))


class MCLRec(SASRec):
    """MCLRec: SASRec encoder + CL4SRec views + two model augmenters, alternating updates."""

    name = "mclrec"

    def __init__(self, config: MCLRecConfig, num_items: int) -> None:
        super().__init__(config, num_items)
        self.augmenter1 = Augmenter(config.augmenter_sizes)
        self.augmenter2 = Augmenter(config.augmenter_sizes)
        self._optimizer: torch.optim.Optimizer | None = None

    # -- parameters and optimiser
    def augmenter_parameters(self) -> list[nn.Parameter]:
        return [*self.augmenter1.parameters(), *self.augmenter2.parameters()]

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def configure_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        self._optimizer = torch.optim.Adam(
            [{"params": self.encoder_parameters(), "lr": c.lr},
             {"params": self.augmenter_parameters(), "lr": c.augmenter_lr}],
            weight_decay=c.weight_decay)
        return self._optimizer

    def _trainable(self, encoder: bool, augmenters: bool) -> None:
        for p in self.encoder_parameters():
            p.requires_grad_(encoder)
        for p in self.augmenter_parameters():
            p.requires_grad_(augmenters)

    def make_augment(self) -> TwoViewAugment:
        c = self.config
        return TwoViewAugment(crop_keep=c.crop_keep, mask_ratio=c.mask_ratio,
                              reorder_ratio=c.reorder_ratio, mask_token=self.mask_token_id())

    # -- losses
    @staticmethod
    def con(x1: Tensor, x2: Tensor) -> Tensor:
        """``L_con``: NT-Xent, dot product, ``tau = 1`` (hard-coded in the code)."""
        return nt_xent(x1, x2, temperature=1.0, similarity="dot")

    def cl2_and_reg(self, h1: Tensor, h2: Tensor) -> tuple[Tensor, Tensor]:
        """``(L_cl2, R)`` summed over the pairs ``(z1, z2), (h1, z2), (h2, z1)``."""
        z1, z2 = self.augmenter1(h1), self.augmenter2(h2)
        pairs = ((z1, z2), (h1, z2), (h2, z1))
        cl2 = sum(self.con(a, b) for a, b in pairs)
        reg = sum(margin_regularizer(a, b) for a, b in pairs)
        return cl2, reg

    def encoder_loss(self, batch: dict) -> Tensor:
        """``L0 = L_rec + lambda L_cl1 + beta (L_cl2 + 0.1 R)`` (three encoder passes)."""
        c = self.config
        h = self.encoder(batch["seq"], batch["len"])
        h1 = self.encoder(batch["aug1"], batch["aug1_len"])
        h2 = self.encoder(batch["aug2"], batch["aug2_len"])
        loss = self.rec_loss(h, batch["target"])
        if c.cl_weight > 0:
            loss = loss + c.cl_weight * self.cl_loss(h1, h2)
        if c.beta > 0:
            cl2, reg = self.cl2_and_reg(h1, h2)
            loss = loss + c.beta * (cl2 + c.reg_weight * reg)
        return loss

    def augmenter_loss(self, batch: dict) -> Tensor:
        """``L1 = L_cl2 + gamma' R`` on views re-encoded (train mode, no encoder gradient).

        The official step also adds ``λ L_cl1`` (encoder views only): no gradient reaches the
        augmenters through it, so the update is the same; only the logged value differs."""
        with torch.no_grad():
            h1 = self.encoder(batch["aug1"], batch["aug1_len"])
            h2 = self.encoder(batch["aug2"], batch["aug2_len"])
        cl2, reg = self.cl2_and_reg(h1, h2)
        return cl2 + self.config.augmenter_reg_weight * reg

    def _opt(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            self.configure_optimizer()
        return self._optimizer

    def _update(self, loss_fn: Any, batch: dict, encoder: bool, augmenters: bool) -> Tensor:
        """One optimiser step on ``loss_fn(batch)`` with only the chosen parts trainable."""
        opt = self._opt()
        self._trainable(encoder, augmenters)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        self._trainable(True, True)
        return loss.detach()

    def encoder_step(self, batch: dict) -> Tensor:
        """One encoder update on ``L0`` (augmenters frozen); returns the detached loss."""
        return self._update(self.encoder_loss, batch, True, False)

    def augmenter_step(self, batch: dict) -> Tensor:
        """One augmenter update on ``L1`` (encoder untouched); returns the detached loss."""
        return self._update(self.augmenter_loss, batch, False, True)

    def training_step(self, batch: dict) -> Tensor:
        if "aug1" not in batch:
            raise ValueError("batch: MCLRec needs the augmented views 'aug1'/'aug2' "
                             "(build the loader with augment=method.make_augment())")
        s = self.config.schedule
        if s == "joint":
            self._trainable(True, True)
            return self.encoder_loss(batch)
        self.encoder_step(batch)
        if s == "paper":
            # the trainer's backward/step performs the augmenter update
            self._trainable(False, True)
            return self.augmenter_loss(batch)
        self.augmenter_step(batch)
        self._trainable(True, False)  # step 3: the trainer steps the encoder only
        return self.encoder_loss(batch)

    def on_epoch_end(self, epoch: int) -> None:
        self._trainable(True, True)
        super().on_epoch_end(epoch)


def run(config: MCLRecConfig, ctx: RunContext) -> RunResult:
    """Train MCLRec on ``config.dataset``; select on validation ``mrr@10``; test."""
    return run_method(MCLRec, config, ctx)


#: official ``scripts/train_*.sh`` values (spec Section 4); toys: the "toys" script's values (it
#: actually ran Beauty), ml-100k: the ml-1m script's (it stands in for ML-1M)
MCLREC_PRESETS: dict[str, dict[str, Any]] = {
    "sports": dict(cl_weight=0.04, beta=0.4),
    "beauty": dict(cl_weight=0.0, beta=0.05),
    "yelp": dict(cl_weight=0.03, beta=0.1),
    "toys": dict(cl_weight=0.01, beta=0.1),
    "ml-100k": dict(cl_weight=0.0, beta=0.01, hidden_dropout=0.1, attn_dropout=0.1),
    "taobao": {},
}

register(MethodSpec(
    name="mclrec", config_cls=MCLRecConfig, run=run, evaluate=evaluate,
    description="MCLRec: CL4SRec views + learnable model augmenters, alternating (meta) updates "
                "(Qin et al., SIGIR 2023)",
    default_dataset="beauty", presets=copy.deepcopy(MCLREC_PRESETS), accepts=("sequence",)))
