r"""Feature Transformation (FT): positive extrapolation and negative interpolation for MoCo.

Zhu et al., "Improving Contrastive Learning by Visualizing Feature Transformation", ICCV 2021;
official code ``memory/mem_moco.py`` (class ``RGBMoCo_dropmix_norm``). Two parameter-free
operations on already computed embeddings (query ``q`` with grad, key ``k``, queue ``n``):

Positive extrapolation (harder positives), ``lambda_p = 1 + Beta(alpha_p, alpha_p)`` in [1, 2]:

.. math::

    \hat q = \lambda_p q + (1 - \lambda_p) k, \qquad \hat k = \lambda_p k + (1 - \lambda_p) q

Negative interpolation (more diverse negatives), ``lambda_n ~ Beta(alpha_n, alpha_n)``, a random
permutation ``pi`` of the queue:

.. math::

    \hat n_j = \lambda_n n_j + (1 - \lambda_n) n_{\pi(j)}

Loss: MoCo's InfoNCE on ``q_hat . k_hat`` against ``q_hat . n_hat`` (dot product: the transformed
vectors are not unit vectors unless ``postmix_norm``). Gradient flows through ``q`` in both
``q_hat`` and ``k_hat``; the mixed queue carries none; the queue must be updated with the
original keys. Defaults follow the released command (``alpha_p = 2.0``, ``alpha_n = 1.6``, one
scalar coefficient per step shared by the batch and all dimensions — ``granularity="step"`` —,
no post-mix normalisation); ``granularity="sample"`` (one per row) and ``"element"`` (the code's
``--dim_mask``) are options.

:func:`moco_score_stats` gives the positive / negative score statistics the paper visualises.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..checks import check_choice, check_embeddings, check_finite, check_positive, check_tensor
from ..similarity import l2_normalize
from .mochi import moco_loss

__all__ = ["positive_extrapolation", "negative_interpolation", "ft_moco_loss",
           "moco_score_stats", "FTMoCoLoss"]

GRANULARITIES = ("step", "sample", "element")


def _coef_shape(granularity: str, rows: int, dim: int) -> tuple[int, ...]:
    return {"step": (), "sample": (rows, 1), "element": (rows, dim)}[granularity]


def _beta(alpha: float, shape: tuple[int, ...], generator: torch.Generator | None,
          like: Tensor) -> Tensor:
    """``Beta(alpha, alpha)`` samples of ``shape`` (reproducible with ``generator``)."""
    conc = torch.tensor(float(alpha), dtype=torch.float64)
    dist = torch.distributions.Beta(conc, conc)
    if generator is None:
        out = dist.sample(shape)
    else:  # torch's Beta sampler takes no generator: seed a forked global RNG from it
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator,
                                 device=generator.device))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = dist.sample(shape)
    return out.to(device=like.device, dtype=like.dtype)


def _coef(name: str, lam: Any, alpha: float, shape: tuple[int, ...], generator: Any,
          like: Tensor, low: float, high: float, shift: float) -> Tensor:
    if lam is None:
        check_positive(name.replace("lam", "alpha"), alpha)
        return _beta(alpha, shape, generator, like) + shift
    if isinstance(lam, Tensor):
        lam_t = lam.detach().to(device=like.device, dtype=like.dtype)
    elif isinstance(lam, bool) or not isinstance(lam, (int, float)):
        raise TypeError(f"{name}: expected a number, a tensor or None, got {type(lam).__name__}")
    else:
        lam_t = torch.tensor(float(lam), device=like.device, dtype=like.dtype)
    if bool(((lam_t < low) | (lam_t > high) | ~torch.isfinite(lam_t)).any()):
        raise ValueError(f"{name}: expected values in [{low}, {high}], got range "
                         f"[{float(lam_t.min())}, {float(lam_t.max())}]")
    return lam_t


def positive_extrapolation(query: Tensor, key: Tensor, *, alpha: float = 2.0,
                           lam: float | Tensor | None = None, granularity: str = "step",
                           generator: torch.Generator | None = None
                           ) -> tuple[Tensor, Tensor, Tensor]:
    r"""``q_hat = lam q + (1 - lam) k``, ``k_hat = lam k + (1 - lam) q``, ``lam = 1 + Beta(a, a)``.

    Args:
        query: ``[B, D]`` (grad flows through both outputs).
        key: ``[B, D]``.
        alpha: Beta concentration ``alpha_p`` (2.0).
        lam: fixed coefficient(s) in ``[1, 2]`` instead of a draw (``lam = 1`` is the identity).
        granularity: ``"step"`` (one scalar), ``"sample"`` (``[B, 1]``) or ``"element"``
            (``[B, D]``).
        generator: random generator for the draw.

    Returns:
        ``(q_hat, k_hat, lam)``.
    """
    check_embeddings("query", query, ndim=2)
    check_embeddings("key", key, ndim=2)
    if key.shape != query.shape:
        raise ValueError(f"key: expected shape {tuple(query.shape)} like query, got "
                         f"{tuple(key.shape)}")
    check_choice("granularity", granularity, GRANULARITIES)
    lam_t = _coef("lam", lam, alpha, _coef_shape(granularity, *query.shape), generator, query,
                  1.0, 2.0, 1.0)
    q_hat = lam_t * query + (1 - lam_t) * key
    k_hat = lam_t * key + (1 - lam_t) * query
    return q_hat, k_hat, lam_t


@torch.no_grad()
def negative_interpolation(queue: Tensor, *, alpha: float = 1.6,
                           lam: float | Tensor | None = None, permutation: Tensor | None = None,
                           granularity: str = "step", generator: torch.Generator | None = None
                           ) -> tuple[Tensor, Tensor, Tensor]:
    r"""``n_hat_j = lam n_j + (1 - lam) n_{pi(j)}``, ``lam ~ Beta(alpha, alpha)`` (no grad).

    Args:
        queue: ``[Q, D]`` queue entries (a detached copy is mixed; the queue itself is untouched).
        alpha: Beta concentration ``alpha_n`` (1.6).
        lam: fixed coefficient(s) in ``[0, 1]`` (``lam = 1`` is the identity).
        permutation: ``[Q]`` permutation ``pi`` (default: a random one).
        granularity: ``"step"``, ``"sample"`` (``[Q, 1]``) or ``"element"`` (``[Q, D]``).
        generator: random generator.

    Returns:
        ``(n_hat [Q, D], lam, permutation [Q])``.

    Raises:
        ValueError / TypeError: ``queue`` not a non-empty, finite floating ``[Q, D]``, a bad
            ``permutation``, ``lam``, ``alpha`` or ``granularity``.
    """
    check_embeddings("queue", queue, ndim=2)
    check_choice("granularity", granularity, GRANULARITIES)
    n = queue.detach()
    Q = n.size(0)
    if permutation is None:
        gdev = generator.device if generator is not None else n.device
        perm = torch.randperm(Q, generator=generator, device=gdev).to(n.device)
    else:
        perm = check_tensor("permutation", permutation, ndim=1, integer=True).to(n.device)
        if perm.numel() != Q or not torch.equal(torch.sort(perm).values,
                                                torch.arange(Q, device=n.device)):
            raise ValueError(f"permutation: expected a permutation of 0..{Q - 1}, got a tensor "
                             f"of {perm.numel()} entries that is not one")
    lam_t = _coef("lam", lam, alpha, _coef_shape(granularity, *n.shape), generator, n, 0.0, 1.0,
                  0.0)
    return lam_t * n + (1 - lam_t) * n[perm], lam_t, perm


def ft_moco_loss(query: Tensor, key: Tensor, queue: Tensor, *, temperature: float = 0.2,
                 alpha_p: float = 2.0, alpha_n: float = 1.6, extrapolate: bool = True,
                 interpolate: bool = True, postmix_norm: bool = False,
                 granularity: str = "step", generator: torch.Generator | None = None,
                 queue_ids: Tensor | None = None, ids: Tensor | None = None,
                 reduction: str = "mean", block_size: int | None = None) -> Tensor:
    r"""MoCo loss with Feature Transformation.

    ``query``, ``key`` and ``queue`` are L2-normalised first (MoCo's embeddings), then
    transformed; the loss uses the dot product of the transformed vectors (re-normalised only
    with ``postmix_norm=True``). ``queue_ids [Q]`` / ``ids [B]``: image ids; an interpolated
    negative ``n_hat_j`` is dropped from query ``b``'s denominator when either ``n_j`` or
    ``n_{pi(j)}`` comes from image ``ids[b]`` (an entry that is not mixed: when ``n_j`` does).
    Other arguments as in :func:`positive_extrapolation`, :func:`negative_interpolation` and
    :func:`~contrastkit.core.losses.mochi.moco_loss`.
    """
    check_embeddings("query", query, ndim=2, finite=False)  # moco_loss checks the values
    check_embeddings("key", key, ndim=2, finite=False)
    check_tensor("queue", queue, ndim=2, floating=True)
    check_positive("temperature", temperature)
    if interpolate and queue_ids is not None:
        check_tensor("queue_ids", queue_ids, ndim=1, integer=True)
        if queue_ids.numel() != queue.size(0):
            raise ValueError(f"queue_ids: expected {queue.size(0)} ids (one per queue entry), "
                             f"got {queue_ids.numel()}")
    q = l2_normalize(query, dim=1, eps=1e-12)
    k = l2_normalize(key, dim=1, eps=1e-12)
    n = l2_normalize(queue.detach(), dim=1, eps=1e-12)
    if extrapolate:
        q, k, _ = positive_extrapolation(q, k, alpha=alpha_p, granularity=granularity,
                                         generator=generator)
    if interpolate:
        n, _, perm = negative_interpolation(n, alpha=alpha_n, granularity=granularity,
                                            generator=generator)
        if queue_ids is not None:
            queue_ids = torch.stack([queue_ids, queue_ids[perm.to(queue_ids.device)]], 1)
    if postmix_norm:
        q = l2_normalize(q, dim=1, eps=1e-12)
        k = l2_normalize(k, dim=1, eps=1e-12)
        n = l2_normalize(n, dim=1, eps=1e-12)
    return moco_loss(q, k, n, temperature=temperature, similarity="dot", queue_ids=queue_ids,
                     ids=ids, reduction=reduction, block_size=block_size)


@torch.no_grad()
def moco_score_stats(query: Tensor, key: Tensor, queue: Tensor, *, temperature: float = 0.2,
                     block_size: int = 1024) -> dict[str, float]:
    r"""Positive / negative score statistics of a MoCo step (dot products of the given vectors).

    Pass the vectors the loss sees (normalised, or transformed by FT). Returns ``pos_mean``,
    ``pos_var`` (over the ``B`` scores ``q_i . k_i``), ``neg_mean``, ``neg_var`` (over the
    ``B x Q`` scores ``q_i . n_j``), ``exp_pos_mean = mean exp(pos / tau)`` and
    ``exp_neg_mean = mean exp(neg / tau)`` (the official code's logged curves).
    """
    check_embeddings("query", query, ndim=2)
    check_embeddings("key", key, ndim=2)
    check_tensor("queue", queue, ndim=2, floating=True)
    check_positive("temperature", temperature)
    if key.shape != query.shape or queue.size(1) != query.size(1) or queue.size(0) == 0:
        raise ValueError(f"key, queue: expected key {tuple(query.shape)} and a non-empty queue "
                         f"[Q, {query.size(1)}], got {tuple(key.shape)} and "
                         f"{tuple(queue.shape)}")
    check_finite("queue", queue)
    q, k, n = (t.detach().to(torch.float64) for t in (query, key, queue))
    pos = (q * k).sum(1)
    s1 = s2 = e = 0.0
    for i in range(0, q.size(0), block_size):
        s = q[i:i + block_size] @ n.t()
        s1 += float(s.sum())
        s2 += float(s.pow(2).sum())
        e += float((s / temperature).exp().sum())
    cnt = q.size(0) * n.size(0)
    nm = s1 / cnt
    return {"pos_mean": float(pos.mean()), "pos_var": float(pos.var(unbiased=False)),
            "neg_mean": nm, "neg_var": max(s2 / cnt - nm * nm, 0.0),
            "exp_pos_mean": float((pos / temperature).exp().mean()),
            "exp_neg_mean": e / cnt}


class FTMoCoLoss(nn.Module):
    """Module wrapper of :func:`ft_moco_loss` (set ``enabled=False`` before ``mix_start_epoch``)."""

    def __init__(self, temperature: float = 0.2, alpha_p: float = 2.0, alpha_n: float = 1.6, *,
                 extrapolate: bool = True, interpolate: bool = True, postmix_norm: bool = False,
                 granularity: str = "step") -> None:
        super().__init__()
        check_positive("temperature", temperature)
        check_positive("alpha_p", alpha_p)
        check_positive("alpha_n", alpha_n)
        check_choice("granularity", granularity, GRANULARITIES)
        self.kwargs = dict(temperature=temperature, alpha_p=alpha_p, alpha_n=alpha_n,
                           extrapolate=extrapolate, interpolate=interpolate,
                           postmix_norm=postmix_norm, granularity=granularity)
        self.enabled = True

    def forward(self, query: Tensor, key: Tensor, queue: Tensor, queue_ids: Tensor | None = None,
                ids: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        kw = dict(self.kwargs)
        if not self.enabled:
            kw.update(extrapolate=False, interpolate=False)
        return ft_moco_loss(query, key, queue, generator=generator,  # type: ignore[arg-type]
                            queue_ids=queue_ids, ids=ids, **kw)
