r"""gCooL: graph communal contrastive learning (Li, Jing & Tong, WWW 2022).

gCooL learns node embeddings and a soft partition into ``K`` communities at once. On top of
GCA's two adaptively corrupted views, a shared GCN ``f`` and a head
``h = normalize(g(f(X, E)))`` (unit rows), it adds trainable community centres
:math:`\Phi \in \mathbb{R}^{K \times d}` and three terms (spec ``graph/gcool.md`` §2):

**Soft assignment** (cosine gCooL_c / Euclidean gCooL_e), with :math:`\hat\phi_k = \phi_k/\|\phi_k\|`:

.. math::

    R_{ik} = \mathrm{softmax}_k\big(\mathrm{sg}(h_i) \cdot \hat\phi_k / \tau\big)
    \quad\text{or}\quad
    R_{ik} = \mathrm{softmax}_k\big(-\|\mathrm{sg}(h_i) - \hat\phi_k\|^2 / \tau^2\big)

**Dense Community Aggregation** on a view's directed edge list (``M = R^T A R``, computed sparsely
as ``R[src]^T R[dst]`` in ``O(|E| K^2)``; the official code builds a dense ``N x N`` ``A``):

.. math::

    \mathcal{L}_{DeCA} = \lambda \frac{\sum_{k \ne l} M_{kl}}{N(N-1)} - \frac{\mathrm{tr} M}{N}
                        + \frac{\|R\|_F^2}{2N}

**ReSC**, node-to-community contrast across views: anchor :math:`h^1_i` against the view-2
centroids :math:`c^2_k` (mean of the unit ``h^2`` in community ``k``, stop-gradient, zero if
empty), positive :math:`c^2_{\kappa^2_i}`, negatives reweighted by
:math:`\omega(k, l) = e^{-\gamma\|c_k - c_l\|^2}` (Euclidean variant only):

.. math::

    \ell^1_i = -\log \frac{\sigma(h^1_i, c^2_{\kappa^2_i})}
        {\sigma(h^1_i, c^2_{\kappa^2_i}) + \sum_{l \ne \kappa^2_i}
         \omega^2(\kappa^2_i, l)\, \sigma(h^1_i, c^2_l)}

with :math:`\sigma = e^{h \cdot c/\tau}` (cosine) or :math:`e^{-\|h - c\|^2/\tau^2}` (RBF); mirrored
for view 2 and averaged. This is the engine's InfoNCE with label positives and a ``[K, K]``
:class:`~contrastkit.core.weights.LabelTable` — computed in log space (pitfall 6).

**Node term** (code): :math:`\mathcal{L}_{node} = \frac1N\sum_i -\log
\frac{e^{h^1_i \cdot h^2_i/\tau}}{\sum_j e^{h^1_i \cdot h^2_j/\tau}}`, inter-view negatives only,
view-1 anchors only (the code's ``s21 = s12``; ``node_loss="symmetric"`` averages both directions).

**Schedule.** ``variant="official_code"`` (default; it produced the paper's table) at step ``t``
with stride :math:`\eta` and rate ``r = 0.2``:

.. math::

    c(t) = e^{-t/\eta},\quad a(t) = \max(0, 1 - t/(r\eta)),\quad
    \mathcal{L} = \mathcal{L}_{node} + a(t)\,[c(t)\,\mathcal{L}_{DeCA} + (1 - c(t))\,\mathcal{L}_{ReSC}]

so both community terms are off after ``0.2 η`` steps, and the assignment is computed from
detached projections (DeCA trains only :math:`\Phi`). ``variant="paper"`` keeps the terms on
(:math:`\mathcal{L} = \mathcal{L}_{node} + c\,\mathcal{L}_{DeCA} + (1-c)\,\mathcal{L}_{ReSC}`, the
paper's hand-over) and lets DeCA's gradient reach the encoder.

Evaluation (``eval_protocol="gcool"``): a linear classifier (Adam lr 0.01, weight decay 1e-5,
5000 epochs, checked every 5) on a fresh random 10/10/80 split (WikiCS: its 20 public splits,
1000 epochs each). The headline ``micro_f1`` / ``macro_f1`` are test scores at the best
*validation* accuracy; the official numbers (max over classifier epochs of the *test* metric,
each metric separately) are reported only as ``micro_f1_official`` / ``macro_f1_official``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, subgraph

from ..core.checks import (as_scalar, check_choice, check_positive, check_probability,
                           check_tensor)
from ..core.engine import contrastive_loss
from ..core.pairs import SameLabel
from ..core.probes import random_split, torch_lr_probe
from ..core.weights import LabelTable
from ..core.similarity import l2_normalize
from ..registry import MethodSpec, RunContext, RunResult, register
from . import grace as _grace

__all__ = ["GCooLConfig", "GCooL", "GCooLMultiplex", "multiplex_graph", "evaluate_multiplex",
           "soft_assignment", "deca_loss", "community_centroids",
           "resc_loss", "node_loss", "schedule_weights", "evaluate_embeddings", "GCOOL_PRESETS"]

SIMILARITIES = ("cosine", "rbf")
VARIANTS = ("official_code", "paper")


# ------------------------------------------------------------------------------------------
# pure functions
# ------------------------------------------------------------------------------------------
def soft_assignment(h: Tensor, centres: Tensor, temperature: float,
                    similarity: str = "cosine") -> Tensor:
    r"""Soft community assignment ``R [N, K]`` (spec §2.2).

    Args:
        h: ``[N, d]`` unit-norm projections (detach them first for the official variant).
        centres: ``[K, d]`` community centres :math:`\Phi` (normalised here).
        temperature: :math:`\tau`.
        similarity: ``"cosine"``: softmax of :math:`h \cdot \hat\phi / \tau`; ``"rbf"``: softmax of
            :math:`-\|h - \hat\phi\|^2 / \tau^2`.

    Returns:
        ``[N, K]`` rows on the probability simplex.
    """
    check_tensor("h", h, ndim=2, floating=True)
    check_tensor("centres", centres, ndim=2, floating=True)
    if centres.size(1) != h.size(1):
        raise ValueError(f"centres: expected {h.size(1)} columns (the embedding size of h), "
                         f"got {centres.size(1)}")
    check_positive("temperature", temperature)
    check_choice("similarity", similarity, SIMILARITIES)
    phi = l2_normalize(centres, dim=1)
    if similarity == "cosine":
        logits = h @ phi.t() / temperature
    else:
        logits = -torch.cdist(h, phi).pow(2) / temperature ** 2
    return logits.softmax(dim=1)


def deca_loss(assignments: Tensor, edge_index: Tensor, inter_weight: float = 1.0) -> Tensor:
    r"""Dense Community Aggregation loss of one view (spec §2.3), with a sparse adjacency.

    With ``A`` the 0/1 matrix of the (deduplicated, directed) entries of ``edge_index`` and
    :math:`M = R^\top A R = R[\mathrm{src}]^\top R[\mathrm{dst}]`:

    .. math::

        \mathcal{L} = \frac{\lambda \sum_{kl} M_{kl} - (N - 1 + \lambda)\,\mathrm{tr} M}{N (N - 1)}
                      + \frac{\|R\|_F^2}{2N}

    i.e. :math:`\lambda D_{inter} - D_{intra} + \|R\|_F^2/(2N)`. Cost ``O(|E| K^2)``; nothing of
    size ``N x N`` is built.

    Args:
        assignments: ``[N, K]`` soft assignment ``R``.
        edge_index: ``[2, E]`` directed edges of the view (duplicates count once, as in the
            dense ``A`` of the official code).
        inter_weight: :math:`\lambda`.

    Returns:
        Scalar loss.
    """
    check_tensor("assignments", assignments, ndim=2, floating=True)
    n = assignments.size(0)
    if n < 2:
        raise ValueError(f"assignments: expected at least 2 nodes, got {n}")
    check_tensor("edge_index", edge_index, ndim=2, integer=True)
    if edge_index.size(0) != 2:
        raise ValueError(f"edge_index: expected shape [2, E], got {tuple(edge_index.shape)}")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n):
        raise ValueError(f"edge_index: expected node ids in [0, {n - 1}], got range "
                         f"[{int(edge_index.min())}, {int(edge_index.max())}]")
    ei = coalesce(edge_index, num_nodes=n)
    r_src, r_dst = assignments[ei[0]], assignments[ei[1]]
    trace = (r_src * r_dst).sum()
    total = (r_src.sum(1) * r_dst.sum(1)).sum()          # sum_kl M_kl
    lam = float(inter_weight)
    density = (lam * total - (n - 1 + lam) * trace) / (n * (n - 1))
    return density + assignments.pow(2).sum() / (2 * n)


def community_centroids(h: Tensor, labels: Tensor, num_communities: int) -> Tensor:
    """Per-community mean of ``h [N, d]`` over hard ``labels [N]`` → ``[K, d]`` (0 if empty)."""
    check_tensor("h", h, ndim=2, floating=True)
    check_tensor("labels", labels, ndim=1, integer=True)
    sums = h.new_zeros(num_communities, h.size(1)).index_add_(0, labels, h)
    counts = torch.bincount(labels, minlength=num_communities).clamp_min(1).to(h.dtype)
    return sums / counts[:, None]


def resc_loss(anchors: Tensor, centroids: Tensor, labels: Tensor, temperature: float,
              similarity: str = "cosine", gamma: float = 0.0,
              block_size: int | None = None) -> Tensor:
    r"""One direction of ReSC (spec §2.4): nodes of one view against the other view's centroids.

    Args:
        anchors: ``[N, d]`` unit projections of view ``v`` (gradient flows through them).
        centroids: ``[K, d]`` centroids of view ``v'`` (treated as constants).
        labels: ``[N]`` hard communities :math:`\kappa^{v'}` of the nodes in view ``v'``.
        temperature: :math:`\tau` (RBF: the similarity is divided by :math:`\tau^2`).
        similarity: ``"cosine"`` (dot product with the unnormalised centroid, no reweighting) or
            ``"rbf"`` (negative squared distance, negatives weighted by
            :math:`\omega(k, l) = e^{-\gamma \|c_k - c_l\|^2}`).
        gamma: :math:`\gamma` of the RBF reweighting.
        block_size: engine row block.

    Returns:
        Scalar mean over anchors of :math:`\ell_i`.
    """
    check_choice("similarity", similarity, SIMILARITIES)
    centroids = centroids.detach()
    k = centroids.size(0)
    positives = SameLabel(labels, torch.arange(k, device=labels.device))
    if similarity == "cosine":
        return contrastive_loss(anchors, centroids, positives=positives, temperature=temperature,
                                similarity="dot", block_size=block_size)
    omega = torch.exp(-gamma * torch.cdist(centroids, centroids).pow(2))
    weight = LabelTable(omega, labels, torch.arange(k, device=labels.device))
    return contrastive_loss(anchors, centroids, positives=positives,
                            temperature=temperature ** 2, similarity="neg_sq_dist",
                            negative_weight=weight, block_size=block_size)


def node_loss(h1: Tensor, h2: Tensor, temperature: float, symmetric: bool = False,
              block_size: int | None = None, backend: str = "auto") -> Tensor:
    r"""gCooL's node term (spec §2.5): view-1 anchors, view-2 candidates, aligned positives.

    ``symmetric=True`` averages it with the view-2 → view-1 direction (the code's intent).
    ``backend``: the engine's (``auto`` takes the fused kernel on CUDA when Triton is present).
    """
    loss = contrastive_loss(h1, h2, positives="aligned", temperature=temperature,
                            similarity="dot", block_size=block_size, backend=backend)
    if symmetric:
        loss = 0.5 * (loss + contrastive_loss(h2, h1, positives="aligned",
                                              temperature=temperature, similarity="dot",
                                              block_size=block_size, backend=backend))
    return loss


def schedule_weights(step: int, stride: float, rate: float = 0.2,
                     variant: str = "official_code") -> tuple[float, float]:
    r"""Weights ``(w_DeCA, w_ReSC)`` of the community terms at training step ``step`` (spec §2.6).

    ``official_code``: :math:`(a c, a (1 - c))` with :math:`c = e^{-t/\eta}`,
    :math:`a = \max(0, 1 - t/(r\eta))`; ``paper``: :math:`(c, 1 - c)`.
    """
    check_choice("variant", variant, VARIANTS)
    step = check_positive("step", as_scalar(step), allow_zero=True)
    check_positive("stride", stride)
    check_positive("rate", rate)  # a fraction of the stride; 0 would divide by zero
    c = math.exp(-step / stride)
    a = max(0.0, 1.0 - step / (rate * stride)) if variant == "official_code" else 1.0
    return a * c, a * (1.0 - c)


# ------------------------------------------------------------------------------------------
# configuration and method
# ------------------------------------------------------------------------------------------
@dataclass
class GCooLConfig(_grace.GRACEConfig):
    """gCooL hyperparameters (spec §4; defaults are ``main.py``'s / the model constructor's).

    Inherits GRACE/GCA's augmentation, encoder and training fields (see
    :class:`~contrastkit.graphcl.grace.GRACEConfig`); ``hidden_channels`` is ``d``,
    ``projection_channels`` is ``p`` and ``mid_channels`` the first GCN layer's width
    (``hidden_layer`` in the official JSON files; ``None``: ``2d``).

    Attributes:
        num_communities: ``K``.
        deca_lambda: :math:`\\lambda`, weight of the inter-community density in DeCA.
        rbf_gamma: :math:`\\gamma` of the RBF reweighting :math:`\\omega`.
        stride: :math:`\\eta`, decay of the DeCA → ReSC hand-over.
        gate_rate: ``r`` (official: 0.2): community terms are gated off after ``r * stride`` steps.
        similarity: ``cosine`` (gCooL_c) or ``rbf`` (gCooL_e).
        variant: ``official_code`` (gated schedule, DeCA trains only the centres; what produced the
            paper's table) or ``paper`` (terms kept on, DeCA's gradient reaches the encoder).
        node_loss: ``one_way`` (code: view-1 anchors only) or ``symmetric``.
        probe_epochs: classifier epochs of the ``gcool`` protocol (WikiCS: 1000 per split).
        multiplex_augment: on a heterogeneous dataset (multiplex variant), corrupt each relation
            layer with the first view's edge dropping / feature masking.
    """

    dataset: str = "computers"
    epochs: int = 1000
    lr: float = 0.01
    weight_decay: float = 1e-5
    hidden_channels: int = 384
    projection_channels: int = 384
    mid_channels: int | None = None
    activation: str = "prelu"
    drop_edge_p1: float = 0.2
    drop_edge_p2: float = 0.2
    drop_feature_p1: float = 0.1
    drop_feature_p2: float = 0.1
    temperature: float = 0.4
    drop_scheme: Literal["uniform", "degree", "pagerank", "evc"] = "degree"
    num_communities: int = 10
    deca_lambda: float = 1.0
    rbf_gamma: float = 8e-5
    stride: float = 500.0
    gate_rate: float = 0.2
    similarity: Literal["cosine", "rbf"] = "cosine"
    variant: Literal["official_code", "paper"] = "official_code"
    node_loss: Literal["one_way", "symmetric"] = "one_way"
    eval_protocol: str = "gcool"
    eval_repeats: int = 1
    probe_epochs: int = 5000
    multiplex_augment: bool = True

    EVAL_PROTOCOLS: ClassVar[tuple[str, ...]] = _grace.GRACEConfig.EVAL_PROTOCOLS + ("gcool",)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size > 0:
            raise ValueError(f"batch_size: gCooL trains full batch (DeCA needs the whole "
                             f"adjacency; mini-batch gCooL is not implemented), got "
                             f"{self.batch_size}")
        check_choice("similarity", self.similarity, SIMILARITIES)
        check_choice("variant", self.variant, VARIANTS)
        check_choice("node_loss", self.node_loss, ("one_way", "symmetric"))
        check_positive("stride", self.stride)
        check_probability("gate_rate", self.gate_rate)
        check_positive("gate_rate", self.gate_rate)
        check_positive("rbf_gamma", self.rbf_gamma, allow_zero=True)
        check_positive("deca_lambda", self.deca_lambda, allow_zero=True)
        for name in ("num_communities", "probe_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if self.num_communities < 2:
            raise ValueError(f"num_communities: expected at least 2 communities, "
                             f"got {self.num_communities}")
        if self.mid_channels is not None and (isinstance(self.mid_channels, bool)
                                              or int(self.mid_channels) < 1):
            raise ValueError(f"mid_channels: expected a positive int or None, "
                             f"got {self.mid_channels!r}")


class GCooL(_grace.GRACE):
    """gCooL as a declaration on top of GRACE/GCA: same views and encoder, a unit-norm head,
    community centres ``Φ [K, d]`` and the node + DeCA + ReSC loss on the official schedule.

    Args:
        config: :class:`GCooLConfig`.
        in_channels: node feature size ``F``.
    """

    name = "gcool"

    def __init__(self, config: GCooLConfig, in_channels: int) -> None:
        super().__init__(config, in_channels)   # encoder (with mid_channels), head, views
        c = config
        self.centres = nn.Parameter(torch.randn(c.num_communities, c.hidden_channels))
        #: training steps taken (drives the schedule; saved in checkpoints)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        #: last step's loss terms, for logging
        self.last_terms: dict[str, float] = {}

    def project(self, z: Tensor) -> Tensor:
        return l2_normalize(self.head(z), dim=1)

    def assign(self, h: Tensor) -> Tensor:
        """Soft assignment ``[N, K]`` of unit projections (detached unless ``variant="paper"``)."""
        c = self.config
        src = h if c.variant == "paper" else h.detach()
        return soft_assignment(src, self.centres, c.temperature, c.similarity)

    def communities(self, data: Data) -> Tensor:
        """Hard community of every node of the clean graph, ``[N]``."""
        with torch.no_grad():
            return self.assign(self.project(self.encode(data))).argmax(dim=1)

    def loss(self, projections: list[Tensor], batch: Data) -> Tensor:
        """Node term + scheduled DeCA/ReSC over the ``V >= 2`` views of this step.

        Two views (the single-graph method): exactly spec §2.6. ``V`` views (the multiplex
        variant, one per relation): the node term over the pairs ``r < r'`` (``symmetric``: all
        ordered pairs), DeCA averaged over the views, ReSC over all ordered pairs. When the
        base loss runs on a node subset (``loss_subset``), DeCA uses the induced subgraph.
        """
        c = self.config
        num_views = len(projections)
        step = int(self.step)
        if self.training:
            self.step += 1
        sym = c.node_loss == "symmetric"
        pairs = [(a, b) for a in range(num_views) for b in range(a + 1, num_views)]
        total = sum(node_loss(projections[a], projections[b], c.temperature, symmetric=sym,
                              block_size=c.block_size, backend=c.loss_backend)
                    for a, b in pairs) / len(pairs)
        terms = {"node": float(total.detach())}
        w_deca, w_resc = schedule_weights(step, c.stride, c.gate_rate, c.variant)
        if w_deca > 0 or w_resc > 0:
            edges = self._view_edges(num_views, projections[0].size(0))
            r = [self.assign(h) for h in projections]
            deca = sum(deca_loss(r_v, e_v, c.deca_lambda) for r_v, e_v in zip(r, edges))
            deca = deca / num_views
            labels = [r_v.detach().argmax(1) for r_v in r]
            cents = [community_centroids(h.detach(), k, c.num_communities)
                     for h, k in zip(projections, labels)]
            ordered = [(a, b) for a in range(num_views) for b in range(num_views) if a != b]
            resc = sum(resc_loss(projections[a], cents[b], labels[b], c.temperature,
                                 c.similarity, c.rbf_gamma, c.block_size)
                       for a, b in ordered) / len(ordered)
            total = total + w_deca * deca + w_resc * resc
            terms.update(deca=float(deca.detach()), resc=float(resc.detach()))
        self.last_terms = terms
        return total

    def _view_edges(self, num_views: int, num_rows: int) -> list[Tensor]:
        """Edges of this step's views, restricted to the loss's node subset when there is one."""
        views = self.current_views
        if views is None or len(views) != num_views:
            raise RuntimeError("GCooL.loss needs the views of this step: call training_step")
        nodes = getattr(self, "current_subset", None)
        if nodes is None:
            return [v.edge_index for v in views]
        return [subgraph(nodes, v.edge_index, relabel_nodes=True, num_nodes=v.num_nodes)[0]
                for v in views]


# ------------------------------------------------------------------------------------------
# multiplex variant (experimental: not in the official code, no paper numbers to check)
# ------------------------------------------------------------------------------------------
def multiplex_graph(name: str, relations: list[str] | None = None,
                    root: str | None = None) -> Data:
    """The target nodes of a heterogeneous benchmark as a multiplex graph, one layer per meta-path.

    Returns ``Data(x, y, num_nodes, layers=[...], edge_index_<LAYER> ..., {train,val,test}_{20,40,
    60})``; every layer is the meta-path graph without its diagonal (DeCA's ``A`` has no
    self-loops; the GCN adds its own). ACM: ``PAP`` and ``PSP`` over 4,019 papers.
    """
    from ..datasets.hetero import SPLIT_RATIOS, load_hetero
    het = load_hetero(name, root)
    target = het.target_type
    layers = [m.upper() for m in (relations or het.metapaths)]
    unknown = sorted(set(layers) - {m.upper() for m in het.metapaths})
    if unknown:
        raise ValueError(f"relations: expected meta-paths of {name!r} among {het.metapaths}, "
                         f"got {unknown}")
    tgt = het[target]
    n = tgt.num_nodes
    data = Data(x=tgt.x if "x" in tgt else torch.eye(n), y=tgt.y, num_nodes=n)
    for layer in layers:
        ei = het[target, layer, target].edge_index
        data[f"edge_index_{layer}"] = ei[:, ei[0] != ei[1]]
    for r in SPLIT_RATIOS:
        for part in ("train", "val", "test"):
            data[f"{part}_{r}"] = tgt[f"{part}_{r}"]
    data.layers = layers
    data.num_classes = int(het.num_classes)
    return data


class GCooLMultiplex(GCooL):
    """gCooL over the layers of a multiplex graph (spec §3.1, the interim design; experimental).

    (i) one shared GCN applied to every relation layer; (ii) the views are the layers (each
    optionally corrupted with the first view's augmentation); (iii) one shared ``Φ``, DeCA
    averaged over the layers; (iv) ReSC between every ordered pair of layers and the node term
    between every pair; (v) the node embedding is the mean of the layer embeddings. The paper's
    exact multiplex adaptation is unreleased: this is a reconstruction.
    """

    name = "gcool_multiplex"

    def __init__(self, config: GCooLConfig, in_channels: int) -> None:
        if getattr(config, "pot", False):
            raise ValueError("pot: POT bounds two edge-drop views of one graph; it is not "
                             "defined for the multiplex variant (got pot=True)")
        super().__init__(config, in_channels)

    def _layers(self, data: Data) -> list[Data]:
        if not getattr(data, "layers", None):
            raise ValueError("data: expected a multiplex graph with `layers` and "
                             "`edge_index_<LAYER>` (see multiplex_graph), got none")
        return [Data(x=data.x, edge_index=data[f"edge_index_{layer}"], num_nodes=data.num_nodes)
                for layer in data.layers]

    def views(self, data: Data) -> list[Data]:
        layers = self._layers(data)
        views = [self.augment[0](v) for v in layers] if self.config.multiplex_augment else layers
        self.current_views = views
        return views

    def embed(self, data: Data) -> Tensor:
        with torch.no_grad():
            return torch.stack([self.encode(v) for v in self._layers(data)]).mean(0)


def evaluate_multiplex(config: GCooLConfig, embeddings: Tensor, data: Data,
                       seed: int) -> dict[str, float]:
    """HeCo/DMGI protocol: 50 linear probes per fixed 20/40/60 split, k-means NMI/ARI."""
    from ..core.metrics import clustering_metrics
    from ..core.probes import heco_probe
    y = data.y.cpu().numpy()
    out: dict[str, float] = {}
    for r in (20, 40, 60):
        res = heco_probe(embeddings, y, data[f"train_{r}"], data[f"val_{r}"], data[f"test_{r}"],
                         seed=seed)
        out.update({f"{k}@{r}": float(res[k]) for k in ("macro_f1", "micro_f1", "auc")})
    clu = clustering_metrics(embeddings, y, seed=seed)
    out.update(nmi=float(clu["nmi"]), ari=float(clu["ari"]))
    out["micro_f1"], out["macro_f1"] = out["micro_f1@20"], out["macro_f1@20"]
    return out


# ------------------------------------------------------------------------------------------
# evaluation, presets, registration
# ------------------------------------------------------------------------------------------
def evaluate_embeddings(config: GCooLConfig, embeddings: Tensor, data: Data,
                        seed: int) -> dict[str, float]:
    """Probe ``embeddings [N, D]``: ``gcool`` protocol (module docstring) or GRACE's / GCA's."""
    if config.eval_protocol != "gcool":
        return _grace.evaluate_embeddings(config, embeddings, data, seed)
    y = data.y.detach().cpu().numpy()
    splits = _grace._public_splits(data)
    epochs = config.probe_epochs
    if splits is None:
        splits = [random_split(embeddings.size(0), 0.1, 0.1, seed=seed * 1000 + r)
                  for r in range(config.eval_repeats)]
    else:                                  # WikiCS: the 20 public splits, 1000 epochs each
        epochs = min(epochs, 1000)
    per = []
    for i, (train, val, test) in enumerate(splits):
        res = torch_lr_probe(embeddings, y, train, val, test, epochs=epochs, lr=0.01,
                             weight_decay=1e-5, eval_every=5, seed=seed * 1000 + i,
                             report_test_max=True)
        per.append({"acc": res["acc"], "micro_f1": res["micro_f1"], "macro_f1": res["macro_f1"],
                    "micro_f1_official": res["micro_f1_max_over_epochs"],
                    "macro_f1_official": res["macro_f1_max_over_epochs"]})
    out = {k: float(np.mean([p[k] for p in per])) for k in per[0]}
    out.update({f"{k}_split_std": float(np.std([p[k] for p in per])) for k in per[0]})
    return out


def _is_multiplex(dataset: str) -> bool:
    from ..datasets import get_spec
    from ..datasets.hetero import HETERO_SOURCES
    return get_spec(dataset).id in {s.id for s in HETERO_SOURCES}


def run(config: GCooLConfig, ctx: RunContext) -> RunResult:
    """Train gCooL on ``config.dataset`` with the shared trainer, then probe the embeddings.

    A heterogeneous dataset (``acm``, ...) runs the experimental multiplex variant.
    """
    if _is_multiplex(config.dataset):
        return _grace.train_and_evaluate(GCooLMultiplex, evaluate_multiplex, config, ctx,
                                         data=multiplex_graph(config.dataset))
    return _grace.train_and_evaluate(GCooL, evaluate_embeddings, config, ctx)


def evaluate(config: GCooLConfig, embeddings: Tensor, ctx: RunContext) -> dict[str, float]:
    """Re-evaluate saved embeddings (``contrastkit eval DIR``)."""
    if _is_multiplex(config.dataset):
        return evaluate_multiplex(config, embeddings, multiplex_graph(config.dataset), ctx.seed)
    return _grace.evaluate(config, embeddings, ctx, evaluate_fn=evaluate_embeddings)


#: the official per-dataset configurations (``param/*.json``, spec §4)
GCOOL_PRESETS: dict[str, dict[str, Any]] = {
    "computers": dict(lr=0.01, mid_channels=2558, hidden_channels=512, projection_channels=512,
                      activation="rrelu_random", drop_edge_p1=0.45, drop_edge_p2=0.45,
                      drop_feature_p1=0.25, drop_feature_p2=0.25, temperature=0.2,
                      num_communities=10, deca_lambda=0.9, rbf_gamma=2e-5, stride=1000,
                      drop_scheme="degree", epochs=2900),
    "photo": dict(lr=0.1, mid_channels=256, hidden_channels=128, projection_channels=128,
                  activation="relu", drop_edge_p1=0.4, drop_edge_p2=0.4, drop_feature_p1=0.1,
                  drop_feature_p2=0.1, temperature=0.3, num_communities=8, deca_lambda=0.1,
                  rbf_gamma=8e-5, stride=500, drop_scheme="pagerank", epochs=2900),
    "cs": dict(lr=5e-4, mid_channels=7105, hidden_channels=300, projection_channels=300,
               activation="rrelu_random", drop_edge_p1=0.2, drop_edge_p2=0.2,
               drop_feature_p1=0.3, drop_feature_p2=0.3, temperature=0.4, num_communities=15,
               deca_lambda=0.9, rbf_gamma=8e-5, stride=500, drop_scheme="degree", epochs=600),
    "wikics": dict(lr=0.01, mid_channels=1368, hidden_channels=384, projection_channels=384,
                   activation="prelu", drop_edge_p1=0.2, drop_edge_p2=0.2, drop_feature_p1=0.1,
                   drop_feature_p2=0.1, temperature=0.4, num_communities=10, deca_lambda=1.0,
                   rbf_gamma=8e-5, stride=500, drop_scheme="pagerank", epochs=1000,
                   dense_features=True),
    # multiplex variant (experimental; no official configuration): main.py defaults, uniform
    # augmentation inside each relation layer, K = number of classes
    "acm": dict(epochs=300, lr=1e-3, hidden_channels=128, projection_channels=128,
                mid_channels=256, drop_scheme="uniform", drop_edge_p1=0.2, drop_feature_p1=0.3,
                num_communities=3, stride=500),
}
# Cora and CiteSeer have no official gCooL configuration. Label-free rule: GRACE's official
# configuration for the dataset (lr, widths, activation, drop rates, tau, epochs), gCooL's
# degree-adaptive augmentation and its constructor defaults (K = 10, lambda = 1, eta = 500).
for _name in ("cora", "citeseer"):
    GCOOL_PRESETS[_name] = dict(_grace.GRACE_PRESETS[_name], drop_scheme="degree")
del _name

register(MethodSpec(
    name="gcool", config_cls=GCooLConfig, run=run, evaluate=evaluate,
    description="gCooL: communal contrast (DeCA + ReSC) on GCA views (Li et al., 2022)",
    default_dataset="computers", presets=GCOOL_PRESETS, accepts=("graph:homogeneous",)))
