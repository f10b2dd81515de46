r"""GRACE and GCA: node-level graph contrastive learning with (adaptive) augmentations.

GRACE (Zhu et al., 2020) corrupts a graph twice (edge removal + feature-column masking), encodes
both views with one shared GCN ``f`` and maximises, through a projection head ``g``, the agreement
of every node with itself across views, all other nodes of both views being negatives:

.. math::

    \ell(u_i, v_i) = -\log \frac{e^{\theta(u_i, v_i)/\tau}}
        {e^{\theta(u_i, v_i)/\tau} + \sum_{k \ne i} e^{\theta(u_i, v_k)/\tau}
         + \sum_{k \ne i} e^{\theta(u_i, u_k)/\tau}}, \qquad
    \mathcal{J} = \frac{1}{2N} \sum_i [\ell(u_i, v_i) + \ell(v_i, u_i)]

with :math:`\theta(a, b) = \cos(g(a), g(b))` (GRACE Eq. 1–2). This is exactly the engine's NT-Xent
(:func:`contrastkit.core.nt_xent`), computed blockwise so the ``2N x 2N`` matrix never exists.

GCA (Zhu et al., 2021) keeps the encoder and the loss and makes the corruption adaptive: edges and
feature columns that are unimportant under a node centrality (degree, PageRank variant,
eigenvector) are dropped with higher probability (GCA Eq. 7–10,
:mod:`contrastkit.graphcl.augment`).

Evaluation follows the spec (``../shared/specs/graph/grace_gca.md``, section 5):

* ``eval_protocol="grace"`` — GRACE's evaluator: ℓ2-normalised embeddings, random 10 % / 90 %
  splits (not stratified), one-vs-rest logistic regression with ``C`` chosen by 5-fold
  cross-validation on the training part; ``eval_repeats`` fresh splits per trained model.
* ``eval_protocol="gca"`` — GCA's evaluator: a linear softmax classifier trained with Adam on a
  10 % / 10 % / 80 % split, test accuracy at the best *validation* accuracy.

* ``eval_protocol="pot"`` — the POT paper's evaluator: the same torch classifier on the public
  split (Planetoid, in the correct train/val/test order) or one random 10/10/80 split from the run
  seed; ``pot_swap_masks`` adds the official swapped-mask result under ``*_official`` keys.

Neither selects anything on test labels. POT (:mod:`contrastkit.graphcl.pot`) is a switch of the
config (``pot=true``, ``pot_kappa``, ...) handled in :meth:`GRACE.training_step`, so subclasses
that only override :meth:`GRACE.loss` get it too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import Compose

from ..core.checks import check_choice, check_positive, check_probability
from ..core.losses import nt_xent
from ..core.method import ContrastiveMethod
from ..core.metrics import alignment, uniformity
from ..core.probes import linear_probe_cv, random_split, torch_lr_probe
from ..core.trainer import Trainer
from ..registry import MethodSpec, RunContext, RunResult, register
from .augment import AdaptiveDropEdges, AdaptiveMaskFeatures, DropEdges, MaskFeatures
from .encoders import PROPAGATIONS, GCNEncoder, ProjectionHead
from .pot import GCA_POT_PRESETS, GRACE_POT_PRESETS, POTOptions, POTPlugin
from .sampling import NeighborBatches
from .validate import validate_graph


@dataclass
class GRACEConfig(POTOptions):
    """Hyperparameters of GRACE / GCA (names follow the spec's tables).

    The POT fields (``pot``, ``pot_kappa``, ``pot_batch``, ``loss_subset``, ...) come from
    :class:`~contrastkit.graphcl.pot.POTOptions`.

    Attributes:
        dataset: dataset id (see ``contrastkit datasets``).
        epochs: training epochs (full batch, one step per epoch).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        hidden_channels: ``h``, the embedding size (the first GCN layer has ``2h``).
        projection_channels: ``p``, hidden size of the projection head (output is ``h``).
        num_layers: GCN layers.
        propagation: ``sparse`` (the normalised adjacency, and sparse features, as CSR
            matrices) or ``message`` (PyG's ``GCNConv`` message passing); the same function
            (see :class:`~contrastkit.graphcl.encoders.GCNEncoder`).
        activation: ``relu``, ``prelu`` (one shared slope), ``rrelu`` (GCA: fixed slope),
            ``rrelu_random``, ``elu``, ``leaky_relu``.
        drop_edge_p1, drop_edge_p2: edge-removal rates of the two views (``p_e``).
        drop_feature_p1, drop_feature_p2: feature-masking rates of the two views (``p_f``).
        temperature: ``tau``.
        drop_scheme: ``uniform`` (GRACE) or GCA's ``degree`` / ``pagerank`` / ``evc``.
        drop_threshold: GCA's cap ``p_tau`` on any drop probability.
        dense_features: GCA feature weights from ``|x|`` (WikiCS) instead of non-zeros.
        symmetric_edge_drop: drop whole undirected edges (the official code drops directed
            entries; default reproduces the code).
        block_size: anchors per row block in the loss (``None``: automatic).
        loss_backend: the engine's ``backend``: ``auto`` (the fused Triton kernel on CUDA when
            Triton is installed, else blockwise), ``blockwise`` or ``fused``.
        eval_protocol: ``grace`` (sklearn CV logistic regression, 10/90), ``gca`` (torch
            logistic regression, 10/10/80, validation-selected) or ``pot`` (torch logistic
            regression on the public split, else one 10/10/80 split).
        probe_cv: how the ``grace`` protocol cross-validates ``C`` on the training part: ``grace``
            (GRACE's evaluator: one-hot targets, unshuffled 5-fold, a row counts when every
            class's threshold is right) or ``stratified`` (shuffled stratified 5-fold accuracy).
        eval_repeats: evaluation splits per trained model (GRACE's evaluator uses 3).
        eval_every: evaluate every this many epochs during training (0: only at the end).
        checkpoint_every: write ``checkpoint.pt`` every this many epochs (0: at the end).
        batch_size: ``> 0``: mini-batch training on sampled subgraphs of this many seed nodes
            (:class:`~contrastkit.graphcl.sampling.NeighborBatches`; the loss is on the seeds,
            their two views' embeddings against each other); ``0``: full batch (official).
        num_neighbors: fanout per GCN layer of the mini-batch sampler (``-1``: all).
    """

    dataset: str = "cora"
    epochs: int = 200
    lr: float = 5e-4
    weight_decay: float = 1e-5
    hidden_channels: int = 128
    projection_channels: int = 128
    num_layers: int = 2
    propagation: Literal["sparse", "message"] = "sparse"
    activation: str = "relu"
    drop_edge_p1: float = 0.2
    drop_edge_p2: float = 0.4
    drop_feature_p1: float = 0.3
    drop_feature_p2: float = 0.4
    temperature: float = 0.4
    drop_scheme: Literal["uniform", "degree", "pagerank", "evc"] = "uniform"
    drop_threshold: float = 0.7
    dense_features: bool = False
    symmetric_edge_drop: bool = False
    block_size: int | None = None
    loss_backend: Literal["auto", "blockwise", "fused"] = "auto"
    eval_protocol: Literal["grace", "gca", "pot"] = "grace"
    probe_cv: Literal["grace", "stratified"] = "grace"
    eval_repeats: int = 3
    eval_every: int = 0
    checkpoint_every: int = 0
    batch_size: int = 0
    num_neighbors: tuple[int, ...] = (10, 10)

    #: evaluation protocols this config accepts (subclasses extend it)
    EVAL_PROTOCOLS: ClassVar[tuple[str, ...]] = ("grace", "gca", "pot")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("drop_edge_p1", "drop_edge_p2", "drop_feature_p1", "drop_feature_p2",
                     "drop_threshold"):
            check_probability(name, getattr(self, name))
        check_positive("temperature", self.temperature)
        check_positive("lr", self.lr)
        check_choice("drop_scheme", self.drop_scheme, ("uniform", "degree", "pagerank", "evc"))
        check_choice("eval_protocol", self.eval_protocol, type(self).EVAL_PROTOCOLS)
        check_choice("probe_cv", self.probe_cv, ("grace", "stratified"))
        check_choice("loss_backend", self.loss_backend, ("auto", "blockwise", "fused"))
        check_choice("propagation", self.propagation, PROPAGATIONS)
        for name in ("epochs", "hidden_channels", "projection_channels", "num_layers",
                     "eval_repeats"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected a positive int, got {getattr(self, name)}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or \
                self.batch_size < 0:
            raise ValueError(f"batch_size: expected a non-negative int, got {self.batch_size!r}")
        self.num_neighbors = tuple(int(k) for k in self.num_neighbors)
        if len(self.num_neighbors) != self.num_layers or any(k < 1 and k != -1
                                                             for k in self.num_neighbors):
            raise ValueError(f"num_neighbors: expected one fanout (positive or -1) per GCN layer "
                             f"({self.num_layers}), got {self.num_neighbors!r}")
        if self.batch_size > 0 and (self.pot or self.loss_subset > 0):
            raise ValueError(f"batch_size: mini-batches ({self.batch_size}) cannot be combined "
                             f"with pot or loss_subset (full-graph options)")


class GRACE(ContrastiveMethod):
    """GRACE / GCA as a declaration: two augmented views, a shared GCN, a head, NT-Xent.

    Args:
        config: :class:`GRACEConfig`.
        in_channels: node feature size ``F``.
    """

    name = "grace"

    def __init__(self, config: GRACEConfig, in_channels: int) -> None:
        super().__init__(config)
        c = config
        self.encoder = GCNEncoder(in_channels, c.hidden_channels, c.num_layers, c.activation,
                                  mid_channels=getattr(c, "mid_channels", None),
                                  propagation=c.propagation)
        self.head = ProjectionHead(c.hidden_channels, c.projection_channels, c.hidden_channels)
        self.augment = [self._view_transform(c.drop_edge_p1, c.drop_feature_p1),
                        self._view_transform(c.drop_edge_p2, c.drop_feature_p2)]
        self.pot_plugin = POTPlugin(c)
        self.current_subset: Tensor | None = None  # nodes of the base loss in this step
        self.current_views: list[Data] | None = None  # the views of this step (for the loss)
        self._perm_gen: torch.Generator | None = None
        self._epoch = 0

    def _view_transform(self, p_edge: float, p_feature: float) -> Compose:
        c = self.config
        if c.drop_scheme == "uniform":
            return Compose([DropEdges(p_edge, symmetric=c.symmetric_edge_drop),
                            MaskFeatures(p_feature)])
        # feature weights are computed on the clean graph (as GCA precomputes them), so mask first
        return Compose([AdaptiveMaskFeatures(p_feature, centrality=c.drop_scheme,
                                             threshold=c.drop_threshold, dense=c.dense_features),
                        AdaptiveDropEdges(p_edge, centrality=c.drop_scheme,
                                          threshold=c.drop_threshold)])

    def views(self, data: Data) -> list[Data]:
        self.current_views = [t(data) for t in self.augment]
        return self.current_views

    def encode(self, view: Data) -> Tensor:
        return self.encoder(view.x, view.edge_index)

    def loss(self, projections: list[Tensor], batch: Data) -> Tensor:
        return nt_xent(projections[0], projections[1], temperature=self.config.temperature,
                       block_size=self.config.block_size, backend=self.config.loss_backend)

    # ---- node subsets (POT protocol) and the POT term -----------------------------------
    def on_fit_start(self, trainer: Any) -> None:
        seed = getattr(trainer, "seed", None)
        self._perm_gen = torch.Generator().manual_seed(0 if seed is None else int(seed))

    def on_epoch_start(self, epoch: int) -> None:
        self._epoch = epoch

    def _chunk(self, nodes: Tensor, size: int) -> Tensor:
        """Chunk ``(epoch + 1) mod #chunks`` of ``nodes`` (official ``get_batch``)."""
        num = (nodes.numel() - 1) // size + 1
        i = (self._epoch + 1) % num
        return nodes[i * size:(i + 1) * size]

    def training_step(self, batch: Data) -> Tensor:
        """Base loss on the step's nodes, plus ``κ``-weighted POT when ``config.pot``.

        ``L = (1 - κ) L_GCL + κ (L_POT¹ + L_POT²) / 2``. The base loss is ``self.loss`` on the
        projections of all nodes, or of a chunk of a fresh random permutation when
        ``loss_subset > 0`` (``self.current_subset``). The permutation comes from the method's
        own generator (seeded at fit start), so POT never changes the global random stream and
        ``κ = 0`` reproduces the base method bit for bit.
        """
        c = self.config
        views = self.views(batch)
        z = [self.encode(v) for v in views]
        seeds = getattr(batch, "batch_size", None)
        if isinstance(seeds, int):  # a sampled subgraph: the loss is on its seed nodes
            z = [zi[:seeds] for zi in z]
        perm = None
        if c.loss_subset > 0 or (c.pot and c.pot_batch > 0):
            if self._perm_gen is None:
                self._perm_gen = torch.Generator().manual_seed(0)
            perm = torch.randperm(z[0].size(0), generator=self._perm_gen).to(z[0].device)
        nodes = self._chunk(perm, c.loss_subset) if c.loss_subset > 0 else None
        self.current_subset = nodes
        zs = z if nodes is None else [zi[nodes] for zi in z]
        loss = self.loss([self.project(zi) for zi in zs], batch)
        if not c.pot:
            return loss
        pot_nodes = nodes
        if c.pot_batch > 0:
            pot_nodes = self._chunk(perm if nodes is None else nodes, c.pot_batch)
        pot = self.pot_plugin.loss(self.encoder, batch, views, z, pot_nodes)
        return (1.0 - c.pot_kappa) * loss + c.pot_kappa * pot


def _labels(data: Data) -> np.ndarray:
    return data.y.detach().cpu().numpy()


def evaluate_embeddings(config: GRACEConfig, embeddings: Tensor, data: Data,
                        seed: int) -> dict[str, float]:
    """Probe ``embeddings [N, D]`` with the configured protocol; mean over ``eval_repeats`` splits."""
    y = _labels(data)
    n = embeddings.size(0)
    keys = ("acc", "micro_f1", "macro_f1")
    per: list[dict[str, float]] = []
    if config.eval_protocol == "pot":
        return _evaluate_pot(config, embeddings, data, seed)
    public = _public_splits(data) if config.eval_protocol == "gca" else None
    if public is not None:  # WikiCS: GCA evaluates on the 20 public splits, 800 epochs each
        for i, (train, val, test) in enumerate(public):
            res = torch_lr_probe(embeddings, y, train, val, test, epochs=800, seed=seed * 1000 + i)
            per.append({k: float(res[k]) for k in keys})
    for r in range(config.eval_repeats if public is None else 0):
        split_seed = seed * 1000 + r
        if config.eval_protocol == "grace":
            train, _, test = random_split(n, 0.1, 0.0, seed=split_seed)
            res = linear_probe_cv(embeddings, y, train, test, seed=split_seed,
                                  cv_mode=config.probe_cv)
        else:
            train, val, test = random_split(n, 0.1, 0.1, seed=split_seed)
            res = torch_lr_probe(embeddings, y, train, val, test, seed=split_seed)
        per.append({k: float(res[k]) for k in keys})
    out = {k: float(np.mean([p[k] for p in per])) for k in per[0]}
    out.update({f"{k}_split_std": float(np.std([p[k] for p in per])) for k in per[0]})
    return out


def _evaluate_pot(config: GRACEConfig, embeddings: Tensor, data: Data,
                  seed: int) -> dict[str, float]:
    """POT's evaluator (spec pot.md §5): torch LR (3000 epochs, Adam 0.01, selected every 20
    epochs on validation Micro-F1) on the public split, or on one random 10/10/80 split."""
    y = _labels(data)
    keys = ("acc", "micro_f1", "macro_f1")
    train = getattr(data, "train_mask", None)
    public = train is not None and train.dim() == 1
    if public:
        tr, va, te = (_mask_indices(m) for m in (data.train_mask, data.val_mask, data.test_mask))
    else:
        tr, va, te = random_split(embeddings.size(0), 0.1, 0.1, seed=seed)
    res = torch_lr_probe(embeddings, y, tr, va, te, epochs=3000, seed=seed)
    out = {k: float(res[k]) for k in keys}
    if config.pot_swap_masks and public:  # official: (train, val, test) read as (train, test, val)
        off = torch_lr_probe(embeddings, y, tr, te, va, epochs=3000, seed=seed)
        out.update({f"{k}_official": float(off[k]) for k in keys})
    return out


def _public_splits(data: Data) -> list[tuple[Tensor, Tensor, Tensor]] | None:
    """The public splits of a dataset that has several (WikiCS: ``train_mask [N, 20]``)."""
    train = getattr(data, "train_mask", None)
    if train is None or train.dim() != 2:
        return None
    val, test = data.val_mask, data.test_mask
    return [(_mask_indices(train[:, i]), _mask_indices(val[:, i]),
             _mask_indices(test if test.dim() == 1 else test[:, i]))
            for i in range(train.size(1))]


def _mask_indices(mask: Tensor) -> Tensor:
    """Indices ``[K]`` of the ``True`` entries of a boolean node mask ``[N]``."""
    return mask.nonzero().view(-1)


def _load(config: GRACEConfig) -> Data:
    from ..datasets import load_for
    data = load_for(config.dataset, domain="graph", types=Data,
                    what="a homogeneous graph dataset (cora, citeseer, pubmed, computers, photo, "
                         "cs, physics, wikics, dblp-citation)")
    validate_graph(data, name=f"dataset {config.dataset!r}")
    return data


def run(config: GRACEConfig, ctx: RunContext) -> RunResult:
    """Train GRACE/GCA on ``config.dataset`` with the shared trainer, then probe the embeddings."""
    return train_and_evaluate(GRACE, evaluate_embeddings, config, ctx)


def train_and_evaluate(method_cls: type[GRACE], evaluate_fn: Any, config: GRACEConfig,
                       ctx: RunContext, data: Data | None = None) -> RunResult:
    """Shared ``run`` of the node-level graph methods built on :class:`GRACE` (GRACE, GCA, gCooL).

    Loads ``config.dataset``, trains ``method_cls(config, F)`` full batch with the shared
    :class:`~contrastkit.core.trainer.Trainer` (checkpoints, resume, periodic evaluation), then
    scores the clean-graph embeddings with ``evaluate_fn(config, embeddings, data, seed)``.
    ``data`` replaces the loaded dataset (e.g. gCooL's multiplex graph).
    """
    data = _load(config) if data is None else data
    torch.manual_seed(ctx.seed)
    method = method_cls(config, data.num_features)
    trainer = Trainer(config.epochs, device=ctx.device, seed=ctx.seed, progress=ctx.progress,
                      out_dir=ctx.out_dir, checkpoint_every=config.checkpoint_every,
                      eval_every=config.eval_every,
                      evaluator=(lambda m: evaluate_fn(
                          config, m.embed(data.to(trainer.device)).cpu(), data.cpu(), ctx.seed))
                      if config.eval_every else None)
    resume = ctx.resume and (Path(ctx.out_dir) / "checkpoint.pt").exists()
    loader = [data] if config.batch_size == 0 else NeighborBatches(
        data, config.batch_size, config.num_neighbors)
    trainer.fit(method, loader, resume=resume)
    method.eval()
    device_data = data.to(trainer.device)
    t0 = time.perf_counter()
    with torch.no_grad():
        emb = method.embed(device_data).cpu()
        views = method.views(device_data)
        z1, z2 = method.encode(views[0]).cpu(), method.encode(views[1]).cpu()
    metrics = evaluate_fn(config, emb, data.cpu(), ctx.seed)
    metrics["eval_time_s"] = time.perf_counter() - t0
    metrics["alignment"] = float(alignment(z1, z2))
    metrics["uniformity"] = float(uniformity(emb))
    metrics["time_per_epoch_s"] = float(trainer.stats.get("time_per_epoch_s", float("nan")))
    metrics["peak_mem_bytes"] = float(trainer.stats.get("peak_mem_bytes", float("nan")))
    return RunResult(metrics=metrics, embeddings=emb)


def evaluate(config: GRACEConfig, embeddings: Tensor, ctx: RunContext,
             evaluate_fn: Any = None) -> dict[str, float]:
    """Re-evaluate saved embeddings (``contrastkit eval DIR``) with ``evaluate_fn``
    (default :func:`evaluate_embeddings`)."""
    data = _load(config)
    if embeddings.size(0) != data.num_nodes:
        raise ValueError(f"embeddings: expected {data.num_nodes} rows for dataset "
                         f"{config.dataset!r}, got {embeddings.size(0)}")
    return (evaluate_fn or evaluate_embeddings)(config, embeddings, data, ctx.seed)


#: GRACE's per-dataset hyperparameters (official ``config.yaml``, spec section 4)
GRACE_PRESETS: dict[str, dict[str, Any]] = {
    "cora": dict(lr=5e-4, hidden_channels=128, projection_channels=128, activation="relu",
                 drop_edge_p1=0.2, drop_edge_p2=0.4, drop_feature_p1=0.3, drop_feature_p2=0.4,
                 temperature=0.4, epochs=200),
    "citeseer": dict(lr=1e-3, hidden_channels=256, projection_channels=256, activation="prelu",
                     drop_edge_p1=0.2, drop_edge_p2=0.0, drop_feature_p1=0.3, drop_feature_p2=0.2,
                     temperature=0.9, epochs=200),
    "pubmed": dict(lr=1e-3, hidden_channels=256, projection_channels=256, activation="relu",
                   drop_edge_p1=0.4, drop_edge_p2=0.1, drop_feature_p1=0.0, drop_feature_p2=0.2,
                   temperature=0.7, epochs=1500),
    "dblp-citation": dict(lr=1e-3, hidden_channels=256, projection_channels=256,
                          activation="relu", drop_edge_p1=0.1, drop_edge_p2=0.4,
                          drop_feature_p1=0.1, drop_feature_p2=0.0, temperature=0.7,
                          epochs=1000),
}

_GCA_COMMON = dict(drop_scheme="degree", drop_threshold=0.7, weight_decay=1e-5, num_layers=2,
                   eval_protocol="gca", eval_repeats=1)
#: GCA's per-dataset hyperparameters (official ``param/*.json`` over ``train.py`` defaults)
GCA_PRESETS: dict[str, dict[str, Any]] = {
    "wikics": dict(_GCA_COMMON, lr=0.01, hidden_channels=256, projection_channels=256,
                   activation="prelu", drop_edge_p1=0.2, drop_edge_p2=0.3, drop_feature_p1=0.1,
                   drop_feature_p2=0.1, temperature=0.4, epochs=3000, dense_features=True),
    "computers": dict(_GCA_COMMON, lr=0.01, hidden_channels=128, projection_channels=128,
                      activation="rrelu", drop_edge_p1=0.6, drop_edge_p2=0.3,
                      drop_feature_p1=0.2, drop_feature_p2=0.3, temperature=0.2, epochs=2000),
    "photo": dict(_GCA_COMMON, lr=0.1, hidden_channels=256, projection_channels=64,
                  activation="relu", drop_edge_p1=0.3, drop_edge_p2=0.5, drop_feature_p1=0.1,
                  drop_feature_p2=0.1, temperature=0.3, epochs=2000),
    "cs": dict(_GCA_COMMON, lr=5e-4, hidden_channels=256, projection_channels=256,
               activation="rrelu", drop_edge_p1=0.3, drop_edge_p2=0.2, drop_feature_p1=0.3,
               drop_feature_p2=0.4, temperature=0.4, epochs=1000),
    "physics": dict(_GCA_COMMON, lr=0.01, hidden_channels=128, projection_channels=64,
                    activation="rrelu", drop_edge_p1=0.4, drop_edge_p2=0.1, drop_feature_p1=0.1,
                    drop_feature_p2=0.4, temperature=0.5, epochs=1500, block_size=1024),
}


@dataclass
class GCAConfig(GRACEConfig):
    """GCA: GRACE with degree-centrality adaptive augmentation and GCA's evaluator by default."""

    dataset: str = "computers"
    # GCA's ``train.py`` defaults (used for a dataset without a preset), spec section 4
    epochs: int = 3000
    lr: float = 0.01
    hidden_channels: int = 256
    projection_channels: int = 32
    activation: str = "prelu"
    drop_edge_p1: float = 0.3
    drop_edge_p2: float = 0.4
    drop_feature_p1: float = 0.1
    drop_feature_p2: float = 0.0
    temperature: float = 0.4
    drop_scheme: Literal["uniform", "degree", "pagerank", "evc"] = "degree"
    eval_protocol: Literal["grace", "gca", "pot"] = "gca"
    eval_repeats: int = 1


@dataclass
class GRACEPOTConfig(GRACEConfig):
    """GRACE+POT with the POT paper's protocol (defaults: its Cora configuration)."""

    pot: bool = True
    pot_kappa: float = 0.4
    lr: float = 5e-4
    drop_edge_p1: float = 0.4
    drop_edge_p2: float = 0.3
    drop_feature_p1: float = 0.0
    drop_feature_p2: float = 0.0
    temperature: float = 0.7
    eval_protocol: Literal["grace", "gca", "pot"] = "pot"
    eval_repeats: int = 1


@dataclass
class GCAPOTConfig(GCAConfig):
    """GCA+POT with the POT paper's protocol (defaults: its Cora configuration)."""

    dataset: str = "cora"
    pot: bool = True
    pot_kappa: float = 0.3
    epochs: int = 700
    lr: float = 5e-4
    hidden_channels: int = 128
    projection_channels: int = 128
    activation: str = "relu"
    drop_edge_p1: float = 0.3
    drop_edge_p2: float = 0.1
    drop_feature_p1: float = 0.0
    drop_feature_p2: float = 0.0
    temperature: float = 0.9
    eval_protocol: Literal["grace", "gca", "pot"] = "pot"


register(MethodSpec(
    name="grace", config_cls=GRACEConfig, run=run, evaluate=evaluate,
    description="GRACE: two uniformly corrupted views, shared GCN, NT-Xent (Zhu et al., 2020)",
    default_dataset="cora", presets=GRACE_PRESETS, accepts=("graph:homogeneous",)))
register(MethodSpec(
    name="gca", config_cls=GCAConfig, run=run, evaluate=evaluate,
    description="GCA: GRACE with centrality-adaptive augmentation (Zhu et al., 2021)",
    default_dataset="computers", presets=GCA_PRESETS, accepts=("graph:homogeneous",)))
register(MethodSpec(
    name="grace_pot", config_cls=GRACEPOTConfig, run=run, evaluate=evaluate,
    description="GRACE+POT: GRACE with the node-compactness regulariser (Yu et al., 2023), "
                "POT paper protocol (--set pot=false: its baseline)",
    default_dataset="cora", presets=GRACE_POT_PRESETS, accepts=("graph:homogeneous",)))
register(MethodSpec(
    name="gca_pot", config_cls=GCAPOTConfig, run=run, evaluate=evaluate,
    description="GCA+POT: GCA with the node-compactness regulariser (Yu et al., 2023), "
                "POT paper protocol (--set pot=false: its baseline)",
    default_dataset="cora", presets=GCA_POT_PRESETS, accepts=("graph:homogeneous",)))
