r"""CACR: contrastive attraction and contrastive repulsion (Zheng et al., TMLR 2023).

Embeddings ``z [V, M, D]``: ``V = K + 1`` augmentations of ``M`` images (L2-normalised inside,
as the official encoder ends with an L2 norm). Cost ``c(a, b) = ||a - b||^2 = 2 - 2 a^T b``.

Contrastive attraction (each view ``v`` as query, its ``K`` other views as positives, weighted
towards the *farthest* ones):

.. math::

    \mathcal{L}_{CA} = \frac{1}{V} \sum_v \frac{1}{M} \sum_i \sum_{v' \ne v}
        \pi^+_{i, v v'} \, \alpha \, c(u_{iv}, u_{iv'}), \qquad
    \pi^+_{i, v \cdot} = \mathrm{softmax}_{v' \ne v}\big(t^+ c(u_{iv}, u_{iv'})\big)

Contrastive repulsion (for every unordered view pair ``(a, b)``, view ``a`` of image ``i`` is
repelled from view ``b`` of every other image, weighted towards the *nearest*):

.. math::

    \mathcal{L}_{CR} = -\frac{2}{V(V-1)} \sum_{a < b} \frac{1}{M} \sum_i \sum_{j \ne i}
        \pi^-_{ij} \, \beta \, c(u_{ia}, u_{jb}), \qquad
    \pi^-_{i \cdot} = \mathrm{softmax}_{j \ne i}\big(-t^- c(u_{ia}, u_{jb})\big)

``L = L_CA + L_CR``. In the official small-scale code the softmax weights stay in the graph
(``weights_grad=True``, default); the large-scale code detaches them (``weights_grad=False``).
``conditional=False`` gives uniform weights (the "without conditional distribution" ablation,
code ``choice = none``). ``debias_prior = p > 0`` applies the code's debiased repulsion
``(E^-[c] - p c^+) / (1 - p)`` with ``c^+ = c(u_{ia}, u_{ib})`` the query's positive cost in
that view pair (our reading of ``with_debiased``; off by default).

The ``M x (M-1)`` repulsion blocks are softmax expectations; because
``pi^- \propto e^{2 t^- \cos}``, ``E^-[c] = exp(LSE_j(s_ij + log c_ij) - LSE_j(s_ij))`` with
``s = cos / (1 / 2t^-)``: two engine calls (the second with the cost as a denominator weight
that carries gradient), so big batches are processed in row blocks.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor, nn

from ..checks import check_embeddings, check_positive
from ..engine import row_statistics
from ..similarity import l2_normalize
from ..weights import BlockWeight

__all__ = ["cacr_loss", "CACRLoss"]


def _check_number(name: str, value: Any, *, allow_zero: bool = True) -> float:
    check_positive(name, value, allow_zero=allow_zero)
    return float(value)


def _repulsion(ua: Tensor, ub: Tensor, *, neg_temperature: float, conditional: bool,
               weights_grad: bool, block_size: int | None) -> Tensor:
    """``E^-_i[c] = sum_{j != i} pi_ij c(ua_i, ub_j)``, ``[M]``."""
    M = ua.size(0)
    if not conditional or neg_temperature == 0.0:
        total = ub.sum(0, keepdim=True) - ub                                  # sum over j != i
        return 2.0 - 2.0 * (ua * total).sum(1) / (M - 1)
    tau = 1.0 / (2.0 * neg_temperature)
    kw: dict[str, Any] = dict(positives=None, temperature=tau, similarity="cosine",
                              exclude="aligned", block_size=block_size)
    lse = row_statistics(ua, ub, **kw).lse
    if not weights_grad:
        # value E[c] with the gradient of sum_j sg(pi_ij) c_ij = 2 - 2 tau d/ds LSE (same grads)
        with torch.no_grad():
            lse_c = row_statistics(ua, ub, negative_weight=BlockWeight(
                lambda s, rows: (2.0 - 2.0 * tau * s).clamp_min(0.0)), **kw).lse
            value = (lse_c - lse).exp()
        surrogate = -2.0 * tau * lse
        return value + surrogate - surrogate.detach()
    lse_c = row_statistics(ua, ub, negative_weight=BlockWeight(
        lambda s, rows: (2.0 - 2.0 * tau * s).clamp_min(0.0)), **kw).lse
    return (lse_c - lse).exp()


def cacr_loss(z: Tensor, *, alpha: float = 1.0, beta: float = 1.0, pos_temperature: float = 1.0,
              neg_temperature: float = 0.9, conditional: bool = True, weights_grad: bool = True,
              debias_prior: float = 0.0, return_parts: bool = False,
              block_size: int | None = None) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    r"""CACR loss over ``z [V, M, D]`` (see the module docstring).

    Args:
        z: ``[V, M, D]`` embeddings, ``V = K + 1 >= 2`` views of ``M >= 2`` images.
        alpha: attraction scale (1.0).
        beta: repulsion scale (1.0).
        pos_temperature: ``t^+`` (1.0 on CIFAR-10/100 and STL-10).
        neg_temperature: ``t^-`` (0.9 on CIFAR-10; 2.0 on CIFAR-100 and STL-10).
        conditional: conditional weights (default) or uniform weights (ablation).
        weights_grad: let gradient flow through the softmax weights (small-scale code, default)
            or treat them as constants (large-scale code).
        debias_prior: debiased repulsion prior ``p`` in ``[0, 1)`` (code's ``tau_plus``; 0 = off).
        return_parts: also return ``(L_CA, L_CR)``.
        block_size: engine row block for the repulsion terms.

    Returns:
        ``L_CA + L_CR``, or ``(total, L_CA, L_CR)``.

    Raises:
        ValueError / TypeError: ``z`` not a finite floating ``[V, M, D]`` with ``V, M >= 2``,
            negative or non-finite scales / temperatures, ``debias_prior`` outside ``[0, 1)``.
    """
    # checked here, not left to the engine: conditional=False (and neg_temperature=0) never
    # calls it, so a NaN / inf in z became a NaN loss; and with conditional=True an inf turned
    # into NaN in the normalisation before the engine saw it (its error named "anchors")
    check_embeddings("z", z, ndim=3)
    V, M, _ = z.shape
    if V < 2 or M < 2:
        raise ValueError(f"z: expected [V, M, D] with V >= 2 views and M >= 2 images, got shape "
                         f"{tuple(z.shape)}")
    alpha = _check_number("alpha", alpha)
    beta = _check_number("beta", beta)
    t_pos = _check_number("pos_temperature", pos_temperature)
    t_neg = _check_number("neg_temperature", neg_temperature)
    if isinstance(debias_prior, bool) or not isinstance(debias_prior, (int, float)) \
            or not 0.0 <= float(debias_prior) < 1.0:
        raise ValueError(f"debias_prior: expected a number in [0, 1), got {debias_prior!r}")
    u = l2_normalize(z.to(torch.promote_types(z.dtype, torch.float32)), dim=-1)
    # attraction: [V, V, M] costs between the views of each image
    cost = (u[:, None] - u[None, :]).pow(2).sum(-1)
    off = ~torch.eye(V, dtype=torch.bool, device=z.device)[:, :, None].expand(V, V, M)
    if conditional and t_pos != 0.0:
        w = torch.softmax((t_pos * cost).masked_fill(~off, float("-inf")), dim=1)
        if not weights_grad:
            w = w.detach()
    else:
        w = off.to(cost.dtype) / (V - 1)
    ca = alpha * (w * cost).sum(1).mean()
    # repulsion over unordered view pairs
    terms = []
    for a, b in itertools.combinations(range(V), 2):
        e = _repulsion(u[a], u[b], neg_temperature=t_neg, conditional=conditional,
                       weights_grad=weights_grad, block_size=block_size)
        if debias_prior > 0:
            e = (e - debias_prior * cost[a, b]) / (1.0 - debias_prior)
        terms.append(-beta * e.mean())
    cr = torch.stack(terms).mean()
    total = ca + cr
    return (total, ca, cr) if return_parts else total


class CACRLoss(nn.Module):
    """Module wrapper of :func:`cacr_loss`."""

    def __init__(self, *, alpha: float = 1.0, beta: float = 1.0, pos_temperature: float = 1.0,
                 neg_temperature: float = 0.9, conditional: bool = True,
                 weights_grad: bool = True, debias_prior: float = 0.0) -> None:
        super().__init__()
        for name, v in (("alpha", alpha), ("beta", beta), ("pos_temperature", pos_temperature),
                        ("neg_temperature", neg_temperature)):
            _check_number(name, v)
        self.kwargs = dict(alpha=alpha, beta=beta, pos_temperature=pos_temperature,
                           neg_temperature=neg_temperature, conditional=conditional,
                           weights_grad=weights_grad, debias_prior=debias_prior)

    def forward(self, z: Tensor) -> Tensor:
        return cacr_loss(z, **self.kwargs)  # type: ignore[arg-type]
