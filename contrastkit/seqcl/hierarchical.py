r"""TS2Vec's dilated-convolution encoder and hierarchical temporal / instance contrastive losses.

Shared by TS2Vec-family methods (TS2Vec, InfoTS, AutoTCL) and by COMET's observation and sample
levels (``../shared/specs/sequence/comet.md`` section 2.1-2.2, ``ts2vec_infots.md`` Part A).

Encoder (:class:`TSEncoder`): ``Linear(C -> hidden)`` -> timestamp mask on the projected input ->
``depth`` residual blocks of two dilated ``kernel=3`` convolutions (dilation ``2^l``, GELU) and a
final block to ``output_dims`` -> dropout. Input ``[B, T, C]``, output ``[B, T, D]`` (one vector per
timestamp).

Losses, for two views ``z, z~ : [B, T, D]`` (dot-product similarity, no temperature):

.. math::

    \ell^{temp}_{i,t} = -\log \frac{e^{z_{i,t} \cdot \tilde z_{i,t}}}
        {\sum_{t'} \big(e^{z_{i,t} \cdot \tilde z_{i,t'}} + 1[t' \ne t]\, e^{z_{i,t} \cdot z_{i,t'}}\big)}
    \qquad
    \ell^{inst}_{i,t} = -\log \frac{e^{z_{i,t} \cdot \tilde z_{i,t}}}
        {\sum_{j} \big(e^{z_{i,t} \cdot \tilde z_{j,t}} + 1[j \ne i]\, e^{z_{i,t} \cdot z_{j,t}}\big)}

both symmetrised over the views and averaged. Each is one batched engine call: the temporal loss
is ``B`` problems of ``2T`` rows ``[z_i; z~_i]`` (partner at offset ``T``, self excluded), the
instance loss ``T`` problems of ``2B`` rows (partner at offset ``B``) — the engine's leading group
dimension (:func:`contrastkit.core.engine.contrastive_loss` with ``[G, N, D]`` anchors).

Hierarchy (TS2Vec Alg. 1; COMET ``contrastive_loss(..., hierarchical=True)``): apply the losses,
max-pool both views over time by 2, repeat while ``T > 1``, and average over the levels. TS2Vec adds
one more instance term at ``T = 1`` (``final_instance=True``); COMET does not.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.checks import check_choice, check_int, check_probability, check_tensor
from ..core.engine import contrastive_loss

__all__ = ["AveragedEncoder", "encode_full", "SamePadConv", "ConvBlock", "DilatedConvEncoder", "TSEncoder", "generate_mask",
           "MASK_MODES", "temporal_contrastive_loss", "instance_contrastive_loss",
           "hierarchical_contrastive_loss", "max_pool_time", "receptive_field"]

#: timestamp mask modes of :func:`generate_mask`
MASK_MODES = ("all_true", "all_false", "binomial", "continuous", "mask_last")


class AveragedEncoder:
    """Mixin for methods with ``self.encoder`` that encode downstream with an equal-weight running
    average of its weights (SWA; TS2Vec and COMET keep one, like ``AveragedModel``).

    Call :meth:`init_average` in ``__init__`` after setting ``self.encoder`` and :meth:`count_step`
    at the start of every training step: the weights after each optimiser step are folded in once
    (the initial weights never are). :meth:`downstream_encoder` returns the average (after a final
    update) when there is one. Subclasses may override :meth:`averaging_active` (e.g. to start
    averaging at a later epoch).
    """

    def init_average(self, enabled: bool) -> None:
        self.swa_encoder = (copy.deepcopy(self.encoder).requires_grad_(False) if enabled
                            else None)
        self.register_buffer("swa_count", torch.zeros((), dtype=torch.long))
        self._steps = 0          # training steps taken (= optimiser updates once each returns)
        self._averaged_at = 0    # the step count whose weights were averaged last

    def averaging_active(self) -> bool:
        return True

    @torch.no_grad()
    def update_average(self) -> None:
        """Fold the current encoder weights into the running average (equal weights)."""
        if (self.swa_encoder is None or not self.averaging_active() or self._steps == 0
                or self._steps == self._averaged_at):
            return
        self._averaged_at = self._steps
        n = int(self.swa_count)
        for p_avg, p in zip(self.swa_encoder.parameters(), self.encoder.parameters()):
            if n == 0:
                p_avg.copy_(p)
            else:
                p_avg.add_((p - p_avg) / (n + 1))
        self.swa_count += 1

    def count_step(self) -> None:
        """Start of a training step: average the previous step's weights, count this one."""
        if self.training:
            self.update_average()
            self._steps += 1

    def downstream_encoder(self) -> nn.Module:
        """The averaged encoder (after a final update) when there is one, else the raw one."""
        if self.swa_encoder is not None:
            self.update_average()
            if int(self.swa_count) > 0:
                return self.swa_encoder
        return self.encoder



class SamePadConv(nn.Module):
    """Dilated 1-D convolution whose output has the input's length ``[B, C, T] -> [B, C', T]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 dilation: int = 1) -> None:
        super().__init__()
        receptive = (kernel_size - 1) * dilation + 1
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size,
                              padding=receptive // 2, dilation=dilation)
        self.remove = 1 if receptive % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return out[:, :, :-self.remove] if self.remove else out


class ConvBlock(nn.Module):
    """``x + conv2(gelu(conv1(gelu(x))))`` with a 1x1 projection of the residual when needed."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int,
                 final: bool = False) -> None:
        super().__init__()
        self.conv1 = SamePadConv(in_channels, out_channels, kernel_size, dilation)
        self.conv2 = SamePadConv(out_channels, out_channels, kernel_size, dilation)
        self.projector = (nn.Conv1d(in_channels, out_channels, 1)
                          if in_channels != out_channels or final else None)

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.projector is None else self.projector(x)
        x = self.conv1(F.gelu(x))
        x = self.conv2(F.gelu(x))
        return x + residual


class DilatedConvEncoder(nn.Module):
    """Stack of :class:`ConvBlock` with dilations ``1, 2, 4, ...``; ``[B, C, T] -> [B, D, T]``."""

    def __init__(self, in_channels: int, channels: list[int], kernel_size: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(*[
            ConvBlock(channels[i - 1] if i > 0 else in_channels, channels[i], kernel_size,
                      dilation=2 ** i, final=(i == len(channels) - 1))
            for i in range(len(channels))])

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def generate_mask(batch: int, length: int, mode: str, *, p: float = 0.5, n_spans: int = 5,
                  span_frac: float = 0.1, device: torch.device | str = "cpu") -> Tensor:
    """Boolean timestamp mask ``[B, T]`` (``True`` = keep), drawn from the global torch generator.

    * ``binomial``: keep each timestamp with probability ``p`` (TS2Vec's training default).
    * ``continuous``: per series, ``n_spans`` times zero a span of ``int(span_frac * T)`` steps at a
      uniform start (spans may overlap) — COMET's sample/observation masks.
    * ``all_true`` / ``all_false``; ``mask_last``: all but the last timestamp.

    Raises:
        ValueError / TypeError: ``batch`` / ``length`` / ``n_spans`` not ints ``>= 0``, ``p``
            or ``span_frac`` outside ``[0, 1]``, an unknown ``mode``.
    """
    check_choice("mode", mode, MASK_MODES)
    check_int("batch", batch, 0)
    check_int("length", length, 0)
    check_probability("p", p)
    check_int("n_spans", n_spans, 0)
    check_probability("span_frac", span_frac)
    if mode == "all_true":
        return torch.ones(batch, length, dtype=torch.bool, device=device)
    if mode == "all_false":
        return torch.zeros(batch, length, dtype=torch.bool, device=device)
    if mode == "mask_last":
        m = torch.ones(batch, length, dtype=torch.bool, device=device)
        m[:, -1] = False
        return m
    if mode == "binomial":
        return torch.rand(batch, length, device=device) < p
    span = int(span_frac * length)
    m = torch.ones(batch, length, dtype=torch.bool, device=device)
    if span <= 0:
        return m
    starts = torch.randint(0, length - span + 1, (batch, n_spans), device=device)
    offs = torch.arange(span, device=device)
    cols = (starts[:, :, None] + offs).reshape(batch, -1)
    m.scatter_(1, cols, False)
    return m


class TSEncoder(nn.Module):
    """TS2Vec's encoder ``[B, T, C] -> [B, T, D]``.

    Args:
        input_dims: channels ``C``.
        output_dims: representation size ``D`` (TS2Vec/COMET: 320).
        hidden_dims: width of the convolution stack (64).
        depth: residual blocks before the final one (10).
        mask_mode: training-time mask when ``forward`` gets ``mask=None`` (eval: ``all_true``).
        dropout: dropout on the output representation (0.1).

    NaN timestamps (any channel) are zeroed and masked out, as in TS2Vec.
    """

    def __init__(self, input_dims: int, output_dims: int = 320, hidden_dims: int = 64,
                 depth: int = 10, mask_mode: str = "binomial", dropout: float = 0.1) -> None:
        super().__init__()
        check_choice("mask_mode", mask_mode, MASK_MODES)
        self.input_dims, self.output_dims = input_dims, output_dims
        self.mask_mode = mask_mode
        self.input_fc = nn.Linear(input_dims, hidden_dims)
        self.feature_extractor = DilatedConvEncoder(hidden_dims,
                                                    [hidden_dims] * depth + [output_dims], 3)
        self.repr_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: str | Tensor | None = None) -> Tensor:
        """Encode ``x [B, T, C]``; ``mask`` is a mode name, a ``[B, T]`` bool tensor or ``None``."""
        check_tensor("x", x, ndim=3, floating=True)
        if x.size(-1) != self.input_dims:
            raise ValueError(f"x: expected {self.input_dims} channels in the last dimension, "
                             f"got shape {tuple(x.shape)}")
        nan_mask = ~x.isnan().any(dim=-1)
        x = torch.where(nan_mask[..., None], x, torch.zeros_like(x))
        h = self.input_fc(x)
        if mask is None:
            mask = self.mask_mode if self.training else "all_true"
        if isinstance(mask, str):
            mask = generate_mask(x.size(0), x.size(1), mask, device=x.device)
        mask = mask & nan_mask
        h = h * mask[..., None].to(h.dtype)
        h = self.feature_extractor(h.transpose(1, 2)).transpose(1, 2)
        return self.repr_dropout(h)


def max_pool_time(z: Tensor) -> Tensor:
    """Max-pool ``[B, T, D]`` over time with kernel 2 (a trailing odd step is dropped)."""
    return F.max_pool1d(z.transpose(1, 2), kernel_size=2).transpose(1, 2)


def _check_views(z1: Tensor, z2: Tensor) -> None:
    check_tensor("z1", z1, ndim=3, floating=True)
    check_tensor("z2", z2, ndim=3, floating=True)
    if z1.shape != z2.shape:
        raise ValueError(f"z2: expected the shape of z1 {tuple(z1.shape)}, got {tuple(z2.shape)}")


def temporal_contrastive_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """TS2Vec's temporal loss for views ``[B, T, D]``; 0 when ``T == 1``.

    One engine call over ``B`` groups of ``2T`` rows ``[z1_i; z2_i]``: partner at offset ``T``,
    self excluded, dot product, temperature 1, mean over the ``2BT`` rows.
    """
    _check_views(z1, z2)
    if z1.size(1) <= 1:
        return z1.new_zeros(())
    z = torch.cat([z1, z2], dim=1)  # [B, 2T, D]
    return contrastive_loss(z, None, positives=z1.size(1), similarity="dot", temperature=1.0,
                            diagonal="exclude")


def instance_contrastive_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """TS2Vec's instance loss for views ``[B, T, D]``; 0 when ``B == 1``.

    One engine call over ``T`` groups of ``2B`` rows (the batch at one timestamp): partner at
    offset ``B``, self excluded, dot product, temperature 1, mean over the ``2BT`` rows.
    """
    _check_views(z1, z2)
    if z1.size(0) <= 1:
        return z1.new_zeros(())
    z = torch.cat([z1, z2], dim=0).transpose(0, 1)  # [T, 2B, D]
    return contrastive_loss(z, None, positives=z1.size(0), similarity="dot", temperature=1.0,
                            diagonal="exclude")


def hierarchical_contrastive_loss(z1: Tensor, z2: Tensor, *, alpha: float = 0.5,
                                  temporal_unit: int = 0, final_instance: bool = True) -> Tensor:
    r"""TS2Vec's hierarchical loss ``(1/d) sum_levels [alpha l_inst + (1 - alpha) l_temp]``.

    Args:
        z1, z2: the two views ``[B, T, D]``.
        alpha: weight of the instance term (1: instance only; 0: temporal only).
        temporal_unit: the temporal term starts at this pooling level.
        final_instance: add TS2Vec's instance term at ``T = 1`` (counted as a level). COMET's
            hierarchical loss has no such term: pass ``False``.

    Returns:
        The scalar loss.
    """
    _check_views(z1, z2)
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha: expected a float in [0, 1], got {alpha}")
    loss = z1.new_zeros(())
    d = 0
    while z1.size(1) > 1:
        if alpha != 0:
            loss = loss + alpha * instance_contrastive_loss(z1, z2)
        if d >= temporal_unit and alpha != 1:
            loss = loss + (1 - alpha) * temporal_contrastive_loss(z1, z2)
        d += 1
        z1, z2 = max_pool_time(z1), max_pool_time(z2)
    if final_instance and z1.size(1) == 1:
        if alpha != 0:
            loss = loss + alpha * instance_contrastive_loss(z1, z2)
        d += 1
    return loss / max(d, 1)


def receptive_field(depth: int, kernel_size: int = 3) -> int:
    """Receptive field (time steps) of :class:`DilatedConvEncoder` with ``depth + 1`` blocks."""
    return 1 + int(np.sum([2 * (kernel_size - 1) * 2 ** i for i in range(depth + 1)]))


@torch.no_grad()
def encode_full(encoder: nn.Module, x: Tensor | np.ndarray, batch_size: int = 256) -> Tensor:
    """Full-series encoding max-pooled over time ``[N, T, C] -> [N, D]`` (eval mode, no mask)."""
    x = torch.as_tensor(x, dtype=torch.float32)
    check_tensor("x", x, ndim=3, floating=True)
    was = encoder.training
    encoder.eval()
    dev = next(encoder.parameters()).device
    out = [encoder(x[i:i + batch_size].to(dev), "all_true").amax(1).cpu()
           for i in range(0, x.size(0), batch_size)]
    encoder.train(was)
    return torch.cat(out)
