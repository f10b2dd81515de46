r"""AMCL: adaptive multi-head contrastive learning, the loss part (Wang et al., ECCV 2024).

``C`` projection heads give every pair ``C`` similarities; each is divided by a pair-adaptive
temperature ``tau = tau_min + (tau_max - tau_min) sigmoid(phi([z_a; z_b]))`` from a small network
``phi`` shared by the heads. SimCLR / MoCo form (official ``readme.md``, table 2, Eq. 2.1):

.. math::

    \ell_i = \sum_{c=1}^{C} \Big[ -\frac{s(z_i^c, z_i^{c+})}{\tau_i^{c+}}
        + \frac{s(z_i^c, z_{in^*}^{c-})}{\tau_{in^*}^{c-}}
        + \beta\, \Omega(\tau_i^{c+}) - \beta\, \Omega(\tau_{in^*}^{c-}) \Big],
    \qquad \Omega(\tau) = \frac{d'}{2} \log \tau + \frac{1}{\tau}

with ``n*`` the negative of highest raw cosine similarity (found without grad; the negatives are
the other samples of the other view and of the same view), so ``phi`` is evaluated on ``2M`` pairs
per head and direction, never on ``M^2``. ``Omega`` is the official module's regulariser (with
``-s/tau`` the positive term is a Gaussian negative log-likelihood of the distance ``1 - s``
with variance proportional to ``tau``); its sign is ``+`` for positives and ``-`` for negatives.
The loss is summed over heads and averaged over anchors and both view directions.

Deviation (documented toolkit default): ``tau_min = 0.02`` instead of the official ``1e-5``
(``s / 1e-5`` blows up). The official training step (``src/models.py``) does not implement the
tabulated loss (see the spec); this follows the equations. ``smooth=True`` is the spec's
log-sum-exp ablation over all negatives (``phi`` on every pair: dense, ``O(M^2)``, small batches
only), with each negative's regulariser weighted by its (detached) softmax share.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..checks import check_choice, check_int, check_positive, check_tensor

__all__ = ["MultiHeadProjector", "AdaptiveTemperature", "amcl_regularizer", "amcl_loss",
           "AMCLLoss"]


class MultiHeadProjector(nn.Module):
    """``C`` independent heads ``Linear(in, hidden) -> ReLU -> Linear(hidden, out)``.

    ``forward(h [M, in]) -> [C, M, out]`` (not normalised). Heads are initialised independently
    (identical heads would reduce AMCL to a single head).
    """

    def __init__(self, in_dim: int = 512, hidden_dim: int = 512, out_dim: int = 128,
                 num_heads: int = 3) -> None:
        super().__init__()
        for name, v in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim),
                        ("num_heads", num_heads)):
            check_int(name, v)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True),
                          nn.Linear(hidden_dim, out_dim)) for _ in range(num_heads))

    def forward(self, h: Tensor) -> Tensor:
        check_tensor("h", h, ndim=2, floating=True)
        return torch.stack([head(h) for head in self.heads], 0)


def amcl_regularizer(tau: Tensor, dim: int) -> Tensor:
    r"""``Omega(tau) = (dim / 2) log(tau) + 1 / tau`` (elementwise)."""
    return 0.5 * dim * torch.log(tau) + 1.0 / tau


class AdaptiveTemperature(nn.Module):
    """Pair temperature ``tau_min + (tau_max - tau_min) sigmoid(phi([z_a; z_b]))``.

    ``phi = Linear(2 dim, hidden) -> ReLU -> Linear(hidden, 1)``. ``forward(za [P, D], zb [P, D])
    -> [P]``.
    """

    def __init__(self, dim: int = 128, hidden: int = 128, tau_min: float = 0.02,
                 tau_max: float = 2.0) -> None:
        super().__init__()
        check_int("dim", dim)
        check_int("hidden", hidden)
        check_positive("tau_min", tau_min)
        check_positive("tau_max", tau_max)
        if tau_max <= tau_min:
            raise ValueError(f"tau_max: expected a value above tau_min={tau_min}, got {tau_max}")
        self.dim, self.tau_min, self.tau_max = dim, float(tau_min), float(tau_max)
        self.phi = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, 1))

    def forward(self, za: Tensor, zb: Tensor) -> Tensor:
        check_tensor("za", za, floating=True)
        check_tensor("zb", zb, floating=True)
        if za.shape != zb.shape or za.size(-1) != self.dim:
            raise ValueError(f"za, zb: expected equal shapes [..., {self.dim}], got "
                             f"{tuple(za.shape)} and {tuple(zb.shape)}")
        x = torch.cat([za, zb], -1).to(self.phi[0].weight.dtype)
        return self.tau_min + (self.tau_max - self.tau_min) * torch.sigmoid(
            self.phi(x).squeeze(-1))


def _as_temperature_fn(temperature: Any) -> Callable[[Tensor, Tensor], Tensor]:
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        check_positive("temperature", temperature)
        t = float(temperature)
        return lambda a, b: torch.full(a.shape[:-1], t, dtype=a.dtype, device=a.device)
    if callable(temperature):
        return temperature
    raise TypeError(f"temperature: expected an AdaptiveTemperature, a callable (za, zb) -> tau "
                    f"or a positive float, got {type(temperature).__name__}")


@torch.no_grad()
def _hardest(a: Tensor, cand: Tensor, block: int) -> Tensor:
    """Index into ``cand [2M, D]`` (``[b; a]``) of each anchor's most similar negative, ``[M]``."""
    M = a.size(0)
    out = []
    for i in range(0, M, block):
        stop = min(i + block, M)
        s = a[i:stop] @ cand.t()
        ar = torch.arange(stop - i, device=a.device)
        s[ar, ar + i] = float("-inf")          # the positive (other view, same sample)
        s[ar, M + ar + i] = float("-inf")      # the anchor itself
        out.append(s.argmax(1))
    return torch.cat(out)


def amcl_loss(z1: Tensor, z2: Tensor, temperature: Any, *, beta: float = 0.1,
              smooth: bool = False, reduction: str = "mean", block_size: int = 1024) -> Tensor:
    r"""AMCL's SimCLR/MoCo-form loss over ``C`` heads (see the module docstring).

    Args:
        z1: ``[C, M, D]`` head outputs for view 1 (or ``[M, D]`` for one head); normalised here.
        z2: ``[C, M, D]`` for view 2; ``z2[c, i]`` is the positive of ``z1[c, i]``.
        temperature: an :class:`AdaptiveTemperature` (or any callable ``(za [P, D], zb [P, D])
            -> tau [P]``), or a fixed positive float (warm start; the regularisers then cancel).
        beta: regulariser weight (0.1).
        smooth: log-sum-exp over all negatives instead of the hardest one (dense ablation).
        reduction: ``"mean"`` (over anchors and directions; summed over heads), ``"sum"`` or
            ``"none"`` (``[2M]`` per anchor, view-1 anchors first, summed over heads).
        block_size: anchors per block of the no-grad arg-max search.
    """
    check_tensor("z1", z1, ndim=(2, 3), floating=True)
    check_tensor("z2", z2, ndim=(2, 3), floating=True)
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2: expected the same shape, got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    if z1.dim() == 2:
        z1, z2 = z1[None], z2[None]
    C, M, D = z1.shape
    if M < 2:
        raise ValueError(f"z1: expected at least 2 samples per head, got shape {tuple(z1.shape)}")
    check_positive("beta", beta, allow_zero=True)
    check_choice("reduction", reduction, ("mean", "sum", "none"))
    tau_fn = _as_temperature_fn(temperature)
    dtype = torch.promote_types(z1.dtype, torch.float32)
    per_anchor = z1.new_zeros(2 * M, dtype=dtype)
    for c in range(C):
        u1 = nn.functional.normalize(z1[c].to(dtype), dim=1, eps=1e-12)
        u2 = nn.functional.normalize(z2[c].to(dtype), dim=1, eps=1e-12)
        terms = []
        for a, b in ((u1, u2), (u2, u1)):
            s_pos = (a * b).sum(1)
            t_pos = tau_fn(a, b).to(dtype)
            cand = torch.cat([b, a], 0)                                         # [2M, D]
            if smooth:
                s_all = a @ cand.t()                                            # [M, 2M]
                t_all = tau_fn(a[:, None, :].expand(M, 2 * M, D),
                               cand[None].expand(M, 2 * M, D)).to(dtype)
                kill = torch.zeros(M, 2 * M, dtype=torch.bool, device=a.device)
                ar = torch.arange(M, device=a.device)
                kill[ar, ar] = True
                kill[ar, M + ar] = True
                logits = (s_all / t_all).masked_fill(kill, float("-inf"))
                share = torch.softmax(logits, 1).detach()
                reg_neg = (share * amcl_regularizer(t_all, D).masked_fill(kill, 0.0)).sum(1)
                neg = torch.logsumexp(logits, 1)
            else:
                n_star = _hardest(a.detach(), cand.detach(), block_size)
                hard = cand[n_star]
                t_neg = tau_fn(a, hard).to(dtype)
                neg = (a * hard).sum(1) / t_neg
                reg_neg = amcl_regularizer(t_neg, D)
            terms.append(-s_pos / t_pos + neg
                         + beta * (amcl_regularizer(t_pos, D) - reg_neg))
        per_anchor = per_anchor + torch.cat(terms)
    if reduction == "none":
        return per_anchor
    return per_anchor.sum() if reduction == "sum" else per_anchor.mean()


class AMCLLoss(nn.Module):
    """AMCL loss owning its :class:`AdaptiveTemperature` network; ``forward(z1, z2)``.

    Set ``fixed_temperature`` to a float to warm-start with a fixed temperature (an addition).
    """

    def __init__(self, dim: int = 128, beta: float = 0.1, *, hidden: int = 128,
                 tau_min: float = 0.02, tau_max: float = 2.0, smooth: bool = False) -> None:
        super().__init__()
        check_positive("beta", beta, allow_zero=True)
        self.temperature = AdaptiveTemperature(dim, hidden, tau_min, tau_max)
        self.beta, self.smooth = beta, smooth
        self.fixed_temperature: float | None = None

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        t = self.temperature if self.fixed_temperature is None else self.fixed_temperature
        return amcl_loss(z1, z2, t, beta=self.beta, smooth=self.smooth)
