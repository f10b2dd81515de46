r"""SimCLR frame: ``V`` augmented views, a shared backbone, a head, a pluggable loss.

SimCLR (Chen et al., 2020) encodes ``V = 2`` random views of every image with one backbone
``f`` and an MLP head ``g`` and pulls the two projections ``z = g(f(x))`` of an image together
against every other image of the batch. The loss is a switch (``config.loss``); every loss
lives in :mod:`contrastkit.core.losses` and works on the projections ``[B, D]`` of each view:

=================  ==========================================================================
``infonce``        NT-Xent, :func:`~contrastkit.core.losses.nt_xent` (SimCLR Eq. 1; tau 0.5)
``dcl``            decoupled: the positive leaves the denominator (DCL Eq. 6; tau 0.1)
``dclw``           DCL with the von-Mises weight ``w_i = 2 - B softmax(s_ii / sigma)`` (tau 0.1)
``hard_infonce``   InfoNCE over the positive and the top-k hardest negatives
                   (Wang & Liu 2021, "Understanding the behaviour of contrastive loss")
``mv_infonce``     multi-view InfoNCE, one term per instance over ``V`` views
``mv_dhel``        MV-DHEL (decoupled hyperspherical energy loss over ``V`` views)
``mv_avg``         AVG baseline: each view against the mean of the other views
``mv_pvc``         PVC baseline: poly-view critics (``pvc_variant`` arithmetic / geometric)
``cacr``           contrastive attraction + contrastive repulsion (distribution-weighted)
``amcl``           adaptive multi-head CL: ``C`` heads + pair-adaptive temperature
``swav``           SwAV swapped prediction over Sinkhorn-Knopp codes, prototypes, multi-crop
=================  ==========================================================================

Pairwise losses (``infonce``, ``dcl``, ``dclw``, ``hard_infonce``) with ``num_views > 2`` are
averaged over all view pairs (the PWE baseline of the multi-view paper). Under ``torchrun``,
``gather=True`` contrasts each process's anchors with every process's candidates through the
gradient-carrying all-gather of :mod:`contrastkit.core.distributed` (``infonce``, ``dcl``,
``dclw``; SwAV all-reduces its Sinkhorn sums); the other losses use the local batch.

Augmentations run batched on the device of the data (:mod:`contrastkit.vision.augment`);
views of equal size share one backbone pass. Evaluation is the weighted kNN monitor
(``k = 200``, ``t = 0.1``) on ℓ2-normalised backbone features.

Example::

    contrastkit train simclr --dataset fashion-mnist --set loss=dcl --epochs 1
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch
from torch import Tensor, nn

from ..core.checks import check_choice, check_ints, check_positive
from ..core.losses import decoupled_loss, nt_xent
from ..core.similarity import l2_normalize
from .augment import MultiCrop, ViewAugment
from .frame import ProjectionHead, VisionConfig, VisionMethod, register_frame

__all__ = ["SimCLRConfig", "SimCLR", "LOSSES", "DEFAULT_TEMPERATURE", "available_losses",
           "run", "evaluate"]

LOSSES: tuple[str, ...] = ("infonce", "dcl", "dclw", "hard_infonce", "mv_infonce", "mv_dhel",
                           "mv_avg", "mv_pvc", "cacr", "amcl", "swav")

#: loss -> (module of contrastkit.core.losses, function it needs)
_LOSS_SOURCES: dict[str, tuple[str, str]] = {
    "infonce": ("infonce", "nt_xent"),
    "dcl": ("decoupled", "decoupled_loss"),
    "dclw": ("dclw", "dclw_loss"),
    "hard_infonce": ("hardness", "hard_nt_xent"),
    "mv_infonce": ("multiview", "mv_infonce_loss"),
    "mv_dhel": ("multiview", "mv_dhel_loss"),
    "mv_avg": ("multiview", "avg_loss"),
    "mv_pvc": ("multiview", "pvc_loss"),
    "cacr": ("cacr", "cacr_loss"),
    "amcl": ("amcl", "amcl_loss"),
    "swav": ("swav", "swav_loss"),
}

#: temperature used when ``config.temperature`` is None (the references' defaults)
DEFAULT_TEMPERATURE: dict[str, float] = {
    "infonce": 0.5, "dcl": 0.1, "dclw": 0.1, "hard_infonce": 0.5, "mv_infonce": 0.5,
    "mv_dhel": 0.5, "mv_avg": 0.5, "mv_pvc": 0.5, "swav": 0.1, "cacr": 1.0, "amcl": 0.5}


def _loss_attr(loss: str, attr: str | None = None) -> Any:
    """Import ``contrastkit.core.losses.<module>.<attr>`` (clear error when not there yet)."""
    module, default = _LOSS_SOURCES[loss]
    name = attr or default
    try:
        mod = importlib.import_module(f"contrastkit.core.losses.{module}")
        return getattr(mod, name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"loss: {loss!r} needs contrastkit.core.losses.{module}.{name}, which "
                         f"is not available ({type(exc).__name__}: {exc})") from None


def available_losses() -> list[str]:
    """Losses whose implementation imports in this installation."""
    out = []
    for loss in LOSSES:
        try:
            _loss_attr(loss)
            out.append(loss)
        except ValueError:
            pass
    return out


@dataclass
class SimCLRConfig(VisionConfig):
    """SimCLR hyperparameters (the shared fields are documented in :class:`VisionConfig`).

    Attributes:
        loss: one of :data:`LOSSES`.
        temperature: ``tau``; ``None`` takes the loss's reference default
            (:data:`DEFAULT_TEMPERATURE`; AMCL's temperature is learnt, this is unused).
        num_views: views per image (2; the multi-view losses use more).
        dclw_sigma: DCLW's ``sigma`` (0.5).
        hard_top_k: ``hard_infonce``: keep this many hardest negatives (0: use
            ``hard_keep_fraction``).
        hard_keep_fraction: ``hard_infonce``: keep this fraction of the negatives (0: all).
        mv_denominator: MV-InfoNCE denominator, ``all`` (official code) or ``cross_view`` (paper).
        mv_dhel_variant: MV-DHEL form, ``code`` (official) or ``paper``.
        pvc_variant: ``mv_pvc`` critic aggregation, ``arithmetic`` (log-mean-exp) or
            ``geometric`` (mean).
        cacr_alpha, cacr_beta: CACR attraction / repulsion weights.
        cacr_pos_temperature, cacr_neg_temperature: CACR's conditional-distribution temperatures.
        amcl_heads, amcl_beta, amcl_tau_min, amcl_tau_max: AMCL heads ``C``, regulariser weight,
            temperature range.
        amcl_smooth, amcl_regularizer, amcl_detach_temperature_input: AMCL variant (see
            :func:`contrastkit.core.losses.amcl.amcl_loss`). Frame defaults (``True``,
            ``"symmetric"``, ``True``) depart from the spec's table form (``False``, ``"table"``,
            ``False``), which collapses on Fashion-MNIST: the hardest-negative ``max`` collapses
            even at a fixed temperature, ``beta * Omega`` pins the temperatures to the bounds,
            and an undetached ``phi`` input lets the regulariser drive the encoder.
        amcl_warmup_epochs, amcl_warmup_temperature: AMCL with a fixed temperature for the first
            epochs (a toolkit addition the spec suggests; 0: off). Under ``torchrun`` the
            temperature network gets no gradient during warm-up, which DDP rejects: use 0 there.
        swav_prototypes: ``K`` (512 as lightly's CIFAR run; 3000 in solo-learn).
        swav_epsilon, swav_iterations: Sinkhorn entropy weight and iterations (0.05, 3).
        swav_local_crops: small crops per image (multi-crop; 0: two global crops only).
        swav_local_size: side of the small crops (0: half the image side).
        swav_local_crop_min, swav_local_crop_max: area range of the small crops.
        swav_queue_length: features kept per global crop for the Sinkhorn problem (0: none).
        swav_queue_start_epoch: first epoch that uses the queue.
        swav_freeze_prototypes_epochs: epochs during which the prototypes get no gradient.
    """

    loss: Literal["infonce", "dcl", "dclw", "hard_infonce", "mv_infonce", "mv_dhel", "mv_avg",
                  "mv_pvc", "cacr", "amcl", "swav"] = "infonce"
    temperature: float | None = None
    num_views: int = 2
    dclw_sigma: float = 0.5
    hard_top_k: int = 0
    hard_keep_fraction: float = 0.0
    mv_denominator: Literal["all", "cross_view"] = "all"
    mv_dhel_variant: Literal["code", "paper"] = "code"
    pvc_variant: Literal["arithmetic", "geometric"] = "arithmetic"
    cacr_alpha: float = 1.0
    cacr_beta: float = 1.0
    cacr_pos_temperature: float = 1.0
    cacr_neg_temperature: float = 0.9
    amcl_heads: int = 3
    amcl_beta: float = 0.1
    amcl_tau_min: float = 0.02
    amcl_tau_max: float = 2.0
    amcl_smooth: bool = True
    amcl_regularizer: str = "symmetric"
    amcl_detach_temperature_input: bool = True
    amcl_warmup_epochs: int = 0
    amcl_warmup_temperature: float = 0.5
    swav_prototypes: int = 512
    swav_epsilon: float = 0.05
    swav_iterations: int = 3
    swav_local_crops: int = 0
    swav_local_size: int = 0
    swav_local_crop_min: float = 0.05
    swav_local_crop_max: float = 0.14
    swav_queue_length: int = 0
    swav_queue_start_epoch: int = 0
    swav_freeze_prototypes_epochs: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("loss", self.loss, LOSSES)
        if self.temperature is not None:
            check_positive("temperature", self.temperature)
        check_ints(self, ("num_views", "amcl_heads", "swav_prototypes", "swav_iterations"))
        check_ints(self, ("hard_top_k", "swav_local_crops", "swav_local_size",
                          "swav_queue_length", "swav_queue_start_epoch",
                          "swav_freeze_prototypes_epochs", "amcl_warmup_epochs"), minimum=0)
        if self.num_views < 2:
            raise ValueError(f"num_views: expected >= 2, got {self.num_views}")
        if self.loss in ("amcl", "swav") and self.num_views != 2:
            raise ValueError(f"num_views: loss {self.loss!r} uses 2 global views (SwAV adds "
                             f"small crops with swav_local_crops), got {self.num_views}")
        if not 0.0 <= self.hard_keep_fraction <= 1.0:
            raise ValueError(f"hard_keep_fraction: expected a value in [0, 1], got "
                             f"{self.hard_keep_fraction}")
        check_choice("mv_denominator", self.mv_denominator, ("all", "cross_view"))
        check_choice("mv_dhel_variant", self.mv_dhel_variant, ("code", "paper"))
        check_choice("pvc_variant", self.pvc_variant, ("arithmetic", "geometric"))
        for name in ("dclw_sigma", "swav_epsilon", "amcl_tau_min", "amcl_tau_max",
                     "amcl_warmup_temperature",
                     "cacr_pos_temperature", "cacr_neg_temperature"):
            check_positive(name, getattr(self, name))
        for name in ("cacr_alpha", "cacr_beta", "amcl_beta"):
            check_positive(name, getattr(self, name), allow_zero=True)
        check_choice("amcl_regularizer", self.amcl_regularizer, ("symmetric", "gaussian", "table"))
        if self.amcl_tau_min >= self.amcl_tau_max:
            raise ValueError(f"amcl_tau_min/amcl_tau_max: expected min < max, got "
                             f"{self.amcl_tau_min} and {self.amcl_tau_max}")
        if not 0 < self.swav_local_crop_min <= self.swav_local_crop_max <= 1:
            raise ValueError(f"swav_local_crop_min/max: expected 0 < min <= max <= 1, got "
                             f"{self.swav_local_crop_min} and {self.swav_local_crop_max}")

    @property
    def tau(self) -> float:
        """The temperature in use."""
        return DEFAULT_TEMPERATURE[self.loss] if self.temperature is None else self.temperature


class SimCLR(VisionMethod):
    """SimCLR as a declaration: views -> backbone -> head -> ``config.loss``.

    Args:
        config: :class:`SimCLRConfig`.
        in_channels, image_size, mean, std, backbone: see :class:`VisionMethod`.
    """

    name = "simclr"

    def __init__(self, config: SimCLRConfig, in_channels: int, image_size: int,
                 mean: tuple[float, ...] = (), std: tuple[float, ...] = (),
                 backbone: str = "small_cnn") -> None:
        super().__init__(config, in_channels, image_size, mean, std, backbone)
        c = config
        self._loss_fn: Callable[..., Tensor] = _loss_attr(c.loss)
        self.temperature_net: nn.Module | None = None
        self.prototypes: nn.Module | None = None
        if c.loss == "amcl":
            self.head = _loss_attr("amcl", "MultiHeadProjector")(
                in_dim=self.feature_dim, hidden_dim=c.proj_hidden, out_dim=c.proj_dim,
                num_heads=c.amcl_heads)
            self.temperature_net = _loss_attr("amcl", "AdaptiveTemperature")(
                dim=c.proj_dim, tau_min=c.amcl_tau_min, tau_max=c.amcl_tau_max)
        else:
            self.head = ProjectionHead(self.feature_dim, c.proj_hidden, c.proj_dim)
        self.crops: MultiCrop | None = None
        if c.loss == "swav":
            self.prototypes = _loss_attr("swav", "SwAVPrototypes")(c.proj_dim, c.swav_prototypes)
            self.prototypes.weight.register_hook(self._prototype_grad_hook)
            local = None
            if c.swav_local_crops:
                size = c.swav_local_size or max(8, image_size // 2)
                local = ViewAugment(**{**self.augment.__dict__, "size": size,
                                       "crop_scale": (c.swav_local_crop_min,
                                                      c.swav_local_crop_max)})
            self.crops = MultiCrop(self.augment, local, 2, c.swav_local_crops)
            if c.swav_queue_length:
                self.register_buffer("swav_queue", torch.zeros(2, c.swav_queue_length,
                                                                c.proj_dim))
                self.register_buffer("swav_queue_filled", torch.zeros((), dtype=torch.long))

    # ---- SwAV helpers --------------------------------------------------------------------
    def _prototype_grad_hook(self, grad: Tensor) -> Tensor:
        if self.training and self._epoch < self.config.swav_freeze_prototypes_epochs:
            return torch.zeros_like(grad)
        return grad

    def configure_optimizer(self) -> torch.optim.Optimizer:
        if self.prototypes is None:
            return super().configure_optimizer()
        c = self.config
        proto = [self.prototypes.weight]
        rest = [p for p in self.parameters() if p.requires_grad and p is not proto[0]]
        groups = [{"params": rest}, {"params": proto, "weight_decay": 0.0}]
        if c.optimizer == "adam":
            return torch.optim.Adam(groups, lr=self.base_lr(), weight_decay=c.weight_decay)
        return torch.optim.SGD(groups, lr=self.base_lr(), momentum=0.9,
                               weight_decay=c.weight_decay)

    # ---- the step ------------------------------------------------------------------------
    def views(self, batch: Any) -> list[Tensor]:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if self.crops is not None:
            return self.crops(x)
        return [self.augment(x) for _ in range(self.config.num_views)]

    def training_step(self, batch: Any) -> Tensor:
        self.scheduler_step()
        views = self.views(batch)
        feats = self.encode_views(views)
        if self.config.loss == "swav":
            return self._swav_step(feats)
        b = feats[0].shape[0]
        z = self.project(torch.cat(feats, 0))
        if self.config.loss == "amcl":                    # [C, V*B, D]
            zs = list(z.float().split(b, dim=1))
        else:
            zs = list(z.float().split(b, dim=0))
        return self.loss(zs, batch)

    def _swav_step(self, feats: list[Tensor]) -> Tensor:
        c = self.config
        assert self.prototypes is not None
        self.prototypes.normalize_()
        sizes = [f.shape[0] for f in feats]
        z = l2_normalize(self.project(torch.cat(feats, 0)).float(), dim=1)
        scores = list(self.prototypes(z).split(sizes, 0))
        zg = z[:sizes[0] + sizes[1]].detach().split(sizes[:2], 0)
        queue_scores = None
        if c.swav_queue_length:
            filled = int(self.swav_queue_filled)
            if self._epoch >= c.swav_queue_start_epoch and filled > 0:
                with torch.no_grad():
                    queue_scores = [self.prototypes(self.swav_queue[i, :filled])
                                    for i in range(2)]
            with torch.no_grad():  # FIFO, newest first
                L = c.swav_queue_length
                for i in range(2):
                    self.swav_queue[i] = torch.cat([zg[i], self.swav_queue[i]], 0)[:L]
                self.swav_queue_filled.fill_(min(L, filled + sizes[0]))
        return self._loss_fn(scores, num_global=2, temperature=c.tau, epsilon=c.swav_epsilon,
                             iterations=c.swav_iterations, queue_scores=queue_scores,
                             gather=c.gather)

    def loss(self, projections: list[Tensor], batch: Any) -> Tensor:
        c = self.config
        tau = c.tau
        if c.loss in ("mv_infonce", "mv_dhel", "mv_avg", "mv_pvc", "cacr"):
            z = torch.stack(projections, 0)                       # [V, B, D]
            if c.loss == "mv_infonce":
                return self._loss_fn(z, temperature=tau, denominator=c.mv_denominator)
            if c.loss == "mv_dhel":
                return self._loss_fn(z, temperature=tau, variant=c.mv_dhel_variant)
            if c.loss == "mv_avg":
                return self._loss_fn(z, temperature=tau)
            if c.loss == "mv_pvc":
                return self._loss_fn(z, temperature=tau, variant=c.pvc_variant)
            return self._loss_fn(l2_normalize(z, dim=-1), alpha=c.cacr_alpha,
                                 beta=c.cacr_beta, pos_temperature=c.cacr_pos_temperature,
                                 neg_temperature=c.cacr_neg_temperature)
        if c.loss == "amcl":
            warm = self._epoch < c.amcl_warmup_epochs
            return self._loss_fn(projections[0], projections[1],
                                 c.amcl_warmup_temperature if warm else self.temperature_net,
                                 beta=c.amcl_beta, smooth=c.amcl_smooth,
                                 regularizer=c.amcl_regularizer,
                                 detach_input=c.amcl_detach_temperature_input)
        pairs = [(i, j) for i in range(len(projections)) for j in range(i + 1, len(projections))]
        total = projections[0].new_zeros(())
        for i, j in pairs:
            total = total + self._pair_loss(projections[i], projections[j])
        return total / len(pairs)

    def _pair_loss(self, z1: Tensor, z2: Tensor) -> Tensor:
        c = self.config
        if c.loss == "infonce":
            return nt_xent(z1, z2, temperature=c.tau, gather=c.gather)
        if c.loss in ("dcl", "dclw"):
            try:
                dclw = _loss_attr("dclw")
            except ValueError:  # the plain DCL of core.losses (no gather) as a fallback
                if c.loss == "dclw":
                    raise
                return decoupled_loss(z1, z2, temperature=c.tau)
            return dclw(z1, z2, temperature=c.tau, sigma=c.dclw_sigma,
                        weighted=c.loss == "dclw", gather=c.gather)
        # hard_infonce
        return self._loss_fn(z1, z2, temperature=c.tau, top_k=c.hard_top_k or None,
                             keep_fraction=c.hard_keep_fraction or None)


run, evaluate = register_frame(
    "simclr", SimCLR, SimCLRConfig,
    "SimCLR frame (image views, GPU augmentations) with InfoNCE / DCL / DCLW / hard / "
    "multi-view / CACR / AMCL / SwAV losses")
