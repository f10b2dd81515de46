r"""Hardness-aware contrastive losses and the uniformity / tolerance diagnostics.

Wang & Liu, "Understanding the Behaviour of Contrastive Loss", CVPR 2021; uniformity and
alignment from Wang & Isola, ICML 2020. With ``s_ij`` the similarity of anchor ``i`` and candidate
``j`` and ``P_ij`` the softmax of ``s / tau`` over the denominator, the InfoNCE gradient on a
negative is ``P_ij / tau``: each negative's share of the push is
``r_i(s_ij) = e^{s_ij/tau} / sum_{k != i} e^{s_ik/tau}``, a Boltzmann distribution (hardness
awareness, stronger at small ``tau``).

Hard contrastive loss (explicit truncation): only the ``K_h`` most similar negatives of each anchor
(or those above its quantile ``s_alpha^{(i)}``) stay in the denominator:

.. math::

    \mathcal{L}_{hard}(x_i) = -\log \frac{e^{s_{ii}/\tau}}
        {e^{s_{ii}/\tau} + \sum_{k \ne i,\; s_{ik} \ge s^{(i)}_\alpha} e^{s_{ik}/\tau}}

The selection runs without grad on each row block's logit tile (never the whole ``N x M``
matrix); the loss keeps only the gathered positive and selected logits (``O(N K_h)`` saved for
backward), with max-subtracted log-sum-exps in float32 at least.

Metrics: uniformity :math:`\log \mathbb{E}_{x \ne y}\, e^{-t \|f(x) - f(y)\|^2}` (``t = 2``),
alignment :math:`\mathbb{E} \|f(x) - f(x^+)\|^\alpha`, tolerance (mean similarity of same-class
pairs; labels, evaluation only) and the effective number of negatives ``exp(H(r_i))``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..checks import (check_choice, check_embeddings, check_finite, check_positive,
                      check_same_device, check_same_shape, check_tensor, scalar_temperature)
from ..engine import contrastive_loss, segment_logsumexp
from ..pairs import PairSelector, as_selector, check_aligned_fits
from ..similarity import SIMILARITIES, get_similarity, l2_normalize, paired_similarity

_LOG0 = -1e30  # log 0 inside masked log-sum-exps (finite: no NaN gradients)

__all__ = ["hard_infonce_loss", "hard_nt_xent", "simple_contrastive_loss", "uniformity_loss",
           "alignment_loss", "tolerance", "negative_weight_stats", "HardInfoNCELoss"]


def _sparse_positives(positives: Any, N: int, M: int, device: torch.device, dtype: torch.dtype,
                      *, self_contrast: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    if self_contrast and isinstance(positives, str) and positives == "aligned":
        raise ValueError("positives: 'aligned' pairs anchor i with candidate i, which with "
                         "candidates=None is the anchor itself (excluded), leaving no positive: "
                         "pass the other view as candidates, an int offset or [2, P] pairs")
    check_aligned_fits(positives, N, M)
    sel = as_selector(positives, "positives")
    if sel is None or type(sel).sparse_block is PairSelector.sparse_block:
        raise ValueError(f"positives: expected sparse pairs ('aligned', an int offset, a [2, P] "
                         f"index or Pairs), got {type(sel).__name__}")
    sel.validate(N, M)
    return sel.sparse_block(0, N, M, device=device, dtype=dtype)


def hard_infonce_loss(anchors: Tensor, candidates: Tensor | None = None, *,
                      positives: Any = "aligned", temperature: float | Tensor = 0.5,
                      top_k: int | None = None, keep_fraction: float | None = None,
                      similarity: str = "cosine", reduction: str = "mean",
                      block_size: int | None = None) -> Tensor:
    r"""InfoNCE with the denominator truncated to each anchor's hardest negatives.

    Args:
        anchors: ``[N, D]``.
        candidates: ``[M, D]``; ``None`` compares the anchors with themselves (self excluded).
        positives: sparse positives: ``"aligned"``, an ``int`` offset (``N`` for stacked views),
            a ``[2, P]`` index or :class:`~contrastkit.core.pairs.Pairs` (weights average the
            positive logits as in SupCon). Positives always stay in the denominator.
        temperature: ``tau`` (scalar).
        top_k: keep the ``K_h`` most similar negatives per anchor (the paper keeps the top 4095
            of a 50k memory bank).
        keep_fraction: alternatively keep the top ``ceil(keep_fraction * #negatives)`` per
            anchor (the paper's quantile ``alpha``, e.g. 0.0819 on CIFAR). Neither given: plain
            InfoNCE (no truncation).
        similarity: ``"cosine"``, ``"dot"`` or ``"neg_sq_dist"``.
        reduction: ``"mean"`` (over anchors with a positive), ``"sum"`` or ``"none"`` (``[N]``).
        block_size: anchors per row block (selection and logit tile; default: about 4M
            entries per tile).

    Returns:
        Scalar loss, or ``[N]`` per anchor (0 for anchors without a positive).
    """
    check_embeddings("anchors", anchors, ndim=2, finite=False)  # the engine checks the values
    self_contrast = candidates is None
    b = anchors if self_contrast else check_tensor("candidates", candidates, ndim=2,
                                                   floating=True)
    if b.size(1) != anchors.size(1):
        raise ValueError(f"candidates: expected feature size {anchors.size(1)}, got shape "
                         f"{tuple(b.shape)}")
    check_choice("similarity", similarity, SIMILARITIES)
    check_choice("reduction", reduction, ("mean", "sum", "none"))
    if not self_contrast:
        check_aligned_fits(positives, anchors.size(0), b.size(0))
    if top_k is not None and keep_fraction is not None:
        raise ValueError("top_k and keep_fraction: expected at most one of them, got both")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                              or top_k < 1):
        raise ValueError(f"top_k: expected a positive int or None, got {top_k!r}")
    if keep_fraction is not None and (isinstance(keep_fraction, bool)
                                      or not isinstance(keep_fraction, (int, float))
                                      or not 0.0 < float(keep_fraction) <= 1.0):
        raise ValueError(f"keep_fraction: expected a number in (0, 1] or None, got "
                         f"{keep_fraction!r}")
    if top_k is None and keep_fraction is None:
        return contrastive_loss(anchors, candidates, positives=positives,
                                temperature=temperature, similarity=similarity, form="infonce",
                                diagonal="exclude", reduction=reduction, block_size=block_size)
    # the truncated path does not go through the engine: check the values here, as it does
    check_finite("anchors", anchors)
    if not self_contrast:
        if b.size(0) == 0:
            raise ValueError("candidates: expected at least one row, got an empty tensor")
        check_same_device("anchors", anchors, "candidates", b)
        check_finite("candidates", b)
    N, M = anchors.size(0), b.size(0)
    dtype = torch.promote_types(torch.promote_types(anchors.dtype, b.dtype), torch.float32)
    a, bb = anchors.to(dtype), b.to(dtype)
    dev = a.device
    r, c, w = _sparse_positives(positives, N, M, dev, dtype, self_contrast=self_contrast)
    keep = w > 0
    if self_contrast:
        keep &= r != c
    r, c, w = r[keep], c[keep], w[keep]
    tau = scalar_temperature(temperature, a.dtype, a.device)
    if similarity == "cosine":
        a = l2_normalize(a, dim=1, eps=1e-12)
        bb = l2_normalize(bb, dim=1, eps=1e-12)
    bs = block_size or max(1, (1 << 22) // max(M, 1))
    lse_parts, P_parts, Q_parts = [], [], []
    for i in range(0, N, bs):
        stop = min(i + bs, N)
        blk = stop - i
        # the logit tile has grad; only the gathered entries are kept for backward (gather saves
        # its index, mm its inputs), so memory stays O(block x M) transient + O(N x K_h)
        if similarity == "neg_sq_dist":
            s = get_similarity(similarity)(a[i:stop], bb) / tau
        else:
            s = (a[i:stop] / tau) @ bb.t()
        inb = (r >= i) & (r < stop)
        rl, cl, wl = r[inb] - i, c[inb], w[inb]
        s_pos = s[rl, cl]
        with torch.no_grad():   # selection of the hardest negatives (no grad)
            sel = s.detach().clone()
            ar = torch.arange(blk, device=dev)
            if self_contrast:
                sel[ar, ar + i] = float("-inf")
            sel[rl, cl] = float("-inf")
            n_neg = torch.isfinite(sel).sum(1)
            k_row = (n_neg.clamp(max=top_k) if top_k is not None
                     else torch.ceil(n_neg.to(torch.float64) * float(keep_fraction)).long())
            kmax = int(k_row.max())
            if kmax > 0:
                vals, idx = torch.topk(sel, kmax, dim=1)
                ok = (torch.arange(kmax, device=dev)[None, :] < k_row[:, None]) \
                    & torch.isfinite(vals)
        if kmax > 0:
            neg = torch.where(ok, s.gather(1, idx), torch.full_like(vals, _LOG0))
            neg_lse = torch.logsumexp(neg, 1)
        else:
            neg_lse = torch.full((blk,), _LOG0, dtype=dtype, device=dev)
        pos_lse = segment_logsumexp(s_pos, rl, blk)
        lse_parts.append(torch.logaddexp(neg_lse, pos_lse))
        P_parts.append(torch.zeros(blk, dtype=dtype, device=dev).index_add(0, rl, wl * s_pos))
        Q_parts.append(torch.zeros(blk, dtype=dtype, device=dev).index_add(0, rl, wl))
    lse, P, Q = torch.cat(lse_parts), torch.cat(P_parts), torch.cat(Q_parts)
    valid = Q > 0
    per_row = torch.where(valid, lse - P / torch.where(valid, Q, torch.ones_like(Q)),
                          torch.zeros_like(P))
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    return per_row.sum() / valid.sum().clamp_min(1)


def hard_nt_xent(z1: Tensor, z2: Tensor, *, temperature: float | Tensor = 0.5,
                 top_k: int | None = None, keep_fraction: float | None = None,
                 similarity: str = "cosine", reduction: str = "mean") -> Tensor:
    """Two-view (SimCLR) form of :func:`hard_infonce_loss` over ``[z1; z2]`` (``2B - 2`` negs)."""
    check_embeddings("z1", z1, ndim=2, finite=False)  # the engine checks the values
    check_embeddings("z2", z2, ndim=2, finite=False)
    check_same_shape("z1", z1, "z2", z2)
    return hard_infonce_loss(torch.cat([z1, z2], 0), None, positives=z1.size(0),
                             temperature=temperature, top_k=top_k, keep_fraction=keep_fraction,
                             similarity=similarity, reduction=reduction)


def simple_contrastive_loss(z1: Tensor, z2: Tensor, *, weight: float = 1.0) -> Tensor:
    r"""The hardness-unaware control ``-s_{i,i+} + weight * sum_{j != i, i+} s_ij`` (cosine).

    Over the ``2B`` anchors of ``[z1; z2]`` (negatives: the other ``2B - 2`` rows), mean over
    anchors; ``O(B D)`` through ``sum_j s_ij = u_i^T sum_j u_j``.
    """
    check_embeddings("z1", z1, ndim=2)
    check_embeddings("z2", z2, ndim=2)
    check_same_shape("z1", z1, "z2", z2)
    check_positive("weight", weight, allow_zero=True)
    dtype = torch.promote_types(z1.dtype, torch.float32)
    u = l2_normalize(torch.cat([z1, z2], 0).to(dtype), dim=1, eps=1e-12)
    n = z1.size(0)
    partner = torch.cat([u[n:], u[:n]], 0)
    s_pos = (u * partner).sum(1)
    s_all = u @ u.sum(0)
    s_neg = s_all - (u * u).sum(1) - s_pos
    return (-s_pos + weight * s_neg).mean()


def uniformity_loss(z: Tensor, *, t: float = 2.0, block_size: int | None = None) -> Tensor:
    r"""Differentiable uniformity ``log mean_{i != j} exp(-t ||u_i - u_j||^2)``, ``u = z/||z||``.

    Computed with the engine's ``log_partition`` form (negative squared distance, ``tau = 1/t``)
    and one more log-sum-exp over rows, so big ``N`` is processed in row blocks. The float metric
    :func:`contrastkit.core.metrics.uniformity` gives the same value without grad.
    """
    check_embeddings("z", z, ndim=2, finite=False)  # the engine checks the values
    if z.size(0) < 2:
        raise ValueError(f"z: expected at least 2 rows, got shape {tuple(z.shape)}")
    check_positive("t", t)
    u = l2_normalize(z.to(torch.promote_types(z.dtype, torch.float32)), dim=1)
    lse = contrastive_loss(u, None, positives=None, temperature=1.0 / t,
                           similarity="neg_sq_dist", form="log_partition", diagonal="exclude",
                           reduction="none", block_size=block_size)
    n = z.size(0)
    return torch.logsumexp(lse, 0) - math.log(n * (n - 1))


def alignment_loss(z1: Tensor, z2: Tensor, *, alpha: float = 2.0) -> Tensor:
    r"""Differentiable alignment ``mean_i ||u1_i - u2_i||^alpha`` on L2-normalised rows."""
    check_embeddings("z1", z1, ndim=2)
    check_embeddings("z2", z2, ndim=2)
    check_same_shape("z1", z1, "z2", z2)
    check_positive("alpha", alpha)
    dtype = torch.promote_types(z1.dtype, torch.float32)
    d = l2_normalize(z1.to(dtype), dim=1) - l2_normalize(z2.to(dtype), dim=1)
    return d.pow(2).sum(1).clamp_min(1e-30).pow(alpha / 2).mean()


@torch.no_grad()
def tolerance(z: Tensor, labels: Tensor, *, over: str = "same_label") -> float:
    r"""Tolerance: mean cosine similarity of same-label pairs ``i != j`` (evaluation only).

    ``over="same_label"`` (default) averages over the same-label pairs, i.e. the per-class means
    weighted by pair count — the quantity the paper plots (values near 0.6–0.8 on CIFAR).
    ``over="all_pairs"`` is the paper's literal ``E_{x,y}[s(x, y) 1{l(x) = l(y)}]`` over all
    ordered pairs ``x != y`` (smaller by the fraction of same-label pairs). ``O(N D)`` via
    ``sum_{i != j in c} s_ij = ||sum_{i in c} u_i||^2 - n_c``.
    """
    check_embeddings("z", z, ndim=2)
    check_tensor("labels", labels, ndim=1, integer=True)
    check_choice("over", over, ("same_label", "all_pairs"))
    if labels.numel() != z.size(0):
        raise ValueError(f"labels: expected {z.size(0)} labels (one per row of z), got "
                         f"{labels.numel()}")
    if z.size(0) < 2:
        raise ValueError(f"z: expected at least 2 rows, got shape {tuple(z.shape)}")
    u = l2_normalize(z.to(torch.float64), dim=1, eps=1e-12)
    _, inv, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    sums = torch.zeros(counts.numel(), u.size(1), dtype=u.dtype, device=u.device)
    sums.index_add_(0, inv.to(u.device), u)
    pair_sum = float(sums.pow(2).sum() - (u * u).sum())
    n_same = float((counts * (counts - 1)).sum())
    if over == "all_pairs":
        n = z.size(0)
        return pair_sum / (n * (n - 1))
    if n_same == 0:
        raise ValueError("labels: expected at least one label shared by two rows, got all "
                         "distinct labels")
    return pair_sum / n_same


@torch.no_grad()
def negative_weight_stats(anchors: Tensor, candidates: Tensor | None = None, *,
                          positives: Any = "aligned", temperature: float = 0.5,
                          similarity: str = "cosine", block_size: int = 1024) -> dict[str, float]:
    r"""Score-distribution and hardness statistics of a contrastive problem (no grad).

    Similarities are raw (before ``tau``). Negatives: every candidate that is not a positive and
    not the anchor itself. ``neg_entropy`` is the mean over anchors of the entropy of
    ``r_i = softmax_j(s_ij / tau)`` over the negatives, ``effective_negatives`` the mean of
    ``exp(H(r_i))`` (how many negatives receive gradient at this ``tau``).

    Args:
        anchors: ``[N, D]`` floating, finite.
        candidates: ``[M, D]`` floating, finite, same device (``None``: the anchors themselves).
        positives: sparse positives as in :func:`hard_infonce_loss`.
        temperature: ``tau > 0``.
        similarity: ``"cosine"``, ``"dot"`` or ``"neg_sq_dist"``.
        block_size: anchors per block.

    Returns:
        ``{"pos_mean", "pos_std", "neg_mean", "neg_std", "neg_entropy", "effective_negatives"}``;
        a statistic over an empty set (no positive pair, no negative) is NaN.

    Raises:
        ValueError / TypeError: shapes, dtypes, devices, non-finite values, bad positives
            (e.g. ``"aligned"`` with ``candidates=None``), ``temperature`` or ``block_size``.
    """
    check_embeddings("anchors", anchors, ndim=2)
    self_contrast = candidates is None
    if self_contrast:
        b = anchors
    else:
        b = check_embeddings("candidates", candidates, ndim=2)
        if b.size(1) != anchors.size(1):
            raise ValueError(f"candidates: expected feature size {anchors.size(1)} like "
                             f"anchors, got shape {tuple(b.shape)}")
        check_same_device("anchors", anchors, "candidates", b)
    check_positive("temperature", temperature)
    check_choice("similarity", similarity, SIMILARITIES)
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size: expected a positive int, got {block_size!r}")
    N, M = anchors.size(0), b.size(0)
    a, bb = anchors.to(torch.float64), b.to(torch.float64)
    r, c, w = _sparse_positives(positives, N, M, a.device, a.dtype, self_contrast=self_contrast)
    keep = w > 0
    if self_contrast:
        keep &= r != c
    r, c = r[keep], c[keep]
    s_pos = paired_similarity(a[r], bb[c], similarity)
    sim = get_similarity(similarity)
    n_sum = n_sq = n_cnt = 0.0
    ent, eff = [], []
    for i in range(0, N, block_size):
        stop = min(i + block_size, N)
        s = sim(a[i:stop], bb)
        kill = torch.zeros_like(s, dtype=torch.bool)
        ar = torch.arange(stop - i, device=a.device)
        if self_contrast:
            kill[ar, ar + i] = True
        inb = (r >= i) & (r < stop)
        kill[r[inb] - i, c[inb]] = True
        live = ~kill
        n_sum += float(s[live].sum())
        n_sq += float(s[live].pow(2).sum())
        n_cnt += float(live.sum())
        logits = (s / temperature).masked_fill(kill, float("-inf"))
        has = live.any(1)
        if bool(has.any()):
            lg = logits[has]
            logp = torch.log_softmax(lg, dim=1)
            p = logp.exp()
            H = -(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum(1)
            ent.append(H)
            eff.append(H.exp())
    nm = n_sum / max(n_cnt, 1.0)
    nv = max(n_sq / max(n_cnt, 1.0) - nm * nm, 0.0)
    return {"pos_mean": float(s_pos.mean()) if s_pos.numel() else float("nan"),
            "pos_std": float(s_pos.std(unbiased=False)) if s_pos.numel() else float("nan"),
            "neg_mean": nm if n_cnt else float("nan"),
            "neg_std": math.sqrt(nv) if n_cnt else float("nan"),
            "neg_entropy": float(torch.cat(ent).mean()) if ent else float("nan"),
            "effective_negatives": float(torch.cat(eff).mean()) if eff else float("nan")}


class HardInfoNCELoss(nn.Module):
    """Module wrapper of :func:`hard_nt_xent` (two views)."""

    def __init__(self, temperature: float = 0.5, *, top_k: int | None = None,
                 keep_fraction: float | None = None, similarity: str = "cosine") -> None:
        super().__init__()
        check_positive("temperature", temperature)
        self.temperature, self.top_k, self.keep_fraction = temperature, top_k, keep_fraction
        self.similarity = similarity

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return hard_nt_xent(z1, z2, temperature=self.temperature, top_k=self.top_k,
                            keep_fraction=self.keep_fraction, similarity=self.similarity)
