r"""MEOW and AdaMEOW: heterogeneous graph contrastive learning with meta-path contexts and weighted
negatives (Yu & Li, SDM 2023; Yu, Ge, Li & Zhou, TKDE 2024). Spec: ``specs/graph/meow.md``.

**Views.** For every meta-path ``P`` the PathSim top-``k_P`` filtered count matrix
:math:`\bar A^P` is normalised, :math:`\hat A^P = D^{-1/2} \bar A^P D^{-1/2}` (row sums as degrees,
the diagonal counts acting as self-loops). The *coarse* view encodes the target projections ``h``
on :math:`\hat A_c = \frac1{|P|} \sum_P \hat A^P`; the *fine-grained* view encodes the meta-path
context embeddings :math:`e^P_i = \mathrm{ELU}(h_i + \mathrm{Drop}(\sum_{hops} U \cdot
\mathrm{mean}_{j \in C(i)} h^{t}_j))` on :math:`\hat A^P` and their feature-masked copies on the
edge-masked :math:`\hat A^P_{mask}`; the ``2|P|`` row-normalised outputs are fused by semantic
attention into ``z`` (the embedding). ``u = π(g^c)``, ``v = π(z)`` with
``π(x) = normalise(tanh(W x + b))``; one GCN encoder (2 layers, whole-matrix LayerNorm) is shared.

**MEOW loss** (coarse anchors, fine candidates; ``M`` k-means clusterings of ``v`` every step):

.. math::

    w_{ij} = \sum_{m=1}^{M} [c^m(i) \ne c^m(j)] \;(w_{ii} = 0), \qquad
    \mathcal L_w = -\frac1N \sum_i \log \frac{e^{u_i \cdot v_i / \tau}}
                                              {\sum_j w_{ij} e^{u_i \cdot v_j / \tau}}

    \mathcal L_{proto} = \frac1M \sum_m -\frac1N \sum_i \log
        \frac{e^{u_i \cdot \mu^m_{c^m(i)} / \phi^m_{c^m(i)}}}{\sum_k e^{u_i \cdot \mu^m_k / \phi^m_k}},
    \qquad \mathcal L = \mathcal L_w + \lambda_{proto} \mathcal L_{proto}

``w`` is the engine's sum of one ``[K_m, K_m]`` table ``1 - I`` per clustering (never an ``N x N``
mask); ``L_proto`` is the engine's InfoNCE against centroids with per-candidate temperatures ``φ``.

**AdaMEOW loss** (reversed: fine anchors, coarse candidates, positive weighted in the denominator):

.. math::

    \omega_{ij} = \sigma(W_2 \tanh(W_1 (v_i + u_j) + b_1) + b_2), \qquad
    \mathcal L_{Ada} = -\frac1N \sum_i \log
        \frac{e^{v_i \cdot u_i / \tau}}{\sum_j \omega_{ij} e^{v_i \cdot u_j / \tau}}

``ω`` is an engine :class:`~contrastkit.core.weights.BlockWeight` evaluated per row block
(``W_1 (v_i + u_j) = W_1 v_i + W_1 u_j`` is used, so only ``[B, N, 16]`` ever exists). The released
code trains ``ω`` with nothing to stop it shrinking (every ``ω → 0`` lowers the loss without
bound): ``weight_guard="none"`` reproduces that; the default ``"negative_mean"`` divides the
negatives' weights of each anchor by their mean (mean 1 over ``j ≠ i``) and fixes ``ω_ii = 1``,
so the weights only redistribute mass among negatives and the loss stays bounded below.

**Departures, as named options.** Augmentations (feature-entry masking, per-meta-path edge masking)
are resampled every step as in the paper (``resample_augmentations=True``); the official code
samples them once (``False``). Training keeps the parameters of the step with the lowest
*training* loss and restores them at the end (``restore="best_loss"``; MEOW's code keeps the last
step: ``"last"``); validation labels are never used for training decisions. k-means is
scikit-learn's Lloyd with random initialisation, 5 restarts × 20 iterations (faiss's settings) on
the ℓ2-normalised ``v``; concentrations use the (clamped) inner products as in the code.
PathSim ties are broken in favour of the diagonal, then by column.

**Evaluation** (HeCo protocol): :func:`~contrastkit.core.probes.heco_probe` on the fixed
20/40/60-per-class splits (one pretraining run, 50 classifier initialisations, per-metric selection
on validation) → ``macro_f1@20`` ...; k-means on ``z`` (10 fits) → ``nmi``, ``ari``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.checks import check_choice, check_config_numbers, check_positive, check_probability
from ..core.engine import contrastive_loss
from ..core.method import ContrastiveMethod
from ..core.metrics import ari, kmeans, nmi
from ..core.pairs import SameLabel
from ..core.probes import heco_probe
from ..core.trainer import CHECKPOINT_NAME, Trainer
from ..core.weights import BlockWeight, LabelTable
from ..core.similarity import l2_normalize
from ..registry import MethodSpec, RunContext, RunResult, register

#: the state-dict key of a module's extra state (MEOW's best-loss bookkeeping)
_EXTRA_STATE = "_extra_state"
#: meta-path matrices denser than this are propagated densely (faster than sparse products)
DENSE_FRACTION = 0.02


# ============================================================================ configuration
@dataclass
class MEOWConfig:
    """MEOW hyperparameters (``code_meow/utils/params.py``; spec section 4).

    Attributes:
        dataset: heterogeneous dataset id (``acm``, ``dblp-hetero``, ``aminer``, ``imdb``).
        epochs: maximum training steps (full batch, one step per epoch).
        patience: stop when the training loss has not improved for this many steps (0: never).
        lr, weight_decay: Adam settings (``l2_coef``).
        hidden_channels: size of projections, GCN layers and embedding (64).
        projection_channels: output size of the projection head π.
        dropout: dropout of projections, context maps and GCN layers.
        temperature: ``τ``.
        feature_mask: fraction of non-zero target-feature entries zeroed (``m_f``).
        edge_mask: per-meta-path fraction of off-diagonal entries removed (one value: all).
        pathsim_k: per-meta-path PathSim top-k.
        num_clusters: ``K_1 .. K_M`` of the k-means runs (MEOW only).
        proto_weight: ``λ_proto`` (MEOW only).
        kmeans_restarts, kmeans_iters: k-means settings (faiss: 5, 20).
        normalize_weights: row-normalise the cluster weights in the engine (not in the code).
        loss_anchors: if > 0, each step averages the losses over this many random anchors
            (all nodes stay candidates and are clustered): an unbiased, cheaper estimate of the
            full-batch loss (compute-budget option; 0 = all anchors, as the code).
        resample_augmentations: resample the masks every step (paper) or once (code: False).
        restore: ``best_loss`` (restore the lowest-training-loss step) or ``last`` (code).
        block_size: anchors per row block in the engine (None: automatic).
        eval_lr, eval_weight_decay: HeCo classifier settings.
        eval_runs: classifier initialisations per split (50).
        eval_ratios: labelled nodes per class of the evaluated splits.
        cluster_fits: k-means fits for NMI/ARI (10).
        checkpoint_every: trainer checkpoint interval (0: end only).
    """

    dataset: str = "acm"
    epochs: int = 10000
    patience: int = 30
    lr: float = 7e-4
    weight_decay: float = 0.0
    hidden_channels: int = 64
    projection_channels: int = 64
    dropout: float = 0.2
    temperature: float = 0.4
    feature_mask: float = 0.3
    edge_mask: list[float] = field(default_factory=lambda: [0.3, 0.2])
    pathsim_k: list[int] = field(default_factory=lambda: [110, 700])
    num_clusters: list[int] = field(default_factory=lambda: [100, 300])
    proto_weight: float = 1.0
    kmeans_restarts: int = 5
    kmeans_iters: int = 20
    normalize_weights: bool = False
    loss_anchors: int = 0
    resample_augmentations: bool = True
    restore: Literal["best_loss", "last"] = "best_loss"
    block_size: int | None = None
    eval_lr: float = 0.03
    eval_weight_decay: float = 0.0
    eval_runs: int = 50
    eval_ratios: list[int] = field(default_factory=lambda: [20, 40, 60])
    cluster_fits: int = 10
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        check_config_numbers(self)
        check_probability("feature_mask", self.feature_mask)
        check_probability("dropout", self.dropout)
        for p in self.edge_mask:
            check_probability("edge_mask", p)
        check_positive("temperature", self.temperature)
        check_positive("lr", self.lr)
        check_choice("restore", self.restore, ("best_loss", "last"))
        for name in ("epochs", "hidden_channels", "projection_channels", "kmeans_restarts",
                     "kmeans_iters", "eval_runs", "cluster_fits"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected a positive int, got {getattr(self, name)}")
        for name in ("pathsim_k", "num_clusters"):
            if any(int(k) < 1 for k in getattr(self, name)):
                raise ValueError(f"{name}: expected positive ints, got {getattr(self, name)}")
        if self.loss_anchors < 0:
            raise ValueError(f"loss_anchors: expected an int >= 0, got {self.loss_anchors}")
        if self.patience < 0 or self.weight_decay < 0 or self.proto_weight < 0:
            raise ValueError(f"patience, weight_decay, proto_weight: expected values >= 0, got "
                             f"{self.patience}, {self.weight_decay}, {self.proto_weight}")
        if not self.eval_ratios:
            raise ValueError("eval_ratios: expected one or more of [20, 40, 60], got []")
        for r in self.eval_ratios:
            check_choice("eval_ratios", int(r), (20, 40, 60))


@dataclass
class AdaMEOWConfig(MEOWConfig):
    """AdaMEOW (``code_adameow/utils/params.py``): fixed number of steps, learnt weights.

    Attributes:
        weight_hidden: hidden size of the weight MLP (16).
        weight_guard: ``negative_mean`` (default: negatives' weights of each anchor divided by
            their mean, ``ω_ii = 1``) or ``none`` (released code: raw sigmoid weights).
    """

    epochs: int = 1200
    patience: int = 0
    lr: float = 5e-5
    weight_decay: float = 1e-5
    dropout: float = 0.3
    temperature: float = 1.0
    feature_mask: float = 0.3
    edge_mask: list[float] = field(default_factory=lambda: [0.2])
    pathsim_k: list[int] = field(default_factory=lambda: [690, 690])
    num_clusters: list[int] = field(default_factory=list)
    proto_weight: float = 0.0
    weight_hidden: int = 16
    weight_guard: Literal["negative_mean", "none"] = "negative_mean"
    block_size: int | None = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("weight_guard", self.weight_guard, ("negative_mean", "none"))


MEOW_PRESETS: dict[str, dict[str, Any]] = {
    "acm": dict(lr=7e-4, weight_decay=0.0, dropout=0.2, temperature=0.4, feature_mask=0.3,
                edge_mask=[0.3, 0.2], pathsim_k=[110, 700], num_clusters=[100, 300],
                proto_weight=1.0, patience=30, eval_lr=0.03, eval_weight_decay=0.0),
    "dblp-hetero": dict(lr=6e-4, weight_decay=0.0, dropout=0.2, temperature=0.9,
                        feature_mask=0.2, edge_mask=[0.2, 0.5, 0.6], pathsim_k=[25, 200, 40],
                        num_clusters=[200, 700], proto_weight=1.0, patience=35, eval_lr=0.01,
                        eval_weight_decay=0.0),
    "aminer": dict(lr=7e-4, weight_decay=0.0, dropout=0.2, temperature=0.9, feature_mask=0.2,
                   edge_mask=[0.7, 0.4], pathsim_k=[5, 21], num_clusters=[500, 1200],
                   proto_weight=0.1, patience=25, eval_lr=0.1, eval_weight_decay=8e-4),
    "imdb": dict(lr=1e-4, weight_decay=1e-3, dropout=0.2, temperature=0.9, feature_mask=0.3,
                 edge_mask=[0.1, 0.1, 0.1], pathsim_k=[70, 10, 70], num_clusters=[500, 700],
                 proto_weight=1.0, patience=15, eval_lr=0.01, eval_weight_decay=0.0),
}

ADAMEOW_PRESETS: dict[str, dict[str, Any]] = {
    "acm": dict(lr=5e-5, weight_decay=1e-5, dropout=0.3, temperature=1.0, feature_mask=0.3,
                edge_mask=[0.2], pathsim_k=[690, 690], epochs=1200, projection_channels=64,
                eval_lr=0.03, eval_weight_decay=0.0),
    "dblp-hetero": dict(lr=1e-4, weight_decay=1e-3, dropout=0.2, temperature=0.9,
                        feature_mask=0.1, edge_mask=[0.3], pathsim_k=[25, 200, 40], epochs=1500,
                        projection_channels=64, eval_lr=0.01, eval_weight_decay=0.0),
    "aminer": dict(lr=1e-4, weight_decay=1e-4, dropout=0.0, temperature=0.9, feature_mask=0.0,
                   edge_mask=[0.0], pathsim_k=[8, 31], epochs=3000, projection_channels=16,
                   eval_lr=0.3, eval_weight_decay=1e-3),
    "imdb": dict(lr=5e-4, weight_decay=5e-4, dropout=0.1, temperature=0.9, feature_mask=0.3,
                 edge_mask=[0.1], pathsim_k=[70, 10, 70], epochs=1000, projection_channels=64,
                 eval_lr=0.01, eval_weight_decay=0.0),
}


# ============================================================================ preprocessing
def pathsim_topk(a: sp.spmatrix, k: int) -> sp.csr_matrix:
    r"""Keep, per row, the ``k`` entries with the largest PathSim
    :math:`s_{ij} = 2 A_{ij} / (A_{ii} + A_{jj})`; kept entries keep their path counts.

    Ties: the diagonal first, then smaller column index. Vectorised (one lexsort).

    Args:
        a: ``[N, N]`` meta-path count matrix (diagonal included).
        k: entries kept per row.

    Returns:
        ``[N, N]`` csr matrix :math:`\bar A` with at most ``k`` entries per row.
    """
    a = sp.csr_matrix(a, dtype=np.float64)
    a.sum_duplicates()
    a.eliminate_zeros()
    n = a.shape[0]
    diag = a.diagonal()
    rows = np.repeat(np.arange(n), np.diff(a.indptr))
    cols = a.indices
    den = diag[rows] + diag[cols]
    s = np.where(den > 0, 2.0 * a.data / np.where(den > 0, den, 1.0), 0.0)
    order = np.lexsort((cols, rows != cols, -s, rows))
    rank = np.arange(len(order)) - a.indptr[rows[order]]
    keep = np.sort(order[rank < k])  # back to (row, col) order
    return sp.csr_matrix((a.data[keep], (rows[keep], cols[keep])), shape=a.shape)


def _sym_norm_values(rows: Tensor, cols: Tensor, vals: Tensor, n: int) -> Tensor:
    deg = torch.zeros(n, dtype=vals.dtype).index_add_(0, rows, vals)
    inv = deg.clamp_min(1e-12).rsqrt() * (deg > 0)
    return inv[rows] * vals * inv[cols]


class PropMatrix:
    """A normalised ``[N, N]`` propagation matrix, dense or sparse CSR (picked by density)."""

    def __init__(self, rows: Tensor, cols: Tensor, vals: Tensor, n: int,
                 dense: bool | None = None) -> None:
        self.n, self.nnz = n, int(vals.numel())
        if dense is None:
            dense = self.nnz > DENSE_FRACTION * n * n
        self.dense = dense
        if dense:
            m = torch.zeros(n, n)
            m[rows, cols] = vals.float()
            self.mat = m
        else:
            self.mat = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals.float(),
                                               (n, n), check_invariants=False).coalesce().to_sparse_csr()

    def __matmul__(self, x: Tensor) -> Tensor:
        return self.mat @ x if self.dense else torch.sparse.mm(self.mat, x)

    def to_dense(self) -> Tensor:
        return self.mat if self.dense else self.mat.to_dense()

    def to(self, device: Any) -> "PropMatrix":
        """This matrix on ``device`` (``self`` when it is already there)."""
        device = torch.device(device)
        if self.mat.device == device:
            return self
        moved = copy.copy(self)
        moved.mat = self.mat.to(device)
        return moved


@dataclass
class MetaPathInput:
    """Per meta-path: filtered counts ``(rows, cols, vals)``, normalised matrix, contexts."""

    name: str
    rows: Tensor
    cols: Tensor
    vals: Tensor
    adj: PropMatrix
    contexts: list  # [(node type, row-mean-normalised sparse [N, n_t])]


class HeteroInputs:
    """Everything a MEOW forward needs, prepared once from a :class:`HeteroData`."""

    def __init__(self, data: Any, pathsim_k: list[int], *, contexts: Any = None) -> None:
        from ..datasets.hetero import metapath_contexts
        self.target = data.target_type
        tgt = data[self.target]
        self.n = int(tgt.num_nodes)
        self.y = tgt.y
        self.data = data
        self.types = list(data.node_types)
        self.x = {t: data[t].x if "x" in data[t] else None for t in self.types}
        self.num_nodes = {t: int(data[t].num_nodes) for t in self.types}
        mps = list(data.metapaths)
        ks = list(pathsim_k) if len(pathsim_k) > 1 else list(pathsim_k) * len(mps)
        if len(ks) != len(mps):
            raise ValueError(f"pathsim_k: expected {len(mps)} values (one per meta-path "
                             f"{mps}), got {list(pathsim_k)}")
        self.metapaths: list[MetaPathInput] = []
        for mp, k in zip(mps, ks):
            st = data[self.target, mp, self.target]
            n = self.n
            a = sp.csr_matrix((st.edge_weight.double().numpy(), tuple(st.edge_index.numpy())),
                              shape=(n, n))
            f = pathsim_topk(a, int(k)).tocoo()
            rows, cols = torch.from_numpy(f.row.astype(np.int64)), torch.from_numpy(
                f.col.astype(np.int64))
            vals = torch.from_numpy(f.data).double()
            adj = PropMatrix(rows, cols, _sym_norm_values(rows, cols, vals, n), n)
            ctx = (contexts[mp] if contexts is not None else metapath_contexts(data, mp))
            ctx = [(t, _row_mean(m)) for t, m in ctx]
            self.metapaths.append(MetaPathInput(mp, rows, cols, vals, adj, ctx))
        # coarse view: mean of the normalised meta-path matrices
        r = torch.cat([m.rows for m in self.metapaths])
        c = torch.cat([m.cols for m in self.metapaths])
        v = torch.cat([_sym_norm_values(m.rows, m.cols, m.vals, n) for m in self.metapaths])
        v = v / len(self.metapaths)
        dense = any(m.adj.dense for m in self.metapaths)
        coarse = torch.sparse_coo_tensor(torch.stack([r, c]), v, (n, n), check_invariants=False).coalesce()
        idx = coarse.indices()
        self.coarse = PropMatrix(idx[0], idx[1], coarse.values(), n, dense=dense)

    def to(self, device: Any) -> "HeteroInputs":
        """The inputs with everything a forward pass reads (features, meta-path, context and
        coarse matrices) on ``device``; ``self`` on the CPU. Copies are made once per device and
        cached. The masks are always drawn on the CPU from these CPU inputs (the same random
        stream on every device) and moved by the method."""
        device = torch.device(device)
        if device.type == "cpu":
            return self
        cache = self.__dict__.setdefault("_moved", {})
        if str(device) not in cache:
            moved = copy.copy(self)
            moved.__dict__.pop("_moved", None)
            moved.x = {t: None if x is None else x.to(device) for t, x in self.x.items()}
            moved.metapaths = [dataclasses.replace(
                mp, adj=mp.adj.to(device), contexts=[(t, m.to(device)) for t, m in mp.contexts])
                for mp in self.metapaths]
            moved.coarse = self.coarse.to(device)
            cache[str(device)] = moved
        return cache[str(device)]


def _row_mean(m: Tensor) -> Tensor:
    """Row-mean operator ``[N, n_t]`` of a binary context incidence: sparse CSR, or dense when
    denser than :data:`DENSE_FRACTION` (DBLP's A-P-C-P / A-P-T-P; a dense product is faster)."""
    m = m.coalesce()
    idx, val = m.indices(), m.values().double()
    deg = torch.zeros(m.size(0), dtype=val.dtype).index_add_(0, idx[0], val)
    val = val / deg.clamp_min(1e-12)[idx[0]]
    if val.numel() > DENSE_FRACTION * m.size(0) * m.size(1):
        dense = torch.zeros(m.shape)
        dense[idx[0], idx[1]] = val.float()
        return dense
    return torch.sparse_coo_tensor(idx, val.float(), m.shape,
                                   check_invariants=False).coalesce().to_sparse_csr()


def mask_feature_entries(x: Tensor, p: float, generator: torch.Generator | None = None
                         ) -> Tensor:
    """Zero a fraction ``p`` of the non-zero entries of ``x`` (entries, not columns)."""
    p = check_probability("p", p)
    if p <= 0:
        return x
    drop = (torch.rand(x.shape, generator=generator) < p) & (x != 0)
    return x.masked_fill(drop, 0.0)


def mask_edges(mp: MetaPathInput, p: float, n: int, generator: torch.Generator | None = None
               ) -> PropMatrix:
    r"""Edge-masked view: drop a fraction ``p`` of the off-diagonal entries of :math:`\bar A^P`
    (per directed entry), binarise, add ``I``, normalise symmetrically."""
    p = check_probability("p", p)
    diag = mp.rows == mp.cols
    keep = diag | (torch.rand(mp.rows.shape, generator=generator) >= p)
    rows, cols = mp.rows[keep], mp.cols[keep]
    vals = torch.where(diag[keep], 2.0, 1.0).double()  # binarised + I
    missing = torch.ones(n, dtype=torch.bool)
    missing[mp.rows[diag]] = False  # rows without a stored diagonal get I alone
    if bool(missing.any()):
        m = missing.nonzero().view(-1)
        rows, cols = torch.cat([rows, m]), torch.cat([cols, m])
        vals = torch.cat([vals, torch.ones(len(m), dtype=vals.dtype)])
    return PropMatrix(rows, cols, _sym_norm_values(rows, cols, vals, n), n, dense=mp.adj.dense)


# ============================================================================ modules
class TypeProjection(nn.Module):
    """``h^t = ELU(Dropout(W_t x^t + b_t))``; identity features use an embedding table."""

    def __init__(self, in_channels: int | None, num_nodes: int, out_channels: int,
                 dropout: float) -> None:
        super().__init__()
        if in_channels is None:
            self.table = nn.Parameter(torch.empty(num_nodes, out_channels))
            nn.init.xavier_normal_(self.table, gain=1.414)
            self.lin = None
        else:
            self.lin = nn.Linear(in_channels, out_channels)
            nn.init.xavier_normal_(self.lin.weight, gain=1.414)
            self.table = None
        self.bias = nn.Parameter(torch.zeros(out_channels)) if in_channels is None else None
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor | None) -> Tensor:
        h = self.table + self.bias if self.lin is None else self.lin(x)
        return F.elu(self.drop(h))


class GCN(nn.Module):
    """Two GCN layers ``Â Dropout(H W) + b`` (PReLU between) and a whole-matrix LayerNorm."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.lins = nn.ModuleList([nn.Linear(channels, channels, bias=False) for _ in range(2)])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(channels)) for _ in range(2)])
        for lin in self.lins:
            nn.init.xavier_normal_(lin.weight, gain=1.414)
        self.act = nn.PReLU()
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, adj: PropMatrix) -> Tensor:
        h = self.act(adj @ self.drop(self.lins[0](h)) + self.biases[0])
        h = adj @ self.drop(self.lins[1](h)) + self.biases[1]
        return F.layer_norm(h, h.shape)  # global standardisation, no parameters


class SemanticAttention(nn.Module):
    r""":math:`\beta_m = \mathrm{softmax}_m(q \cdot \frac1N \sum_i \tanh(W g^m_i + b))`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, channels)
        nn.init.xavier_normal_(self.fc.weight, gain=1.414)
        self.q = nn.Parameter(torch.empty(1, channels))
        nn.init.xavier_normal_(self.q, gain=1.414)
        self.last_beta: Tensor | None = None

    def forward(self, gs: list[Tensor]) -> Tensor:
        scores = torch.stack([(self.q * torch.tanh(self.fc(g)).mean(0)).sum() for g in gs])
        beta = torch.softmax(scores, 0)
        self.last_beta = beta.detach()
        return sum(b * g for b, g in zip(beta, gs))


class ProjectionHead(nn.Module):
    """``π(x) = normalise(tanh(W x + b))``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.lin = nn.Linear(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return l2_normalize(torch.tanh(self.lin(x)), dim=-1)


# ============================================================================ clustering
@torch.no_grad()
def cluster_with_concentration(v: Tensor, k: int, *, temperature: float, seed: int,
                               restores: int = 5, iters: int = 20
                               ) -> tuple[Tensor, Tensor, Tensor]:
    r"""k-means on ``v [N, D]`` with PCL/MEOW concentrations.

    Returns labels ``[N]``, ℓ2-normalised centroids ``[K, D]`` and concentrations ``φ [K]``:
    :math:`\phi_k = \mathrm{mean}_{i \in k} \sqrt{\max(D_i, 0)} / \log(n_k + 5)` with ``D_i`` the
    inner product of ``v_i`` and its (unnormalised) centroid; single-member clusters get the
    maximum; clipped to the 10th–90th percentiles; rescaled to mean ``τ``.
    """
    from sklearn.cluster import KMeans
    x = v.detach().cpu().float().numpy()
    km = KMeans(n_clusters=k, init="random", n_init=restores, max_iter=iters,
                random_state=seed).fit(x)
    labels = torch.from_numpy(km.labels_.astype(np.int64))
    cent = torch.from_numpy(km.cluster_centers_).to(v.dtype)  # on the CPU, like the labels
    d = (v.detach().cpu() * cent[labels]).sum(1).clamp_min(0).sqrt()
    counts = torch.bincount(labels, minlength=k)
    phi = torch.zeros(k, dtype=v.dtype).index_add_(0, labels, d)
    phi = phi / counts.clamp_min(1) / torch.log(counts.to(v.dtype) + 5)
    multi = counts > 1
    fill = phi[multi].max() if bool(multi.any()) else torch.tensor(temperature, dtype=v.dtype)
    phi = torch.where(multi, phi, fill)
    lo, hi = np.percentile(phi.numpy(), 10), np.percentile(phi.numpy(), 90)
    phi = phi.clamp(float(lo), float(hi))
    phi = temperature * phi / phi.mean().clamp_min(1e-12)
    phi = phi.clamp_min(1e-6)
    return labels.to(v.device), l2_normalize(cent, dim=1).to(v.device), phi.to(v.device)


# ============================================================================ losses
def meow_weighted_loss(u: Tensor, v: Tensor, cluster_labels: list[Tensor], *,
                       temperature: float, normalize_weights: bool = False,
                       block_size: int | None = None, anchors: Tensor | None = None) -> Tensor:
    r""":math:`\mathcal L_w`: coarse anchors ``u [N, D]``, fine candidates ``v [N, D]``,
    ``w_ij = Σ_m [c^m_i ≠ c^m_j]`` from ``M`` label vectors ``[N]`` (engine ``LabelTable`` s).

    ``anchors`` (``[B]`` node indices) restricts the mean over ``i`` to a subset (an unbiased
    estimate of the full loss); all ``N`` nodes stay candidates."""
    positives: Any = "aligned"
    if anchors is not None:
        u = u[anchors]
        positives = torch.stack([torch.arange(len(anchors), device=u.device), anchors])
    weights = []
    for c in cluster_labels:
        k = int(c.max()) + 1
        table = 1.0 - torch.eye(k, dtype=u.dtype, device=u.device)
        weights.append(LabelTable(table, c if anchors is None else c[anchors], c))
    return contrastive_loss(u, v, positives=positives, temperature=temperature,
                            similarity="dot", form="decoupled", negative_weight=weights,
                            normalize_weights=normalize_weights, block_size=block_size)


def proto_nce_loss(u: Tensor, clusterings: list[tuple[Tensor, Tensor, Tensor]],
                   anchors: Tensor | None = None) -> Tensor:
    r""":math:`\mathcal L_{proto}`: mean over clusterings of InfoNCE of ``u`` against the
    centroids ``μ [K, D]`` with per-centroid temperatures ``φ [K]``, positive = own cluster."""
    terms = []
    if anchors is not None:
        u = u[anchors]
    for labels, cent, phi in clusterings:
        labels = labels if anchors is None else labels[anchors]
        k = cent.size(0)
        terms.append(contrastive_loss(
            u, cent, positives=SameLabel(labels, torch.arange(k, device=u.device)),
            temperature=phi, similarity="dot", form="infonce"))
    return torch.stack(terms).mean()


class PairWeightMLP(nn.Module):
    r"""AdaMEOW's ``ω_ij = σ(W_2 tanh(W_1 (v_i + u_j) + b_1) + b_2)``, evaluated per row block."""

    def __init__(self, channels: int, hidden: int = 16) -> None:
        super().__init__()
        self.l1 = nn.Linear(channels, hidden)
        self.l2 = nn.Linear(hidden, 1)

    def block_fn(self, v: Tensor, u: Tensor, guard: str, anchors: Tensor | None = None) -> Any:
        """A ``(s_block, rows) -> [B, M]`` weight callable for the engine (``v`` = anchors;
        ``anchors[r]`` is the candidate index of anchor ``r``'s positive, default ``r``)."""
        w1, b1, w2, b2 = self.l1.weight, self.l1.bias, self.l2.weight, self.l2.bias

        def fn(s: Tensor, rows: Tensor) -> Tensor:
            av = v[rows] @ w1.t()  # W1 (v_i + u_j) = W1 v_i + W1 u_j
            bu = u @ w1.t() + b1
            hid = torch.tanh(av[:, None, :] + bu[None, :, :])  # [B, M, H]
            w = torch.sigmoid(hid @ w2.view(-1) + b2)  # [B, M]
            if guard == "negative_mean":
                diag = torch.zeros_like(w, dtype=torch.bool)
                pos = rows if anchors is None else anchors[rows]
                diag[torch.arange(len(rows), device=w.device), pos] = True
                neg_mean = w.masked_fill(diag, 0).sum(1, keepdim=True) / max(w.size(1) - 1, 1)
                w = torch.where(diag, torch.ones_like(w), w / neg_mean.clamp_min(1e-12))
            return w
        return fn

    def forward(self, v: Tensor, u: Tensor) -> Tensor:  # dense reference (small N only)
        return torch.sigmoid(self.l2(torch.tanh(self.l1(v[:, None] + u[None])))).squeeze(-1)


def adameow_loss(v: Tensor, u: Tensor, mlp: PairWeightMLP, *, temperature: float,
                 guard: str = "negative_mean", block_size: int | None = None,
                 anchors: Tensor | None = None) -> Tensor:
    r""":math:`\mathcal L_{Ada}`: fine anchors ``v``, coarse candidates ``u``, weights ``ω`` from
    ``mlp`` (engine ``BlockWeight``; the positive stays in the denominator with ``ω_ii``).
    ``anchors`` (``[B]``) restricts the mean over anchors to a subset."""
    positives: Any = "aligned"
    if anchors is not None:
        v = v[anchors]
        positives = torch.stack([torch.arange(len(anchors), device=v.device), anchors])
    fn = mlp.block_fn(v, u, guard, anchors)
    weight = BlockWeight(fn, tensors=[v, u, *mlp.parameters()])
    return contrastive_loss(v, u, positives=positives, temperature=temperature,
                            similarity="dot", form="infonce", negative_weight=weight,
                            block_size=block_size)


# ============================================================================ method
class MEOW(ContrastiveMethod):
    """MEOW (``adaptive=False``) or AdaMEOW (``adaptive=True``) on prepared hetero inputs."""

    name = "meow"

    def __init__(self, config: MEOWConfig, inputs: HeteroInputs, *, adaptive: bool = False
                 ) -> None:
        super().__init__(config)
        c, self.adaptive = config, adaptive
        self.name = "adameow" if adaptive else "meow"
        self.inputs = inputs
        H = c.hidden_channels
        self.proj = nn.ModuleDict({t: TypeProjection(
            None if inputs.x[t] is None else inputs.x[t].size(1), inputs.num_nodes[t], H,
            c.dropout) for t in inputs.types})
        self.context_maps = nn.ModuleList([nn.ModuleList([nn.Linear(H, H) for _ in mp.contexts])
                                           for mp in inputs.metapaths])
        for maps in self.context_maps:
            for lin in maps:
                nn.init.xavier_normal_(lin.weight, gain=1.414)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = GCN(H, c.dropout)
        self.attention = SemanticAttention(H)
        self.head = ProjectionHead(H, c.projection_channels)
        self.weight_mlp = PairWeightMLP(c.projection_channels, getattr(c, "weight_hidden", 16)) \
            if adaptive else None
        P = len(inputs.metapaths)
        em = list(c.edge_mask) if len(c.edge_mask) > 1 else list(c.edge_mask) * P
        if len(em) != P:
            raise ValueError(f"edge_mask: expected 1 or {P} values, got {list(c.edge_mask)}")
        self.edge_mask = em
        self.masked: tuple[Tensor, list[PropMatrix]] | None = None
        self.best_loss, self.best_state, self.since_best = float("inf"), None, 0
        self.stop_training = False
        self.step = 0
        self.last_terms: dict[str, float] = {}

    # ---- views ---------------------------------------------------------------------------
    def sample_augmentations(self) -> None:
        """Draw the masked target features and the edge-masked meta-path matrices."""
        inp, c = self.inputs, self.config
        x = inp.x[inp.target]
        xm = None if x is None else mask_feature_entries(x, c.feature_mask)
        adjs = [mask_edges(mp, p, inp.n) for mp, p in zip(inp.metapaths, self.edge_mask)]
        self.masked = (xm, adjs)

    def _device_inputs(self) -> HeteroInputs:
        """The inputs on the parameters' device (the trainer moves the parameters only)."""
        return self.inputs.to(next(self.parameters()).device)

    def forward_views(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(g^c, z, attention input)`` → returns coarse output, fused ``z`` and ``v``/``u``."""
        inp = self._device_inputs()
        if self.masked is None:
            self.sample_augmentations()
        xm, masked_adjs = self.masked
        dev = next(self.parameters()).device
        xm = None if xm is None else xm.to(dev)
        masked_adjs = [a.to(dev) for a in masked_adjs]
        h = {t: self.proj[t](inp.x[t]) for t in inp.types}
        tgt = inp.target
        h_aug = self.proj[tgt](xm) if xm is not None else self.proj[tgt](None)
        g_coarse = self.encoder(h[tgt], inp.coarse)
        fine = []
        for k, (mp, adj_m) in enumerate(zip(inp.metapaths, masked_adjs)):
            e, e_aug = self.context_embeddings(k, h, h_aug)
            fine.append(l2_normalize(self.encoder(e, mp.adj), dim=1))
            fine.append(l2_normalize(self.encoder(e_aug, adj_m), dim=1))
        z = self.attention(fine)
        return g_coarse, z

    def context_embeddings(self, k: int, h: dict, h_aug: Tensor) -> tuple[Tensor, Tensor]:
        r"""Meta-path ``k``'s context embeddings ``e^P, ẽ^P [N, H]``:
        :math:`e^P_i = \mathrm{ELU}(h_i + \sum_{hops} \mathrm{Drop}(U \,
        \mathrm{mean}_{j \in C(i)} h^{t}_j))`, ``ẽ`` with the masked target projection."""
        mp, maps = self._device_inputs().metapaths[k], self.context_maps[k]
        ctx = [lin(m @ h[t] if m.layout == torch.strided else torch.sparse.mm(m, h[t]))
               for (t, m), lin in zip(mp.contexts, maps)]
        tgt = self.inputs.target
        e = F.elu(h[tgt] + sum(self.drop(cx) for cx in ctx))
        e_aug = F.elu(h_aug + sum(self.drop(cx) for cx in ctx))
        return e, e_aug

    def training_step(self, batch: Any) -> Tensor:
        c = self.config
        if c.resample_augmentations or self.masked is None:
            self.sample_augmentations()
        g_coarse, z = self.forward_views()
        u, v = self.head(g_coarse), self.head(z)
        n = u.size(0)
        anchors = (torch.randperm(n, device=u.device)[:c.loss_anchors]
                   if 0 < c.loss_anchors < n else None)
        if self.adaptive:
            loss = adameow_loss(v, u, self.weight_mlp, temperature=c.temperature,
                                guard=c.weight_guard, block_size=c.block_size, anchors=anchors)
            self.last_terms = {"loss_ada": float(loss.detach())}
        else:
            clus = [cluster_with_concentration(v, int(k), temperature=c.temperature, seed=m,
                                               restores=c.kmeans_restarts, iters=c.kmeans_iters)
                    for m, k in enumerate(c.num_clusters)]
            lw = meow_weighted_loss(u, v, [cl[0] for cl in clus], temperature=c.temperature,
                                    normalize_weights=c.normalize_weights,
                                    block_size=c.block_size, anchors=anchors)
            loss = lw
            self.last_terms = {"loss_w": float(lw.detach())}
            if c.proto_weight > 0 and clus:
                lp = proto_nce_loss(u, clus, anchors)
                loss = loss + c.proto_weight * lp
                self.last_terms["loss_proto"] = float(lp.detach())
        self._track(float(loss.detach()))
        return loss

    def _track(self, value: float) -> None:
        """Best-training-loss bookkeeping (parameters *before* this step's update)."""
        self.step += 1
        if value < self.best_loss:
            self.best_loss, self.since_best = value, 0
            if self.config.restore == "best_loss":
                self.best_state = {k: t.detach().clone() for k, t in self.state_dict().items()
                                   if k != _EXTRA_STATE}
        else:
            self.since_best += 1
        if self._patience_exhausted():
            self.stop_training = True

    def _patience_exhausted(self) -> bool:
        return bool(self.config.patience) and self.since_best >= self.config.patience

    def restore_best(self) -> None:
        """Load the parameters of the lowest-training-loss step (``restore="best_loss"``)."""
        if self.config.restore == "best_loss" and self.best_state is not None:
            self.load_state_dict({**self.best_state, _EXTRA_STATE: self.get_extra_state()})

    def get_extra_state(self) -> dict[str, Any]:
        """The best-loss bookkeeping, saved in the trainer's checkpoints so that a resumed run
        keeps its best step, patience counter and step count (the fixed masks of
        ``resample_augmentations=False`` are not saved: a resumed run draws them anew)."""
        return {"step": int(self.step), "best_loss": float(self.best_loss),
                "since_best": int(self.since_best), "best_state": self.best_state or {}}

    def set_extra_state(self, state: Any) -> None:
        """Restore :meth:`get_extra_state`; a run stopped on patience stays stopped."""
        if not isinstance(state, dict) or not {"step", "best_loss", "since_best",
                                               "best_state"} <= set(state):
            raise ValueError(f"state: expected MEOW's extra state (step, best_loss, since_best, "
                             f"best_state), got {type(state).__name__}")
        self.step, self.best_loss = int(state["step"]), float(state["best_loss"])
        self.since_best = int(state["since_best"])
        self.best_state = dict(state["best_state"]) or None
        self.stop_training = self._patience_exhausted()

    @torch.no_grad()
    def embed(self, batch: Any = None) -> Tensor:
        """``z [N, D]`` in eval mode (no dropout) with the current augmentation sample."""
        was = self.training
        self.eval()
        _, z = self.forward_views()
        self.train(was)
        return z


# ============================================================================ evaluation
def evaluate_embeddings(config: MEOWConfig, z: Tensor, data: Any, seed: int = 0
                        ) -> dict[str, float]:
    """HeCo protocol: ``macro_f1@r``, ``micro_f1@r``, ``auc@r`` (+ ``_std``) and ``nmi``, ``ari``."""
    tgt = data[data.target_type]
    y = tgt.y.numpy()
    out: dict[str, float] = {}
    for r in config.eval_ratios:
        res = heco_probe(z, y, tgt[f"train_{r}"], tgt[f"val_{r}"], tgt[f"test_{r}"],
                         runs=config.eval_runs, lr=config.eval_lr,
                         weight_decay=config.eval_weight_decay, seed=seed)
        for k in ("macro_f1", "micro_f1", "auc"):
            out[f"{k}@{r}"], out[f"{k}@{r}_std"] = res[k], res[f"{k}_std"]
    k = int(data.num_classes)
    nm, ar = [], []
    for s in range(config.cluster_fits):
        pred = kmeans(z, k, n_init=10, seed=s)
        nm.append(nmi(y, pred))
        ar.append(ari(y, pred))
    out["nmi"], out["ari"] = float(np.mean(nm)), float(np.mean(ar))
    return out


def _load(config: MEOWConfig) -> Any:
    from ..datasets import load
    data = load(config.dataset)
    if not hasattr(data, "target_type"):
        raise ValueError(f"dataset: expected a heterogeneous dataset (acm, dblp-hetero, aminer, "
                         f"imdb, freebase), got {config.dataset!r}")
    return data


def fit(config: MEOWConfig, data: Any = None, *, adaptive: bool = False, seed: int = 0,
        out_dir: Any = None, progress: bool = False, inputs: HeteroInputs | None = None,
        device: str = "cpu", resume: bool | str | Path = False) -> tuple[MEOW, Trainer]:
    """Build the method and train it with the shared trainer; restores by training loss.

    Args:
        config: the hyperparameters.
        data: the heterogeneous graph (default: ``config.dataset`` loaded).
        adaptive: AdaMEOW's learnt negative weights instead of MEOW's clusters.
        seed: seed of the initialisation and of the trainer.
        out_dir: the trainer's folder (log, ``checkpoint.pt``); ``None`` writes nothing.
        progress: show the trainer's progress bar.
        inputs: prepared :class:`HeteroInputs` (default: built from ``data``).
        device: the trainer's device (the inputs follow the parameters there).
        resume: as :meth:`~contrastkit.core.trainer.Trainer.fit`: ``True`` continues from
            ``out_dir/checkpoint.pt``, a path from that file.

    Returns:
        ``(method with the best-loss parameters restored, trainer)``.
    """
    data = data if data is not None else _load(config)
    inputs = inputs or HeteroInputs(data, config.pathsim_k)
    torch.manual_seed(seed)
    method = MEOW(config, inputs, adaptive=adaptive)
    trainer = Trainer(config.epochs, device=device, seed=seed, progress=progress,
                      out_dir=out_dir, checkpoint_every=config.checkpoint_every)
    trainer.fit(method, [inputs], resume=resume)
    method.restore_best()
    return method, trainer


def _run(config: MEOWConfig, ctx: RunContext, adaptive: bool) -> RunResult:
    data = _load(config)
    resume = bool(ctx.resume) and (Path(ctx.out_dir) / CHECKPOINT_NAME).exists()
    t0 = time.perf_counter()
    method, trainer = fit(config, data, adaptive=adaptive, seed=ctx.seed, out_dir=ctx.out_dir,
                          progress=ctx.progress, device=ctx.device, resume=resume)
    train_s = time.perf_counter() - t0
    z = method.embed().cpu()
    metrics = evaluate_embeddings(config, z, data, ctx.seed)
    metrics.update(steps=float(method.step), best_loss=float(method.best_loss), train_time_s=train_s,
                   time_per_epoch_s=float(trainer.stats.get("time_per_epoch_s", float("nan"))),
                   peak_mem_bytes=float(trainer.stats.get("peak_mem_bytes", float("nan"))))
    return RunResult(metrics=metrics, embeddings=z)


def run(config: MEOWConfig, ctx: RunContext) -> RunResult:
    """Train MEOW on ``config.dataset``; HeCo-protocol classification and clustering."""
    return _run(config, ctx, adaptive=False)


def run_adameow(config: AdaMEOWConfig, ctx: RunContext) -> RunResult:
    """Train AdaMEOW on ``config.dataset``; HeCo-protocol classification and clustering."""
    return _run(config, ctx, adaptive=True)


def evaluate(config: MEOWConfig, embeddings: Tensor, ctx: RunContext) -> dict[str, float]:
    """Re-evaluate saved embeddings (``contrastkit eval DIR``)."""
    data = _load(config)
    n = data[data.target_type].num_nodes
    if embeddings.size(0) != n:
        raise ValueError(f"embeddings: expected {n} rows for dataset {config.dataset!r}, got "
                         f"{embeddings.size(0)}")
    return evaluate_embeddings(config, embeddings, data, ctx.seed)


register(MethodSpec(
    name="meow", config_cls=MEOWConfig, run=run, evaluate=evaluate,
    description="MEOW: coarse vs meta-path-context views, cluster-weighted negatives, ProtoNCE "
                "(Yu & Li, 2023)",
    default_dataset="acm", presets=MEOW_PRESETS, accepts=("graph:heterogeneous",)))
register(MethodSpec(
    name="adameow", config_cls=AdaMEOWConfig, run=run_adameow, evaluate=evaluate,
    description="AdaMEOW: MEOW with learnt pairwise negative weights (Yu et al., 2024)",
    default_dataset="acm", presets=ADAMEOW_PRESETS, accepts=("graph:heterogeneous",)))
