r"""AutoTCL: parametric augmentation for time-series contrastive learning (Zheng et al., ICLR 2024).

Spec: ``../shared/specs/sequence/autotcl.md``. A small augmentation network looks at a series
``x [B, T, C]`` and outputs two masks (spec 2.1, paper Eqs. 2-6):

.. code-block:: text

    e   = AugNet(x)                      # a small CoST encoder, [B, T, aug_dim]
    pi  = sigmoid(Linear_h(e))           # factorisation head h(x), [B, T, C] (or [B, T, 1])
    s   = sigmoid(Linear_g(e))           # transformation head g(x), strictly positive
    m   = HardConcrete(pi)               # binary-ish mask, straight-through when hard_mask
    v   = s * m * x                      # the positive view x' = g(x) . h(x) . x

``g(x) = s`` is a strictly positive elementwise factor, so ``v -> v / s`` inverts it on the kept
part ``m * x`` (the "invertible transform" of Property 2); ``h`` selects the informative part.

The augmenter and the encoder are trained by alternating AdamW steps (spec 3.3, Algorithm 1):

* augmenter step (every ``ratio_step`` iterations, encoder frozen in eval mode), code default

  .. math::

      L_{aug} = \mathrm{MMD}(\max_t \mathrm{TCN}(x), \max_t \mathrm{TCN}(v))
          + \beta\,\mathrm{relu}(\overline{\textstyle\sum_c \pi} - 0.4)
          + \lambda\,\mathrm{Consistency}(\pi)

  (paper Eq. 11: ``MMD(f(x), f(x*))`` with ``x* = m * x``, ``beta * E||m||_0`` (Eq. 9) and the
  temporal-consistency term of Eq. 7);
* encoder step (fresh mask sample, augmenter not stepped)

  .. math::

      L_{enc} = L_g + \alpha\, L_l,\qquad
      L_g = -\frac1B \sum_i \log \frac{e^{\cos(z_i, z'_i)}}{\sum_j e^{\cos(z_i, z'_j)}},\qquad
      z = \max_t f(x),\ z' = \max_t f(v)

  where ``L_l`` is InfoTS's local loss: the (per-timestamp L2-normalised) representation of one
  series is cut into ``k = 16`` segments, max-pooled, each segment's positive is the next one
  (the last one's the previous), its negatives all segments but itself and its neighbours.

Both contrastive terms are single :func:`contrastkit.core.engine.contrastive_loss` calls.

Backbone ``f`` (spec 3.1, ``backbone="cost"``, what produced Table 1): TS2Vec's dilated CNN
(:class:`~contrastkit.seqcl.hierarchical.TSEncoder`, 320 channels, no timestamp mask, no dropout)
followed by CoST's trend feature disentangler (:class:`TrendDisentangler`: the mean of 8 causal
convolutions, kernels 1..128; CoST's seasonal branch is removed). ``backbone="ts2vec"`` uses the
TS2Vec encoder alone (the paper's classification setting, workshop Table 8; its training script and
hyperparameters were not released: see :data:`CLASSIFICATION` for ours); with it
``aug_divergence="tcn_view"`` uses the encoder output (there is no separate TCN stage).

Paper vs released code (spec section 8) — each is a named option; the default is the code:

=========================  =====================  ==============================================
option                     default (code)         paper
=========================  =====================  ==============================================
``view_timestamp_mask``    ``False``: no Delta_v  ``True``: Bernoulli(0.5) latent timestamp mask
                                                  on the view (TS2Vec's), encoder step only
``aug_divergence``         ``"tcn_view"``: MMD of ``"full_informative"``: MMD of ``f(x)`` and
                           ``TCN(x)``, ``TCN(v)``  ``f(x*)``, ``x* = m * x`` (``g`` then gets no
                                                  gradient from ``L_aug``)
``concrete``               ``"code"``: location   ``"paper"``: location ``logit(pi)``, eps ~
                           ``pi``, eps ~ U(b,1-b), U(0,1), gamma = -gamma_zeta,
                           zeta = 1, tau = 1      zeta = 1 + gamma_zeta, tau = concrete_tau
``sparsity``               ``"hinge"``: relu(mean  ``"l0"``: expected L0 norm of the mask (Eq. 9),
                           sum_c pi - 0.4)         summed over time, mean over the batch
``consistency``            ``"code"``              ``"paper"``: Eq. 7 on the sampled mask
``mask_shape``             ``"channel"``: T x C    ``"time"``: T x 1, shared by the channels
                           (calendar covariates
                           masked too)
``local_loss``             ``"code"``: segments of ``"paper"``: segments of ``f(v)``, every
                           ``f(x)``, first series  series of the batch
                           of the batch only
``optimizer``              ``"adamw"`` (wd 0.01)  ``"adam"``
``swa_include_init``       ``True``: the average  (not stated)
                           starts from the initial
                           weights (AveragedModel)
=========================  =====================  ==============================================

With the code's concrete (location ``pi`` in (0, 1), ``eps ~ U(0.05, 0.95)``) the soft mask is
almost never exactly 0, and the straight-through binarised mask keeps between about 47 %
(``pi -> 0``) and 74 % (``pi -> 1``) of the entries: ``h`` modulates, it cannot crop hard.
Training sections are NaN-padded then set to 0 (code); the encoder itself zeroes and masks NaN
timestamps (TS2Vec's handling) where the released code lets NaN through (spec pitfall 12; the
affected rows are dropped by the protocol either way). The augmenter's optimizer state is not in
the trainer's checkpoints (a resumed run restarts its AdamW moments).

Presets (:data:`PRESETS`) are the official ``config.py`` univariate settings for ETTh1, ETTh2 and
ETTm1. **They were tuned on the test split in the official code** (its evaluation runs on the
test split every 10 epochs and the config comments record test averages); we use them as
released and tune nothing further on test. The released training script does not pass
``aug_depth`` to the model, so the augmentation network always has the class default depth 3
(``config.py``'s ``aug_depth`` 1 / 2 / 1 has no effect); ``aug_depth=3`` reproduces that.

Classification (UCR / UEA; :data:`CLASSIFICATION`, :meth:`AutoTCLConfig.classification`, applied
by the CLI to every UCR / UEA id): TS2Vec backbone and budget, the paper's Delta_v, and a
dot-product global loss (``global_similarity="dot"``, InfoTS's). With the code's cosine at
temperature 1 the loss does not depend on the representation norm and AdamW at lr 1e-3 grows it
without bound (std of the max-pooled training representations after 200 steps on
SonyAIBORobotSurface1: 27, vs 0.29 with the dot product), while the SVM accuracy falls as training
goes on (Beef: 0.633 after 1 step, 0.467 after 100); the dot product keeps the norm bounded
(``benchmarks/autotcl_classification_variants.py``).
``encoder_objective="hierarchical"`` (TS2Vec's loss between ``f(x)`` and ``f(v)``) is the other
option we measured.

Evaluation is TS2Vec's (:mod:`contrastkit.seqcl.ts2vec`): causal sliding encoding with 200 steps
of context and the SWA encoder, ridge per horizon, ``mse@H`` / ``mae@H`` and their means;
classification by the SVM protocol on max-pooled representations.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.checks import check_choice, check_config_numbers, check_ints, check_positive, check_tensor
from ..core.engine import contrastive_loss
from ..core.method import ContrastiveMethod
from ..core.trainer import Trainer
from ..core.similarity import l2_normalize
from ..registry import MethodSpec, RunContext, RunResult, register
from .hierarchical import (AveragedEncoder, TSEncoder, encode_full, generate_mask,
                           hierarchical_contrastive_loss)
from .ts2vec import SeriesBatches, default_iters, prepare_train_data, run_protocol

__all__ = ["AutoTCLConfig", "AutoTCL", "PRESETS", "TrendDisentangler", "CoSTEncoder",
           "LastStep", "Augmenter", "hard_concrete", "expected_l0", "sparsity_hinge",
           "consistency_code", "consistency_paper", "mmd_loss", "global_loss",
           "local_loss", "local_pairs", "fit", "run", "evaluate", "BACKBONES"]

BACKBONES = ("cost", "ts2vec")
TFD_KERNELS = (1, 2, 4, 8, 16, 32, 64, 128)

#: official ``config.py`` univariate settings (tuned on the TEST split by the authors; see the
#: module docstring). ``aug_depth`` is 3 everywhere: the released script never passes it.
PRESETS: dict[str, dict[str, Any]] = {
    "etth1": dict(batch_size=32, lr=3e-5, meta_lr=0.01, aug_hidden_dims=64, aug_dim=16,
                  max_train_length=257, epochs=115, local_weight=0.3, reg_weight=0.003,
                  regular_weight=0.0, gamma_zeta=0.05, gumbel_bias=0.05, ratio_step=1,
                  hard_mask=True),
    "etth2": dict(batch_size=32, lr=1e-5, meta_lr=0.01, aug_hidden_dims=128, aug_dim=16,
                  max_train_length=512, epochs=80, local_weight=0.1, reg_weight=0.1,
                  regular_weight=0.0, gamma_zeta=0.02, gumbel_bias=0.05, ratio_step=1,
                  hard_mask=False),
    "ettm1": dict(batch_size=32, lr=1e-5, meta_lr=0.01, aug_hidden_dims=128, aug_dim=16,
                  max_train_length=512, epochs=190, local_weight=0.1, reg_weight=0.1,
                  regular_weight=0.0, gamma_zeta=0.02, gumbel_bias=0.05, ratio_step=1,
                  hard_mask=False),
}

#: our classification setting (the paper's classification runs use a TS2Vec encoder, but their
#: script and hyperparameters were never released): TS2Vec's encoder, batch, learning rate,
#: window and budget (``epochs=None``: 200 steps, 600 above 100,000 training values), the
#: paper's latent timestamp mask on the view (Delta_v), and InfoTS's dot-product global loss
#: (AutoTCL's cosine at temperature 1 is scale-invariant and AdamW then grows the
#: representation norm without bound at lr 1e-3; see the README). Chosen on a train-only
#: criterion (leave-one-out 1-NN on the training representations of four UCR sets), never on
#: test labels. Applied by the CLI to every UCR / UEA dataset.
CLASSIFICATION: dict[str, Any] = dict(backbone="ts2vec", batch_size=8, lr=1e-3,
                                      max_train_length=3000, epochs=None,
                                      global_similarity="dot", view_timestamp_mask=True)


@dataclass
class AutoTCLConfig:
    """AutoTCL hyperparameters; defaults = the official ETTh1 univariate setting.

    Attributes:
        dataset, univariate: what to train on (forecasting ids; classification ids work too).
        backbone: ``"cost"`` (TCN + trend disentangler; Table 1) or ``"ts2vec"``.
        output_dims, hidden_dims, depth, kernels: the encoder (320, 64, 10, TFD kernels 1..128).
        encoder_dropout: ``ts2vec`` backbone only: dropout on its output (CoST: none).
        aug_dim, aug_hidden_dims, aug_depth: the augmentation network (16, 64, 3).
        lr, meta_lr, weight_decay, optimizer: encoder / augmenter learning rates, AdamW decay.
        batch_size, max_train_length: batch (capped at the number of training sections) and
            window; the train series is cut into ``T // max_train_length`` sections.
        epochs, iters: passes over the sections; ``iters`` caps the optimiser steps. Both
            ``None``: TS2Vec's budget (200 steps, 600 above 100,000 training values).
        local_weight (alpha), reg_weight (beta), regular_weight (lambda): loss weights.
        gamma_zeta, gumbel_bias, hard_mask: the hard-concrete mask (stretch, noise range,
            straight-through binarisation).
        concrete_tau: temperature of the ``paper`` concrete (code: 1).
        sparsity_threshold: the hinge of the ``hinge`` sparsity term (0.4).
        local_segments: ``k`` of the local loss (16).
        ratio_step: ``M``: the augmenter is stepped every ``M``-th iteration.
        view_timestamp_mask, aug_divergence, concrete, sparsity, consistency, mask_shape,
            local_loss, swa_include_init: paper-vs-code switches (module docstring).
        global_similarity: ``L_g``'s similarity: ``"cosine"`` (AutoTCL's code) or ``"dot"``
            (InfoTS's, which AutoTCL's global loss was adapted from).
        encoder_objective: ``"global_local"`` (``L_g + alpha L_l``, paper Eq. 16) or
            ``"hierarchical"``: TS2Vec's hierarchical loss between ``f(x)`` and ``f(v)`` (plus
            ``alpha L_l``), the augmenter plugged into TS2Vec's objective.
        swa: encode with the running weight average (official).
        tfd_impl: ``"fft"`` (exact, fast on CPU) or ``"direct"`` convolution for the TFD.
        sliding_padding, encode_batch_size, pred_lens, max_ridge_samples, max_svm_train:
            evaluation (TS2Vec protocol).
        checkpoint_every: write ``checkpoint.pt`` every this many epochs (0: at the end);
            ``contrastkit train ... --resume`` continues from it.
    """

    dataset: str = "etth1"
    univariate: bool = True
    backbone: str = "cost"
    output_dims: int = 320
    hidden_dims: int = 64
    depth: int = 10
    kernels: tuple[int, ...] = TFD_KERNELS
    encoder_dropout: float = 0.1
    aug_dim: int = 16
    aug_hidden_dims: int = 64
    aug_depth: int = 3
    lr: float = 3e-5
    meta_lr: float = 0.01
    weight_decay: float = 0.01
    optimizer: str = "adamw"
    batch_size: int = 32
    max_train_length: int = 257
    epochs: int | None = 115
    iters: int | None = None
    local_weight: float = 0.3
    reg_weight: float = 0.003
    regular_weight: float = 0.0
    gamma_zeta: float = 0.05
    gumbel_bias: float = 0.05
    hard_mask: bool = True
    concrete_tau: float = 1.0
    sparsity_threshold: float = 0.4
    local_segments: int = 16
    ratio_step: int = 1
    view_timestamp_mask: bool = False
    aug_divergence: str = "tcn_view"
    concrete: str = "code"
    sparsity: str = "hinge"
    consistency: str = "code"
    mask_shape: str = "channel"
    local_loss: str = "code"
    global_similarity: str = "cosine"
    encoder_objective: str = "global_local"
    swa: bool = True
    swa_include_init: bool = True
    tfd_impl: str = "fft"
    sliding_padding: int = 200
    encode_batch_size: int = 256
    pred_lens: tuple[int, ...] | None = None
    max_ridge_samples: int = 100_000
    max_svm_train: int = 10_000
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        check_config_numbers(self)
        check_ints(self, ("output_dims", "hidden_dims", "aug_dim", "aug_hidden_dims", "batch_size",
                          "max_train_length", "ratio_step", "encode_batch_size",
                          "max_ridge_samples", "max_svm_train"))
        check_ints(self, ("depth", "aug_depth", "sliding_padding"), minimum=0)
        check_ints(self, ("iters", "epochs"), allow_none=True)
        check_ints(self, ("checkpoint_every",), minimum=0)
        if isinstance(self.local_segments, bool) or not isinstance(self.local_segments, int) \
                or self.local_segments < 4:
            raise ValueError(f"local_segments: expected an int >= 4, got {self.local_segments!r}")
        self.kernels = tuple(int(k) for k in self.kernels)
        if not self.kernels or min(self.kernels) < 1:
            raise ValueError(f"kernels: expected positive kernel sizes, got {self.kernels}")
        for name in ("lr", "meta_lr", "concrete_tau"):
            check_positive(name, getattr(self, name))
        for name in ("weight_decay", "local_weight", "reg_weight", "regular_weight",
                     "sparsity_threshold"):
            check_positive(name, getattr(self, name), allow_zero=True)
        if not 0.0 <= float(self.encoder_dropout) < 1.0:
            raise ValueError(f"encoder_dropout: expected a float in [0, 1), got "
                             f"{self.encoder_dropout}")
        if not 0.0 < float(self.gamma_zeta) < 1.0:
            raise ValueError(f"gamma_zeta: expected a float in (0, 1), got {self.gamma_zeta}")
        if not 0.0 <= float(self.gumbel_bias) < 0.5:
            raise ValueError(f"gumbel_bias: expected a float in [0, 0.5), got {self.gumbel_bias}")
        check_choice("backbone", self.backbone, BACKBONES)
        check_choice("optimizer", self.optimizer, ("adamw", "adam"))
        check_choice("aug_divergence", self.aug_divergence, ("tcn_view", "full_informative"))
        check_choice("concrete", self.concrete, ("code", "paper"))
        check_choice("sparsity", self.sparsity, ("hinge", "l0"))
        check_choice("consistency", self.consistency, ("code", "paper"))
        check_choice("mask_shape", self.mask_shape, ("channel", "time"))
        check_choice("local_loss", self.local_loss, ("code", "paper"))
        check_choice("global_similarity", self.global_similarity, ("cosine", "dot"))
        check_choice("encoder_objective", self.encoder_objective,
                     ("global_local", "hierarchical"))
        check_choice("tfd_impl", self.tfd_impl, ("fft", "direct"))
        if self.pred_lens is not None:
            self.pred_lens = tuple(int(h) for h in self.pred_lens)
            if not self.pred_lens or min(self.pred_lens) < 1:
                raise ValueError(f"pred_lens: expected positive horizons, got {self.pred_lens}")

    @classmethod
    def preset(cls, dataset: str, **overrides: Any) -> "AutoTCLConfig":
        """The official setting of ``dataset`` (``etth1``, ``etth2``, ``ettm1``) + overrides."""
        key = dataset.lower()
        if key not in PRESETS:
            raise ValueError(f"dataset: expected one of {sorted(PRESETS)}, got {dataset!r}")
        return cls(dataset=key, **{**PRESETS[key], **overrides})

    @classmethod
    def classification(cls, dataset: str, **overrides: Any) -> "AutoTCLConfig":
        """Our classification setting (:data:`CLASSIFICATION`) on ``dataset`` + overrides."""
        return cls(dataset=dataset, **{**CLASSIFICATION, **overrides})


# ------------------------------------------------------------------------------ backbone
def _fft_size(n: int) -> int:
    """Smallest ``2^a 3^b 5^c >= n`` (fast FFT length)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


class _RightAlignedMean(torch.autograd.Function):
    """Mean of kernels ``[O, I, k_j]`` right-aligned into ``[O, I, max k_j]`` (zeros on the
    left); the backward hands each kernel its slice of the gradient (no padded copies)."""

    @staticmethod
    def forward(ctx: Any, *weights: Tensor) -> Tensor:  # type: ignore[override]
        kmax = max(w.size(-1) for w in weights)
        ctx.sizes = [w.size(-1) for w in weights]
        out = weights[0].new_zeros(weights[0].size(0), weights[0].size(1), kmax)
        for w in weights:
            out[..., kmax - w.size(-1):] += w
        return out / len(weights)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        kmax, m = grad.size(-1), len(ctx.sizes)
        return tuple(grad[..., kmax - k:] / m for k in ctx.sizes)


class _KernelSpectrum(torch.autograd.Function):
    r"""``W [O, I, K] -> rfft(flip(W), n)`` laid out ``[F, I, O]`` (what the frequency-domain
    product needs), with a hand-written backward.

    The adjoint of a zero-padded real FFT is a real inverse FFT: for ``y_f = sum_j w_j
    e^{-2 pi i f j / n}`` (``f = 0 .. n // 2``) and PyTorch's conjugate gradient ``g_f``,
    ``dL/dw_j = Re sum_f g_f e^{2 pi i f j / n} = (n / 2) irfft(g')_j`` with ``g'`` = ``g`` whose
    ``f = 0`` bin (and the Nyquist bin when ``n`` is even) is doubled. This replaces autograd's
    complex-to-complex backward (zero-fill, full complex transform, copy), the costliest part of
    the trend disentangler's backward.
    """

    @staticmethod
    def forward(ctx: Any, w: Tensor, n: int) -> Tensor:  # type: ignore[override]
        ctx.n, ctx.k = n, w.size(-1)
        return torch.fft.rfft(w.flip(-1), n=n).permute(2, 1, 0).contiguous()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        n, k = ctx.n, ctx.k
        # (n / 2) irfft(g) counts the f = 0 (and Nyquist) bin once instead of twice: add it back
        gw = torch.fft.irfft(grad, n=n, dim=0)[:k] * (n / 2)  # [K, I, O]
        gw = gw + grad[0].real / 2
        if n % 2 == 0:
            sign = 1.0 - 2.0 * (torch.arange(k, device=grad.device) % 2).to(gw.dtype)
            gw = gw + sign[:, None, None] * grad[-1].real / 2
        return gw.permute(2, 1, 0).flip(-1), None


class TrendDisentangler(nn.Module):
    r"""CoST's trend feature disentangler, a mean of causal convolutions ``[B, T, I] -> [B, T, O]``:

    .. math::

        y_t = \frac1{|K|} \sum_{k \in K} \Big(b_k + \sum_{j=0}^{k-1} W_k[:, :, j]\, h_{t-k+1+j}\Big)

    (``h_{<0} = 0``; kernels ``K = {1, 2, ..., 128}``). The sum of causal convolutions is one causal
    convolution with the right-aligned mean kernel (:meth:`combined`), computed by FFT
    (``impl="fft"``) or directly; the parameters are the separate ``W_k``, ``b_k`` (same
    optimisation as CoST's). ``last_only`` returns only ``y_{T-1}`` as ``[B, 1, O]``.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 kernels: tuple[int, ...] = TFD_KERNELS, impl: str = "fft") -> None:
        super().__init__()
        check_choice("impl", impl, ("fft", "direct"))
        self.kernels, self.impl = tuple(kernels), impl
        self.convs = nn.ModuleList(nn.Conv1d(in_channels, out_channels, k) for k in self.kernels)

    def combined(self) -> tuple[Tensor, Tensor]:
        """The equivalent single causal kernel ``W [O, I, K_max]`` and bias ``b [O]``."""
        w = _RightAlignedMean.apply(*(c.weight for c in self.convs))
        b = sum(c.bias for c in self.convs) / len(self.convs)
        return w, b

    def forward(self, h: Tensor, *, last_only: bool = False) -> Tensor:
        w, b = self.combined()
        o, i, k = w.shape
        t = h.size(1)
        if last_only:
            tail = h[:, -k:]
            if tail.size(1) < k:
                tail = F.pad(tail, (0, 0, k - tail.size(1), 0))
            y = tail.transpose(1, 2).reshape(h.size(0), i * k) @ w.reshape(o, i * k).T
            return (y + b)[:, None]
        x = h.transpose(1, 2)  # [B, I, T]
        if self.impl == "direct":
            return (F.conv1d(F.pad(x, (k - 1, 0)), w, b)).transpose(1, 2)
        n = _fft_size(t + k - 1)
        xf = torch.fft.rfft(x, n=n)                      # [B, I, F]
        wf = _KernelSpectrum.apply(w, n)                 # [F, I, O]
        yf = torch.bmm(xf.permute(2, 0, 1), wf)          # [F, B, O]
        y = torch.fft.irfft(yf.permute(1, 2, 0), n=n)[..., :t]
        return (y + b[:, None]).transpose(1, 2)


class CoSTEncoder(nn.Module):
    """AutoTCL's forecasting encoder ``[B, T, C] -> [B, T, D]``: TS2Vec's dilated CNN
    (:class:`~contrastkit.seqcl.hierarchical.TSEncoder`, no timestamp mask unless asked, no
    dropout) then :class:`TrendDisentangler` (spec 3.1).

    ``forward(x, mask=None, tcn_output=False, last_only=False)``: ``tcn_output`` returns the CNN
    output before the trend heads (what the released code's augmenter loss sees); ``last_only``
    the last timestamp only ``[B, 1, D]`` (causal encoding).
    """

    def __init__(self, input_dims: int, output_dims: int = 320, hidden_dims: int = 64,
                 depth: int = 10, kernels: tuple[int, ...] = TFD_KERNELS,
                 tfd_impl: str = "fft") -> None:
        super().__init__()
        self.input_dims, self.output_dims = input_dims, output_dims
        self.tcn = TSEncoder(input_dims, output_dims, hidden_dims, depth, mask_mode="all_true",
                             dropout=0.0)
        self.tfd = TrendDisentangler(output_dims, output_dims, kernels, tfd_impl)

    def forward(self, x: Tensor, mask: str | Tensor | None = None, *, tcn_output: bool = False,
                last_only: bool = False) -> Tensor:
        h = self.tcn(x, mask)
        if tcn_output:
            return h[:, -1:] if last_only else h
        return self.tfd(h, last_only=last_only)


class LastStep(nn.Module):
    """Wraps an encoder so that ``forward(x, mask)`` returns only the last timestamp
    ``[B, 1, D]`` (what :func:`~contrastkit.seqcl.ts2vec.encode_causal` keeps), cheaply."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: Tensor, mask: Any = None) -> Tensor:
        if isinstance(self.encoder, CoSTEncoder):
            return self.encoder(x, mask, last_only=True)
        return self.encoder(x, mask)[:, -1:]


class Augmenter(nn.Module):
    r"""The augmentation network: ``x [B, T, C] -> (pi, s)``, both ``[B, T, C']`` in (0, 1),
    ``C' = C`` (``mask_shape="channel"``) or 1 (``"time"``): ``pi`` parameterises the
    factorisation mask ``h(x)``, ``s`` is the transformation mask ``g(x)`` (spec 2.4)."""

    def __init__(self, input_dims: int, aug_dim: int = 16, hidden_dims: int = 64, depth: int = 3,
                 kernels: tuple[int, ...] = TFD_KERNELS, mask_channels: int | None = None,
                 tfd_impl: str = "fft") -> None:
        super().__init__()
        c = input_dims if mask_channels is None else mask_channels
        self.net = CoSTEncoder(input_dims, aug_dim, hidden_dims, depth, kernels, tfd_impl)
        self.factor_head = nn.Linear(aug_dim, c)
        self.transform_head = nn.Linear(aug_dim, c)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        e = self.net(x, "all_true")
        return torch.sigmoid(self.factor_head(e)), torch.sigmoid(self.transform_head(e))


# ------------------------------------------------------------------------------ mask and losses
def _concrete_params(mode: str, gamma_zeta: float, tau: float) -> tuple[float, float, float]:
    """``(gamma, zeta, tau)`` of the stretched concrete."""
    if mode == "code":
        return -float(gamma_zeta), 1.0, 1.0
    return -float(gamma_zeta), 1.0 + float(gamma_zeta), float(tau)


def _location(pi: Tensor, mode: str) -> Tensor:
    """``log alpha``: ``pi`` itself (code) or ``logit(pi)`` (paper)."""
    if mode == "code":
        return pi
    p = pi.clamp(1e-6, 1 - 1e-6)
    return torch.log(p) - torch.log1p(-p)


def hard_concrete(pi: Tensor, *, mode: str = "code", gamma_zeta: float = 0.05,
                  gumbel_bias: float = 0.05, tau: float = 1.0, hard: bool = False,
                  noise: Tensor | None = None) -> Tensor:
    r"""A hard-concrete mask sample ``m`` (paper Eqs. 5-6 / spec 2.4), same shape as ``pi``.

    .. math::

        \tilde m = \sigma\big((\log\epsilon - \log(1-\epsilon) + \log\alpha) / \tau\big),\quad
        m = \min(1, \max(0, \tilde m (\zeta - \gamma) + \gamma))

    ``code``: ``log alpha = pi``, ``eps ~ U(b, 1 - b)`` (``b = gumbel_bias``), ``gamma =
    -gamma_zeta``, ``zeta = 1``, ``tau = 1``; ``paper``: ``log alpha = logit(pi)``, ``eps ~ U(0,
    1)``, ``zeta = 1 + gamma_zeta``, ``tau``. ``hard``: forward ``(sign(m - 0.5) + 1) / 2``,
    gradient of ``m`` (straight through). ``noise``: a given uniform ``U(0, 1)`` draw.
    """
    check_choice("mode", mode, ("code", "paper"))
    gamma, zeta, tau = _concrete_params(mode, gamma_zeta, tau)
    u = torch.rand_like(pi) if noise is None else noise
    if mode == "code":
        b = float(gumbel_bias)
        eps = b + (1 - 2 * b) * u
    else:
        eps = u
    eps = eps.clamp(1e-6, 1 - 1e-6)
    m = torch.sigmoid((torch.log(eps) - torch.log1p(-eps) + _location(pi, mode)) / tau)
    m = (m * (zeta - gamma) + gamma).clamp(0.0, 1.0)
    if hard:
        m = ((torch.sign(m - 0.5) + 1) / 2 - m).detach() + m
    return m


def expected_l0(pi: Tensor, *, mode: str = "code", gamma_zeta: float = 0.05,
                tau: float = 1.0) -> Tensor:
    r"""Paper Eq. 9 per instance: ``sum_{t,c} [1 - sigmoid(tau log(-gamma / zeta) - log alpha)]``
    for ``pi [B, T, C]`` -> ``[B]`` (the expected number of non-zero mask entries)."""
    gamma, zeta, tau = _concrete_params(mode, gamma_zeta, tau)
    p_open = 1 - torch.sigmoid(tau * math.log(-gamma / zeta) - _location(pi, mode))
    return p_open.flatten(1).sum(1)


def sparsity_hinge(pi: Tensor, threshold: float = 0.4) -> Tensor:
    """The released code's sparsity term ``relu(mean_{b,t} sum_c pi - threshold)``."""
    return F.relu(pi.sum(-1).mean() - threshold)


def consistency_code(pi: Tensor, anchors: Tensor | None = None,
                     others: Tensor | None = None) -> Tensor:
    r"""The released code's temporal-consistency term on ``pi [B, T, C]`` (spec 2.4).

    ``B`` anchors ``a`` and ``B`` candidates ``n`` drawn from ``U{1..T-3}``; ``far = 1[n - a > 1]``;
    ``d = far |pi_a - pi_n| + |pi_a - pi_{a-1}| + |pi_a - pi_{a+1}| + (1 - far)(1 - |pi_a - pi_n|)``
    for every instance at every drawn anchor (``[B, B, C]``), averaged.
    """
    bsz, t, _ = pi.shape
    if t < 4:
        raise ValueError(f"pi: expected at least 4 time steps, got {t}")
    a = torch.randint(1, t - 2, (bsz,), device=pi.device) if anchors is None else anchors
    n = torch.randint(1, t - 2, (bsz,), device=pi.device) if others is None else others
    far = ((n - a) > 1).to(pi.dtype)[None, :, None]
    pa, pn = pi[:, a], pi[:, n]
    d = (far * (pa - pn).abs() + (pa - pi[:, a - 1]).abs() + (pa - pi[:, a + 1]).abs()
         + (1 - far) * (1 - (pa - pn).abs()))
    return d.mean()


def consistency_paper(m: Tensor, anchors: Tensor | None = None, near: Tensor | None = None,
                      far: Tensor | None = None) -> Tensor:
    r"""Paper Eq. 7 on a mask ``m [B, T, C]``: per instance an anchor ``a``, a neighbour
    ``p = a +- 1`` and a distant ``n`` (``|n - a| > 1``);
    ``mean_b mean_c (|m_a - m_p| - |m_a - m_n|)``."""
    bsz, t, _ = m.shape
    if t < 4:
        raise ValueError(f"m: expected at least 4 time steps, got {t}")
    dev = m.device
    if anchors is None:
        anchors = torch.randint(0, t, (bsz,), device=dev)
    if near is None:
        step = torch.where(torch.rand(bsz, device=dev) < 0.5, -1, 1)
        near = anchors + step
        near = torch.where((near < 0) | (near >= t), anchors - step, near)
    if far is None:  # uniform over {n : |n - a| > 1}
        lo, hi = (anchors - 1).clamp(min=0), (anchors + 1).clamp(max=t - 1)
        count = t - (hi - lo + 1)
        r = (torch.rand(bsz, device=dev) * count).long()
        far = torch.where(r < lo, r, r + (hi - lo + 1))
    idx = torch.arange(bsz, device=dev)
    ma = m[idx, anchors]
    return ((ma - m[idx, near]).abs() - (ma - m[idx, far]).abs()).mean()


def mmd_loss(x: Tensor, y: Tensor, kernel_mul: float = 2.0, kernel_num: int = 5) -> Tensor:
    r"""Multi-kernel Gaussian MMD between ``x [N, D]`` and ``y [N, D]`` (spec 2.4).

    With ``z = [x; y]``, ``D_ij = ||z_i - z_j||^2``, bandwidth ``s0 = sum D / ((2N)^2 - 2N) /
    kernel_mul^(kernel_num // 2)`` (no gradient), ``K = sum_i exp(-D / (s0 kernel_mul^i))``:
    ``mean(K_xx + K_yy - K_xy - K_yx)``.
    """
    check_tensor("x", x, ndim=2, floating=True)
    check_tensor("y", y, ndim=2, floating=True)
    if x.shape != y.shape:
        raise ValueError(f"y: expected the shape of x {tuple(x.shape)}, got {tuple(y.shape)}")
    n = x.size(0)
    z = torch.cat([x, y])
    d = (z[:, None] - z[None]).pow(2).sum(-1)
    s0 = d.detach().sum() / ((2 * n) ** 2 - 2 * n) / kernel_mul ** (kernel_num // 2)
    s0 = s0.clamp(min=1e-12)
    k = sum(torch.exp(-d / (s0 * kernel_mul ** i)) for i in range(kernel_num))
    return (k[:n, :n] + k[n:, n:] - k[:n, n:] - k[n:, :n]).mean()


def global_loss(zx: Tensor, zv: Tensor, temperature: float = 1.0,
                similarity: str = "cosine") -> Tensor:
    r"""Paper Eq. 13: InfoNCE of the instance vectors ``z_x, z_v [B, D]``, anchor ``x`` only,
    positive the own view, negatives the other views; ``similarity`` ``"cosine"`` (AutoTCL's
    code) or ``"dot"`` (InfoTS's unnormalised dot product)."""
    return contrastive_loss(zx, zv, positives="aligned", similarity=similarity,
                            temperature=temperature)


def local_pairs(k: int, device: Any = None) -> tuple[Tensor, Tensor]:
    """InfoTS's local-loss pairs for ``k`` segments: ``(positives [2, k], exclude [2, k - 1])``.

    Positive of segment ``i`` is ``i + 1`` (the last one's is ``k - 2``); excluded from the
    negatives besides itself: the other neighbour ``i - 1`` and, for the two ends, the segment
    two away (``(0, 2)``, ``(k-1, k-3)``), so each row has ``k - 3`` negatives.
    """
    if k < 4:
        raise ValueError(f"k: expected at least 4 segments, got {k}")
    r = torch.arange(k, device=device)
    pos = torch.stack([r, torch.where(r < k - 1, r + 1, r - 1)])
    mid = torch.arange(1, k - 1, device=device)
    ex_rows = torch.cat([mid, torch.tensor([0, k - 1], device=device)])
    ex_cols = torch.cat([mid - 1, torch.tensor([2, k - 3], device=device)])
    return pos, torch.stack([ex_rows, ex_cols])


def local_loss(z: Tensor, k: int = 16, *, start: int | None = None,
               normalize: bool = True) -> Tensor:
    r"""InfoTS's local (segment) loss on ``z [G, T, D]``, averaged over the ``G`` series (paper
    Eqs. 14-15; spec 2.4).

    Per-timestamp L2 normalisation (``normalize``), a random offset ``start`` in
    ``[0, T - k * (T // k)]``, ``k`` segments of ``T // k`` steps max-pooled to ``s [G, k, D]``,
    then one engine call: dot product, temperature 1, positives / exclusions of
    :func:`local_pairs`. 0 when ``T < k``.
    """
    check_tensor("z", z, ndim=3, floating=True)
    g, t, d = z.shape
    crop = t // k
    if crop < 1:
        return z.new_zeros(())
    if normalize:
        z = l2_normalize(z, dim=-1)
    if start is None:
        start = int(torch.randint(0, t - crop * k + 1, ()))
    seg = z[:, start:start + crop * k].reshape(g, k, crop, d).amax(2)
    pos, excl = local_pairs(k, z.device)
    return contrastive_loss(seg, None, positives=pos, exclude=excl, similarity="dot",
                            temperature=1.0, diagonal="exclude")


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Parameters of ``module`` temporarily need no gradient (activations still do)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(module.parameters(), flags):
            p.requires_grad_(f)


# ------------------------------------------------------------------------------ the method
class AutoTCL(AveragedEncoder, ContrastiveMethod):
    """AutoTCL through the shared trainer: batches ``[B, T, C]`` of training sections.

    The trainer steps the encoder optimizer (:meth:`configure_optimizer`) on the loss that
    :meth:`training_step` returns; the augmenter has its own optimizer, stepped inside
    :meth:`training_step` by :meth:`augmenter_step` every ``ratio_step``-th call.
    """

    name = "autotcl"

    def __init__(self, config: AutoTCLConfig, input_dims: int) -> None:
        super().__init__(config)
        c = config
        if c.backbone == "cost":
            self.encoder = CoSTEncoder(input_dims, c.output_dims, c.hidden_dims, c.depth,
                                       c.kernels, c.tfd_impl)
        else:
            self.encoder = TSEncoder(input_dims, c.output_dims, c.hidden_dims, c.depth,
                                     mask_mode="all_true", dropout=c.encoder_dropout)
        self.augmenter = Augmenter(input_dims, c.aug_dim, c.aug_hidden_dims, c.aug_depth,
                                   c.kernels, 1 if c.mask_shape == "time" else input_dims,
                                   c.tfd_impl)
        self.init_average(c.swa)
        if c.swa and c.swa_include_init:
            self.swa_count += 1  # torch AveragedModel(...).update_parameters at construction
        opt = torch.optim.AdamW if c.optimizer == "adamw" else torch.optim.Adam
        kw = {"weight_decay": c.weight_decay} if c.optimizer == "adamw" else {}
        self.aug_optimizer = opt(self.augmenter.parameters(), lr=c.meta_lr, **kw)
        self.iteration = 0
        self.last_aug_loss = float("nan")

    def configure_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        if c.optimizer == "adamw":
            return torch.optim.AdamW(self.encoder.parameters(), lr=c.lr,
                                     weight_decay=c.weight_decay)
        return torch.optim.Adam(self.encoder.parameters(), lr=c.lr)

    def on_epoch_end(self, epoch: int) -> None:
        self.update_average()

    # ---- pieces
    def _features(self, x: Tensor, mask: Any = None, *, tcn: bool = False) -> Tensor:
        if isinstance(self.encoder, CoSTEncoder):
            return self.encoder(x, mask, tcn_output=tcn)
        return self.encoder(x, mask)

    def augment(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(v, m, pi, s)``: the view ``v = s * m * x`` with a fresh mask sample ``m``."""
        c = self.config
        pi, s = self.augmenter(x)
        m = hard_concrete(pi, mode=c.concrete, gamma_zeta=c.gamma_zeta,
                          gumbel_bias=c.gumbel_bias, tau=c.concrete_tau, hard=c.hard_mask)
        return s * m * x, m, pi, s

    def augmenter_loss(self, x: Tensor) -> Tensor:
        """``L_aug`` (spec 2.4 / paper Eq. 11) with the encoder's parameters frozen."""
        c = self.config
        v, m, pi, _ = self.augment(x)
        if c.aug_divergence == "tcn_view":
            zx, zv = self._features(x, "all_true", tcn=True), self._features(v, "all_true",
                                                                           tcn=True)
        else:
            zx, zv = self._features(x, "all_true"), self._features(m * x, "all_true")
        loss = mmd_loss(zx.amax(1), zv.amax(1))
        if c.reg_weight:
            if c.sparsity == "hinge":
                reg = sparsity_hinge(pi, c.sparsity_threshold)
            else:
                reg = expected_l0(pi, mode=c.concrete, gamma_zeta=c.gamma_zeta,
                                  tau=c.concrete_tau).mean()
            loss = loss + c.reg_weight * reg
        if c.regular_weight:
            cons = consistency_code(pi) if c.consistency == "code" else consistency_paper(m)
            loss = loss + c.regular_weight * cons
        return loss

    def augmenter_step(self, x: Tensor) -> float:
        """One augmenter update (encoder in eval mode, its parameters untouched)."""
        was = self.encoder.training
        self.encoder.eval()
        self.aug_optimizer.zero_grad(set_to_none=True)
        with _frozen(self.encoder), torch.enable_grad():
            loss = self.augmenter_loss(x)
            loss.backward()
        self.aug_optimizer.step()
        self.aug_optimizer.zero_grad(set_to_none=True)
        self.encoder.train(was)
        return float(loss.detach())

    def encoder_loss(self, x: Tensor) -> Tensor:
        """``L_g + alpha L_l`` (spec 2.4) with a fresh view; no gradient reaches the augmenter."""
        c = self.config
        with torch.no_grad():
            v = self.augment(x)[0]
        # one encoder pass over [x; v]: the trend disentangler's kernel transform (the costly
        # part of its backward) is computed once per step instead of once per view
        b, t = x.shape[:2]
        mask = torch.ones(2 * b, t, dtype=torch.bool, device=x.device)
        if c.view_timestamp_mask:
            mask[b:] = generate_mask(b, t, "binomial", device=x.device)
        h = self._features(torch.cat([x, v]), mask)
        hx, hv = h[:b], h[b:]
        if c.encoder_objective == "hierarchical":
            loss = hierarchical_contrastive_loss(hx, hv)
        else:
            loss = global_loss(hx.amax(1), hv.amax(1), similarity=c.global_similarity)
        if c.local_weight:
            local_in = hx[:1] if c.local_loss == "code" else hv
            loss = loss + c.local_weight * local_loss(local_in, c.local_segments)
        return loss

    def training_step(self, x: Tensor) -> Tensor:
        self.count_step()
        m = self.config.max_train_length
        if x.size(1) > m:
            start = int(torch.randint(0, x.size(1) - m + 1, ()))
            x = x[:, start:start + m]
        if self.iteration % self.config.ratio_step == 0:
            self.last_aug_loss = self.augmenter_step(x)
        self.iteration += 1
        self.encoder.train()
        return self.encoder_loss(x)

    def causal_encoder(self) -> nn.Module:
        """The downstream encoder wrapped for :func:`~contrastkit.seqcl.ts2vec.encode_causal`."""
        return LastStep(self.downstream_encoder())

    @torch.no_grad()
    def embed(self, x: Tensor) -> Tensor:
        """Max-pooled full-series representations ``[N, D]`` of ``x [N, T, C]``."""
        return encode_full(self.downstream_encoder(), x, self.config.encode_batch_size)


# ------------------------------------------------------------------------------ running
def fit(config: AutoTCLConfig, train: np.ndarray, *, seed: int = 0, device: str = "cpu",
        progress: bool = False, out_dir: Any = None, evaluator: Any = None,
        eval_every: int = 0, resume: bool | str | Path = False) -> tuple[AutoTCL, Trainer]:
    """Train AutoTCL on ``train [N, T, C]``: sections of ``max_train_length`` (NaN -> 0, as the
    released code), ``epochs`` shuffled passes (drop last), at most ``iters`` steps; both
    ``None``: TS2Vec's budget for the size of ``train``.

    ``evaluator(method) -> dict`` runs every ``eval_every`` epochs (the trainer's hook: the random
    state is restored afterwards, so training is unchanged); its values land in
    ``trainer.history``. The released training loop prints test scores every 10 epochs this way.

    ``out_dir`` is the trainer's folder (log, ``checkpoint.pt``); ``resume`` as
    :meth:`~contrastkit.core.trainer.Trainer.fit` (``True``: continue from
    ``out_dir/checkpoint.pt``). A resumed run restarts the augmenter's optimizer moments and its
    every-``ratio_step`` schedule (neither is in the checkpoint).
    """
    iters = config.iters
    if iters is None and config.epochs is None:
        iters = default_iters(int(np.asarray(train).size))
    x = prepare_train_data(np.asarray(train, dtype=np.float32), config.max_train_length)
    x = np.nan_to_num(x)
    loader = SeriesBatches(torch.from_numpy(x), config.batch_size, max_steps=iters, seed=seed)
    epochs = config.epochs
    if iters is not None:
        cap = math.ceil(iters / loader.steps_per_epoch)
        epochs = cap if epochs is None else min(epochs, cap)
    torch.manual_seed(seed)
    method = AutoTCL(config, x.shape[-1])
    trainer = Trainer(epochs, device=device, seed=seed, progress=progress, out_dir=out_dir,
                      checkpoint_every=config.checkpoint_every, deterministic=False,
                      evaluator=evaluator, eval_every=eval_every)
    trainer.fit(method, loader, resume=resume)
    method.eval()
    return method, trainer


def run(config: AutoTCLConfig, ctx: RunContext) -> RunResult:
    """CLI entry: train on the train split, evaluate with the dataset's protocol."""
    return run_protocol(fit, lambda m: m.causal_encoder(), config, ctx)


def evaluate(config: AutoTCLConfig, embeddings: Tensor, ctx: RunContext) -> dict[str, float]:
    """Re-evaluate saved embeddings (as :func:`contrastkit.seqcl.ts2vec.evaluate`)."""
    from .ts2vec import evaluate as _ts2vec_evaluate
    return _ts2vec_evaluate(config, embeddings, ctx)


def _classification_ids() -> list[str]:
    """The registered UCR / UEA dataset ids (they get :data:`CLASSIFICATION` in the CLI)."""
    from ..datasets import registry as datasets_registry
    return [d.id for d in datasets_registry.registered("timeseries")
            if d.id.startswith(("ucr-", "uea-"))]


register(MethodSpec(
    name="autotcl", config_cls=AutoTCLConfig, run=run, evaluate=evaluate,
    description="AutoTCL: learned factorised augmentation (mask x positive scaling) + CoST-style "
                "encoder (forecasting: ridge on causal reps; classification: SVM)",
    default_dataset="etth1",
    presets={**{k: dict(v) for k, v in PRESETS.items()},
             **{ds: dict(CLASSIFICATION) for ds in _classification_ids()}},
    accepts=("timeseries:forecast", "timeseries:classification")))
