r"""Multi-view contrastive losses: MV-InfoNCE, MV-DHEL and the pairwise (PWE) baseline.

Koromilas et al., "A Principled Framework for Multi-View Contrastive Learning", arXiv 2507.06979;
official code ``models/losses.py`` (pakoromilas/Multi-View-CL). Embeddings are view-major
``z [V, N, D]``: ``z[l, i]`` is instance ``i`` under view ``l`` (``U_il``), ``V >= 2``.

MV-InfoNCE (one term per instance, all views aligned at once):

.. math::

    \mathcal{L} = -\frac{1}{N} \sum_i \log
        \frac{\sum_l \sum_{l' \ne l} e^{s(U_{il}, U_{il'})/\tau}}{D_i}

* ``denominator="all"`` (default; the official code, which produced the published numbers):
  :math:`D_i = \sum_l \sum_{(j, m) \ne (i, l)} e^{s(U_{il}, U_{jm})/\tau}` — every pair but self,
  same-view pairs included;
* ``denominator="cross_view"`` (the paper's equation):
  :math:`D_i = \sum_l \sum_{m \ne l} \sum_j e^{s(U_{il}, U_{jm})/\tau}`.

Both are the engine's row statistics (positive LSE and LSE of each row ``(l, i)``) pooled over the
``V`` rows of an instance by one more log-sum-exp.

MV-DHEL (decoupled: alignment over view pairs, uniformity within each view):

.. math::

    \mathcal{L} = -\frac{1}{N} \sum_i \Big[ \log \sum_{l < l'} e^{s(U_{il}, U_{il'})/\tau}
        - \sum_l \log \sum_{j \ne i} e^{s(U_{il}, U_{jl})/\tau} \Big]

``variant="code"`` (default) is the official code's form above; ``variant="paper"`` is the
paper's equation: ordered view pairs in the numerator (adds the constant ``log 2``) and the inner
sum over all ``j`` (self included). The product over views of the official code is computed as a
sum of log-sum-exps (no overflow). For ``V = 2`` it is the pairwise DHEL loss.

The paper's multi-view baselines (spec "Evaluation protocol"), each term per view ``l`` of an
instance (``V`` terms per instance, averaged), ``Ū_{j,¬l} = (V-1)^{-1} sum_{m != l} U_{jm}``:

* PWE (:func:`pwe_loss`): the mean over view pairs of the symmetric NT-Xent.
* AVG (:func:`avg_loss`): each view against the mean of the instance's other views, InfoNCE over
  the batch's means, ``-log e^{cos(U_il, Ū_i¬l)/τ} / sum_j e^{cos(U_il, Ū_j¬l)/τ}``.
* PVC (:func:`pvc_loss`, Shidani et al., "Poly-View Contrastive Learning", ICLR 2024, the
  one-vs-rest critics): ``variant="arithmetic"`` aggregates the pairwise critics by a log-mean-exp,
  ``a_ij = log (V-1)^{-1} sum_{m != l} e^{s(U_il, U_jm)/τ}``, which gives
  ``-log sum_{m != l} e^{s(U_il, U_im)/τ} / sum_j sum_{m != l} e^{s(U_il, U_jm)/τ}``;
  ``variant="geometric"`` by their mean, ``g_ij = s(U_il, Ū_j¬l)/τ`` (a dot product with the
  unnormalised mean of the other views), ``-log e^{g_ii} / sum_j e^{g_ij}``.

The official ``models/losses.py`` of the multi-view paper has all four baselines; the spec does not
give their formulas, so these follow the names' published definitions (AVG: "each view against the
mean of the others"; PVC: the poly-view paper's arithmetic and geometric critics).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor, nn

from ..checks import check_choice, check_embeddings, check_positive, scalar_temperature
from ..distributed import all_gather_with_grad, get_rank, is_distributed
from ..engine import contrastive_loss, row_statistics
from ..pairs import Pairs, SameLabel
from ..similarity import SIMILARITIES, l2_normalize, paired_similarity
from .infonce import nt_xent

__all__ = ["mv_infonce_loss", "mv_dhel_loss", "pwe_loss", "avg_loss", "pvc_loss",
           "MVInfoNCELoss", "MVDHELLoss"]


def _check_views(z: Any) -> Tensor:
    check_embeddings("z", z, ndim=3, finite=False)  # the engine checks
    if z.size(0) < 2:
        raise ValueError(f"z: expected [V, N, D] with V >= 2 views, got shape {tuple(z.shape)}")
    if z.size(1) < 2:
        raise ValueError(f"z: expected [V, N, D] with N >= 2 instances, got shape "
                         f"{tuple(z.shape)}")
    return z


def _reduce(per_row: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return per_row
    return per_row.sum() if reduction == "sum" else per_row.mean()


def _other_views_of_same_instance(V: int, N: int, device: torch.device) -> Pairs:
    """Pairs ``(l N + i, m N + i)`` for ``l != m``: every other view of the same instance, as
    rows of the flattened view-major ``[V N, D]``."""
    ar = torch.arange(N, device=device)
    rows, cols = [], []
    for l, m in itertools.permutations(range(V), 2):
        rows.append(l * N + ar)
        cols.append(m * N + ar)
    return Pairs(torch.stack([torch.cat(rows), torch.cat(cols)]))


def _gather_views(z: Tensor) -> tuple[Tensor, Tensor]:
    """All processes' ``[V, W n, D]`` (view-major, rank order inside each view) and the global
    instance index ``[n]`` of this process's rows (gradient-carrying gather)."""
    n = z.size(1)
    full = all_gather_with_grad(z.transpose(0, 1).contiguous()).transpose(0, 1)
    return full, get_rank() * n + torch.arange(n, device=z.device)


def mv_infonce_loss(z: Tensor, *, temperature: float | Tensor = 0.5, denominator: str = "all",
                    similarity: str = "cosine", reduction: str = "mean",
                    block_size: int | None = None, gather: bool = False) -> Tensor:
    r"""MV-InfoNCE over ``z [V, N, D]`` (see the module docstring).

    Args:
        z: view-major embeddings ``[V, N, D]``.
        temperature: ``tau`` (0.5 in the released CIFAR/ImageNet-100 configs; the loss class
            default in the official code is 0.2).
        denominator: ``"all"`` (official code, default) or ``"cross_view"`` (paper's equation).
        similarity: engine similarity (``"cosine"``).
        reduction: ``"mean"`` / ``"sum"`` over instances, or ``"none"`` (``[N]``).
        block_size: engine row block over the ``VN`` rows.
        gather: in a distributed run, contrast this process's instances with every process's
            (gradient-carrying gather, view-major order kept); each process averages over its own
            instances, so with DDP this equals one process on the concatenated batch.
    """
    _check_views(z)
    check_choice("denominator", denominator, ("all", "cross_view"))
    if gather and is_distributed():
        return _gathered_mv_infonce(z, temperature=temperature, denominator=denominator,
                                    similarity=similarity, reduction=reduction,
                                    block_size=block_size)
    check_choice("reduction", reduction, ("mean", "sum", "none"))
    V, N, D = z.shape
    x = z.reshape(V * N, D)
    positives = _other_views_of_same_instance(V, N, z.device)
    exclude = None
    if denominator == "cross_view":
        view = torch.arange(V, device=z.device).repeat_interleave(N)
        exclude = SameLabel(view)
    stats = row_statistics(x, None, positives=positives, temperature=temperature,
                           similarity=similarity, exclude=exclude, diagonal="exclude",
                           need_pos_lse=True, block_size=block_size)
    num = torch.logsumexp(stats.pos_lse.reshape(V, N), 0)
    den = torch.logsumexp(stats.lse.reshape(V, N), 0)
    return _reduce(den - num, reduction)


def _gathered_mv_infonce(z: Tensor, *, temperature: Any, denominator: str, similarity: str,
                         reduction: str, block_size: int | None) -> Tensor:
    V, n, D = z.shape
    full, g = _gather_views(z)
    N = full.size(1)
    ar = torch.arange(n, device=z.device)
    rows, cols = [], []
    for l, m in itertools.permutations(range(V), 2):
        rows.append(l * n + ar)
        cols.append(m * N + g)
    positives = Pairs(torch.stack([torch.cat(rows), torch.cat(cols)]))
    self_rows = torch.cat([l * n + ar for l in range(V)])
    self_cols = torch.cat([l * N + g for l in range(V)])
    exclude: Any = Pairs(torch.stack([self_rows, self_cols]))
    if denominator == "cross_view":
        exclude = SameLabel(torch.arange(V, device=z.device).repeat_interleave(n),
                            torch.arange(V, device=z.device).repeat_interleave(N))
    stats = row_statistics(z.reshape(V * n, D), full.reshape(V * N, D), positives=positives,
                           temperature=temperature, similarity=similarity, exclude=exclude,
                           need_pos_lse=True, block_size=block_size)
    num = torch.logsumexp(stats.pos_lse.reshape(V, n), 0)
    den = torch.logsumexp(stats.lse.reshape(V, n), 0)
    return _reduce(den - num, reduction)


def mv_dhel_loss(z: Tensor, *, temperature: float | Tensor = 0.5, variant: str = "code",
                 similarity: str = "cosine", reduction: str = "mean",
                 block_size: int | None = None, gather: bool = False) -> Tensor:
    r"""MV-DHEL over ``z [V, N, D]``: ``mean_i [sum_l LSE_{j != i} s_ij^{(l)} - LSE_{l<l'} s^+]``.

    Args:
        z: view-major embeddings ``[V, N, D]``.
        temperature: ``tau`` (0.5 in the released configs).
        variant: ``"code"`` (default: unordered view pairs, ``j != i``) or ``"paper"`` (ordered
            pairs, self included in the within-view sums).
        similarity, reduction, block_size, gather: as in :func:`mv_infonce_loss`.
    """
    _check_views(z)
    check_choice("variant", variant, ("code", "paper"))
    check_choice("reduction", reduction, ("mean", "sum", "none"))
    check_choice("similarity", similarity, SIMILARITIES)
    V, N, D = z.shape
    dtype = torch.promote_types(z.dtype, torch.float32)
    zz = z.to(dtype)
    tau = scalar_temperature(temperature, dtype, z.device)
    diagonal = "exclude" if variant == "code" else "negative"
    if gather and is_distributed():
        full, g = _gather_views(zz)
        ar = torch.arange(N, device=z.device)
        excl = Pairs(torch.stack([ar, g])) if variant == "code" else None
        uniform = sum(row_statistics(zz[l], full[l], positives=None, temperature=tau,
                                     similarity=similarity, exclude=excl,
                                     block_size=block_size).lse for l in range(V))
    else:
        uniform = sum(row_statistics(zz[l], None, positives=None, temperature=tau,
                                     similarity=similarity, diagonal=diagonal,
                                     block_size=block_size).lse for l in range(V))
    pos = torch.stack([paired_similarity(zz[l], zz[m], similarity)
                       for l, m in itertools.combinations(range(V), 2)]) / tau    # [P, N]
    align = torch.logsumexp(pos, 0)
    if variant == "paper":
        align = align + torch.log(torch.tensor(2.0, dtype=dtype, device=z.device))
    return _reduce(uniform - align, reduction)


def pwe_loss(z: Tensor, *, temperature: float | Tensor = 0.5, similarity: str = "cosine"
             ) -> Tensor:
    """PWE baseline: mean over the ``V(V-1)/2`` view pairs of the symmetric NT-Xent loss."""
    _check_views(z)
    V = z.size(0)
    terms = [nt_xent(z[l], z[m], temperature=temperature, similarity=similarity)
             for l, m in itertools.combinations(range(V), 2)]
    return torch.stack(terms).mean()


def _against_other_view_means(u: Tensor, temperature: float | Tensor, similarity: str,
                              block_size: int | None) -> Tensor:
    """``[N]``: per instance, the mean over views ``l`` of the InfoNCE of ``U_il`` against the
    batch's ``Ū_{j,¬l} = (V-1)^{-1} sum_{m != l} U_jm`` (positive ``j = i``)."""
    means = (u.sum(0, keepdim=True) - u) / (u.size(0) - 1)                      # [V, N, D]
    return torch.stack([contrastive_loss(u[l], means[l], positives="aligned",
                                         temperature=temperature, similarity=similarity,
                                         reduction="none", block_size=block_size)
                        for l in range(u.size(0))]).mean(0)


def avg_loss(z: Tensor, *, temperature: float | Tensor = 0.5, reduction: str = "mean",
             block_size: int | None = None) -> Tensor:
    r"""AVG baseline: each view against the mean of the other views (cosine InfoNCE).

    ``mean_{i,l} [-cos(U_il, Ū_i¬l)/τ + log sum_j e^{cos(U_il, Ū_j¬l)/τ}]`` with
    ``Ū_j¬l = (V-1)^{-1} sum_{m != l} U_jm`` (see the module docstring).

    Args:
        z: view-major embeddings ``[V, N, D]`` (normalised inside: cosine critic).
        temperature: ``tau``.
        reduction: ``"mean"`` / ``"sum"`` over instances (of the per-instance mean over views),
            or ``"none"`` (``[N]``).
        block_size: engine row block.
    """
    _check_views(z)
    check_choice("reduction", reduction, ("mean", "sum", "none"))
    u = l2_normalize(z, dim=-1)
    return _reduce(_against_other_view_means(u, temperature, "cosine", block_size), reduction)


def pvc_loss(z: Tensor, *, temperature: float | Tensor = 0.5, variant: str = "arithmetic",
             reduction: str = "mean", block_size: int | None = None) -> Tensor:
    r"""PVC baseline (poly-view contrastive, one-vs-rest critics), arithmetic or geometric.

    ``"arithmetic"``: ``mean_{i,l} [LSE_{j, m != l} s_{il,jm} - LSE_{m != l} s_{il,im}]``
    (``s = cos/τ``): the engine's multi-positive InfoNCE of each row over the other views' rows.
    ``"geometric"``: ``mean_{i,l} [-g_ii + LSE_j g_ij]``, ``g_ij = U_il · Ū_j¬l / τ`` with unit
    ``U`` and the unnormalised mean ``Ū`` (see the module docstring).

    Args:
        z: view-major embeddings ``[V, N, D]`` (normalised inside).
        temperature: ``tau``.
        variant: ``"arithmetic"`` (default) or ``"geometric"``.
        reduction, block_size: as in :func:`avg_loss`.
    """
    _check_views(z)
    check_choice("variant", variant, ("arithmetic", "geometric"))
    check_choice("reduction", reduction, ("mean", "sum", "none"))
    V, N, D = z.shape
    u = l2_normalize(z, dim=-1)
    if variant == "geometric":
        return _reduce(_against_other_view_means(u, temperature, "dot", block_size), reduction)
    x = u.reshape(V * N, D)
    view = torch.arange(V, device=z.device).repeat_interleave(N)
    stats = row_statistics(x, None, positives=_other_views_of_same_instance(V, N, z.device),
                           temperature=temperature, similarity="dot", exclude=SameLabel(view),
                           diagonal="exclude", need_pos_lse=True, block_size=block_size)
    return _reduce((stats.lse - stats.pos_lse).reshape(V, N).mean(0), reduction)


class MVInfoNCELoss(nn.Module):
    """Module wrapper of :func:`mv_infonce_loss`."""

    def __init__(self, temperature: float = 0.5, denominator: str = "all", *,
                 gather: bool = False) -> None:
        super().__init__()
        check_positive("temperature", temperature)
        check_choice("denominator", denominator, ("all", "cross_view"))
        self.temperature, self.denominator, self.gather = temperature, denominator, gather

    def forward(self, z: Tensor) -> Tensor:
        return mv_infonce_loss(z, temperature=self.temperature, denominator=self.denominator,
                               gather=self.gather)


class MVDHELLoss(nn.Module):
    """Module wrapper of :func:`mv_dhel_loss`."""

    def __init__(self, temperature: float = 0.5, variant: str = "code", *,
                 gather: bool = False) -> None:
        super().__init__()
        check_positive("temperature", temperature)
        check_choice("variant", variant, ("code", "paper"))
        self.temperature, self.variant, self.gather = temperature, variant, gather

    def forward(self, z: Tensor) -> Tensor:
        return mv_dhel_loss(z, temperature=self.temperature, variant=self.variant,
                            gather=self.gather)
