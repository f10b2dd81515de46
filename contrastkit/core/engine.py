r"""The loss engine: exact contrastive losses computed in row blocks.

Every contrastive term compares anchors ``a: [N, D]`` with candidates ``b: [M, D]`` (``b`` may be
``a`` itself). For anchor ``i`` the engine needs four row statistics over the candidates ``j``:

.. math::

    \mathrm{LSE}_i = \log \sum_{j \in \mathcal{D}_i} w_{ij} e^{s_{ij}}, \qquad
    P_i = \sum_j q_{ij} s_{ij}, \qquad Q_i = \sum_j q_{ij}, \qquad
    \mathrm{LSE}^+_i = \log \sum_j q_{ij} e^{s_{ij}}

with logits ``s_ij = sim(a_i, b_j) / tau``, positive coefficients ``q_ij`` (from a pair selector),
denominator weights ``w_ij`` (default 1) and the denominator set ``D_i`` (every candidate that is not
excluded; positives included unless the loss is decoupled). Every loss form is a function of these:

=================  ===========================================================================
form               per-anchor loss
=================  ===========================================================================
``infonce``        :math:`\mathrm{LSE}_i - P_i / Q_i` (InfoNCE; SupCon's mean over positives)
``decoupled``      same, with positives removed from the denominator (DCL)
``pair_mean``      :math:`\sum_i (Q_i \mathrm{LSE}_i - P_i) / \sum_i Q_i` (mean over positive pairs)
``soft_targets``   :math:`Q_i \mathrm{LSE}_i - P_i = -\sum_j q_{ij} \log p_{ij}` (SwAV)
``positive_mass``  :math:`\mathrm{LSE}_i - \mathrm{LSE}^+_i` (SCGC*)
``log_partition``  :math:`\mathrm{LSE}_i` (uniformity, MV-DHEL, PamC's meta-nodes)
=================  ===========================================================================

**Execution.** The statistics are computed for one row block ``[B, M]`` at a time; the backward
pass (a custom :class:`torch.autograd.Function`) recomputes each tile and back-propagates the
incoming gradients of that block's statistics, so memory is ``O(B x M)`` and nothing of size
``N x M`` is kept. ``block_size=None`` computes densely (plain autograd) when ``N x M`` is small.
Empty rows (no positive, or an empty denominator) contribute 0 and leave the mean.

**Self-comparison.** When the anchors are compared with themselves (``candidates=None``: NT-Xent,
GRACE, SimCLR) through cosine or dot similarity at a fixed scalar temperature with sparse pair
selectors, the logits ``s = n n^T / tau`` are symmetric: the engine then walks the upper triangle
of square tiles (:func:`symmetric_tile_side`: no more entries than a ``[B, N]`` row block),
and each off-diagonal tile serves its rows and, transposed, its columns
(forward statistics merged with ``logaddexp``; backward ``H = G_IJ + G_JI^T`` feeds both blocks).
That is half the matrix products of the row-block path, with the same result
(``benchmarks/symmetric_loss.py``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .checks import (check_choice, check_finite, check_positive, check_same_device,
                     check_temperature_range, check_tensor)
from .pairs import PairSelector, as_selector
from .similarity import SIMILARITIES, get_similarity, l2_normalize
from .weights import NegativeWeight, as_weight

BACKENDS = ("auto", "blockwise", "fused")
FORMS = ("infonce", "supcon", "decoupled", "pair_mean", "soft_targets", "positive_mass",
         "log_partition")
REDUCTIONS = ("mean", "sum", "none")

#: ``N x M`` at or below which ``block_size=None`` computes densely
DENSE_LIMIT = 1 << 22
#: target number of tile entries per row block when blocking
TILE_ENTRIES = 1 << 22
#: smallest automatic tile side of the symmetric self-comparison path (square tiles)
SYMMETRIC_MIN_SIDE = 768

_FUSED_BROKEN = False  # set when the fused kernel failed once under backend="auto"
_NEG = -1e30  # stands for log 0 inside masked log-sum-exps (finite: no NaN gradients)


def symmetric_tile_side(n: int, block: int) -> int:
    """Side of the symmetric path's square tiles for ``n`` rows and a row block of ``block``.

    At least ``block`` and, up to :data:`SYMMETRIC_MIN_SIDE`, as large as a tile of no more
    entries than one ``[block, n]`` row block (``side^2 <= block * n``): a small ``block_size``
    then bounds memory as it does on the row-block path without turning the upper triangle into
    ``(n / block)^2 / 2`` tiny tiles whose Python overhead dominates (20,000 rows at
    ``block_size=24``: 350,000 tiles).
    """
    return min(n, max(block, min(SYMMETRIC_MIN_SIDE, math.isqrt(block * n))))


def _view(buf: Tensor, shape: Sequence[int]) -> Tensor:
    """A contiguous ``shape`` view of the front of a reusable buffer."""
    return buf.view(-1)[:shape[0] * shape[1]].view(shape[0], shape[1])


@dataclass
class RowStats:
    """Per-anchor statistics ``[N]`` (see the module docstring)."""

    lse: Tensor
    pos_sum: Tensor
    pos_count: Tensor
    pos_lse: Tensor
    den_count: Tensor

    @classmethod
    def from_tensor(cls, t: Tensor) -> "RowStats":
        return cls(*t.unbind(-1))


class _Plan:
    """Everything the tile computation needs except the tensors that carry gradients."""

    def __init__(self, *, similarity: str, self_contrast: bool, positives: PairSelector | None,
                 exclude: PairSelector | None, diagonal: Any, weight: NegativeWeight | None,
                 normalize_weights: bool, positives_in_denominator: bool, need_pos_lse: bool,
                 num_candidates: int) -> None:
        self.sim = get_similarity(similarity)
        self.similarity = similarity
        self.self_contrast = self_contrast
        self.positives = positives
        self.exclude = exclude
        self.diagonal = diagonal
        self.weight = weight
        self.normalize_weights = normalize_weights
        self.positives_in_denominator = positives_in_denominator
        self.need_pos_lse = need_pos_lse
        self.num_candidates = num_candidates
        self.symmetric_side: int | None = None  # tile side of the symmetric path when it runs

    @property
    def fast(self) -> bool:
        """Whether the sparse fast path applies (no weights, sparse selectors)."""
        def sparse(sel: PairSelector | None) -> bool:
            return sel is None or type(sel).sparse_block is not PairSelector.sparse_block
        return self.weight is None and sparse(self.positives) and sparse(self.exclude)

    def logits(self, a: Tensor, b: Tensor, tau: Tensor) -> Tensor:
        """The logit tile ``sim(a, b) / tau``, ``[B, M]``.

        For cosine and dot similarity the temperature is folded into the (small) factors, so that
        no extra pass over the tile is needed; the tile is then the direct output of a matmul.
        """
        if self.similarity == "cosine":
            a = l2_normalize(a)
            b = l2_normalize(b)
        if self.similarity in ("cosine", "dot"):
            if tau.dim() == 1:
                return a @ (b / tau[:, None]).transpose(-1, -2)
            return (a / tau) @ b.transpose(-1, -2)
        s = self.sim(a, b)
        return s / (tau[None, :] if tau.dim() == 1 else tau)

    @torch.no_grad()
    def mask_tile(self, s: Tensor, start: int, stop: int, col_start: int = 0
                  ) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor] | None,
                             tuple[Tensor, Tensor] | None]:
        """Fast path: apply diagonal, exclusions and positives to the logit tile ``s`` in place.

        ``s`` holds anchors ``start:stop`` against candidates ``col_start:col_start + W``
        (``W = s.size(1)``; the whole row when ``col_start = 0`` and ``W = M``). Masked entries
        become ``_NEG``. Returns ``(P, pairs, diag)``: the positive sums ``P [B]`` over the tile's
        columns (taken before a decoupled loss removes the positives from the denominator), the
        kept positive pairs ``(local_rows, local_cols, weights)`` and, for a fixed diagonal logit,
        the tile's diagonal entries ``(local_rows, local_cols)`` (whose logit is constant).
        """
        B, W = s.shape
        ar = torch.arange(B, device=s.device)
        diag = None
        if self.self_contrast:
            rows, cols = ar, ar + (start - col_start)
            if col_start != 0 or W != self.num_candidates:
                inside = (cols >= 0) & (cols < W)
                rows, cols = rows[inside], cols[inside]
            if self.diagonal == "exclude":
                s[rows, cols] = _NEG
            elif not isinstance(self.diagonal, str):
                s[rows, cols] = float(self.diagonal)
                diag = (rows, cols)
        if self.exclude is not None:
            er, ec, ew = self._tile_pairs(self.exclude, start, stop, col_start, s)
            s[er, ec] = torch.where(ew > 0, torch.full_like(ew, _NEG), s[er, ec])
        P = torch.zeros(B, device=s.device, dtype=s.dtype)
        pairs = None
        if self.positives is not None:
            r, c, w = self._tile_pairs(self.positives, start, stop, col_start, s)
            ok = (s[r, c] > _NEG / 2) & (w > 0)
            r, c, w = r[ok], c[ok], w[ok]
            P.index_add_(0, r, w * s[r, c])
            pairs = (r, c, w)
            if not self.positives_in_denominator:
                s[r, c] = _NEG
        return P, pairs, diag

    def _tile_pairs(self, selector: PairSelector, start: int, stop: int, col_start: int,
                    s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """A sparse selector's pairs of rows ``start:stop`` that fall in the tile's columns."""
        r, c, w = selector.sparse_block(start, stop, self.num_candidates, device=s.device,
                                        dtype=s.dtype)
        if col_start == 0 and s.size(1) == self.num_candidates:
            return r, c, w
        inside = (c >= col_start) & (c < col_start + s.size(1))
        return r[inside], c[inside] - col_start, w[inside]

    @property
    def factored(self) -> bool:
        """Whether logits are one matmul of per-row factors (cosine and dot similarity)."""
        return self.similarity in ("cosine", "dot")

    def anchor_factor(self, a: Tensor, tau: Tensor) -> Tensor:
        """Anchor rows ``a'`` with ``s = a' b'^T`` (normalised, scalar ``1/tau`` folded in)."""
        if self.similarity == "cosine":
            a = l2_normalize(a)
        return a if tau.dim() == 1 else a / tau

    def candidate_factor(self, b: Tensor, tau: Tensor) -> Tensor:
        """Candidate rows ``b'`` with ``s = a' b'^T`` (normalised, per-candidate ``1/tau``)."""
        if self.similarity == "cosine":
            b = l2_normalize(b)
        return b / tau[:, None] if tau.dim() == 1 else b

    @torch.no_grad()
    def tile_stats(self, s: Tensor, start: int, stop: int, mask_buf: Tensor | None = None,
                   col_start: int = 0) -> Tensor:
        """Fast path statistics ``[B, 5]`` from the logit tile ``s`` (modified in place) over the
        tile's columns (see :meth:`mask_tile`; with ``need_pos_lse``, a row without a positive
        in the tile gets ``LSE+ = log 0``, so tiles merge with ``logaddexp``).

        ``mask_buf`` is an optional reusable boolean buffer of at least ``s``'s shape."""
        P, pairs, _ = self.mask_tile(s, start, stop, col_start)
        Q = torch.zeros_like(P)
        pos_lse = torch.zeros_like(P)
        if pairs is not None:
            Q.index_add_(0, pairs[0], pairs[2])
            if self.need_pos_lse:
                r, c, w = pairs
                pos_lse = segment_logsumexp(s[r, c] + w.log(), r, s.size(0))
        kept = torch.gt(s, _NEG / 2, out=None if mask_buf is None else _view(mask_buf, s.shape))
        count = kept.sum(1).to(s.dtype)
        m = s.amax(1, keepdim=True)
        lse = s.sub_(m).exp_().sum(1).log_().add_(m.squeeze(1))
        return torch.stack([lse, P, Q, pos_lse, count], dim=1)

    @torch.no_grad()
    def tile_grad(self, s: Tensor, start: int, stop: int, stats: Tensor, grad: Tensor,
                  mask_buf: Tensor | None = None, col_start: int = 0) -> Tensor:
        """``dL/ds`` for the logit tile ``s`` (overwritten in place and returned).

        ``dL/ds_ij = g_lse_i softmax_ij + g_P_i q_ij + g_LSE+_i softmax+_ij`` (the last over the
        positive pairs only), zero at masked entries (also in an empty row, whose LSE is finite)
        and at a fixed diagonal logit.
        """
        _, pairs, diag = self.mask_tile(s, start, stop, col_start)
        pos_logits = None
        if pairs is not None and self.need_pos_lse:
            pos_logits = s[pairs[0], pairs[1]] + pairs[2].log()
        masked = torch.le(s, _NEG / 2, out=None if mask_buf is None else _view(mask_buf, s.shape))
        s.sub_(stats[:, 0:1]).exp_().mul_(grad[:, 0:1])
        s.masked_fill_(masked, 0.0)
        if pairs is not None:
            r, c, w = pairs
            g_pos = grad[r, 1] * w
            if pos_logits is not None:
                g_pos = g_pos + grad[r, 3] * (pos_logits - stats[r, 3]).exp()
            s.index_put_((r, c), g_pos, accumulate=True)
        if diag is not None:
            s[diag] = 0
        return s

    @torch.no_grad()
    def fast_forward(self, a: Tensor, b: Tensor, tau: Tensor, block_size: int) -> Tensor:
        """Fast path statistics ``[N, 5]`` in row blocks; one reused tile buffer when factored."""
        N = a.size(0)
        out = []
        if self.factored:
            bp_t = self.candidate_factor(b, tau).t()
            buf = a.new_empty(min(block_size, N), bp_t.size(1))
            mask_buf = torch.empty(buf.shape, dtype=torch.bool, device=a.device)
            for i in range(0, N, block_size):
                stop = min(i + block_size, N)
                s = torch.mm(self.anchor_factor(a[i:stop], tau), bp_t, out=buf[:stop - i])
                out.append(self.tile_stats(s, i, stop, mask_buf))
        else:
            for i in range(0, N, block_size):
                stop = min(i + block_size, N)
                out.append(self.tile_stats(self.logits(a[i:stop], b, tau), i, stop))
        return torch.cat(out, 0)

    def fast_backward(self, a: Tensor, b: Tensor, tau: Tensor, stats: Tensor, grad: Tensor,
                      need: Sequence[bool], block_size: int) -> list[Tensor | None]:
        """Fast path gradients ``[d/da, d/db, d/dtau]``: analytic ``dL/ds`` per recomputed tile.

        Factored similarities back-propagate the tile by hand (``dL/da' = G b'``,
        ``dL/db' = G^T a'``) and use autograd only for the cheap per-row factors; the others
        back-propagate each tile through :meth:`logits` with autograd.
        """
        N = a.size(0)
        grads: list[Tensor | None] = [None, None, None]
        with torch.enable_grad():
            b_d = b.detach().requires_grad_(need[1])
            tau_d = tau.detach().requires_grad_(need[2])
            bp = self.candidate_factor(b_d, tau_d) if self.factored else None
        bp_det = bp.detach() if bp is not None else None
        grad_bp = (torch.zeros_like(bp_det) if bp is not None and bp.requires_grad else None)
        buf = a.new_empty(min(block_size, N), b.size(0)) if self.factored else None
        mask_buf = torch.empty((min(block_size, N), b.size(0)), dtype=torch.bool, device=a.device)
        for i in range(0, N, block_size):
            stop = min(i + block_size, N)
            g = grad[i:stop]
            if not bool(g.any()):
                continue
            with torch.enable_grad():
                a_blk = a[i:stop].detach().requires_grad_(need[0])
                if self.factored:
                    ap = self.anchor_factor(a_blk, tau_d)
                    s = torch.mm(ap.detach(), bp_det.t(), out=buf[:stop - i])
                else:
                    s = self.logits(a_blk, b_d, tau_d)
            t = self.tile_grad(s.detach(), i, stop, stats[i:stop], g, mask_buf)
            if self.factored:
                if grad_bp is not None:
                    grad_bp.addmm_(t.t(), ap.detach())
                if ap.requires_grad:
                    _accumulate(grads, _grads_of(ap, t @ bp_det, [a_blk, tau_d], need[::2], (0, 2)),
                                a, i, stop)
            else:
                _accumulate(grads, _grads_of(s, t, [a_blk, b_d, tau_d], need, (0, 1, 2)),
                            a, i, stop)
        if grad_bp is not None:
            _accumulate(grads, _grads_of(bp, grad_bp, [b_d, tau_d], need[1:], (1, 2)), a, 0, N)
        return grads

    def symmetric(self, tau: Tensor) -> bool:
        """Whether :meth:`symmetric_forward` applies: anchors compared with themselves through
        per-row factors (cosine or dot) at a fixed scalar temperature, sparse selectors."""
        return (self.fast and self.factored and self.self_contrast and tau.dim() == 0
                and not tau.requires_grad)

    @staticmethod
    def symmetric_blocks(n: int, side: int) -> list[tuple[int, int, int, int]]:
        """Tile pairs ``(i0, i1, j0, j1)`` of the upper block triangle (``j0 >= i0``)."""
        cuts = [(i, min(i + side, n)) for i in range(0, n, side)]
        return [(i0, i1, j0, j1) for k, (i0, i1) in enumerate(cuts) for j0, j1 in cuts[k:]]

    @torch.no_grad()
    def symmetric_forward(self, a: Tensor, tau: Tensor, side: int) -> Tensor:
        r"""Fast-path statistics ``[N, 5]`` of a self-comparison from the upper block triangle.

        With ``s = n n^T / tau`` symmetric (``n`` the normalised or raw rows), tile ``(I, J)``
        and its transpose serve the statistics of rows ``I`` and of rows ``J``: half the matmuls
        of the row-block path. Tiles are ``side x side``; each row's log-sum-exps are merged over
        its tiles with ``logaddexp``.
        """
        N = a.size(0)
        n = self.candidate_factor(a, tau)
        n_a = n / tau
        lse = a.new_full((N,), _NEG)
        pos_lse = a.new_full((N,), _NEG)
        sums = a.new_zeros(N, 3)  # P, Q, count
        buf, t_buf = a.new_empty(side * side), a.new_empty(side * side)
        mask_buf = torch.empty(side * side, dtype=torch.bool, device=a.device)

        def merge(t: Tensor, r0: int, r1: int) -> None:
            torch.logaddexp(lse[r0:r1], t[:, 0], out=lse[r0:r1])
            if self.need_pos_lse:
                torch.logaddexp(pos_lse[r0:r1], t[:, 3], out=pos_lse[r0:r1])
            sums[r0:r1] += t[:, [1, 2, 4]]

        for i0, i1, j0, j1 in self.symmetric_blocks(N, side):
            s = torch.mm(n_a[i0:i1], n[j0:j1].t(), out=_view(buf, (i1 - i0, j1 - j0)))
            s_t = _view(t_buf, (j1 - j0, i1 - i0)).copy_(s.t()) if j0 != i0 else None
            merge(self.tile_stats(s, i0, i1, mask_buf, col_start=j0), i0, i1)
            if s_t is not None:
                merge(self.tile_stats(s_t, j0, j1, mask_buf, col_start=i0), j0, j1)
        if not self.need_pos_lse:
            pos_lse.zero_()
        return torch.stack([lse, sums[:, 0], sums[:, 1], pos_lse, sums[:, 2]], dim=1)

    def symmetric_backward(self, a: Tensor, tau: Tensor, stats: Tensor, grad: Tensor,
                           side: int) -> Tensor:
        r"""``dL/da`` for :meth:`symmetric_forward` (``a`` is both anchors and candidates).

        With ``G = dL/ds`` (rows' own statistics) and ``s = n n^T / tau``,
        ``dL/dn = (G + G^T) n / tau``; tile pair ``(I, J)`` gives ``H = G_IJ + G_JI^T`` once and
        adds ``H n_J / tau`` to rows ``I`` and ``H^T n_I / tau`` to rows ``J``.
        """
        N = a.size(0)
        with torch.enable_grad():
            a_d = a.detach().requires_grad_(True)
            n = self.candidate_factor(a_d, tau)
        n_det = n.detach()
        n_a = n_det / tau
        scale = 1.0 / float(tau)
        grad_n = torch.zeros_like(n_det)
        live_rows = grad.ne(0).any(1)
        live = {i: bool(live_rows[i:i + side].any()) for i in range(0, N, side)}  # per block
        buf, t_buf = a.new_empty(side * side), a.new_empty(side * side)
        mask_buf = torch.empty(side * side, dtype=torch.bool, device=a.device)
        for i0, i1, j0, j1 in self.symmetric_blocks(N, side):
            gi, gj = live[i0], live[j0]
            if not (gi or gj):
                continue
            with torch.no_grad():
                s = torch.mm(n_a[i0:i1], n_det[j0:j1].t(), out=_view(buf, (i1 - i0, j1 - j0)))
                if j0 == i0:
                    t = self.tile_grad(s, i0, i1, stats[i0:i1], grad[i0:i1], mask_buf, i0)
                    t = _view(t_buf, t.shape).copy_(t.t()).add_(t)
                    grad_n[i0:i1].addmm_(t, n_det[i0:i1], alpha=scale)
                    continue
                s_t = (_view(t_buf, (j1 - j0, i1 - i0)).copy_(s.t()) if gj
                       else None)  # before s is overwritten
                h = (self.tile_grad(s, i0, i1, stats[i0:i1], grad[i0:i1], mask_buf, j0)
                     if gi else s.zero_())
                if s_t is not None:  # rows J against columns I, transposed into the (I, J) tile
                    h.add_(self.tile_grad(s_t, j0, j1, stats[j0:j1], grad[j0:j1], mask_buf,
                                          i0).t())
                grad_n[i0:i1].addmm_(h, n_det[j0:j1], alpha=scale)
                grad_n[j0:j1].addmm_(h.t(), n_det[i0:i1], alpha=scale)
        return torch.autograd.grad(n, a_d, grad_n)[0]

    def block_stats(self, a: Tensor, b: Tensor, tau: Tensor, start: int, stop: int) -> Tensor:
        """Statistics ``[stop - start, 5]`` for anchors ``a = anchors[start:stop]``."""
        M = self.num_candidates
        dev, dt = a.device, a.dtype
        s = self.logits(a, b, tau)
        keep = torch.ones_like(s, dtype=torch.bool)
        if self.self_contrast:
            diag = torch.zeros(s.shape[-2:], dtype=torch.bool, device=dev)
            r = torch.arange(stop - start, device=dev)
            diag[r, r + start] = True
            if self.diagonal == "exclude":
                keep &= ~diag
            elif not isinstance(self.diagonal, str):  # a fixed logit
                s = torch.where(diag, torch.full_like(s, float(self.diagonal)), s)
        if self.exclude is not None:
            keep &= self.exclude.block(start, stop, M, device=dev, dtype=dt) == 0
        if self.positives is not None:
            q = self.positives.block(start, stop, M, device=dev, dtype=dt) * keep
        else:
            q = torch.zeros_like(s)
        den = keep if self.positives_in_denominator else keep & (q == 0)
        if self.weight is not None:
            w = self.weight.block(s, start, stop)
            den = den & (w > 0)
            log_w = torch.where(den, torch.log(torch.where(den, w, torch.ones_like(w))),
                                torch.zeros_like(w))
            lse = torch.logsumexp(torch.where(den, s + log_w, torch.full_like(s, _NEG)), dim=-1)
            if self.normalize_weights:
                lse = lse - torch.logsumexp(torch.where(den, log_w, torch.full_like(s, _NEG)),
                                            dim=-1)
        else:
            lse = torch.logsumexp(torch.where(den, s, torch.full_like(s, _NEG)), dim=-1)
        pos = q > 0
        pos_sum = (torch.where(pos, s, torch.zeros_like(s)) * q).sum(-1)
        pos_count = q.sum(-1)
        if self.need_pos_lse:
            log_q = torch.log(torch.where(pos, q, torch.ones_like(q)))
            pos_lse = torch.logsumexp(torch.where(pos, s + log_q, torch.full_like(s, _NEG)),
                                      dim=-1)
        else:
            pos_lse = torch.zeros_like(lse)
        return torch.stack([lse, pos_sum, pos_count, pos_lse, den.sum(-1).to(dt)], dim=-1)

    def batched_stats(self, a: Tensor, b: Tensor, tau: Tensor) -> Tensor:
        """Fast-path statistics ``[G, N, 5]`` for batched anchors ``[G, N, D]`` (dense autograd).

        The ``N x M`` pattern (diagonal, exclusions, sparse positives) is shared by the groups, so
        it is expanded once; the ``[G, N, M]`` logits see one masked fill and one log-sum-exp.
        """
        N, M = a.size(-2), b.size(-2)
        s = self.logits(a, b, tau)
        dev, dt = s.device, s.dtype
        kill = torch.zeros(N, M, dtype=torch.bool, device=dev)
        r_all = torch.arange(N, device=dev)
        if self.self_contrast:
            if self.diagonal == "exclude":
                kill[r_all, r_all] = True
            elif not isinstance(self.diagonal, str):
                diag = torch.zeros(N, M, dtype=torch.bool, device=dev)
                diag[r_all, r_all] = True
                s = torch.where(diag, torch.full_like(s, float(self.diagonal)), s)
        if self.exclude is not None:
            er, ec, ew = self.exclude.sparse_block(0, N, M, device=dev, dtype=dt)
            kill[er[ew > 0], ec[ew > 0]] = True
        P = s.new_zeros(s.shape[:-1])
        Q = s.new_zeros(N)
        if self.positives is not None:
            r, c, w = self.positives.sparse_block(0, N, M, device=dev, dtype=dt)
            ok = (~kill[r, c]) & (w > 0)
            r, c, w = r[ok], c[ok], w[ok]
            P = P.index_add(-1, r, s[..., r, c] * w)
            Q = Q.index_add(0, r, w)
            if not self.positives_in_denominator:
                kill[r, c] = True
        if bool(kill.any()):
            s = s.masked_fill(kill, _NEG)
        lse = torch.logsumexp(s, dim=-1)
        count = (~kill).sum(-1).to(dt).expand_as(lse)
        return torch.stack([lse, P, Q.expand_as(lse), torch.zeros_like(lse), count], dim=-1)


def segment_logsumexp(values: Tensor, segments: Tensor, num_segments: int) -> Tensor:
    """``out[k] = log sum_{p: segments[p] = k} exp(values[p])``, ``[num_segments]``.

    Plain autograd (the gradient is the softmax within each segment); empty segments give a
    large negative finite number (stands for ``log 0``), never NaN.

    Args:
        values: ``[P]`` values (e.g. the logits of explicit pairs).
        segments: ``[P]`` segment (row) index of each value, in ``[0, num_segments)``.
        num_segments: number of segments ``K``.
    """
    m = torch.full((num_segments,), _NEG, dtype=values.dtype, device=values.device)
    m = m.scatter_reduce(0, segments, values.detach(), "amax", include_self=True)
    total = torch.zeros_like(m).index_add(0, segments, (values - m[segments]).exp())
    empty = total <= 0
    return torch.where(empty, torch.full_like(m, _NEG),
                       torch.where(empty, torch.ones_like(total), total).log() + m)


def pair_logsumexp(anchors: Tensor, candidates: Tensor | None = None, *, positives: Any,
                   temperature: float | Tensor = 1.0, similarity: str = "cosine",
                   diagonal: str | float = "exclude") -> Tensor:
    r"""Log of the weighted positive mass over explicit pairs only, ``[N]``, in ``O(P x D)``.

    .. math:: \mathrm{LSE}^+_i = \log \sum_{j:(i, j) \in \mathcal{P}} q_{ij} e^{s_{ij}}

    the ``LSE+`` statistic of :func:`row_statistics` without the ``N x M`` denominator: PamC's
    per-node positive term (graph neighbours weighted by ``A_r``). Arguments as in
    :func:`contrastive_loss`; ``positives`` must be sparse (``[2, P]`` pairs, an int offset,
    ``"aligned"`` or a :class:`~contrastkit.core.pairs.Pairs`). With ``candidates=None`` the pair
    ``(i, i)`` is dropped (``diagonal="exclude"``), kept (``"negative"``) or given a fixed logit.
    Rows without pairs get a large negative number (``log 0``).
    """
    check_tensor("anchors", anchors, ndim=2, floating=True)
    self_contrast = candidates is None
    b = anchors if self_contrast else check_tensor("candidates", candidates, ndim=2,
                                                   floating=True)
    check_choice("similarity", similarity, SIMILARITIES)
    sel = as_selector(positives, "positives")
    if sel is None or type(sel).sparse_block is PairSelector.sparse_block:
        raise ValueError(f"positives: expected sparse pairs ([2, P] index, int offset, 'aligned' "
                         f"or Pairs), got {type(sel).__name__}")
    N, M = anchors.size(0), b.size(0)
    sel.validate(N, M)
    r, c, w = sel.sparse_block(0, N, M, device=anchors.device, dtype=anchors.dtype)
    keep = w > 0
    if self_contrast and diagonal == "exclude":
        keep &= r != c
    r, c, w = r[keep], c[keep], w[keep]
    tau = _as_temperature(temperature, M, anchors)
    a_n, b_n = anchors, b
    if similarity == "cosine":
        a_n = l2_normalize(anchors)
        b_n = l2_normalize(b)
    if similarity in ("cosine", "dot"):
        s = (a_n[r] * b_n[c]).sum(-1)
    else:
        s = -(anchors[r] - b[c]).pow(2).sum(-1)
    s = s / (tau[c] if tau.dim() == 1 else tau)
    if self_contrast and not isinstance(diagonal, str):
        s = torch.where(r == c, torch.full_like(s, float(diagonal)), s)
    return segment_logsumexp(s + w.log(), r, N)


class _BlockwiseStats(torch.autograd.Function):
    """Row statistics in blocks; backward recomputes each tile (memory ``O(B x M)``)."""

    @staticmethod
    def forward(ctx, plan: _Plan, block_size: int, a: Tensor, b: Tensor, tau: Tensor,
                *extras: Tensor) -> Tensor:
        N = a.size(0)
        ctx.symmetric = plan.symmetric_side is not None
        if ctx.symmetric:
            block_size = plan.symmetric_side
            stats = plan.symmetric_forward(a, tau, block_size)
        elif plan.fast:
            stats = plan.fast_forward(a, b, tau, block_size)
        else:
            with torch.no_grad():
                stats = torch.cat([plan.block_stats(a[i:i + block_size], b, tau, i,
                                                    min(i + block_size, N))
                                   for i in range(0, N, block_size)], 0)
        ctx.plan, ctx.block_size = plan, block_size
        ctx.save_for_backward(a, b, tau, stats, *extras)
        return stats

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        a, b, tau, stats_all, *extras = ctx.saved_tensors
        plan, bs = ctx.plan, ctx.block_size
        need = ctx.needs_input_grad[2:]
        N = a.size(0)
        if ctx.symmetric:  # a is b: the whole gradient goes to the first slot
            grads = [plan.symmetric_backward(a, tau, stats_all, grad_out, bs)
                     if need[0] or need[1] else None, None, None]
        elif plan.fast:
            grads = plan.fast_backward(a, b, tau, stats_all, grad_out, need[:3], bs)
        else:  # recompute each tile under autograd (weights with parameters, dense selectors)
            grads = [None] * (3 + len(extras))
            slots = tuple(range(3 + len(extras)))
            for i in range(0, N, bs):
                stop = min(i + bs, N)
                g = grad_out[i:stop]
                if not bool(g.any()):
                    continue
                with torch.enable_grad():
                    a_blk = a[i:stop].detach().requires_grad_(need[0])
                    b_d = b.detach().requires_grad_(need[1])
                    tau_d = tau.detach().requires_grad_(need[2])
                    stats = plan.block_stats(a_blk, b_d, tau_d, i, stop)
                    _accumulate(grads, _grads_of(stats, g, [a_blk, b_d, tau_d, *extras], need,
                                                 slots), a, i, stop)
        inputs = (a, b, tau, *extras)
        grads = [torch.zeros_like(x) if (n and g is None) else g
                 for x, n, g in zip(inputs, need, grads)]
        return (None, None, *grads)


def _grads_of(output: Tensor, grad_output: Tensor, inputs: Sequence[Tensor],
              need: Sequence[bool], slots: Sequence[int]) -> list[tuple[int, Tensor | None]]:
    """``(slot, d output / d input)`` for the inputs that need a gradient (autograd)."""
    wanted = [k for k, n in enumerate(need) if n and inputs[k].requires_grad]
    if not wanted:
        return []
    got = torch.autograd.grad(output, [inputs[k] for k in wanted], grad_output,
                              allow_unused=True)
    return [(slots[k], gk) for k, gk in zip(wanted, got)]


def _accumulate(grads: list[Tensor | None], block_grads: Any, a: Tensor, start: int,
                stop: int) -> None:
    """Add one block's ``(input index, gradient)`` pairs: rows of ``a`` (index 0), others whole."""
    for k, gk in block_grads:
        if gk is None:
            continue
        if k == 0:
            if grads[0] is None:
                grads[0] = torch.zeros_like(a)
            grads[0][start:stop] += gk
        else:
            grads[k] = gk if grads[k] is None else grads[k] + gk


def _as_temperature(temperature: Any, num_candidates: int, like: Tensor) -> Tensor:
    if isinstance(temperature, Tensor):
        if temperature.dim() not in (0, 1) or (temperature.dim() == 1 and
                                               temperature.numel() not in (1, num_candidates)):
            raise ValueError(f"temperature: expected a scalar or one value per candidate "
                             f"([{num_candidates}]), got shape {tuple(temperature.shape)}")
        check_positive("temperature", temperature.detach())
        t = temperature.to(device=like.device, dtype=like.dtype)
        return check_temperature_range(t.reshape(()) if t.numel() == 1 and t.dim() == 1 else t)
    check_positive("temperature", temperature)
    check_temperature_range(float(temperature), like.dtype)
    return torch.tensor(float(temperature), dtype=like.dtype, device=like.device)


def _fused_stats(plan: _Plan, a: Tensor, b: Tensor, tau: Tensor, input_dtype: torch.dtype,
                 batched: bool, *, explicit: bool) -> Tensor | None:
    """Statistics from the fused Triton kernel, or ``None`` to use the blockwise path.

    ``backend="auto"`` takes the kernel only on CUDA with Triton installed and a supported plan;
    ``backend="fused"`` (explicit) raises a ``ValueError`` that says why when it cannot.
    """
    if not explicit and (a.device.type != "cuda" or batched):
        return None
    try:
        from .kernels import fused_stats as fk
    except ImportError as err:  # pragma: no cover - the module itself imports without Triton
        if explicit:
            raise ValueError(f"backend: 'fused' is unavailable ({err})") from err
        return None
    reason = fk.fused_unsupported_reason(plan, device=a.device, dim=a.size(-1), batched=batched)
    if reason is not None:
        if explicit:
            raise ValueError(f"backend: 'fused' does not support this call: {reason}; use "
                             f"backend='auto' or 'blockwise'")
        return None
    global _FUSED_BROKEN
    if not explicit and _FUSED_BROKEN:
        return None
    kernel_dtype = input_dtype if input_dtype in (torch.bfloat16, torch.float16) else torch.float32
    ap = plan.anchor_factor(a, tau).to(kernel_dtype)
    bp = plan.candidate_factor(b, tau).to(kernel_dtype)
    # self-comparison with a constant scalar temperature: a' = b' / tau, symmetric logits
    sym = (1.0 / float(tau) if plan.self_contrast and tau.dim() == 0 and not tau.requires_grad
           else None)
    try:
        return fk.fused_row_statistics(plan, ap, bp, symmetric_scale=sym).to(a.dtype)
    except Exception as err:  # a Triton install that cannot compile/launch: fall back once
        if explicit:
            raise
        _FUSED_BROKEN = True
        warnings.warn(f"the fused contrastive-loss kernel failed ({type(err).__name__}: "
                      f"{str(err)[:200]}); using the blockwise path from now on "
                      f"(backend='blockwise' silences this)", RuntimeWarning, stacklevel=3)
        return None


class LossOverflowError(ValueError, FloatingPointError):
    """The loss is not finite although its inputs are: the logits overflowed."""


def row_statistics(
    anchors: Tensor,
    candidates: Tensor | None = None,
    *,
    positives: Any = "aligned",
    temperature: float | Tensor = 1.0,
    similarity: str = "cosine",
    exclude: Any = None,
    diagonal: str | float = "exclude",
    negative_weight: Any = None,
    normalize_weights: bool = False,
    positives_in_denominator: bool = True,
    need_pos_lse: bool = False,
    block_size: int | None = None,
    backend: str = "auto",
) -> RowStats:
    """Per-anchor statistics (``LSE``, ``P``, ``Q``, ``LSE+``, denominator count), each ``[N]``.

    Arguments as in :func:`contrastive_loss`. This is the engine's single entry point; loss forms
    are cheap functions of its output. Batched anchors ``[G, N, D]`` give statistics ``[G, N]``.
    """
    check_tensor("anchors", anchors, ndim=(2, 3), floating=True)
    batched = anchors.dim() == 3
    if anchors.size(-2) == 0 or (batched and anchors.size(0) == 0):
        raise ValueError(f"anchors: expected at least one row, got an empty tensor of shape "
                         f"{tuple(anchors.shape)}")
    check_finite("anchors", anchors)
    self_contrast = candidates is None
    if candidates is None:
        candidates = anchors
    else:
        check_tensor("candidates", candidates, ndim=anchors.dim(), floating=True)
        if candidates.size(-1) != anchors.size(-1) or (
                batched and candidates.size(0) != anchors.size(0)):
            raise ValueError(f"candidates: expected feature size {anchors.size(-1)}"
                             + (f" and {anchors.size(0)} groups" if batched else "")
                             + f" like anchors, got shape {tuple(candidates.shape)}")
        if candidates.size(-2) == 0:
            raise ValueError("candidates: expected at least one row, got an empty tensor")
        check_same_device("anchors", anchors, "candidates", candidates)
        check_finite("candidates", candidates)
    check_choice("similarity", similarity, SIMILARITIES)
    if isinstance(diagonal, str):
        check_choice("diagonal", diagonal, ("exclude", "negative"))
    elif isinstance(diagonal, bool) or not isinstance(diagonal, (int, float)):
        raise TypeError(f"diagonal: expected 'exclude', 'negative' or a fixed logit (float), got "
                        f"{type(diagonal).__name__}")
    elif not math.isfinite(diagonal):
        raise ValueError(f"diagonal: expected a finite fixed logit, got {diagonal}")
    for name, flag in (("normalize_weights", normalize_weights),
                       ("positives_in_denominator", positives_in_denominator),
                       ("need_pos_lse", need_pos_lse)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name}: expected a bool, got {flag!r}")
    if self_contrast and isinstance(positives, str) and positives == "aligned" \
            and diagonal == "exclude":
        raise ValueError("positives: 'aligned' pairs anchor i with candidate i, which with "
                         "candidates=None is the anchor itself, removed by diagonal='exclude': "
                         "pass the other view as candidates, or positives as labels or pairs")
    N, M = anchors.size(-2), candidates.size(-2)
    pos = as_selector(positives, "positives")
    excl = as_selector(exclude, "exclude")
    weight = as_weight(negative_weight)
    if batched and weight is not None:
        raise ValueError("negative_weight: not supported with batched [G, N, D] anchors; "
                         "loop over the groups instead")
    for sel in (pos, excl, weight):
        if sel is not None:
            sel.validate(N, M)

    check_choice("backend", backend, BACKENDS)
    # the engine computes in float32 at least (half precision would overflow the exponentials)
    dtype = torch.promote_types(torch.promote_types(anchors.dtype, candidates.dtype),
                                torch.float32)
    a = anchors.to(dtype)
    b = a if self_contrast else candidates.to(dtype)
    tau = _as_temperature(temperature, M, a)
    plan = _Plan(similarity=similarity, self_contrast=self_contrast, positives=pos, exclude=excl,
                 diagonal=diagonal, weight=weight, normalize_weights=normalize_weights,
                 positives_in_denominator=positives_in_denominator, need_pos_lse=need_pos_lse,
                 num_candidates=M)
    if backend != "blockwise":
        fused = _fused_stats(plan, a, b, tau, anchors.dtype, batched, explicit=backend == "fused")
        if fused is not None:
            return RowStats.from_tensor(fused)
    if block_size is None:
        block = N if N * M <= DENSE_LIMIT else max(1, TILE_ENTRIES // M)
    else:
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size: expected a positive int or None, got {block_size!r}")
        block = block_size
    if batched and plan.fast and not need_pos_lse:
        stats = plan.batched_stats(a, b, tau)  # dense, plain autograd, one mask for all groups
    elif batched or (block >= N and not plan.fast):
        stats = plan.block_stats(a, b, tau, 0, N)  # dense, plain autograd
    else:
        extras = weight.tensors() if weight is not None else ()
        if plan.symmetric(tau) and block < N:  # self-comparison: upper block triangle only
            plan.symmetric_side = symmetric_tile_side(N, block)
        # the fast path is also the fastest dense computation: one tile, analytic backward
        stats = _BlockwiseStats.apply(plan, min(block, N), a, b, tau, *extras)
    return RowStats.from_tensor(stats)


def reduce_rows(stats: RowStats, form: str = "infonce", reduction: str = "mean", *,
                positive_mean: bool = True) -> Tensor:
    """Combine row statistics into the loss ``form`` (see the module table) and reduce it.

    ``reduction="none"`` returns ``[N]`` per-anchor values (0 for empty rows); ``"mean"`` averages
    over the rows that have positives and a non-empty denominator (``pair_mean``: over pairs).
    With ``positive_mean=False`` the ``infonce``/``decoupled`` forms use ``LSE_i - P_i``: positive
    weights are coefficients on the positive logits (DCLW's ``w_i s_i+``) instead of averaging
    weights. On CPU a non-finite result (overflowing logits) raises :class:`LossOverflowError`
    and a batch where no row is valid warns (the loss is then 0); on an accelerator these checks
    are left to the trainer, to keep the step free of host-device syncs.
    """
    check_choice("form", form, FORMS)
    check_choice("reduction", reduction, REDUCTIONS)
    if not isinstance(positive_mean, bool):
        raise TypeError(f"positive_mean: expected a bool, got {positive_mean!r}")
    lse, P, Q, plse, dcount = stats.lse, stats.pos_sum, stats.pos_count, stats.pos_lse, stats.den_count
    has_den = dcount > 0
    if form in ("infonce", "supcon", "decoupled"):
        valid = has_den & (Q > 0)
        per_row = lse - (P / torch.where(valid, Q, torch.ones_like(Q)) if positive_mean else P)
    elif form == "positive_mass":
        valid = has_den & (Q > 0)
        per_row = lse - plse
    elif form in ("soft_targets", "pair_mean"):
        valid = has_den & (Q > 0) if form == "pair_mean" else has_den
        per_row = Q * lse - P
    else:  # log_partition
        valid = has_den
        per_row = lse
    per_row = torch.where(valid, per_row, torch.zeros_like(per_row))
    if per_row.device.type == "cpu" and not torch.compiler.is_compiling():
        # one read of two flags; skipped on accelerators (no extra sync per step: the
        # Trainer's per-step check of the loss catches a non-finite value there)
        any_valid, finite = torch.stack([valid.any(), torch.isfinite(per_row).all()]).tolist()
        if not finite:
            raise LossOverflowError(
                f"contrastive loss ({form!r}): the logits overflowed (similarity / temperature "
                f"beyond the float range of the inputs); normalise the embeddings, use "
                f"similarity='cosine' or a larger temperature")
        if not any_valid:
            needs = "a positive and " if form not in ("soft_targets", "log_partition") else ""
            warnings.warn(f"contrastive loss ({form!r}): no anchor has {needs}a non-empty "
                          f"denominator, so the loss is 0 with no gradient; check positives / "
                          f"exclude / negative_weight", RuntimeWarning, stacklevel=3)
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    if form == "pair_mean":
        return per_row.sum() / torch.where(valid, Q, torch.zeros_like(Q)).sum().clamp_min(1e-12)
    return per_row.sum() / valid.sum().clamp_min(1)


def contrastive_loss(
    anchors: Tensor,
    candidates: Tensor | None = None,
    *,
    positives: Any = "aligned",
    temperature: float | Tensor = 1.0,
    similarity: str = "cosine",
    form: str = "infonce",
    reduction: str = "mean",
    exclude: Any = None,
    diagonal: str | float = "exclude",
    negative_weight: Any = None,
    normalize_weights: bool = False,
    positive_mean: bool = True,
    block_size: int | None = None,
    backend: str = "auto",
) -> Tensor:
    r"""The general contrastive loss: who is compared with whom, with what weight, in which form.

    Args:
        anchors: ``[N, D]`` anchor embeddings, or ``[G, N, D]``: ``G`` independent small problems
            of the same shape (TS2Vec's ``2B x 2B`` per time step, ``2T x 2T`` per series),
            computed densely in one batched call; positives/exclusions are shared by the groups
            and ``mean`` averages over all groups' rows (pairs). No ``negative_weight`` then.
        candidates: ``[M, D]`` (``[G, M, D]``) candidate embeddings; ``None`` compares the anchors
            with themselves (then ``diagonal`` says what happens to the pairs ``(i, i)``).
        positives: ``"aligned"`` (``i <-> i``), an ``int`` offset (``i <-> (i + offset) mod M``),
            ``[N]`` integer group labels (multi-positive), a ``[2, P]`` integer index of explicit
            pairs, an ``[N, M]`` float tensor of soft weights, or a
            :class:`~contrastkit.core.pairs.PairSelector`.
        temperature: ``tau > 0``: a float, a (learnable) scalar tensor or ``[M]`` per candidate.
        similarity: ``"cosine"``, ``"dot"`` or ``"neg_sq_dist"``.
        form: ``"infonce"`` (= ``"supcon"``), ``"decoupled"``, ``"pair_mean"``,
            ``"soft_targets"``, ``"positive_mass"`` or ``"log_partition"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``[N]`` per anchor).
        exclude: pairs never compared, in the same forms as ``positives``.
        diagonal: with ``candidates=None``: ``"exclude"`` the self pair, keep it as a
            ``"negative"``, or set its logit to a fixed float.
        negative_weight: denominator weights ``w_ij`` (see :mod:`contrastkit.core.weights`).
        normalize_weights: use row-normalised weights ``w_ij / sum_k w_ik``.
        positive_mean: ``infonce``/``decoupled``: average the positive logits with their weights
            (``P / Q``, SupCon) or, if False, use the weights as coefficients (``P``, DCLW).
        block_size: anchors per row block; ``None`` picks dense for small ``N x M``.
        backend: ``"auto"`` (the fused Triton kernel of :mod:`contrastkit.core.kernels` on CUDA
            when Triton is installed and the options are supported, else blockwise),
            ``"blockwise"`` (always the PyTorch path) or ``"fused"`` (the kernel or a
            ``ValueError`` saying why not; on CPU it needs ``TRITON_INTERPRET=1``).

    Returns:
        The reduced loss (scalar), or ``[N]`` (``[G, N]``) with ``reduction="none"``.
    """
    check_choice("form", form, FORMS)
    stats = row_statistics(
        anchors, candidates, positives=None if form == "log_partition" else positives,
        temperature=temperature, similarity=similarity, exclude=exclude, diagonal=diagonal,
        negative_weight=negative_weight, normalize_weights=normalize_weights,
        positives_in_denominator=form != "decoupled", need_pos_lse=form == "positive_mass",
        block_size=block_size, backend=backend)
    return reduce_rows(stats, form, reduction, positive_mean=positive_mean)
