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
per head and direction, never on ``M^2``. The loss is summed over heads and averaged over anchors
and both view directions.

Regulariser (``regularizer=``). The MLE reading of the paper (and the spec) is that, with
``R(tau) = 1/tau + (d'/2) log tau``, the positive term ``-s/tau + R(tau) = (1 - s)/tau +
(d'/2) log tau`` is a Gaussian negative log-likelihood of the distance ``1 - s`` with variance
``~ tau``, minimised at an interior ``tau* = 2 (1 - s) / d'``. Taken literally, ``beta * Omega``
with ``beta = 0.1`` scales the ``1/tau`` part too, so the positive term becomes
``(beta - s)/tau + beta (d'/2) log tau``: for every pair with ``s > beta`` it decreases
monotonically as ``tau -> 0``, every positive temperature pins to ``tau_min``, the negative one
(``-beta Omega``) has no interior minimum either, and ``beta (d'/2) log(tau_max / tau_min)``
(~29 per head) dwarfs the similarity terms: the Fashion-MNIST run fell to a loss of ~ -62 and a
kNN accuracy below a random encoder. Options:

* ``"symmetric"`` (default): ``R_beta(tau) = 1/tau + beta (d'/2) log tau`` (``beta`` weighs only
  the log-normaliser, the ``1/tau`` stays at weight 1 as the likelihood needs), added for the
  positive *and* the negative: ``(1 - s+)/tau+ + b log tau+`` and ``(1 + s-)/tau- + b log tau-``
  (``b = beta d'/2``), each with an interior optimum ``tau* = (1 -/+ s)/b``, so dissimilar
  positives and similar (possibly false) negatives get higher temperatures, the paper's stated
  intent. Bounded below by ``2 b log tau_min`` per head and anchor.
* ``"gaussian"``: ``R_beta`` with the table's signs (``+`` positive, ``-`` negative); the
  positive side is fixed, the negative temperature still runs to a bound.
* ``"table"``: the spec's literal ``+beta Omega(tau+) - beta Omega(tau-)``,
  ``Omega = (d'/2) log tau + 1/tau`` (kept to reproduce the failure).

With a fixed float temperature (warm start) the regularisers are constants and are dropped.

Other toolkit choices (see :class:`~contrastkit.vision.simclr.SimCLRConfig` for the frame
defaults): ``smooth=True`` is the spec's log-sum-exp over all negatives (``phi`` on every pair,
evaluated with the first layer split, :meth:`AdaptiveTemperature.pairwise`, ``O(M^2 hidden)``),
with each negative's regulariser weighted by its (detached) softmax share; the paper's ``max``
form (``smooth=False``, the function default) trains only the hardest negative and on
Fashion-MNIST collapses within ~50 steps even at a fixed temperature (the FaceNet
hardest-negative collapse). ``detach_input=True`` feeds ``phi`` detached features, so the heads
learn only through the similarities and the regulariser cannot reshape the features to
steer the temperatures. Deviation: ``tau_min = 0.02`` instead of the official ``1e-5``
(``s / 1e-5`` blows up). The official training step (``src/models.py``) does not implement the
tabulated loss (see the spec); this follows the equations.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..checks import check_choice, check_embeddings, check_int, check_positive, check_tensor
from ..similarity import l2_normalize

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
    r"""``Omega(tau) = (dim / 2) log(tau) + 1 / tau`` (elementwise; ``tau > 0``)."""
    check_tensor("tau", tau, floating=True)
    check_positive("tau", tau.detach())
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
        check_embeddings("za", za, ndim=None, finite=False)  # amcl_loss checked its inputs
        check_embeddings("zb", zb, ndim=None, finite=False)
        if za.shape != zb.shape or za.size(-1) != self.dim:
            raise ValueError(f"za, zb: expected equal shapes [..., {self.dim}], got "
                             f"{tuple(za.shape)} and {tuple(zb.shape)}")
        x = torch.cat([za, zb], -1).to(self.phi[0].weight.dtype)
        return self.tau_min + (self.tau_max - self.tau_min) * torch.sigmoid(
            self.phi(x).squeeze(-1))

    def pairwise(self, za: Tensor, zb: Tensor) -> Tensor:
        """Temperatures of every pair, ``[M, D] x [N, D] -> [M, N]``, equal to ``forward`` on
        the expanded pairs but with the first layer split (``W [a; b] = W_a a + W_b b``), so the
        cost is ``O(M N hidden)`` instead of ``O(M N D hidden)``."""
        check_embeddings("za", za, ndim=2, finite=False)
        check_embeddings("zb", zb, ndim=2, finite=False)
        if za.size(1) != self.dim or zb.size(1) != self.dim:
            raise ValueError(f"za, zb: expected [*, {self.dim}], got {tuple(za.shape)} and "
                             f"{tuple(zb.shape)}")
        first, last = self.phi[0], self.phi[2]
        w = first.weight
        ha = za.to(w.dtype) @ w[:, :self.dim].t() + first.bias               # [M, H]
        hb = zb.to(w.dtype) @ w[:, self.dim:].t()                            # [N, H]
        hidden = torch.relu(ha[:, None, :] + hb[None, :, :])                 # [M, N, H]
        r = hidden @ last.weight[0] + last.bias[0]
        return self.tau_min + (self.tau_max - self.tau_min) * torch.sigmoid(r)


REGULARIZERS = ("symmetric", "gaussian", "table")


def _reg(tau: Tensor, dim: int, beta: float, regularizer: str) -> Tensor:
    if regularizer == "table":
        return beta * amcl_regularizer(tau, dim)
    return 1.0 / tau + beta * 0.5 * dim * torch.log(tau)


def _as_temperature_fn(temperature: Any) -> Callable[[Tensor, Tensor], Tensor]:
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        check_positive("temperature", temperature)
        t = float(temperature)
        return lambda a, b: torch.full(a.shape[:-1], t, dtype=a.dtype, device=a.device)
    if callable(temperature):
        return temperature
    raise TypeError(f"temperature: expected an AdaptiveTemperature, a callable (za, zb) -> tau "
                    f"or a positive float, got {type(temperature).__name__}")


def _checked_tau(tau: Any, shape: tuple[int, ...], call: str) -> Tensor:
    """The output of a temperature callable: a floating tensor of ``shape`` with positive,
    finite values (one fused reduction), else a ``ValueError`` / ``TypeError`` naming
    ``temperature``."""
    if not isinstance(tau, Tensor) or not tau.is_floating_point():
        got = f"dtype {tau.dtype}" if isinstance(tau, Tensor) else type(tau).__name__
        raise TypeError(f"temperature: expected the callable's {call} to return a "
                        f"floating-point tensor of shape {list(shape)}, got {got}")
    if tuple(tau.shape) != tuple(shape):
        raise ValueError(f"temperature: expected the callable's {call} to return shape "
                         f"{list(shape)} (one temperature per pair), got {tuple(tau.shape)}")
    t = tau.detach()
    if not bool(((t > 0) & torch.isfinite(t)).all()):
        raise ValueError(f"temperature: expected the callable's {call} to return positive, "
                         f"finite temperatures, got {int(torch.isnan(t).sum())} NaN, "
                         f"{int(torch.isinf(t).sum())} infinite and {int((t <= 0).sum())} "
                         f"non-positive entries (minimum {float(t.nan_to_num(0.0).min())})")
    return tau


class _Checked:
    """Wraps a temperature callable: every output is checked by :func:`_checked_tau`."""

    def __init__(self, net: Any) -> None:
        self.net = net
        if hasattr(net, "pairwise"):
            self.pairwise = self._pairwise

    def __call__(self, za: Tensor, zb: Tensor) -> Tensor:
        return _checked_tau(self.net(za, zb), tuple(za.shape[:-1]), "output (za, zb) -> tau")

    def _pairwise(self, za: Tensor, zb: Tensor) -> Tensor:
        return _checked_tau(self.net.pairwise(za, zb), (za.size(0), zb.size(0)),
                            "pairwise(za, zb) output")


class _Detached:
    def __init__(self, net: Any) -> None:
        self.net = net

    def __call__(self, za: Tensor, zb: Tensor) -> Tensor:
        return self.net(za.detach(), zb.detach())

    def pairwise(self, za: Tensor, zb: Tensor) -> Tensor:
        return self.net.pairwise(za.detach(), zb.detach())


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
              smooth: bool = False, regularizer: str = "symmetric", detach_input: bool = False,
              reduction: str = "mean", block_size: int = 1024) -> Tensor:
    r"""AMCL's SimCLR/MoCo-form loss over ``C`` heads (see the module docstring).

    Args:
        z1: ``[C, M, D]`` head outputs for view 1 (or ``[M, D]`` for one head); normalised here.
        z2: ``[C, M, D]`` for view 2; ``z2[c, i]`` is the positive of ``z1[c, i]``.
        temperature: an :class:`AdaptiveTemperature` (or any callable ``(za [P, D], zb [P, D])
            -> tau [P]``, optionally with ``pairwise(za [M, D], zb [N, D]) -> [M, N]``), or a
            fixed positive float (warm start; the regularisers are then constants and are
            dropped). A callable's output is checked: a floating tensor of the pairs' shape
            with positive, finite values, else a ``ValueError`` / ``TypeError``.
        beta: regulariser weight (0.1).
        smooth: log-sum-exp over all negatives instead of the hardest one (``phi`` on every
            pair; uses ``temperature.pairwise`` when it has one).
        regularizer: ``"symmetric"`` (``+R_beta`` for positive and negative, ``R_beta(tau) =
            1/tau + beta (d'/2) log tau``), ``"gaussian"`` (``+R_beta`` / ``-R_beta``) or
            ``"table"`` (the spec's literal ``+beta Omega`` / ``-beta Omega``); see the module
            docstring.
        detach_input: feed the temperature network detached features (the heads then learn
            only through the similarities).
        reduction: ``"mean"`` (over anchors and directions; summed over heads), ``"sum"`` or
            ``"none"`` (``[2M]`` per anchor, view-1 anchors first, summed over heads).
        block_size: anchors per block of the no-grad arg-max search.
    """
    check_embeddings("z1", z1, ndim=(2, 3))
    check_embeddings("z2", z2, ndim=(2, 3))
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
    check_choice("regularizer", regularizer, REGULARIZERS)
    tau_fn = _as_temperature_fn(temperature)
    fixed = not callable(temperature)          # fixed tau: the regularisers are constants, dropped
    if not fixed:
        tau_fn = _Checked(tau_fn)
    if detach_input:
        raw_fn = tau_fn
        if hasattr(raw_fn, "pairwise"):
            tau_fn = _Detached(raw_fn)
        else:
            tau_fn = lambda za, zb: raw_fn(za.detach(), zb.detach())  # noqa: E731
    dtype = torch.promote_types(z1.dtype, torch.float32)
    per_anchor = z1.new_zeros(2 * M, dtype=dtype)
    for c in range(C):
        u1 = l2_normalize(z1[c].to(dtype), dim=1, eps=1e-12)
        u2 = l2_normalize(z2[c].to(dtype), dim=1, eps=1e-12)
        terms = []
        for a, b in ((u1, u2), (u2, u1)):
            s_pos = (a * b).sum(1)
            t_pos = tau_fn(a, b).to(dtype)
            cand = torch.cat([b, a], 0)                                         # [2M, D]
            if smooth:
                s_all = a @ cand.t()                                            # [M, 2M]
                if hasattr(tau_fn, "pairwise"):
                    t_all = tau_fn.pairwise(a, cand).to(dtype)
                else:
                    t_all = tau_fn(a[:, None, :].expand(M, 2 * M, D),
                                   cand[None].expand(M, 2 * M, D)).to(dtype)
                kill = torch.zeros(M, 2 * M, dtype=torch.bool, device=a.device)
                ar = torch.arange(M, device=a.device)
                kill[ar, ar] = True
                kill[ar, M + ar] = True
                logits = (s_all / t_all).masked_fill(kill, float("-inf"))
                share = torch.softmax(logits, 1).detach()
                reg_neg = (share * _reg(t_all, D, beta, regularizer).masked_fill(kill, 0.0)
                           ).sum(1)
                neg = torch.logsumexp(logits, 1)
            else:
                n_star = _hardest(a.detach(), cand.detach(), block_size)
                hard = cand[n_star]
                t_neg = tau_fn(a, hard).to(dtype)
                neg = (a * hard).sum(1) / t_neg
                reg_neg = _reg(t_neg, D, beta, regularizer)
            sign = 1.0 if regularizer == "symmetric" else -1.0
            reg = 0.0 if fixed else _reg(t_pos, D, beta, regularizer) + sign * reg_neg
            terms.append(-s_pos / t_pos + neg + reg)
        per_anchor = per_anchor + torch.cat(terms)
    if reduction == "none":
        return per_anchor
    return per_anchor.sum() if reduction == "sum" else per_anchor.mean()


class AMCLLoss(nn.Module):
    """AMCL loss owning its :class:`AdaptiveTemperature` network; ``forward(z1, z2)``.

    Set ``fixed_temperature`` to a float to warm-start with a fixed temperature (an addition).
    """

    def __init__(self, dim: int = 128, beta: float = 0.1, *, hidden: int = 128,
                 tau_min: float = 0.02, tau_max: float = 2.0, smooth: bool = False,
                 regularizer: str = "symmetric", detach_input: bool = False) -> None:
        super().__init__()
        check_positive("beta", beta, allow_zero=True)
        check_choice("regularizer", regularizer, REGULARIZERS)
        self.temperature = AdaptiveTemperature(dim, hidden, tau_min, tau_max)
        self.beta, self.smooth = beta, smooth
        self.regularizer, self.detach_input = regularizer, detach_input
        self.fixed_temperature: float | None = None

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        t = self.temperature if self.fixed_temperature is None else self.fixed_temperature
        return amcl_loss(z1, z2, t, beta=self.beta, smooth=self.smooth,
                         regularizer=self.regularizer, detach_input=self.detach_input)
