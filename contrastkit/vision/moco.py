r"""MoCo-v2 frame: momentum key encoder, a queue of keys that keeps image ids, plug-ins.

MoCo-v2 (Chen et al., 2020; He et al., 2020) encodes a query view with the online backbone +
MLP head and a key view with a momentum copy ``theta_k <- m theta_k + (1 - m) theta_q``, and
contrasts the query with its key against a FIFO queue of past keys:

.. math::

    \mathcal{L} = -\log \frac{e^{q^\top k / \tau}}
        {e^{q^\top k / \tau} + \sum_{n \in \text{queue}} e^{q^\top n / \tau}}

The queue stores each key's dataset index (``image id``) so that a query never meets its own
image from an earlier epoch as a negative (:func:`~contrastkit.core.losses.mochi.moco_loss`
drops queue entries with the query's id). Plug-ins (``config.plugin``):

* ``mochi`` — MoCHi hard-negative mixing (Kalantidis et al., 2020): per query, ``s`` convex
  mixes of two of its ``N`` hardest queue negatives and ``s'`` mixes of the query with one
  (coefficient ``< 0.5``) join the denominator; built without gradient, never enqueued; starts
  at ``mochi_start_epoch`` (plain MoCo before).
* ``feature_transformation`` — positive extrapolation ``q_hat = q + (l - 1)(q - k)``,
  ``l = 1 + Beta(2, 2)``, and negative interpolation of the queue (Zhu et al., 2021);
  the queue receives the original keys.

Single-device batch-norm shuffling: the key batch is permuted and encoded in
``key_bn_splits`` chunks (each with its own BN statistics), which is what ShuffleBN does across
GPUs; under ``torchrun`` the chunks are per process. Keys are all-gathered before they are
enqueued. Evaluation: weighted kNN on the online backbone's features.
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..core import distributed as dist_utils
from ..core.checks import check_choice, check_ints, check_positive
from ..core.similarity import l2_normalize
from .frame import ProjectionHead, VisionConfig, VisionMethod, register_frame

__all__ = ["MoCoConfig", "MoCo", "PLUGINS", "run", "evaluate"]

PLUGINS: tuple[str, ...] = ("none", "mochi", "feature_transformation")


def _losses(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(f"contrastkit.core.losses.{module}"), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"MoCo needs contrastkit.core.losses.{module}.{name}, which is not "
                         f"available ({type(exc).__name__}: {exc})") from None


@dataclass
class MoCoConfig(VisionConfig):
    """MoCo-v2 hyperparameters (shared fields: :class:`VisionConfig`).

    Attributes:
        temperature: ``tau`` (0.2, MoCo-v2; lightly's CIFAR run uses 0.1).
        queue_size: number of queued keys (4096 as lightly's CIFAR run; keep it below the number
            of training images or rely on the id exclusion).
        momentum: EMA coefficient ``m`` of the key encoder (0.99 on CIFAR).
        symmetric: also use the second view as query (``L(q1, k2) + L(q2, k1)``, halved).
        key_bn_splits: chunks the shuffled key batch is encoded in (ShuffleBN on one device).
        decoupled: drop the positive from the denominator (DCL with a queue).
        plugin: ``none``, ``mochi`` or ``feature_transformation``.
        mochi_num_hard, mochi_num_mix, mochi_num_mix_query, mochi_query_max: MoCHi ``N``,
            ``s``, ``s'`` and the upper bound of the query's share ``b`` (0.5).
        mochi_start_epoch: first epoch with mixing (plain MoCo before: a warm-up).
        ft_alpha_p, ft_alpha_n: Beta parameters of extrapolation (2.0) and interpolation (1.6).
        ft_granularity: ``step`` (one coefficient per step, official), ``sample`` or ``element``.
        ft_postmix_norm: re-normalise after transforming (off in the official command).
        ft_start_epoch: first epoch with the transformation.
    """

    temperature: float = 0.2
    queue_size: int = 4096
    momentum: float = 0.99
    symmetric: bool = False
    key_bn_splits: int = 4
    decoupled: bool = False
    plugin: Literal["none", "mochi", "feature_transformation"] = "none"
    mochi_num_hard: int = 1024
    mochi_num_mix: int = 512
    mochi_num_mix_query: int = 128
    mochi_query_max: float = 0.5
    mochi_start_epoch: int = 1
    ft_alpha_p: float = 2.0
    ft_alpha_n: float = 1.6
    ft_granularity: Literal["step", "sample", "element"] = "step"
    ft_postmix_norm: bool = False
    ft_start_epoch: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("temperature", self.temperature)
        check_ints(self, ("queue_size", "key_bn_splits", "mochi_num_hard"))
        check_ints(self, ("mochi_num_mix", "mochi_num_mix_query", "mochi_start_epoch",
                          "ft_start_epoch"), minimum=0)
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum: expected a value in [0, 1), got {self.momentum}")
        check_choice("plugin", self.plugin, PLUGINS)
        check_choice("ft_granularity", self.ft_granularity, ("step", "sample", "element"))
        if not 0.0 < self.mochi_query_max <= 0.5:
            raise ValueError(f"mochi_query_max: expected a value in (0, 0.5], got "
                             f"{self.mochi_query_max}")
        check_positive("ft_alpha_p", self.ft_alpha_p)
        check_positive("ft_alpha_n", self.ft_alpha_n)
        if self.plugin != "none" and self.decoupled:
            raise ValueError("decoupled: the MoCHi / feature-transformation losses keep the "
                             "positive in the denominator; use decoupled=true with plugin=none")


class MoCo(VisionMethod):
    """MoCo-v2 with an id-keeping queue and the MoCHi / Feature-Transformation plug-ins.

    Args:
        config: :class:`MoCoConfig`.
        in_channels, image_size, mean, std, backbone: see :class:`VisionMethod`.
    """

    name = "moco"

    def __init__(self, config: MoCoConfig, in_channels: int, image_size: int,
                 mean: tuple[float, ...] = (), std: tuple[float, ...] = (),
                 backbone: str = "small_cnn") -> None:
        super().__init__(config, in_channels, image_size, mean, std, backbone)
        c = config
        self.head = ProjectionHead(self.feature_dim, c.proj_hidden, c.proj_dim)
        self.key_encoder = copy.deepcopy(self.encoder)
        self.key_head = copy.deepcopy(self.head)
        for p in (*self.key_encoder.parameters(), *self.key_head.parameters()):
            p.requires_grad_(False)
        self.queue = _losses("mochi", "KeyQueue")(c.proj_dim, c.queue_size)
        self._moco_loss = _losses("mochi", "moco_loss")
        self._mochi_loss = _losses("mochi", "mochi_loss") if c.plugin == "mochi" else None
        self._ft_loss = (_losses("feature_transformation", "ft_moco_loss")
                         if c.plugin == "feature_transformation" else None)

    def on_fit_start(self, trainer: Any) -> None:
        super().on_fit_start(trainer)
        if self.queue.num_filled == 0:  # MoCo's start: random unit vectors (id -1)
            self.queue.enqueue(torch.randn(self.config.queue_size, self.config.proj_dim,
                                           device=self.queue.features.device))

    # ---- keys ----------------------------------------------------------------------------
    @torch.no_grad()
    def _momentum_update(self) -> None:
        m = self.config.momentum
        for pk, pq in zip(self.key_encoder.parameters(), self.encoder.parameters()):
            pk.mul_(m).add_(pq.detach(), alpha=1 - m)
        for pk, pq in zip(self.key_head.parameters(), self.head.parameters()):
            pk.mul_(m).add_(pq.detach(), alpha=1 - m)

    @torch.no_grad()
    def keys(self, x: Tensor) -> Tensor:
        """Normalised keys ``[B, D]`` of views ``x``, encoded in shuffled BN chunks."""
        self.key_encoder.train(self.training)
        self.key_head.train(self.training)
        b = x.shape[0]
        splits = max(1, min(self.config.key_bn_splits, b // 2))
        perm = torch.randperm(b, device=x.device)
        out = torch.empty(b, self.config.proj_dim, device=x.device)
        for idx in perm.chunk(splits):
            xi = x[idx]
            if self.config.channels_last:
                xi = xi.contiguous(memory_format=torch.channels_last)
            out[idx] = self.key_head(self.key_encoder(xi)).float()
        return l2_normalize(out, dim=1)

    # ---- the step ------------------------------------------------------------------------
    def views(self, batch: Any) -> list[Tensor]:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return [self.augment(x), self.augment(x)]

    def training_step(self, batch: Any) -> Tensor:
        self.scheduler_step()
        ids = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else None
        v1, v2 = self.views(batch)
        self._momentum_update()
        pairs = [(v1, v2), (v2, v1)] if self.config.symmetric else [(v1, v2)]
        queue, queue_ids = self.queue.filled()
        queue, queue_ids = queue.clone(), queue_ids.clone()
        qs = self.encode_views([a for a, _ in pairs])
        total, new_keys = None, []
        for (_, kv), h in zip(pairs, qs):
            q = self.project(h).float()
            k = self.keys(kv)
            new_keys.append(k)
            term = self._loss(q, k, queue, queue_ids, ids)
            total = term if total is None else total + term
        assert total is not None
        keys = dist_utils.all_gather_with_grad(new_keys[0])
        key_ids = None if ids is None else dist_utils.all_gather_with_grad(
            ids.to(keys.device).float()).long()
        self.queue.enqueue(keys, key_ids)
        return total / len(pairs)

    def _loss(self, q: Tensor, k: Tensor, queue: Tensor, queue_ids: Tensor,
              ids: Tensor | None) -> Tensor:
        c = self.config
        ids = None if ids is None else ids.to(q.device)
        if c.plugin == "mochi" and self._epoch >= c.mochi_start_epoch:
            assert self._mochi_loss is not None
            return self._mochi_loss(q, k, queue, temperature=c.temperature,
                                    num_hard=min(c.mochi_num_hard, queue.shape[0]),
                                    num_mix=c.mochi_num_mix,
                                    num_mix_query=c.mochi_num_mix_query,
                                    query_max=c.mochi_query_max, queue_ids=queue_ids, ids=ids)
        if c.plugin == "feature_transformation" and self._epoch >= c.ft_start_epoch:
            assert self._ft_loss is not None
            return self._ft_loss(q, k, queue, temperature=c.temperature, alpha_p=c.ft_alpha_p,
                                 alpha_n=c.ft_alpha_n, postmix_norm=c.ft_postmix_norm,
                                 granularity=c.ft_granularity, queue_ids=queue_ids, ids=ids)
        return self._moco_loss(q, k, queue, temperature=c.temperature, queue_ids=queue_ids,
                               ids=ids, decoupled=c.decoupled)


run, evaluate = register_frame(
    "moco", MoCo, MoCoConfig,
    "MoCo-v2 frame (momentum encoder, id-keeping queue) with MoCHi / "
    "feature-transformation plug-ins")
