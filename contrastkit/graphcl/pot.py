r"""POT: provable training for graph contrastive learning, as a plug-in for GRACE / GCA / gCooL.

POT (Yu et al., NeurIPS 2023) adds to a node-level contrastive loss a regulariser on the *node
compactness*: a lower bound, obtained by bound propagation (CROWN-style) through the 2-layer GCN
encoder, of how well node ``i`` obeys the contrastive principle over the admissible edge-dropping
augmentations of its view. With ``w_i`` the contrast direction built from the other view's
normalised encoder outputs ``ẑ'`` over the step's node set ``S`` (``|S| = n``)

.. math::

    w_i = \hat z'_i - \frac{1}{n-1} \sum_{j \in S, j \ne i} \hat z'_j, \qquad
    \tilde f_i = \min_{\tilde G \in \mathcal{A}} z(\tilde G)_i \cdot w_i \;\ge\; s_i,

and the loss of a view is :math:`\mathcal{L}^{(v)}_{POT} = \frac1n \sum_i \log(1 + e^{-s_i})`
(BCE with target 1). The total objective is

.. math:: \mathcal{L} = (1 - \kappa)\, \mathcal{L}_{GCL} + \kappa \cdot \tfrac12
          (\mathcal{L}^{(1)}_{POT} + \mathcal{L}^{(2)}_{POT}).

The admissible set removes at most ``q_i`` edges around node ``i`` (self-loop and one neighbour
kept): GRACE ``q_i = min(max(d_i-1, 0), round(p d_i))``; GCA ``q_i = min(max(d_i-1, 0),
round(sum_{e into i} p_e))``. Entry-wise bounds of the normalised adjacency of any admissible graph:
``Â^U_ij = ((d_i+1-q_i)(d_j+1-q_j))^{-1/2}`` on the entries of ``A + I`` and
``Â^L = diag(1/(d_i+1))``. Everything here is **sparse**: bounds are values on the edge list of
``A + I`` (``O(|E| + N)``), budgets are per-node vectors; the reference's dense ``N x N`` arrays
never exist.

:func:`pot_score` follows the official code step by step (spec ``pot.md`` §3.2, parity); it is a
*surrogate*, not a strict certificate (pitfall 4): layer 2 uses the clean hidden layer, the
back-substituted weights are node-indexed, and the last propagation uses the sampled view's
``gcn_norm`` instead of minimising over the admissible set. ``tests/test_pot.py`` measures how
often it is violated on sampled admissible augmentations (about 40 % of the (node, augmentation)
pairs). :func:`certified_score` (``pot_bound="certified"``) is a sound alternative: interval
bounds per hidden unit with node ``i``'s own objective and the admissible adjacency interval in
both layers, so ``s_i ≤ min_{G̃ ∈ A} z(G̃)_i · w_i`` holds for every admissible graph (never
violated in the same test), at the price of a looser score.

Wiring: :class:`POTOptions` is a dataclass mixin of config fields (``pot``, ``pot_kappa``, ...)
that :class:`~contrastkit.graphcl.grace.GRACEConfig` inherits, and :class:`POTPlugin` computes the
term inside ``GRACE.training_step``, so GRACE, GCA and any subclass (gCooL) get POT with
``--set pot=true``. Per-dataset base configurations of the POT paper: :data:`GRACE_POT_PRESETS`,
:data:`GCA_POT_PRESETS` (methods ``grace_pot`` / ``gca_pot``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import (add_self_loops, degree, is_undirected, remove_self_loops,
                                   to_undirected)

from ..core.checks import check_choice, check_config_numbers, check_probability
from ..core.similarity import l2_normalize

__all__ = ["POTOptions", "POTBounds", "POTPlugin", "uniform_budgets", "adaptive_budgets",
           "node_degrees", "pot_bounds", "boundable_slope", "relaxation", "contrast_direction",
           "pot_score", "certified_score", "pot_bce", "GRACE_POT_PRESETS", "GCA_POT_PRESETS"]

_EPS = 1e-12
#: score of the plug-in: the official surrogate or the sound certificate
POT_BOUNDS: tuple[str, ...] = ("official", "certified")


@dataclass
class POTOptions:
    """Config fields of the POT plug-in and of the POT paper's protocol (mixin).

    Attributes:
        pot: add the POT regulariser to the base loss.
        pot_kappa: κ in ``(1 - κ) L_GCL + κ L_POT`` (official command-line default 0.5).
        pot_batch: nodes per step for the POT term only (chunk of the step's node permutation,
            official ``--pot_batch``); -1: every node of the step.
        pot_exact_chord: use the exact chord intercept ``(α-1)ul/(u-l)`` for the upper line of a
            crossing unit instead of the code's looser ``(α-1)ul/(u-αl)`` (pitfall 5).
        pot_tight_lower: keep the lower bound ``Â_ij`` of an edge that cannot be removed (an
            endpoint with budget 0) instead of the code's 0; with ``q ≡ 0`` the intervals then
            collapse to the clean pre-activations.
        pot_bound: ``"official"`` (:func:`pot_score`, the code's surrogate that produced the
            paper's numbers) or ``"certified"`` (:func:`certified_score`, a sound lower bound
            over the admissible graphs, looser).
        loss_subset: nodes per step for the base (NCE) loss, a chunk of a fresh random
            permutation (official POT: 4096 / 2048 on the large graphs); 0: all nodes.
        pot_swap_masks: with ``eval_protocol="pot"`` on a public-split dataset, also report the
            official evaluator's result, whose validation and test masks are swapped
            (selection on the test set, "test" score on the validation set), under the
            ``*_official`` keys. The main keys always use the correct order.
    """

    pot: bool = False
    pot_kappa: float = 0.5
    pot_batch: int = -1
    pot_exact_chord: bool = False
    pot_tight_lower: bool = False
    pot_bound: str = "official"
    loss_subset: int = 0
    pot_swap_masks: bool = False

    def __post_init__(self) -> None:
        check_config_numbers(self)
        for name in ("pot", "pot_exact_chord", "pot_tight_lower", "pot_swap_masks"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}: expected a bool, got {getattr(self, name)!r}")
        check_probability("pot_kappa", self.pot_kappa)
        check_choice("pot_bound", self.pot_bound, POT_BOUNDS)
        if isinstance(self.pot_batch, bool) or not isinstance(self.pot_batch, int) or (
                self.pot_batch < 2 and self.pot_batch != -1):
            raise ValueError(f"pot_batch: expected -1 (all nodes) or an int >= 2, "
                             f"got {self.pot_batch!r}")
        if isinstance(self.loss_subset, bool) or not isinstance(self.loss_subset, int) or (
                self.loss_subset < 0 or self.loss_subset == 1):
            raise ValueError(f"loss_subset: expected 0 (all nodes) or an int >= 2, "
                             f"got {self.loss_subset!r}")


# ---------------------------------------------------------------------------------------------
# precomputation: budgets and sparse bounds
# ---------------------------------------------------------------------------------------------
def _check_undirected(edge_index: Tensor, num_nodes: int) -> None:
    if not is_undirected(edge_index, num_nodes=num_nodes):
        raise ValueError("edge_index: POT expects an undirected graph (both directions of every "
                         "edge stored), got a directed one")


def node_degrees(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Degrees ``d [N]`` (float) of the symmetrised clean graph, self-loops excluded."""
    ei, _ = remove_self_loops(edge_index)
    ei = to_undirected(ei, num_nodes=num_nodes)
    return degree(ei[1], num_nodes, dtype=torch.float32)


def uniform_budgets(deg: Tensor, p: float) -> Tensor:
    """GRACE-style budget ``q_i = min(max(d_i - 1, 0), round(p d_i))`` ``[N]`` (long)."""
    p = check_probability("p", p)
    return torch.minimum((deg - 1).clamp_min(0), torch.round(p * deg)).long()


def adaptive_budgets(edge_index: Tensor, drop_prob: Tensor, deg: Tensor) -> Tensor:
    """GCA-style budget ``q_i = min(max(d_i - 1, 0), round(sum_{e=(u->i)} p_e))`` ``[N]``.

    ``drop_prob [E]`` are the per-entry probabilities of ``edge_index [2, E]`` (same order), so
    the reference's edge-order coupling (pitfall 8) cannot occur; the graph must be undirected.
    """
    if drop_prob.numel() != edge_index.size(1):
        raise ValueError(f"drop_prob: expected one value per edge ({edge_index.size(1)}), "
                         f"got {drop_prob.numel()}")
    _check_undirected(edge_index, deg.numel())
    b = torch.zeros(deg.numel(), dtype=torch.float64, device=deg.device)
    b.index_add_(0, edge_index[1], drop_prob.to(torch.float64))
    return torch.minimum((deg - 1).clamp_min(0).double(), torch.round(b)).long()


@dataclass
class POTBounds:
    """Sparse entry-wise bounds of the normalised adjacency over one view's admissible graphs.

    Attributes:
        edge_index: ``[2, E + N]`` entries of ``A + I`` (both directions, then the diagonal).
        upper: ``Â^U`` on those entries ``[E + N]``.
        lower: ``Â^L`` on those entries ``[E + N]`` (0 off the diagonal in the code's bounds).
        budget: ``q [N]``; ``degree``: ``d [N]``.
    """

    edge_index: Tensor
    upper: Tensor
    lower: Tensor
    budget: Tensor
    degree: Tensor

    @property
    def num_nodes(self) -> int:
        return self.degree.numel()

    def to(self, device: torch.device | str) -> "POTBounds":
        return POTBounds(*(t.to(device) for t in (self.edge_index, self.upper, self.lower,
                                                  self.budget, self.degree)))

    def restrict(self, nodes: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """``(edge_index, mid, rad)`` of the bounds restricted to ``S x S`` (local indices)."""
        mid = (self.upper + self.lower) / 2
        rad = (self.upper - self.lower) / 2
        if nodes is None:
            return self.edge_index, mid, rad
        return (*_induced(self.edge_index, nodes, self.num_nodes, mid, rad),)  # type: ignore


def _induced(edge_index: Tensor, nodes: Tensor, num_nodes: int,
             *values: Tensor) -> tuple[Tensor, ...]:
    """Entries of ``edge_index`` with both ends in ``nodes``, re-indexed to ``0..n-1``."""
    pos = torch.full((num_nodes,), -1, dtype=torch.long, device=edge_index.device)
    pos[nodes] = torch.arange(nodes.numel(), device=edge_index.device)
    r, c = pos[edge_index[0]], pos[edge_index[1]]
    keep = (r >= 0) & (c >= 0)
    return (torch.stack([r[keep], c[keep]]), *(v[keep] for v in values))


def pot_bounds(edge_index: Tensor, num_nodes: int, budget: Tensor,
               tight_lower: bool = False, dtype: torch.dtype = torch.float32) -> POTBounds:
    r"""Entry-wise bounds ``Â^L ≤ Â(G̃) ≤ Â^U`` of admissible graphs, on the entries of ``A + I``.

    .. math:: \hat A^U_{ij} = \frac{1}{\sqrt{(d_i + 1 - q_i)(d_j + 1 - q_j)}},\qquad
              \hat A^L = \mathrm{diag}\Big(\frac{1}{d_i + 1}\Big)

    (``tight_lower``: off-diagonal ``Â^L_ij = ((d_i+1)(d_j+1))^{-1/2}`` when ``q_i = 0`` or
    ``q_j = 0``, i.e. the edge cannot be removed.)

    Args:
        edge_index: clean graph ``[2, E]`` (undirected).
        num_nodes: ``N``.
        budget: ``q [N]``.
        tight_lower: see above.
        dtype: dtype of the stored values (computed in float64).

    Returns:
        :class:`POTBounds` with ``O(E + N)`` values.
    """
    _check_undirected(edge_index, num_nodes)
    deg = node_degrees(edge_index, num_nodes).to(torch.float64)
    ei, _ = remove_self_loops(edge_index)
    ei = to_undirected(ei, num_nodes=num_nodes)
    ei, _ = add_self_loops(ei, num_nodes=num_nodes)
    q = budget.to(torch.float64)
    if budget.numel() != num_nodes or bool((q < 0).any()) or bool((q > (deg - 1).clamp_min(0)).any()):
        raise ValueError("budget: expected one value per node in [0, max(d_i - 1, 0)], got "
                         f"{budget.numel()} values in [{float(q.min())}, {float(q.max())}]")
    r, c = ei
    inv = (deg + 1 - q).rsqrt()
    upper = inv[r] * inv[c]
    clean = (deg + 1).rsqrt()
    diag = r == c
    lower = torch.where(diag, clean[r] * clean[c], torch.zeros_like(upper))
    if tight_lower:
        fixed = (budget[r] == 0) | (budget[c] == 0)
        lower = torch.where(fixed, clean[r] * clean[c], lower)
    return POTBounds(ei, upper.to(dtype), lower.to(dtype), budget.long(), deg.float())


# ---------------------------------------------------------------------------------------------
# the score
# ---------------------------------------------------------------------------------------------
def boundable_slope(encoder: nn.Module) -> float:
    """Negative slope α of a 2-layer GCN encoder's activation, or a clear error.

    ReLU → 0, LeakyReLU / GCA's fixed-slope ``rrelu`` → its slope, single-parameter PReLU → its
    current value (detached, as the reference's ``.item()``).

    Raises:
        ValueError: the encoder does not have exactly 2 GCN layers, or its activation is not a
            (leaky) ReLU with one slope (ELU, random ``nn.RReLU`` as in gCooL's "rrelu", a
            multi-channel PReLU, a custom module).
    """
    convs = getattr(encoder, "convs", None)
    if convs is None or len(convs) != 2:
        n = "no" if convs is None else len(convs)
        raise ValueError(f"encoder: POT bounds a GCN encoder with exactly 2 layers "
                         f"(num_layers=2), got {n} layers")
    slope = getattr(encoder, "negative_slope", None)
    name = getattr(encoder, "activation_name", type(getattr(encoder, "activation", None)).__name__)
    if isinstance(slope, Tensor):
        if slope.numel() != 1:
            raise ValueError(f"activation: POT needs one shared negative slope, got a PReLU with "
                             f"{slope.numel()} parameters")
        slope = float(slope.detach())
    if slope is None:
        raise ValueError(
            f"activation: POT cannot bound {name!r}; it supports relu, prelu (one slope), "
            f"leaky_relu and rrelu (GCA's fixed slope (1/8+1/3)/2). For gCooL's random RReLU "
            f"('rrelu_random') use activation=rrelu, its deterministic, boundable substitute")
    return float(slope)


def relaxation(lower: Tensor, upper: Tensor, alpha: float,
               exact_chord: bool = False) -> tuple[Tensor, Tensor]:
    r"""Linear relaxation of ``σ(x) = max(x, 0) + α min(x, 0)`` on ``[l, u]`` (element-wise).

    One slope ``a`` for both lines; lower line ``a x``, upper line ``a x + t``:
    ``l ≥ 0``: a = 1, t = 0; ``u ≤ 0``: a = α, t = 0; ``l < 0 < u``:
    ``a = (u - α l)/(u - l)``, ``t = (α - 1) u l / (u - α l)`` (code; ``exact_chord``:
    ``/(u - l)``).

    Returns:
        ``(a, t)`` with the shape of ``lower``.
    """
    pos, neg = lower >= 0, upper <= 0
    cross = ~(pos | neg)
    l_ = torch.where(cross, lower, torch.full_like(lower, -1.0))
    u_ = torch.where(cross, upper, torch.ones_like(upper))
    width = (u_ - l_).clamp_min(_EPS)
    top = (u_ - alpha * l_).clamp_min(_EPS)
    a_cross = top / width
    t_cross = (alpha - 1.0) * u_ * l_ / (width if exact_chord else top)
    # l = u = 0 counts as "u <= 0" (slope α), as in the reference (its neg mask is applied last)
    a = torch.where(neg, torch.full_like(lower, alpha), torch.where(pos, torch.ones_like(lower),
                                                                    a_cross))
    t = torch.where(cross, t_cross, torch.zeros_like(lower))
    return a, t


def contrast_direction(z_other: Tensor) -> Tensor:
    r"""``w_i = ẑ'_i - mean_{j≠i} ẑ'_j = (n ẑ'_i - Σ_j ẑ'_j)/(n-1)`` for ``z_other [n, d]``."""
    n = z_other.size(0)
    if n < 2:
        raise ValueError(f"z_other: expected at least 2 nodes, got {n}")
    zh = l2_normalize(z_other, dim=1)
    return (zh * n - zh.sum(0, keepdim=True)) / (n - 1)


def _spmm(edge_index: Tensor, value: Tensor, x: Tensor, n: int) -> Tensor:
    """``M @ x`` for the sparse ``M[row, col] = value`` (``x [n]`` or ``[n, k]``)."""
    src = x[edge_index[1]]
    src = src * (value if src.dim() == 1 else value.unsqueeze(1))
    return torch.zeros((n,) + tuple(x.shape[1:]), dtype=src.dtype,
                       device=src.device).index_add_(0, edge_index[0], src)


def clean_hidden(encoder: nn.Module, x: Tensor, edge_index: Tensor,
                 xw: Tensor | None = None) -> Tensor:
    """``H = σ(GCNConv₁(X, clean graph))`` ``[N, m]`` (shared by both views' scores).

    With ``xw = X W₁ᵀ`` given, the layer is evaluated from it (same normalisation and
    aggregation as GCNConv) so the dense product is not recomputed.
    """
    conv = encoder.convs[0]
    if xw is None:
        return encoder.activation(conv(x, edge_index))
    ei, ew = gcn_norm(edge_index, None, x.size(0), add_self_loops=True, dtype=xw.dtype)
    out = _spmm(ei.flip(0), ew, xw, x.size(0))  # GCNConv: out[target] += w * xw[source]
    return encoder.activation(out if conv.bias is None else out + conv.bias)


def _score_inputs(encoder: nn.Module, x: Tensor, w: Tensor, nodes: Tensor | None,
                  xw: Tensor | None) -> tuple[float, int, Tensor, Tensor, Tensor, Tensor]:
    """``(α, n, b₁, W₂ [h, m], b₂, P₁ = (X W₁ᵀ)[S] [n, m])`` of both scores, after checking
    ``w``'s shape."""
    alpha = boundable_slope(encoder)
    conv1, conv2 = encoder.convs
    n = x.size(0) if nodes is None else nodes.numel()
    if w.shape != (n, conv2.lin.weight.size(0)):
        raise ValueError(f"w: expected shape [{n}, {conv2.lin.weight.size(0)}], "
                         f"got {tuple(w.shape)}")
    W1, W2 = conv1.lin.weight, conv2.lin.weight
    b1 = conv1.bias if conv1.bias is not None else W1.new_zeros(W1.size(0))
    b2 = conv2.bias if conv2.bias is not None else W2.new_zeros(W2.size(0))
    if xw is None:
        p1 = (x if nodes is None else x[nodes]) @ W1.t()
    else:
        p1 = xw if nodes is None else xw[nodes]
    return alpha, n, b1, W2, b2, p1


def _interval(edge_index: Tensor, mid: Tensor, rad: Tensor, p: Tensor, bias: Tensor,
              n: int) -> tuple[Tensor, Tensor]:
    """``Mid P ± Rad |P| + b``: bounds of ``Â P + b`` over ``Â^L ≤ Â ≤ Â^U`` (``[n, k]`` each)."""
    c, r = _spmm(edge_index, mid, p, n), _spmm(edge_index, rad, p.abs(), n)
    return c - r + bias, c + r + bias


def pot_score(encoder: nn.Module, x: Tensor, bounds: POTBounds, view_edge_index: Tensor,
              w: Tensor, nodes: Tensor | None = None, *, clean_edge_index: Tensor | None = None,
              hidden: Tensor | None = None, xw: Tensor | None = None,
              exact_chord: bool = False) -> Tensor:
    r"""POT's node-compactness score ``s [n]`` for one view (official procedure, spec §3.2).

    1. restrict ``Â^U, Â^L`` to ``S x S``; ``Mid = (Â^U + Â^L)/2``, ``Rad = (Â^U - Â^L)/2``;
    2. ``P₁ = (X W₁)[S]``, ``Z₁^{U/L} = Mid P₁ ± Rad |P₁| + b₁``;
    3. ``H = σ(GCNConv₁(X, clean))``, ``P₂ = (H W₂)[S]``, ``Z₂^{U/L} = Mid P₂ ± Rad |P₂| + b₂``;
    4. relax σ on both intervals (:func:`relaxation`);
    5. ``Λ₂ = a₂ ⊙ w``, ``Δ₂ = [w < 0] t₂``, ``W̃₂ = Λ₂ W₂ᵀ``, ``b̃₂ = rowsum(Λ₂ ⊙ (Δ₂ + b₂))``;
    6. ``Λ₁ = a₁ ⊙ W̃₂``, ``Δ₁ = [W̃₂ < 0] t₁``, ``b̃₁ = rowsum(Λ₁ ⊙ (Δ₁ + b₁))``;
    7. ``u_i = x_i · W̃₁_i`` with ``W̃₁ = Λ₁ W₁ᵀ``, computed as ``rowsum(Λ₁ ⊙ P₁)`` (equal, and
       the dense ``[n, F]`` matrix ``W̃₁`` is never formed);
    8. ``s = Â'(Â' u + b̃₁) + b̃₂`` with ``Â' = gcn_norm(Ẽ^v)`` restricted to ``S x S``. As in the
       reference (a COO matrix indexed ``[source, target]``), ``(Â' u)_i = Σ_{(i→j) ∈ Ẽ} Â'_ij
       u_j``; GCNConv aggregates the transpose, identical for symmetric views.

    Args:
        encoder: 2-layer GCN encoder (``convs[k].lin``, ``convs[k].bias``, ``activation``).
        x: clean node features ``[N, F]``.
        bounds: this view's :class:`POTBounds`.
        view_edge_index: the view's sampled edges ``[2, E_v]``.
        w: contrast directions ``[n, h]`` (:func:`contrast_direction` of the other view).
        nodes: the node set ``S`` (``[n]`` indices) or ``None`` for all nodes.
        clean_edge_index: clean graph for ``H`` (defaults to ``bounds``' entries).
        hidden: precomputed ``H [N, m]`` (overrides ``clean_edge_index``).
        xw: precomputed ``X W₁ᵀ [N, m]`` (all nodes), to share the dense product.
        exact_chord: see :func:`relaxation`.

    Returns:
        ``s [n]``; differentiable in the encoder parameters, ``x`` and ``w``.
    """
    alpha, n, b1, W2, b2, p1 = _score_inputs(encoder, x, w, nodes, xw)
    N = x.size(0)
    ei, mid, rad = bounds.restrict(nodes)
    l1, u1 = _interval(ei, mid, rad, p1, b1, n)
    if hidden is None:
        hidden = clean_hidden(encoder, x, bounds.edge_index if clean_edge_index is None
                              else clean_edge_index)
    hs = hidden if nodes is None else hidden[nodes]
    l2, u2 = _interval(ei, mid, rad, hs @ W2.t(), b2, n)  # [n, h]

    a2, t2 = relaxation(l2, u2, alpha, exact_chord)
    a1, t1 = relaxation(l1, u1, alpha, exact_chord)
    lam2 = a2 * w
    delta2 = torch.where(w >= 0, torch.zeros_like(t2), t2)
    wt2 = lam2 @ W2                                       # [n, m]
    bt2 = (lam2 * (delta2 + b2)).sum(1)
    lam1 = a1 * wt2
    delta1 = torch.where(wt2 >= 0, torch.zeros_like(t1), t1)
    bt1 = (lam1 * (delta1 + b1)).sum(1)
    u = (lam1 * p1).sum(1)                                # x_i · (Λ₁ W₁)_i

    vei, vw = gcn_norm(view_edge_index, None, N, add_self_loops=True, dtype=x.dtype)
    if nodes is not None:
        vei, vw = _induced(vei, nodes, N, vw)
    return _spmm(vei, vw, _spmm(vei, vw, u, n) + bt1, n) + bt2


def certified_score(encoder: nn.Module, x: Tensor, bounds: POTBounds, w: Tensor,
                    nodes: Tensor | None = None, *, xw: Tensor | None = None,
                    chunk_size: int = 1 << 15) -> Tensor:
    r"""A sound node-compactness score: ``s_i ≤ z(G̃)_i · w_i`` for every admissible ``G̃``.

    With ``c_i = W₂ᵀ w_i`` and the layer-1 pre-activation interval ``[l_j, u_j]`` of node ``j``
    over the admissible graphs (``Mid P₁ ± Rad |P₁| + b₁``, as :func:`pot_score` step 2),

    .. math::

        g_{ij} = \min_{p \in [l_j, u_j]} c_i \cdot \sigma(p)
               = \sum_k \min\big(c_{ik}\sigma(l_{jk}),\, c_{ik}\sigma(u_{jk}),\,
                 c_{ik}\sigma(\mathrm{clamp}(0, l_{jk}, u_{jk}))\big),\qquad
        s_i = \sum_{j \in N(i) \cup \{i\}} \min(\hat A^L_{ij} g_{ij}, \hat A^U_{ij} g_{ij})
              + w_i \cdot b_2 .

    Unlike the official surrogate, every hidden unit is bounded with node ``i``'s own objective
    ``c_i`` (pitfall 4b), layer 2 uses the interval of its input (4a) and the adjacency interval
    instead of the sampled view (4c), so the bound holds for any admissible graph (not for the
    official sampler's draws that exceed the budget, 4d). Interval bounds are looser than the
    linear relaxation. With ``nodes`` the neighbours outside ``S`` are ignored (pitfall 9), so the
    guarantee holds for ``nodes=None``. ``O(|E| m)`` work in chunks of ``chunk_size`` entries.

    Args:
        encoder: 2-layer GCN encoder, as :func:`pot_score`.
        x: clean node features ``[N, F]``.
        bounds: the view's :class:`POTBounds`.
        w: contrast directions ``[n, h]``.
        nodes: the node set ``S`` or ``None`` for all nodes.
        xw: precomputed ``X W₁ᵀ [N, m]``.
        chunk_size: adjacency entries per chunk (memory ``chunk_size x m``).

    Returns:
        ``s [n]``, differentiable in the encoder parameters, ``x`` and ``w``.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")
    alpha, n, b1, W2, b2, p1 = _score_inputs(encoder, x, w, nodes, xw)
    ei, mid, rad = bounds.restrict(nodes)
    lo, hi = _interval(ei, mid, rad, p1, b1, n)           # [n, m], sound for nodes=None
    kink = torch.minimum(torch.maximum(torch.zeros_like(lo), lo), hi)
    s_lo, s_hi, s_kink = (F.leaky_relu(v, alpha) for v in (lo, hi, kink))
    c = w @ W2                                            # [n, m]: c_i = W₂ᵀ w_i
    lower_e, upper_e = (mid - rad).to(c.dtype), (mid + rad).to(c.dtype)
    out = w @ b2
    for start in range(0, ei.size(1), chunk_size):
        i, j = ei[0, start:start + chunk_size], ei[1, start:start + chunk_size]
        ci = c[i]
        g = torch.minimum(torch.minimum(ci * s_lo[j], ci * s_hi[j]), ci * s_kink[j]).sum(1)
        coef = torch.where(g >= 0, lower_e[start:start + chunk_size],
                           upper_e[start:start + chunk_size])
        out = out.index_add(0, i, coef * g)
    return out


def pot_bce(score: Tensor) -> Tensor:
    """``mean_i log(1 + exp(-s_i))`` = BCE-with-logits against target 1."""
    return F.binary_cross_entropy_with_logits(score, torch.ones_like(score))


# ---------------------------------------------------------------------------------------------
# the plug-in used by GRACE.training_step
# ---------------------------------------------------------------------------------------------
class POTPlugin:
    """Per-view budgets and bounds of one method (cached per graph) and the POT term.

    The budgets follow the method's own augmentation: ``drop_scheme="uniform"`` → GRACE budgets
    from ``drop_edge_p{1,2}``, otherwise GCA budgets from the adaptive per-entry probabilities
    (same centrality and threshold as the views). The cache key holds everything that defines
    ``q`` (pitfall 7).

    Args:
        config: a config with :class:`POTOptions` fields and GRACE's augmentation fields.
    """

    def __init__(self, config: Any) -> None:
        self.config = config
        self._cache: dict[tuple, list[POTBounds]] = {}

    def _key(self, edge_index: Tensor, num_nodes: int) -> tuple:
        c = self.config
        return (id(edge_index), edge_index._version, tuple(edge_index.shape), num_nodes,
                str(edge_index.device), c.drop_scheme, c.drop_threshold, c.drop_edge_p1,
                c.drop_edge_p2, c.pot_tight_lower)

    def budgets(self, edge_index: Tensor, num_nodes: int) -> list[Tensor]:
        """``[q¹, q²]``, each ``[N]``."""
        c = self.config
        _check_undirected(edge_index, num_nodes)
        deg = node_degrees(edge_index, num_nodes)
        ps = (c.drop_edge_p1, c.drop_edge_p2)
        if c.drop_scheme == "uniform":
            return [uniform_budgets(deg, p) for p in ps]
        from torch_geometric.data import Data

        from .augment import AdaptiveDropEdges
        data = Data(edge_index=edge_index, num_nodes=num_nodes)
        return [adaptive_budgets(edge_index, AdaptiveDropEdges(
            p, centrality=c.drop_scheme, threshold=c.drop_threshold).probabilities(data), deg)
            for p in ps]

    def bounds(self, edge_index: Tensor, num_nodes: int,
               dtype: torch.dtype = torch.float32) -> list[POTBounds]:
        """Both views' :class:`POTBounds` for the clean graph (computed once, then cached)."""
        key = self._key(edge_index, num_nodes) + (dtype,)
        if key not in self._cache:
            if len(self._cache) > 4:
                self._cache.clear()
            self._cache[key] = [pot_bounds(edge_index, num_nodes, q, self.config.pot_tight_lower,
                                           dtype) for q in self.budgets(edge_index, num_nodes)]
        return self._cache[key]

    def loss(self, encoder: nn.Module, data: Any, views: Sequence[Any], z: Sequence[Tensor],
             nodes: Tensor | None) -> Tensor:
        r"""``½ (L_POT^{(1)} + L_POT^{(2)})`` for encoder outputs ``z = [z¹, z²]`` (``[N, h]``).

        ``nodes``: the POT node set ``S`` (indices) or ``None`` for all nodes. The score of view
        ``v`` uses its sampled ``views[v].edge_index`` and ``w`` from the other view's ``z[S]``.
        """
        if len(views) != 2 or len(z) != 2:
            raise ValueError(f"views: POT expects exactly 2 views, got {len(views)}")
        boundable_slope(encoder)
        x, edge_index = data.x, data.edge_index
        bounds = self.bounds(edge_index, x.size(0), x.dtype)
        xw = x @ encoder.convs[0].lin.weight.t()           # shared by H and both views' P₁
        hidden = (clean_hidden(encoder, x, edge_index, xw)
                  if self.config.pot_bound == "official" else None)
        zs = z if nodes is None else [zi[nodes] for zi in z]
        total = x.new_zeros(())
        for v in (0, 1):
            w = contrast_direction(zs[1 - v])
            if self.config.pot_bound == "certified":
                s = certified_score(encoder, x, bounds[v], w, nodes, xw=xw)
            else:
                s = pot_score(encoder, x, bounds[v], views[v].edge_index, w, nodes,
                              hidden=hidden, xw=xw, exact_chord=self.config.pot_exact_chord)
            total = total + pot_bce(s)
        return total / 2


# ---------------------------------------------------------------------------------------------
# the POT paper's base configurations (spec pot.md §4), config-file values
# ---------------------------------------------------------------------------------------------
_POT_COMMON = dict(pot=True, pot_kappa=0.5, weight_decay=1e-5, num_layers=2, drop_feature_p1=0.0,
                   drop_feature_p2=0.0, eval_protocol="pot", eval_repeats=1)


def _g(lr: float, h: int, p: int, act: str, pe1: float, pe2: float, tau: float, epochs: int,
       subset: int = 0, **kw: Any) -> dict[str, Any]:
    return dict(_POT_COMMON, lr=lr, hidden_channels=h, projection_channels=p, activation=act,
                drop_edge_p1=pe1, drop_edge_p2=pe2, temperature=tau, epochs=epochs,
                loss_subset=subset, **kw)


#: GRACE+POT (``GRACE/config.yaml`` values, *not* the ``--drop_1 0.4 --drop_2 0.3 --tau 0.9``
#: command-line defaults that silently override them in ``train.py``, pitfall 1). κ: 0.4 on Cora
#: (README example), the command-line default 0.5 elsewhere (per-dataset κ not published).
GRACE_POT_PRESETS: dict[str, dict[str, Any]] = {
    "cora": _g(5e-4, 128, 128, "relu", 0.4, 0.3, 0.7, 200, pot_kappa=0.4),
    "citeseer": _g(1e-3, 256, 256, "prelu", 0.3, 0.1, 0.9, 200),
    "pubmed": _g(1e-3, 256, 256, "relu", 0.4, 0.1, 0.7, 2500, 4096),
    "computers": _g(0.01, 128, 128, "relu", 0.6, 0.4, 0.2, 2500, 4096),
    "photo": _g(5e-4, 256, 64, "relu", 0.3, 0.5, 0.2, 1000),
    "wikics": _g(0.01, 256, 256, "prelu", 0.2, 0.3, 0.4, 1500, 4096),
}

_GCA = dict(drop_scheme="degree", drop_threshold=0.7)
#: GCA+POT (``GCA/param/*.json``; degree scheme, threshold 0.7, no feature masking). κ: 0.3 on
#: Cora (README example), 0.5 elsewhere.
GCA_POT_PRESETS: dict[str, dict[str, Any]] = {
    "cora": _g(5e-4, 128, 128, "relu", 0.3, 0.1, 0.9, 700, pot_kappa=0.3, **_GCA),
    "citeseer": _g(1e-3, 256, 256, "prelu", 0.2, 0.2, 0.9, 1000, **_GCA),
    "pubmed": _g(0.01, 256, 256, "relu", 0.4, 0.1, 0.3, 3000, 4096, **_GCA),
    "computers": _g(0.01, 128, 128, "prelu", 0.6, 0.3, 0.2, 2000, 2048, **_GCA),
    "photo": _g(5e-4, 256, 64, "relu", 0.3, 0.5, 0.3, 2000, **_GCA),
    "wikics": _g(0.01, 256, 256, "prelu", 0.2, 0.3, 0.4, 3000, 2048, **_GCA),
}
