r"""PamC: parameter-free meta-node contrastive clustering, and SCGC* (the exact loss it approximates).

Kulatilleke et al., "Efficient block contrastive learning via parameter-free meta-node
approximation" (arXiv 2209.14067); SCGC* from "SCGC: Self-Supervised Contrastive Graph
Clustering" (arXiv 2204.12656). Spec: ``specs/graph/pamc.md``.

**Model.** An MLP ``f: F -> 500 -> 500 -> 2000 -> 10`` (ReLU after the hidden layers, no message
passing), initialised from an SDCN-style autoencoder trained on the features
(:func:`pretrain_autoencoder`, cached), and DEC cluster centres ``mu [K, 10]`` initialised by
k-means. Student-t assignment and the self-training target refreshed every epoch:

.. math::

    q_{ik} \propto (1 + \|z_i - \mu_k\|^2)^{-1}, \qquad
    p_{ik} \propto q_{ik}^2 / \textstyle\sum_i q_{ik}, \qquad
    L_{KL} = \mathrm{KL}(P \| Q)

**Influence graph.** ``A_r = sum_{t=1..r} Â^t`` (or ``Â^r`` without ``influence``),
``Â = D^{-1}(A + I)`` row-normalised (:func:`influence_adjacency`); its entries weight the
positive pairs, and the self pair ``(i, i)`` sits at the fixed logit 0 (``c_ii := 0``).

**SCGC\* (exact, spec §2).** With ``s_ij = τ cos(z_i, z_j)`` (``τ`` multiplies: ``scale``):

.. math:: L_{SCGC^*} = -\frac1N \sum_i \log
          \frac{\sum_j (A_r)_{ij} e^{s_{ij}}}{\sum_j e^{s_{ij}}}

the engine's ``positive_mass`` form over weighted pairs, computed blockwise (never ``N x N``).

**PamC (spec §2).** Meta-nodes ``m_k = sum_{i: y_i = k} z_i`` (sums over the current hard labels
``y = argmax q``) replace the per-node negatives:

.. math:: L_{PamC} = -\frac1N \sum_i \log \sum_j (A_r)_{ij} e^{s_{ij}}
          + \frac1K \sum_k \log \sum_l e^{\tau \cos(m_k, m_l)}, \quad \cos(m_k, m_k) := 0

in ``O(nnz(A_r) d + N d + K^2 d)`` (:func:`pamc_loss`). Total ``L = β L_KL + α L_contrast``.

**Anchor-wise variant (``negatives="anchor"``, a toolkit option, not in the paper).** Each node
keeps its own SCGC*-style denominator, with every other node replaced by its cluster's meta-node
direction, weighted by the cluster size ``n_l``:

.. math:: \sum_j e^{\tau c_{ij}} \approx \sum_l n_l\, e^{\tau \cos(z_i, m_l)}, \qquad
          L = -\frac1N \sum_i \log \sum_j (A_r)_{ij} e^{\tau c_{ij}}
              + \frac1N \sum_i \log \sum_l n_l e^{\tau \cos(z_i, m_l)}

``O(nnz(A_r) d + N K d)``, still linear in ``N``. The paper's cluster-pair term stays between
about ``log(1 + (K-1) e^{-τ/(K-1)})`` (meta-nodes spread out) and ``log(1 + (K-1) e^τ)``, and is
``log K`` when one cluster holds every node (the others are zero meta-nodes): a merge costs it
little, and on Amazon-Computers PamC collapses. The anchor-wise term grows to ``log N + τ`` when
all nodes point one way, as SCGC*'s does.

**Differences from the official code (documented choices).** An empty cluster keeps a zero
meta-node whose cosine with every other is 0 (``empty_clusters="zero"``, default; the code's
one-hot gives a zero meta-node and a NaN cosine, or drops the last rows). Dropping empty clusters
from the term (``"exclude"``) rewards emptying them: with fewer non-empty clusters the sums have
fewer terms, so the loss drops. Neither choice prevents a collapse once one cluster holds every
node (the meta-node term is then constant): on Amazon-Computers PamC collapses in both modes. The
``1e-10``/``1e-8`` epsilons inside the logs are dropped (the positive mass is at least
``(A_r)_ii > 0``); the target refresh runs without gradient (identical values); accuracy uses a
rectangular Hungarian matching (the code relabels points when a cluster is empty). The official
evaluation keeps each metric's maximum over the 200 epochs, selected with the labels: we report
the final epoch as ``cluster_acc``/``nmi``/``ari``/``cluster_f1`` and the official number only as
``*_max_over_epochs``.

**Hyperparameters.** Official per-dataset values (spec §4, PamC and SCGC* differ). Datasets
without an official configuration take the configuration of the nearest official *given-graph*
dataset (ACM, DBLP, Citeseer) in ``(log N, log F)`` — a rule that uses no labels, the same for
both losses (:func:`nearest_official`): Cora -> ACM, Amazon-Computers -> DBLP, Coauthor-CS ->
Citeseer.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, remove_self_loops, to_undirected

from ..core.checks import check_choice, check_config_numbers, check_ints, check_positive
from ..core.checkpoint import load_checkpoint, save_checkpoint
from ..core.engine import contrastive_loss, pair_logsumexp
from ..core.losses import positive_mass_loss
from ..core.method import ContrastiveMethod
from ..core.metrics import ari, cluster_acc, cluster_f1, kmeans, nmi
from ..core.pairs import Pairs
from ..core.progress import progress_bar
from ..core.trainer import Trainer
from ..core.similarity import l2_normalize
from ..registry import MethodSpec, RunContext, RunResult, register

LOSSES = ("pamc", "scgc")
EMPTY_CLUSTERS = ("zero", "exclude")
NEGATIVES = ("meta", "anchor")
CLUSTER_KEYS = ("cluster_acc", "nmi", "ari", "cluster_f1")


# ---------------------------------------------------------------------------------------------
# Graph: the influence adjacency A_r
# ---------------------------------------------------------------------------------------------
def influence_adjacency(edge_index: Tensor, num_nodes: int, order: int = 1,
                        influence: bool = True) -> tuple[Tensor, Tensor]:
    r"""Multi-hop positive weights ``A_r`` as sparse pairs.

    ``Â = D^{-1}(A + I)`` with ``A`` the symmetrised, unweighted graph without self loops;
    ``A_r = sum_{t=1}^{r} Â^t`` when ``influence`` (all published runs), else ``Â^r``.

    Args:
        edge_index: ``[2, E]`` edges (any direction, duplicates and self loops allowed).
        num_nodes: ``N``.
        order: ``r >= 1``.
        influence: cumulative powers (True) or the ``r``-th power only.

    Returns:
        ``(index [2, P], weight [P])`` sorted by row, float32 weights (the diagonal included).
    """
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"order: expected a positive int, got {order!r}")
    n = int(num_nodes)
    ei = remove_self_loops(edge_index)[0]
    ei = to_undirected(ei, num_nodes=n)
    loops = torch.arange(n, device=ei.device).repeat(2, 1)
    ei = coalesce(torch.cat([ei, loops], 1), num_nodes=n)
    deg = torch.bincount(ei[0], minlength=n).to(torch.float64)
    a_hat = torch.sparse_coo_tensor(ei, 1.0 / deg[ei[0]], (n, n), check_invariants=True).coalesce()
    power, total = a_hat, a_hat
    for _ in range(order - 1):
        with warnings.catch_warnings():  # torch's sparse product goes through (beta) CSR
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
            power = torch.sparse.mm(power, a_hat).coalesce()
        total = (total + power).coalesce() if influence else power
    return total.indices(), total.values().to(torch.float32)


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------
def scgc_loss(z: Tensor, pairs: Pairs, scale: float, block_size: int | None = None) -> Tensor:
    r"""SCGC*'s exact loss ``-mean_i log(sum_j A_ij e^{s_ij} / sum_j e^{s_ij})`` (spec §2).

    Args:
        z: embeddings ``[N, d]``.
        pairs: the weighted positive pairs ``A_r`` (:func:`influence_adjacency`).
        scale: ``τ`` (multiplies the cosine: temperature ``1/τ``).
        block_size: anchors per row block (``None``: dense when small).
    """
    return positive_mass_loss(z, None, positives=pairs, temperature=1.0 / scale,
                              similarity="cosine", diagonal=0.0, block_size=block_size)


def meta_nodes(z: Tensor, labels: Tensor, num_clusters: int) -> tuple[Tensor, Tensor]:
    """Meta-nodes ``m_k = sum_{i: y_i = k} z_i`` ``[K, d]`` and the cluster sizes ``[K]``."""
    m = z.new_zeros(num_clusters, z.size(1)).index_add(0, labels, z)
    return m, torch.bincount(labels, minlength=num_clusters)


def pamc_loss(z: Tensor, pairs: Pairs, labels: Tensor, num_clusters: int, scale: float, *,
              anchors: Tensor | None = None, empty_clusters: str = "zero",
              negatives: str = "meta") -> Tensor:
    r"""PamC's meta-node loss (spec §2), ``O(nnz(A_r) d + K^2 d)``.

    ``-mean_i log sum_j (A_r)_ij e^{τ c_ij} + mean_k log sum_l e^{τ c̄_kl}`` with ``c_ii := 0``,
    ``c̄_kk := 0``. ``empty_clusters="zero"``: all ``K`` meta-nodes, an empty one is the zero
    vector (cosine 0 with every other, no gradient); ``"exclude"``: the sums and the mean run
    over non-empty clusters only.

    Args:
        z: embeddings ``[N, d]``.
        pairs: weighted positive pairs ``A_r``.
        labels: hard cluster labels ``[N]`` (``[B]``: of the anchors) in ``[0, K)``, no gradient.
        num_clusters: ``K``.
        scale: ``τ``.
        anchors: mini-batch: rows ``[B]`` of ``z`` that are anchors (the others are only
            neighbours); ``None``: every row.
        empty_clusters: ``"zero"`` or ``"exclude"`` (see above; ``negatives="meta"`` only).
        negatives: ``"meta"`` (the paper: cluster-pair term over meta-nodes) or ``"anchor"``
            (toolkit variant: ``mean_i log sum_l n_l e^{τ cos(z_i, m_l)}``, empty clusters
            weigh 0; see the module docstring).
    """
    check_choice("empty_clusters", empty_clusters, EMPTY_CLUSTERS)
    check_choice("negatives", negatives, NEGATIVES)
    za = z if anchors is None else z[anchors]
    if labels.shape != (za.size(0),):
        raise ValueError(f"labels: expected shape ({za.size(0)},), got {tuple(labels.shape)}")
    pos = pair_logsumexp(z, positives=pairs, temperature=1.0 / scale, similarity="cosine",
                         diagonal=0.0)
    if anchors is not None:
        pos = pos[anchors]
    m, counts = meta_nodes(za, labels.long(), num_clusters)
    if negatives == "anchor":
        logits = scale * (l2_normalize(za, dim=1) @ l2_normalize(m, dim=1).t())      # [B, K]
        return -pos.mean() + torch.logsumexp(logits + counts.to(za.dtype).log(), 1).mean()
    neg = contrastive_loss(m if empty_clusters == "zero" else m[counts > 0], None,
                           temperature=1.0 / scale, similarity="cosine", form="log_partition",
                           diagonal=0.0)
    return -pos.mean() + neg


def soft_assignment(z: Tensor, centers: Tensor) -> Tensor:
    """DEC's Student-t assignment (ν = 1) ``q [N, K]``."""
    q = 1.0 / (1.0 + torch.cdist(z, centers).pow(2))
    return q / q.sum(1, keepdim=True)


def target_distribution(q: Tensor) -> Tensor:
    """DEC's sharpened target ``p_ik ∝ q_ik^2 / f_k`` ``[N, K]`` (no gradient)."""
    w = q.pow(2) / q.sum(0)
    return (w / w.sum(1, keepdim=True)).detach()


# ---------------------------------------------------------------------------------------------
# Encoder and its autoencoder pre-training
# ---------------------------------------------------------------------------------------------
def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class AutoEncoder(nn.Module):
    """SDCN's autoencoder: encoder ``F -> 500 -> 500 -> 2000 -> d``, mirrored decoder."""

    def __init__(self, in_channels: int, hidden: tuple[int, ...], out_channels: int) -> None:
        super().__init__()
        self.encoder = _mlp([in_channels, *hidden, out_channels])
        self.decoder = _mlp([out_channels, *reversed(hidden), in_channels])

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


def train_autoencoder(x: Tensor, hidden: tuple[int, ...] = (500, 500, 2000),
                      out_channels: int = 10, *, epochs: int = 30, lr: float = 1e-3,
                      batch_size: int = 256, seed: int = 0, progress: bool = False
                      ) -> AutoEncoder:
    """Train SDCN's autoencoder on ``x [N, F]`` (MSE reconstruction, Adam) and return it whole.

    SDCN's ``pretrain.py`` recipe: 30 epochs, Adam 1e-3, batch 256, shuffled; ``seed`` fixes the
    initialisation and the batch order.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        ae = AutoEncoder(x.size(1), hidden, out_channels)
    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    x = x.float().cpu()
    it = range(epochs)
    if progress:
        it = progress_bar(it, desc="autoencoder pre-training", leave=False)
    for _ in it:
        for idx in torch.randperm(x.size(0), generator=gen).split(batch_size):
            opt.zero_grad()
            F.mse_loss(ae(x[idx]), x[idx]).backward()
            opt.step()
    return ae


def _cached_encoder(path: Path, in_channels: int, hidden: tuple[int, ...],
                    out_channels: int) -> dict[str, Tensor] | None:
    """The encoder weights cached in ``path``, or ``None`` (with a warning naming the file and
    what is wrong) when the file is unreadable, corrupt, or not the state of this encoder:
    the caller then retrains and rewrites it."""
    try:
        state = load_checkpoint(path)  # weights_only=True; ValueError: corrupt or not a dict
    except FileNotFoundError:
        return None  # removed in the meantime (another process): nothing to warn about
    except (ValueError, OSError) as exc:
        problem = str(exc)
    else:
        with torch.device("meta"):  # shapes only, no memory, no random draws
            want = {k: tuple(v.shape) for k, v in
                    AutoEncoder(in_channels, hidden, out_channels).encoder.state_dict().items()}
        got = {k: tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
               for k, v in state.items()}
        if got != want:
            problem = (f"expected the encoder state {want} (F={in_channels}, hidden={hidden}, "
                       f"out={out_channels}), got {got}")
        elif not all(v.is_floating_point() and bool(torch.isfinite(v).all())
                     for v in state.values()):
            problem = "expected finite floating-point weights, got NaN/inf or integers"
        else:
            return state
    warnings.warn(f"PamC autoencoder cache {path} is unusable ({problem}); retraining the "
                  f"autoencoder and rewriting the cache", RuntimeWarning, stacklevel=3)
    return None


def pretrain_autoencoder(x: Tensor, hidden: tuple[int, ...] = (500, 500, 2000),
                         out_channels: int = 10, *, epochs: int = 30, lr: float = 1e-3,
                         batch_size: int = 256, seed: int = 0, cache: str | Path | None = None,
                         progress: bool = False) -> dict[str, Tensor]:
    """:func:`train_autoencoder` and return the *encoder* weights.

    The result is cached under ``cache`` (a file path) when given and reused when present. A
    cache file that cannot be used (truncated or corrupt, not a dict of the encoder's weights,
    weights of another shape, non-finite values) is reported with a ``RuntimeWarning`` naming
    it, and the autoencoder is retrained and the file rewritten (atomically).
    """
    if cache is not None and Path(cache).is_file():
        state = _cached_encoder(Path(cache), int(x.size(1)), tuple(hidden), out_channels)
        if state is not None:
            return state
    ae = train_autoencoder(x, hidden, out_channels, epochs=epochs, lr=lr, batch_size=batch_size,
                           seed=seed, progress=progress)
    state = {k: v.detach().clone() for k, v in ae.encoder.state_dict().items()}
    if cache is not None:
        save_checkpoint(cache, state)
    return state


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------
@dataclass
class PamCConfig:
    """PamC / SCGC* hyperparameters (defaults: the official Citeseer PamC run).

    Attributes:
        dataset: graph dataset id (``citeseer``, ``dblp-apa``, ``cora``, ``computers``, ``cs``,
            SDCN-format ``usps`` ...).
        loss: ``"pamc"`` (meta-node approximation) or ``"scgc"`` (exact SCGC*).
        alpha, beta: weights of the contrastive and KL terms.
        order: ``r`` of the influence adjacency; ``influence``: cumulative powers.
        scale: ``τ`` (multiplies the cosine; the temperature is ``1/τ``).
        lr: Adam learning rate (encoder and centres, no weight decay).
        epochs: training epochs (200), full batch unless ``batch_size > 0``.
        batch_size: ``> 0``: mini-batches of this many anchor nodes (with their ``A_r``
            neighbours encoded too); ``0``: full batch (official).
        hidden_channels, out_channels: the MLP (500, 500, 2000) -> 10.
        pretrain_epochs, pretrain_lr, pretrain_batch_size, pretrain_seed: the autoencoder
            pre-training (SDCN: 30, 1e-3, 256); with ``pretrain_seed >= 0`` shared by all runs of
            a dataset (as the official runs share one ``.pkl``); ``pretrain_seed=-1``: one
            autoencoder per run, seeded with the run's seed (the k-means start then varies with
            the seed too: 36.6-49.1 % ACC over four autoencoder seeds on DBLP, so a multi-seed
            table over one shared autoencoder measures only part of the variance). Cached in
            ``pretrain_cache`` (``""``: the contrastkit cache). On a CPU the autoencoder is
            bit-reproducible at a fixed number of torch threads only (CS, seed 0: k-means start
            58.4 % ACC pre-trained on one thread, 61.0 % on two); the benchmark pre-trains on one.
        kmeans_restarts: restarts of the k-means initialisation of the centres (20).
        normalize_features: row-normalise ``x`` (SDCN uses raw features: False).
        track_epochs: evaluate the clustering every epoch (for ``*_max_over_epochs``).
        block_size: SCGC*'s row block (``None``: engine default).
        empty_clusters: PamC's meta-node term: ``"zero"`` keeps an empty cluster as a zero
            meta-node (cosine 0), ``"exclude"`` drops it (rewards collapse; see the module doc).
        negatives: ``"meta"`` (the paper's cluster-pair negatives, default) or ``"anchor"``
            (toolkit variant: each node against the size-weighted meta-nodes; module doc).
        sparse_below: feature density under which the first layer uses a sparse product.
    """

    dataset: str = "citeseer"
    loss: str = "pamc"
    alpha: float = 2.0
    beta: float = 2.5
    order: int = 3
    influence: bool = True
    scale: float = 0.5
    lr: float = 1e-3
    epochs: int = 200
    batch_size: int = 0
    hidden_channels: tuple[int, ...] = (500, 500, 2000)
    out_channels: int = 10
    pretrain_epochs: int = 30
    pretrain_lr: float = 1e-3
    pretrain_batch_size: int = 256
    pretrain_seed: int = 0
    pretrain_cache: str = ""
    kmeans_restarts: int = 20
    normalize_features: bool = False
    track_epochs: bool = True
    block_size: int | None = None
    empty_clusters: str = "zero"
    negatives: str = "meta"
    sparse_below: float = 0.1
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        check_config_numbers(self)
        check_choice("loss", self.loss, LOSSES)
        check_choice("empty_clusters", self.empty_clusters, EMPTY_CLUSTERS)
        check_choice("negatives", self.negatives, NEGATIVES)
        for name in ("alpha", "beta"):
            check_positive(name, getattr(self, name), allow_zero=True)
        for name in ("scale", "lr", "pretrain_lr"):
            check_positive(name, getattr(self, name))
        check_ints(self, ("order", "epochs", "out_channels", "pretrain_batch_size",
                          "kmeans_restarts"))
        check_ints(self, ("batch_size", "pretrain_epochs", "checkpoint_every"), minimum=0)
        check_ints(self, ("pretrain_seed",), minimum=-1)
        if self.loss == "scgc" and self.batch_size > 0:
            raise ValueError(f"batch_size: expected 0 for loss='scgc' (SCGC*'s exact loss is over "
                             f"all node pairs, full batch; mini-batches are for PamC), got "
                             f"{self.batch_size}")
        self.hidden_channels = tuple(int(h) for h in self.hidden_channels)
        if not self.hidden_channels or min(self.hidden_channels) < 1:
            raise ValueError(f"hidden_channels: expected positive sizes, got "
                             f"{self.hidden_channels!r}")


@dataclass
class SCGCConfig(PamCConfig):
    """SCGC*: the same model with the exact loss (official Citeseer SCGC* values)."""

    loss: str = "scgc"
    alpha: float = 1.0
    beta: float = 0.1
    order: int = 1
    scale: float = 0.25
    lr: float = 1e-4


#: official configurations (spec §4): dataset -> (alpha, beta, order, scale, lr)
PAMC_OFFICIAL = {"usps": (2, 2, 4, 0.5, 1e-3), "hhar": (0.5, 12.5, 2, 1.5, 1e-3),
                 "reuters": (1, 0.2, 1, 0.25, 1e-4), "acm-sdcn": (0.5, 0.5, 1, 0.5, 1e-3),
                 "dblp-apa": (2, 2, 1, 1, 1e-3), "citeseer": (2, 2.5, 3, 0.5, 1e-3)}
SCGC_OFFICIAL = {"usps": (4, 0.1, 4, 0.25, 1e-3), "hhar": (1, 10, 3, 2.25, 1e-3),
                 "reuters": (0.5, 0.1, 3, 0.25, 1e-3), "acm-sdcn": (1, 0.1, 1, 0.25, 1e-3),
                 "dblp-apa": (1, 0.1, 1, 0.25, 1e-3), "citeseer": (1, 0.1, 1, 0.25, 1e-4)}
#: (N, F) of the official given-graph datasets, for the label-free nearest-configuration rule
GIVEN_GRAPH_SIZES = {"acm-sdcn": (3025, 1870), "dblp-apa": (4057, 334), "citeseer": (3327, 3703)}
#: (N, F) of the other datasets we register presets for
OTHER_SIZES = {"cora": (2708, 1433), "computers": (13752, 767), "cs": (18333, 6805),
               "photo": (7650, 745), "physics": (34493, 8415), "pubmed": (19717, 500)}


def nearest_official(num_nodes: int, num_features: int) -> str:
    """The official given-graph dataset nearest in ``(log N, log F)`` (no labels used)."""
    def dist(nf: tuple[int, int]) -> float:
        return math.hypot(math.log(num_nodes / nf[0]), math.log(num_features / nf[1]))
    return min(GIVEN_GRAPH_SIZES, key=lambda k: dist(GIVEN_GRAPH_SIZES[k]))


def _presets(table: dict[str, tuple]) -> dict[str, dict[str, Any]]:
    keys = ("alpha", "beta", "order", "scale", "lr")
    out = {k: dict(zip(keys, (float(v[0]), float(v[1]), int(v[2]), float(v[3]), float(v[4]))))
           for k, v in table.items()}
    for name, (n, f) in OTHER_SIZES.items():
        out[name] = dict(out[nearest_official(n, f)])
    return out


PAMC_PRESETS = _presets(PAMC_OFFICIAL)
SCGC_PRESETS = _presets(SCGC_OFFICIAL)


# ---------------------------------------------------------------------------------------------
# The method
# ---------------------------------------------------------------------------------------------
class PamC(ContrastiveMethod):
    """PamC / SCGC* as a method for the shared trainer.

    The graph is held by the method (features and ``A_r`` as buffers); each batch is a tensor of
    anchor node ids (:class:`NodeBatches`). ``on_epoch_start`` refreshes the target ``P`` without
    gradient and records that epoch's clustering (``argmax q``, as the official code).

    Args:
        config: :class:`PamCConfig`.
        data: the graph (``x``, ``edge_index``; ``y`` only for the per-epoch evaluation).
        encoder_state: pre-trained encoder weights (:func:`pretrain_autoencoder`), or None.
    """

    name = "pamc"

    def __init__(self, config: PamCConfig, data: Data,
                 encoder_state: dict[str, Tensor] | None = None) -> None:
        super().__init__(config)
        c = config
        self.num_clusters = int(data.num_classes if "num_classes" in data else
                                int(data.y.max()) + 1)
        self.encoder = _mlp([data.num_features, *c.hidden_channels, c.out_channels])
        if encoder_state is not None:
            self.encoder.load_state_dict(encoder_state)
        self.centers = nn.Parameter(torch.zeros(self.num_clusters, c.out_channels))
        index, weight = influence_adjacency(data.edge_index, data.num_nodes, c.order, c.influence)
        self.register_buffer("x", data.x.float(), persistent=False)
        # bag-of-words features are mostly zeros: x @ W as a sparse product (same result)
        density = float((data.x != 0).float().mean()) if data.x.numel() else 1.0
        self.x_sparse = (data.x.float().to_sparse() if density < c.sparse_below else None)
        self.register_buffer("pair_index", index, persistent=False)
        self.register_buffer("pair_weight", weight, persistent=False)
        self.register_buffer("target", torch.zeros(data.num_nodes, self.num_clusters),
                             persistent=False)
        self.y = None if data.y is None else data.y.cpu().numpy()
        self.epoch_metrics: list[dict[str, float]] = []
        self.kmeans_seed = 0
        self._full_pairs: Pairs | None = None

    # ---- pieces -----------------------------------------------------------------------------
    def encode(self, view: Tensor) -> Tensor:
        return self.encoder(view)

    def _encode_rows(self, x: Tensor, full: bool) -> Tensor:
        """Encoder on feature rows; all nodes with sparse features use a sparse first layer."""
        if not (full and self.x_sparse is not None):
            return self.encoder(x)
        first = self.encoder[0]
        h = torch.sparse.mm(self.x_sparse, first.weight.t()) + first.bias
        return self.encoder[1:](h)

    @torch.no_grad()
    def embed(self, batch: Any = None) -> Tensor:
        """Embeddings ``[N, d]`` of all nodes (chunked)."""
        if self.x_sparse is not None:
            return self._encode_rows(self.x, True)
        return torch.cat([self.encoder(xb) for xb in self.x.split(65536)], 0)

    def _apply(self, fn: Any, recurse: bool = True) -> "PamC":
        out = super()._apply(fn, recurse)
        if self.x_sparse is not None and self.x_sparse.device != self.x.device:
            self.x_sparse = self.x_sparse.to(self.x.device)
        return out

    @torch.no_grad()
    def assign(self) -> Tensor:
        """Current hard cluster labels ``argmax q`` ``[N]``."""
        return soft_assignment(self.embed(), self.centers).argmax(1)

    def on_fit_start(self, trainer: Any) -> None:
        seed = getattr(trainer, "seed", None)
        z = self.embed().cpu()
        labels = kmeans(z, self.num_clusters, n_init=self.config.kmeans_restarts,
                        seed=self.kmeans_seed if seed is None else int(seed))
        lab = torch.from_numpy(labels)
        mu = torch.zeros(self.num_clusters, z.size(1)).index_add_(0, lab, z)
        mu /= torch.bincount(lab, minlength=self.num_clusters).clamp_min(1)[:, None].float()
        self.centers.data.copy_(mu.to(self.centers.device))

    @torch.no_grad()
    def _refresh(self, q: Tensor) -> None:
        """Set the target ``P`` from ``q [N, K]`` and record this epoch's clustering."""
        self.target.copy_(target_distribution(q.detach()))
        if self.config.track_epochs and self.y is not None:
            self.epoch_metrics.append(clustering_scores(self.y, q.argmax(1).cpu().numpy()))

    @torch.no_grad()
    def on_epoch_start(self, epoch: int) -> None:
        if self.config.batch_size > 0:  # full batch: refreshed from the step's own forward
            self._refresh(soft_assignment(self.embed(), self.centers))

    def _batch_pairs(self, nodes: Tensor | None) -> tuple[Tensor, Pairs, Tensor]:
        """Encoded rows, the pairs among them (rows = anchors) and the anchors' local ids."""
        if nodes is None:
            if self._full_pairs is None or self._full_pairs.rows.device != self.x.device:
                self._full_pairs = Pairs(self.pair_index, self.pair_weight)
            return self.x, self._full_pairs, torch.arange(self.x.size(0), device=self.x.device)
        row, col = self.pair_index
        in_batch = torch.zeros(self.x.size(0), dtype=torch.bool, device=self.x.device)
        in_batch[nodes] = True
        keep = in_batch[row]
        row, col, w = row[keep], col[keep], self.pair_weight[keep]
        used = torch.unique(torch.cat([nodes, col]))  # anchors and their A_r neighbours
        local = torch.full((self.x.size(0),), -1, dtype=torch.long, device=self.x.device)
        local[used] = torch.arange(used.numel(), device=used.device)
        # anchors keep rows; neighbour-only rows have no pairs of their own
        return self.x[used], Pairs(torch.stack([local[row], local[col]]), w), local[nodes]

    def training_step(self, batch: Tensor | None) -> Tensor:
        """``β KL(P || Q) + α L_contrast`` on the batch's anchors (all nodes when full batch)."""
        c = self.config
        nodes = batch if isinstance(batch, Tensor) else None
        x, pairs, anchors = self._batch_pairs(nodes)
        z = self._encode_rows(x, nodes is None)
        za = z[anchors]
        idx = anchors if nodes is None else nodes
        q = soft_assignment(za, self.centers)
        if nodes is None:  # the epoch's target refresh: same parameters, so reuse this forward
            self._refresh(q)
        kl = F.kl_div(q.log(), self.target[idx], reduction="batchmean")
        contrast = self.contrast(z, pairs, anchors, q.detach().argmax(1))
        return c.beta * kl + c.alpha * contrast

    def contrast(self, z: Tensor, pairs: Pairs, anchors: Tensor, labels: Tensor) -> Tensor:
        """The contrastive term: SCGC*'s exact loss, or PamC's meta-node loss on the anchors.

        Args:
            z: embeddings of the encoded rows ``[M, d]``.
            pairs: ``A_r`` pairs among them (rows: anchors).
            anchors: rows of the anchors ``[B]`` (all rows when full batch).
            labels: hard cluster labels of the anchors ``[B]``.
        """
        c = self.config
        if c.loss == "scgc":
            return scgc_loss(z, pairs, c.scale, c.block_size)
        return pamc_loss(z, pairs, labels, self.num_clusters, c.scale, anchors=anchors,
                         empty_clusters=c.empty_clusters, negatives=c.negatives)

    def configure_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.config.lr)


class NodeBatches:
    """Re-iterable node batches: ``[None]`` (full batch) or shuffled ids of ``batch_size``.

    The order comes from the global torch generator (so the trainer's exact resume holds)."""

    def __init__(self, num_nodes: int, batch_size: int = 0) -> None:
        self.num_nodes, self.batch_size = num_nodes, batch_size

    def __len__(self) -> int:
        return 1 if self.batch_size <= 0 else -(-self.num_nodes // self.batch_size)

    def __iter__(self) -> Iterator[Tensor | None]:
        if self.batch_size <= 0:
            yield None
            return
        yield from torch.randperm(self.num_nodes).split(self.batch_size)


# ---------------------------------------------------------------------------------------------
# Evaluation, run
# ---------------------------------------------------------------------------------------------
def clustering_scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """``cluster_acc``, ``nmi``, ``ari``, ``cluster_f1`` of predicted labels (fractions)."""
    return {"cluster_acc": cluster_acc(y, pred), "nmi": nmi(y, pred), "ari": ari(y, pred),
            "cluster_f1": cluster_f1(y, pred)}


def load_graph(config: PamCConfig) -> Data:
    from ..datasets import load_for
    data = load_for(config.dataset, domain="graph", types=Data,
                    normalize_features=config.normalize_features,
                    what="a homogeneous graph dataset (citeseer, dblp-apa, cora, computers, cs, "
                         "usps, hhar, reuters, acm-sdcn)")
    if "num_classes" not in data:
        data.num_classes = int(data.y.max()) + 1
    return data


def _pretrain_cache(config: PamCConfig, data: Data, seed: int) -> Path:
    from ..datasets import cache_root
    key = json.dumps({"dataset": config.dataset, "n": data.num_nodes, "f": data.num_features,
                      "x": float(data.x.double().sum()), "hidden": config.hidden_channels,
                      "out": config.out_channels, "epochs": config.pretrain_epochs,
                      "lr": config.pretrain_lr, "bs": config.pretrain_batch_size,
                      "seed": seed}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    folder = Path(config.pretrain_cache) if config.pretrain_cache else cache_root() / "pamc_ae"
    return folder / f"{config.dataset}-{digest}.pt"


def build(config: PamCConfig, data: Data, progress: bool = False, seed: int = 0) -> PamC:
    """The method with its pre-trained encoder (pre-training once per dataset and autoencoder
    seed, then cached). ``seed``: the run's seed, used when ``config.pretrain_seed == -1``."""
    state = None
    ae_seed = int(seed) if config.pretrain_seed < 0 else config.pretrain_seed
    if config.pretrain_epochs > 0:
        state = pretrain_autoencoder(
            data.x.float(), config.hidden_channels, config.out_channels,
            epochs=config.pretrain_epochs, lr=config.pretrain_lr,
            batch_size=config.pretrain_batch_size, seed=ae_seed,
            cache=_pretrain_cache(config, data, ae_seed), progress=progress)
    return PamC(config, data, state)


def run(config: PamCConfig, ctx: RunContext, data: Data | None = None) -> RunResult:
    """Pre-train (cached), train with the shared trainer, cluster with ``argmax q``."""
    data = load_graph(config) if data is None else data
    torch.manual_seed(ctx.seed)
    method = build(config, data, progress=ctx.progress, seed=ctx.seed)
    trainer = Trainer(config.epochs, device=ctx.device, seed=ctx.seed, progress=ctx.progress,
                      out_dir=ctx.out_dir, checkpoint_every=config.checkpoint_every)
    resume = ctx.resume and (Path(ctx.out_dir) / "checkpoint.pt").exists()
    trainer.fit(method, NodeBatches(data.num_nodes, config.batch_size), resume=resume)
    method.eval()
    pred = method.assign().cpu().numpy()
    emb = method.embed().cpu()
    metrics: dict[str, float] = {}
    if data.y is not None:
        y = data.y.cpu().numpy()
        metrics.update(clustering_scores(y, pred))
        history = method.epoch_metrics + [dict(metrics)]
        for k in CLUSTER_KEYS:
            metrics[f"{k}_max_over_epochs"] = max(h[k] for h in history)
            metrics[f"{k}_at_start"] = history[0][k]  # the k-means initialisation
    metrics["train_time_s"] = float(trainer.stats["train_time_s"])  # resumed: the whole run
    metrics["time_per_epoch_s"] = float(trainer.stats.get("time_per_epoch_s", float("nan")))
    metrics["peak_mem_bytes"] = float(trainer.stats.get("peak_mem_bytes", float("nan")))
    return RunResult(metrics=metrics, embeddings=emb)


def evaluate(config: PamCConfig, embeddings: Tensor, ctx: RunContext) -> dict[str, float]:
    """Re-evaluate saved embeddings with k-means (the learnt centres are not saved with them)."""
    data = load_graph(config)
    pred = kmeans(embeddings, int(data.num_classes), n_init=10, seed=ctx.seed)
    return clustering_scores(data.y.cpu().numpy(), pred)


register(MethodSpec(
    name="pamc", config_cls=PamCConfig, run=run, evaluate=evaluate,
    description="PamC: meta-node contrastive graph clustering (MLP + DEC, linear-cost negatives)",
    default_dataset="citeseer", presets=PAMC_PRESETS, accepts=("graph:homogeneous",)))
register(MethodSpec(
    name="scgc", config_cls=SCGCConfig, run=run, evaluate=evaluate,
    description="SCGC*: exact pairwise contrastive graph clustering (blockwise, PamC's baseline)",
    default_dataset="citeseer", presets=SCGC_PRESETS, accepts=("graph:homogeneous",)))
