r"""A fused Triton kernel for the engine's row statistics (forward and backward).

The engine (:mod:`contrastkit.core.engine`) reduces every InfoNCE-family loss to five statistics
per anchor ``i`` over the candidates ``j``:

.. math::

    \mathrm{LSE}_i = \log \sum_{j \in \mathcal{D}_i} w_{ij} e^{s_{ij}}, \quad
    P_i = \sum_j q_{ij} s_{ij}, \quad Q_i = \sum_j q_{ij}, \quad
    \mathrm{LSE}^+_i = \log \sum_j q_{ij} e^{s_{ij}}, \quad |\mathcal{D}_i|

with ``s_ij = a'_i . b'_j`` (the temperature and, for cosine similarity, the normalisation are
folded into the factors ``a' [N, D]`` and ``b' [M, D]`` by the engine, with autograd). The
blockwise PyTorch path writes each ``[B, M]`` logit tile to memory and reads it several times;
this kernel keeps a ``[BLOCK_M, BLOCK_N]`` tile in registers instead (the flash-attention idea):
one program per block of anchors streams over the candidates with an online log-sum-exp, and the
backward pass recomputes each tile from the saved ``LSE`` (one kernel for ``dL/da'`` over anchor
blocks, one for ``dL/db'`` over candidate blocks; no atomics, deterministic). A self-comparison
with a constant scalar temperature (GRACE, NT-Xent, SupCon) has symmetric logits, and its backward
is one kernel that takes ``dS_IJ`` and ``dS_JI`` from the same tile: half the matrix products.
Memory beyond the inputs is ``O(N + M)``.

Supported (the engine falls back to its blockwise path otherwise, or raises when
``backend="fused"`` was asked for explicitly):

* ``similarity`` ``"cosine"`` or ``"dot"``; a scalar or per-candidate temperature;
* positives: none, ``"aligned"`` / an int offset (``i <-> (i + offset) mod M``: cross-view and,
  on stacked views compared with themselves, GRACE/NT-Xent's inter- plus intra-view negatives),
  or ``[N]`` group labels (:class:`~contrastkit.core.pairs.SameLabel`; negative labels match
  nothing);
* the diagonal of a self-comparison excluded, kept as a negative, or set to a fixed logit;
* the decoupled form (positives removed from the denominator), ``LSE+`` (``positive_mass``);
* denominator weights from a ``[K, K]`` table indexed by labels
  (:class:`~contrastkit.core.weights.LabelTable`, gCooL's community weights), plain or
  row-normalised, as a constant (a table that requires grad falls back);
* no ``exclude`` selector.

Precision: inputs ``float32`` (``tl.dot`` in IEEE fp32, or TF32 when
``torch.backends.cuda.matmul.allow_tf32`` is set), ``bfloat16`` or ``float16`` (the engine casts
its factors to the anchors' half dtype); accumulation and statistics are always ``float32``.

Without a GPU the kernels run under Triton's interpreter: set ``TRITON_INTERPRET=1`` before the
first fused call (the test suite does); that is slow and meant for small correctness tests.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

try:  # Triton is an optional extra (``pip install contrastkit[kernel]``)
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only without the extra
    triton = None
    tl = None

__all__ = ["fused_row_statistics", "fused_unsupported_reason", "triton_available",
           "triton_interpreting", "compile_kernels"]

_MAX_DIM = 512  # feature sizes above this fall back (register pressure)


def _tiles(block_dim: int) -> tuple[int, int, int, int]:
    """``(BLOCK_M, BLOCK_N, num_warps, num_stages)`` for the padded feature size.

    Chosen without a GPU from ptxas's register/spill report for sm_90 (``triton.compile`` +
    ``cuobjdump -res-usage``, GRACE's pattern): d <= 64 compiles without spills; at d = 128 the
    bfloat16 kernels have none and the float32 backward kernels spill a few registers (8-88
    bytes); weights and ``LSE+`` add some spilling; d = 256 and 512 use 32 x 32 tiles.
    """
    if block_dim <= 128:
        return 64, 64, 8, 2
    if block_dim <= 256:
        return 32, 32, 4, 2
    return 32, 32, 8, 1


def triton_available() -> bool:
    """Whether Triton is importable."""
    return triton is not None


def triton_interpreting() -> bool:
    """Whether Triton's CPU interpreter is on (``TRITON_INTERPRET=1`` at kernel definition)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


def fused_unsupported_reason(plan: Any, *, device: torch.device, dim: int,
                             batched: bool = False) -> str | None:
    """Why the fused kernel cannot compute ``plan`` (``None`` when it can).

    Args:
        plan: the engine's internal plan (similarity, selectors, weights, diagonal).
        device: the device of the inputs.
        dim: feature size ``D``.
        batched: whether the anchors are ``[G, N, D]``.
    """
    from ..pairs import Aligned, SameLabel
    from ..weights import LabelTable

    if triton is None:
        return "Triton is not installed (pip install 'contrastkit[kernel]')"
    if device.type != "cuda" and not triton_interpreting():
        return (f"inputs are on {device.type}; the fused kernel needs a CUDA device, or "
                f"TRITON_INTERPRET=1 set before the first fused call to run Triton's interpreter")
    if batched:
        return "batched [G, N, D] anchors are computed densely"
    if plan.similarity not in ("cosine", "dot"):
        return f"similarity {plan.similarity!r} (supported: 'cosine', 'dot')"
    if dim > _MAX_DIM:
        return f"feature size {dim} > {_MAX_DIM}"
    if plan.positives is not None and not isinstance(plan.positives, (Aligned, SameLabel)):
        return f"positives of type {type(plan.positives).__name__} (supported: aligned/offset, labels)"
    if plan.exclude is not None:
        return "an exclude selector"
    if plan.weight is not None:
        if not isinstance(plan.weight, LabelTable):
            return f"negative_weight of type {type(plan.weight).__name__} (supported: LabelTable)"
        if plan.weight.table.requires_grad:
            return "a LabelTable whose table requires grad"
    return None


if triton is not None:

    _LOG0 = tl.constexpr(-1e30)  # log 0 inside the kernels (finite, as in the engine)

    @triton.jit
    def _mask_tile(s, rm, rn, N, M, offset, diag_value, la_ptr, lb_ptr, wa_ptr, wb_ptr, w_ptr, K,
                   DIAG: tl.constexpr, POS: tl.constexpr, DECOUPLED: tl.constexpr,
                   WEIGHT: tl.constexpr):
        """Apply the pattern to a logit tile ``s [BM, BN]``: returns ``(s, den, pos, w)``.

        DIAG: 0 not a self-comparison, 1 exclude, 2 keep as a negative, 3 fixed logit.
        POS: 0 none, 1 offset, 2 labels. ``w`` is 1 without weights.
        """
        valid = (rm[:, None] < N) & (rn[None, :] < M)
        keep = valid
        if DIAG == 1:
            keep = keep & (rm[:, None] != rn[None, :])
        if DIAG == 3:
            s = tl.where(rm[:, None] == rn[None, :], diag_value, s)
        if POS == 1:
            pos = keep & (rn[None, :] == (rm[:, None] + offset) % M)
        elif POS == 2:
            la = tl.load(la_ptr + rm, mask=rm < N, other=-1)
            lb = tl.load(lb_ptr + rn, mask=rn < M, other=-2)
            pos = keep & (la[:, None] == lb[None, :]) & (la[:, None] >= 0)
        else:
            pos = keep & (rn[None, :] < 0)
        den = keep
        if DECOUPLED:
            den = den & (pos == 0)
        if WEIGHT:
            wa = tl.load(wa_ptr + rm, mask=rm < N, other=0)
            wb = tl.load(wb_ptr + rn, mask=rn < M, other=0)
            w = tl.load(w_ptr + wa[:, None] * K + wb[None, :], mask=valid, other=0.0)
            den = den & (w > 0)
        else:
            w = tl.full(s.shape, 1.0, tl.float32)
        return s, den, pos, w

    @triton.jit
    def _tile_grad(s, den, pos, w, rm, rn, lse, plse, g_lse, g_pos, g_plse,
                   DIAG: tl.constexpr, NEED_PLSE: tl.constexpr, WEIGHT: tl.constexpr):
        """``dL/ds`` for one tile: softmax terms from the saved log-sum-exps, plus positives."""
        if WEIGHT:
            x = tl.where(den, s + tl.log(tl.where(den, w, 1.0)) - lse[:, None], _LOG0)
        else:
            x = tl.where(den, s - lse[:, None], _LOG0)
        ds = tl.where(den, tl.exp(x), 0.0) * g_lse[:, None]
        ds += tl.where(pos, g_pos[:, None], 0.0)
        if NEED_PLSE:
            xp = tl.where(pos, s - plse[:, None], _LOG0)
            ds += tl.where(pos, tl.exp(xp), 0.0) * g_plse[:, None]
        if DIAG == 3:
            ds = tl.where(rm[:, None] == rn[None, :], 0.0, ds)
        return ds

    @triton.jit
    def _recompute_ds(a, b, rm, rn, lse, plse, g_lse, g_pos, g_plse, N, M, offset, diag_value,
                      la_ptr, lb_ptr, wa_ptr, wb_ptr, w_ptr, K, DIAG: tl.constexpr,
                      POS: tl.constexpr, DECOUPLED: tl.constexpr, WEIGHT: tl.constexpr,
                      NEED_PLSE: tl.constexpr, PREC: tl.constexpr):
        """Recompute the logit tile of ``a [BM, BD]`` and ``b [BN, BD]`` and return ``dL/ds``."""
        s = tl.dot(a, tl.trans(b), input_precision=PREC)
        s, den, pos, w = _mask_tile(s, rm, rn, N, M, offset, diag_value, la_ptr, lb_ptr, wa_ptr,
                                    wb_ptr, w_ptr, K, DIAG, POS, DECOUPLED, WEIGHT)
        return _tile_grad(s, den, pos, w, rm, rn, lse, plse, g_lse, g_pos, g_plse, DIAG,
                          NEED_PLSE, WEIGHT)

    @triton.jit
    def _load_rows(ptr, r, n, rd, D, UPCAST: tl.constexpr):
        x = tl.load(ptr + r[:, None] * D + rd[None, :], mask=(r[:, None] < n) & (rd[None, :] < D),
                    other=0.0)
        if UPCAST:
            x = x.to(tl.float32)
        return x

    @triton.jit
    def _stats_fwd(a_ptr, b_ptr, out_ptr, lse_ptr, la_ptr, lb_ptr, wa_ptr, wb_ptr, w_ptr,
                   N, M, D, K, offset, diag_value,
                   BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, DIAG: tl.constexpr,
                   POS: tl.constexpr, DECOUPLED: tl.constexpr, WEIGHT: tl.constexpr,
                   NORMW: tl.constexpr, NEED_PLSE: tl.constexpr, UPCAST: tl.constexpr,
                   PREC: tl.constexpr):
        rm = tl.program_id(0) * BM + tl.arange(0, BM)
        rd = tl.arange(0, BD)
        a = _load_rows(a_ptr, rm, N, rd, D, UPCAST)
        m_i = tl.full([BM], _LOG0, tl.float32)
        l_i = tl.zeros([BM], tl.float32)
        p_sum = tl.zeros([BM], tl.float32)
        q_sum = tl.zeros([BM], tl.float32)
        count = tl.zeros([BM], tl.float32)
        w_sum = tl.zeros([BM], tl.float32)
        pm_i = tl.full([BM], _LOG0, tl.float32)
        pl_i = tl.zeros([BM], tl.float32)
        for start in range(0, M, BN):
            rn = start + tl.arange(0, BN)
            b = _load_rows(b_ptr, rn, M, rd, D, UPCAST)
            s = tl.dot(a, tl.trans(b), input_precision=PREC)
            s, den, pos, w = _mask_tile(s, rm, rn, N, M, offset, diag_value, la_ptr, lb_ptr,
                                        wa_ptr, wb_ptr, w_ptr, K, DIAG, POS, DECOUPLED, WEIGHT)
            if WEIGHT:
                x = tl.where(den, s + tl.log(tl.where(den, w, 1.0)), _LOG0)
            else:
                x = tl.where(den, s, _LOG0)
            m_new = tl.maximum(m_i, tl.max(x, 1))
            l_i = l_i * tl.exp(m_i - m_new) + tl.sum(tl.where(den, tl.exp(x - m_new[:, None]),
                                                               0.0), 1)
            m_i = m_new
            count += tl.sum(den.to(tl.float32), 1)
            p_sum += tl.sum(tl.where(pos, s, 0.0), 1)
            q_sum += tl.sum(pos.to(tl.float32), 1)
            if NORMW:
                w_sum += tl.sum(tl.where(den, w, 0.0), 1)
            if NEED_PLSE:
                xp = tl.where(pos, s, _LOG0)
                pm_new = tl.maximum(pm_i, tl.max(xp, 1))
                pl_i = pl_i * tl.exp(pm_i - pm_new) + tl.sum(
                    tl.where(pos, tl.exp(xp - pm_new[:, None]), 0.0), 1)
                pm_i = pm_new
        lse_raw = tl.where(l_i > 0, m_i + tl.log(tl.where(l_i > 0, l_i, 1.0)), _LOG0)
        lse = lse_raw
        if NORMW:
            lse = tl.where(w_sum > 0, lse - tl.log(tl.where(w_sum > 0, w_sum, 1.0)), lse)
        plse = tl.where(pl_i > 0, pm_i + tl.log(tl.where(pl_i > 0, pl_i, 1.0)), _LOG0)
        ok = rm < N
        tl.store(lse_ptr + rm, lse_raw, mask=ok)
        tl.store(out_ptr + rm * 5 + 0, lse, mask=ok)
        tl.store(out_ptr + rm * 5 + 1, p_sum, mask=ok)
        tl.store(out_ptr + rm * 5 + 2, q_sum, mask=ok)
        tl.store(out_ptr + rm * 5 + 3, plse, mask=ok)
        tl.store(out_ptr + rm * 5 + 4, count, mask=ok)

    @triton.jit
    def _load_row_grads(stats_ptr, lse_ptr, g_ptr, rm, N):
        ok = rm < N
        lse = tl.load(lse_ptr + rm, mask=ok, other=0.0)
        plse = tl.load(stats_ptr + rm * 5 + 3, mask=ok, other=0.0)
        g_lse = tl.load(g_ptr + rm * 5 + 0, mask=ok, other=0.0)
        g_pos = tl.load(g_ptr + rm * 5 + 1, mask=ok, other=0.0)
        g_plse = tl.load(g_ptr + rm * 5 + 3, mask=ok, other=0.0)
        return lse, plse, g_lse, g_pos, g_plse

    @triton.jit
    def _stats_bwd_a(a_ptr, b_ptr, stats_ptr, lse_ptr, g_ptr, da_ptr, la_ptr, lb_ptr, wa_ptr,
                     wb_ptr, w_ptr, N, M, D, K, offset, diag_value,
                     BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, DIAG: tl.constexpr,
                     POS: tl.constexpr, DECOUPLED: tl.constexpr, WEIGHT: tl.constexpr,
                     NEED_PLSE: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr):
        rm = tl.program_id(0) * BM + tl.arange(0, BM)
        rd = tl.arange(0, BD)
        a = _load_rows(a_ptr, rm, N, rd, D, UPCAST)
        lse, plse, g_lse, g_pos, g_plse = _load_row_grads(stats_ptr, lse_ptr, g_ptr, rm, N)
        acc = tl.zeros([BM, BD], tl.float32)
        for start in range(0, M, BN):
            rn = start + tl.arange(0, BN)
            b = _load_rows(b_ptr, rn, M, rd, D, UPCAST)
            ds = _recompute_ds(a, b, rm, rn, lse, plse, g_lse, g_pos, g_plse, N, M, offset,
                               diag_value, la_ptr, lb_ptr, wa_ptr, wb_ptr, w_ptr, K, DIAG, POS,
                               DECOUPLED, WEIGHT, NEED_PLSE, PREC)
            acc += tl.dot(ds.to(b.dtype), b, input_precision=PREC)
        tl.store(da_ptr + rm[:, None] * D + rd[None, :], acc.to(da_ptr.dtype.element_ty),
                 mask=(rm[:, None] < N) & (rd[None, :] < D))

    @triton.jit
    def _stats_bwd_b(a_ptr, b_ptr, stats_ptr, lse_ptr, g_ptr, db_ptr, la_ptr, lb_ptr, wa_ptr,
                     wb_ptr, w_ptr, N, M, D, K, offset, diag_value,
                     BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, DIAG: tl.constexpr,
                     POS: tl.constexpr, DECOUPLED: tl.constexpr, WEIGHT: tl.constexpr,
                     NEED_PLSE: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr):
        rn = tl.program_id(0) * BN + tl.arange(0, BN)
        rd = tl.arange(0, BD)
        b = _load_rows(b_ptr, rn, M, rd, D, UPCAST)
        acc = tl.zeros([BN, BD], tl.float32)
        for start in range(0, N, BM):
            rm = start + tl.arange(0, BM)
            a = _load_rows(a_ptr, rm, N, rd, D, UPCAST)
            lse, plse, g_lse, g_pos, g_plse = _load_row_grads(stats_ptr, lse_ptr, g_ptr, rm, N)
            ds = _recompute_ds(a, b, rm, rn, lse, plse, g_lse, g_pos, g_plse, N, M, offset,
                               diag_value, la_ptr, lb_ptr, wa_ptr, wb_ptr, w_ptr, K, DIAG, POS,
                               DECOUPLED, WEIGHT, NEED_PLSE, PREC)
            acc += tl.dot(tl.trans(ds.to(a.dtype)), a, input_precision=PREC)
        tl.store(db_ptr + rn[:, None] * D + rd[None, :], acc.to(db_ptr.dtype.element_ty),
                 mask=(rn[:, None] < M) & (rd[None, :] < D))


if triton is not None:

    @triton.jit
    def _stats_bwd_sym(a_ptr, b_ptr, stats_ptr, lse_ptr, g_ptr, db_ptr, la_ptr, lb_ptr, wa_ptr,
                       wb_ptr, w_ptr, N, M, D, K, offset, diag_value, inv_tau,
                       BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, DIAG: tl.constexpr,
                       POS: tl.constexpr, DECOUPLED: tl.constexpr, WEIGHT: tl.constexpr,
                       NEED_PLSE: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr):
        """Self-comparison with ``a' = b' / tau``: the logits are symmetric, ``s_ij = s_ji``.

        The gradient of the shared rows ``x = b'`` is ``(dS + dS^T) b' / tau``; each tile ``(I, J)``
        is computed once and gives both ``dS_IJ`` (row statistics of ``I``) and ``dS_JI``
        (statistics of ``J``, the transposed tile): one pass instead of the two backward kernels,
        half the matrix products.
        """
        rm = tl.program_id(0) * BM + tl.arange(0, BM)
        rd = tl.arange(0, BD)
        a = _load_rows(a_ptr, rm, N, rd, D, UPCAST)
        lse, plse, g_lse, g_pos, g_plse = _load_row_grads(stats_ptr, lse_ptr, g_ptr, rm, N)
        acc = tl.zeros([BM, BD], tl.float32)
        for start in range(0, M, BN):
            rn = start + tl.arange(0, BN)
            b = _load_rows(b_ptr, rn, M, rd, D, UPCAST)
            s = tl.dot(a, tl.trans(b), input_precision=PREC)
            s_ij, den, pos, w = _mask_tile(s, rm, rn, N, M, offset, diag_value, la_ptr, lb_ptr,
                                           wa_ptr, wb_ptr, w_ptr, K, DIAG, POS, DECOUPLED, WEIGHT)
            ds = _tile_grad(s_ij, den, pos, w, rm, rn, lse, plse, g_lse, g_pos, g_plse, DIAG,
                            NEED_PLSE, WEIGHT)
            lse_j, plse_j, gl_j, gp_j, gpl_j = _load_row_grads(stats_ptr, lse_ptr, g_ptr, rn, N)
            s_ji, den_t, pos_t, w_t = _mask_tile(tl.trans(s), rn, rm, N, M, offset, diag_value,
                                                 la_ptr, lb_ptr, wa_ptr, wb_ptr, w_ptr, K, DIAG,
                                                 POS, DECOUPLED, WEIGHT)
            ds_t = _tile_grad(s_ji, den_t, pos_t, w_t, rn, rm, lse_j, plse_j, gl_j, gp_j, gpl_j,
                              DIAG, NEED_PLSE, WEIGHT)
            acc += tl.dot((ds + tl.trans(ds_t)).to(b.dtype), b, input_precision=PREC)
        acc = acc * inv_tau
        tl.store(db_ptr + rm[:, None] * D + rd[None, :], acc.to(db_ptr.dtype.element_ty),
                 mask=(rm[:, None] < N) & (rd[None, :] < D))


class _Launch:
    """The constant part of one fused call: pattern arguments, block sizes, precision."""

    def __init__(self, plan: Any, a: Tensor, b: Tensor,
                 symmetric_scale: float | None = None) -> None:
        from ..pairs import Aligned, SameLabel

        dev = a.device
        self.symmetric_scale = symmetric_scale
        self.N, self.M, self.D = a.size(0), b.size(0), a.size(1)
        self.BD = max(16, triton.next_power_of_2(self.D))
        self.BM, self.BN, self.num_warps, self.num_stages = _tiles(self.BD)
        if not plan.self_contrast:
            self.DIAG, self.diag_value = 0, 0.0
        elif plan.diagonal == "exclude":
            self.DIAG, self.diag_value = 1, 0.0
        elif plan.diagonal == "negative":
            self.DIAG, self.diag_value = 2, 0.0
        else:
            self.DIAG, self.diag_value = 3, float(plan.diagonal)
        dummy_i = torch.zeros(1, dtype=torch.int32, device=dev)
        dummy_f = torch.ones(1, dtype=torch.float32, device=dev)
        self.la = self.lb = self.wa = self.wb = dummy_i
        self.w, self.K, self.offset = dummy_f, 1, 0
        pos = plan.positives
        if pos is None:
            self.POS = 0
        elif isinstance(pos, Aligned):
            self.POS, self.offset = 1, pos.offset % self.M
        else:
            assert isinstance(pos, SameLabel)
            self.POS = 2
            self.la = pos.labels_a.to(device=dev, dtype=torch.int32).contiguous()
            self.lb = pos.labels_b.to(device=dev, dtype=torch.int32).contiguous()
        self.DECOUPLED = int(pos is not None and not plan.positives_in_denominator)
        self.WEIGHT = int(plan.weight is not None)
        self.NORMW = int(self.WEIGHT and plan.normalize_weights)
        if self.WEIGHT:
            wt = plan.weight
            self.w = wt.table.detach().to(device=dev, dtype=torch.float32).contiguous()
            self.K = self.w.size(0)
            self.wa = wt.labels_a.to(device=dev, dtype=torch.int32).contiguous()
            self.wb = wt.labels_b.to(device=dev, dtype=torch.int32).contiguous()
        self.NEED_PLSE = int(bool(plan.need_pos_lse) and self.POS != 0)
        # the interpreter's bf16/fp16 dot is unreliable: upcast the (already rounded) tiles
        self.UPCAST = int(triton_interpreting() and a.dtype != torch.float32)
        tf32 = dev.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
        self.PREC = "tf32" if (tf32 or a.dtype != torch.float32) else "ieee"
        if triton_interpreting():
            self.PREC = "ieee"

    def pattern(self) -> tuple:
        return (self.la, self.lb, self.wa, self.wb, self.w, self.N, self.M, self.D, self.K,
                self.offset, self.diag_value)

    def consts(self, *, normw: bool) -> dict:
        """Compile-time arguments and launch options of the kernels."""
        c = dict(BM=self.BM, BN=self.BN, BD=self.BD, DIAG=self.DIAG, POS=self.POS,
                 DECOUPLED=self.DECOUPLED, WEIGHT=self.WEIGHT, NEED_PLSE=self.NEED_PLSE,
                 UPCAST=self.UPCAST, PREC=self.PREC, num_warps=self.num_warps,
                 num_stages=self.num_stages)
        if normw:
            c["NORMW"] = self.NORMW
        return c


class _FusedRowStats(torch.autograd.Function):
    """Autograd wrapper: stats ``[N, 5]`` from the factors ``a' [N, D]``, ``b' [M, D]``."""

    @staticmethod
    def forward(ctx, launch: _Launch, a: Tensor, b: Tensor) -> Tensor:
        L = launch
        out = torch.empty(L.N, 5, dtype=torch.float32, device=a.device)
        lse = torch.empty(L.N, dtype=torch.float32, device=a.device)
        la, lb, wa, wb, w, *scalars = L.pattern()
        _stats_fwd[(triton.cdiv(L.N, L.BM),)](a, b, out, lse, la, lb, wa, wb, w, *scalars,
                                               **L.consts(normw=True))
        ctx.launch = L
        ctx.save_for_backward(a, b, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        a, b, stats, lse = ctx.saved_tensors
        L = ctx.launch
        g = grad_out.to(torch.float32).contiguous()
        la, lb, wa, wb, w, *scalars = L.pattern()
        da = db = None
        if L.symmetric_scale is not None:  # a' = b' * scale: one kernel, gradient on b' only
            db = torch.empty_like(b)
            _stats_bwd_sym[(triton.cdiv(L.N, L.BM),)](a, b, stats, lse, g, db, la, lb, wa, wb, w,
                                                       *scalars, L.symmetric_scale,
                                                       **L.consts(normw=False))
            return None, None, db
        if ctx.needs_input_grad[1]:
            da = torch.empty_like(a)
            _stats_bwd_a[(triton.cdiv(L.N, L.BM),)](a, b, stats, lse, g, da, la, lb, wa, wb, w,
                                                     *scalars, **L.consts(normw=False))
        if ctx.needs_input_grad[2]:
            db = torch.empty_like(b)
            _stats_bwd_b[(triton.cdiv(L.M, L.BN),)](a, b, stats, lse, g, db, la, lb, wa, wb, w,
                                                     *scalars, **L.consts(normw=False))
        return None, da, db


def fused_row_statistics(plan: Any, anchor_factor: Tensor, candidate_factor: Tensor, *,
                         symmetric_scale: float | None = None) -> Tensor:
    """Row statistics ``[N, 5]`` (``LSE, P, Q, LSE+, |D|``, float32) with the fused kernel.

    Args:
        plan: the engine's plan (checked with :func:`fused_unsupported_reason` by the caller).
        anchor_factor: ``[N, D]`` anchor rows ``a'`` (normalised, temperature folded in), float32,
            bfloat16 or float16; contiguous copies are made when needed.
        candidate_factor: ``[M, D]`` candidate rows ``b'`` of the same dtype and device.

        symmetric_scale: ``c`` when ``a' = c b'`` exactly (a self-comparison with a constant scalar
            temperature: ``c = 1 / tau``). The logits are then symmetric and backward runs one
            kernel that returns the whole gradient through ``b'`` (``a'`` gets none; correct
            because ``a'`` is ``c b'``); ``None``: general two-kernel backward.

    Returns:
        ``[N, 5]`` float32 statistics, differentiable with respect to both factors. Rows with an
        empty denominator (or no positive, for ``LSE+``) hold ``-1e30`` (``log 0``).
    """
    a = anchor_factor.contiguous()
    b = candidate_factor.contiguous()
    return _FusedRowStats.apply(_Launch(plan, a, b, symmetric_scale), a, b)


def compile_kernels(arch: int = 90, *, dtype: str = "float32", dim: int = 128,
                    **pattern: int) -> dict[str, bytes]:
    """Compile the four kernels ahead of time for CUDA ``sm_<arch>`` (no GPU needed).

    Checks that this Triton version lowers the kernels all the way to a cubin with its bundled
    ``ptxas``, e.g. in CI without a GPU. Needs ``TRITON_INTERPRET`` unset (interpreted kernels
    cannot be compiled).

    Args:
        arch: compute capability as an int (90: H100/H200, 80: A100).
        dtype: ``"float32"`` or ``"bfloat16"`` inputs.
        dim: feature size ``D``.
        **pattern: compile-time flags (``DIAG``, ``POS``, ``DECOUPLED``, ``WEIGHT``, ``NORMW``,
            ``NEED_PLSE``, ``PREC``); defaults are GRACE's (offset positives, diagonal excluded).

    Returns:
        ``{kernel name: cubin bytes}``.
    """
    if triton is None:
        raise ValueError("compile_kernels: Triton is not installed")
    if triton_interpreting():
        raise ValueError("compile_kernels: TRITON_INTERPRET=1 is set; interpreted kernels "
                         "cannot be compiled (run without it)")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    ty = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(dtype)
    if ty is None:
        raise ValueError(f"dtype: expected 'float32', 'bfloat16' or 'float16', got {dtype!r}")
    bd = max(16, triton.next_power_of_2(dim))
    bm, bn, warps, stages = _tiles(bd)
    flags = dict(DIAG=1, POS=1, DECOUPLED=0, WEIGHT=0, NEED_PLSE=0, UPCAST=0, PREC="tf32")
    flags.update(pattern)
    normw = flags.pop("NORMW", 0)
    out = {}
    for kernel in (_stats_fwd, _stats_bwd_a, _stats_bwd_b, _stats_bwd_sym):
        consts = dict(flags, BM=bm, BN=bn, BD=bd)
        if kernel is _stats_fwd:
            consts["NORMW"] = normw
        sig = {}
        for name in kernel.arg_names:
            if name in consts:
                sig[name] = "constexpr"
            elif name in ("a_ptr", "b_ptr", "da_ptr", "db_ptr"):
                sig[name] = "*" + ty
            elif name in ("la_ptr", "lb_ptr", "wa_ptr", "wb_ptr"):
                sig[name] = "*i32"
            elif name.endswith("_ptr"):
                sig[name] = "*fp32"
            else:
                sig[name] = "fp32" if name in ("diag_value", "inv_tau") else "i32"
        src = ASTSource(fn=kernel, signature=sig, constexprs=consts)
        compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                                  options={"num_warps": warps, "num_stages": stages})
        out[kernel.fn.__name__] = compiled.asm["cubin"]
    return out
