"""Graph augmentations for node-level contrastive learning (GRACE, GCA) as PyG transforms.

Two families of corruptions are provided, each as a
:class:`torch_geometric.transforms.BaseTransform` that returns a **new** ``Data`` object (a shallow
copy whose modified attributes are fresh tensors; the input graph is never touched):

* Uniform (GRACE): :class:`DropEdges` removes each edge entry with probability ``p`` and
  :class:`MaskFeatures` zeroes each feature column with probability ``p``.
* Adaptive (GCA): :class:`AdaptiveDropEdges` and :class:`AdaptiveMaskFeatures` use per-edge and
  per-column probabilities derived from a node centrality φ, so that unimportant edges and feature
  dimensions are dropped more often. The building blocks are public: :func:`node_centrality`,
  :func:`gca_pagerank`, :func:`edge_drop_weights`, :func:`feature_drop_weights` and
  :func:`drop_probabilities`.

Randomness is drawn from the global torch RNG (so seeding / checkpoint-resume of the global state
covers it) unless a ``torch.Generator`` is passed to the transform.

Typical GCA use, with the feature masking applied first so that both transforms see the clean
``edge_index`` (see :class:`AdaptiveMaskFeatures`)::

    view = Compose([AdaptiveMaskFeatures(0.3), AdaptiveDropEdges(0.2)])
    data1, data2 = view(data), view(data)
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any, Callable, Literal

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform
from torch_geometric.utils import degree, dropout_edge, scatter, to_undirected

from contrastkit.core.checks import (check_choice, check_edge_index, check_finite,
                                     check_probability, check_tensor)

__all__ = [
    "DropEdges",
    "MaskFeatures",
    "AdaptiveDropEdges",
    "AdaptiveMaskFeatures",
    "node_centrality",
    "degree_centrality",
    "gca_pagerank",
    "eigenvector_centrality",
    "edge_drop_weights",
    "feature_drop_weights",
    "drop_probabilities",
    "CENTRALITIES",
    "EDGE_AGGREGATIONS",
    "GCA_THRESHOLD",
    "GCA_PAGERANK_DAMPING",
    "GCA_PAGERANK_EDGE_ITERATIONS",
    "GCA_PAGERANK_FEATURE_ITERATIONS",
    "LOG_EPS",
]

CentralityKind = Literal["degree", "pagerank", "evc"]
EdgeAggregation = Literal["target", "source", "mean"]

#: Centrality names accepted by :func:`node_centrality` ("pr" is accepted as GCA's alias).
CENTRALITIES: tuple[str, ...] = ("degree", "pagerank", "evc")
_CENTRALITY_ALIASES = {"pr": "pagerank"}
#: Ways to turn node centralities into an edge centrality (see :func:`edge_drop_weights`).
EDGE_AGGREGATIONS: tuple[str, ...] = ("target", "source", "mean")
#: GCA's cap p_τ on any single drop probability.
GCA_THRESHOLD: float = 0.7
#: Damping α of GCA's PageRank variant.
GCA_PAGERANK_DAMPING: float = 0.85
#: Iterations of GCA's PageRank variant when the centrality feeds the edge weights (code).
GCA_PAGERANK_EDGE_ITERATIONS: int = 200
#: Iterations of GCA's PageRank variant when the centrality feeds the feature weights (code).
GCA_PAGERANK_FEATURE_ITERATIONS: int = 10
#: Floor applied before every logarithm of a centrality or feature weight (no ``log(0)``).
LOG_EPS: float = 1e-8
#: Constant added to eigenvector centralities before the log, as in GCA's code.
_EVC_OFFSET: float = 1e-8
#: Edge-aligned attributes that are filtered together with ``edge_index`` when edges are dropped.
_EDGE_KEYS: tuple[str, ...] = ("edge_attr", "edge_weight", "edge_type")


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------

def _check_num_nodes(num_nodes: Any, edge_index: Any) -> int:
    """Check ``edge_index`` (integer ``[2, E]``) against ``num_nodes`` (a non-negative int,
    numpy ints accepted) in one pass of the shared :func:`check_edge_index`; return the count."""
    check_edge_index("edge_index", edge_index, num_nodes)
    return int(num_nodes)


def _data_num_nodes(data: Any) -> int | None:
    """The node count a graph states (``x`` rows, else a stored ``num_nodes``), or ``None``;
    never inferred from ``edge_index`` itself."""
    x = getattr(data, "x", None)
    if isinstance(x, Tensor) and x.dim() >= 1:
        return int(x.size(0))
    store = getattr(data, "_store", None)
    n = store.get("num_nodes") if store is not None and hasattr(store, "get") else None
    return int(n) if isinstance(n, (int, np.integer)) and not isinstance(n, bool) else None


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected a positive int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value}")
    return int(value)


def _check_generator(generator: Any) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, "
                        f"got {type(generator).__name__}")
    return generator


def _canonical_centrality(kind: Any) -> str:
    if isinstance(kind, str):
        kind = _CENTRALITY_ALIASES.get(kind, kind)
    return check_choice("centrality", kind, CENTRALITIES)


def _rand(n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """``n`` uniform draws in [0, 1) from ``generator`` (or the global RNG), on ``device``."""
    if generator is None:
        return torch.rand(n, device=device)
    return torch.rand(n, generator=generator, device=generator.device).to(device)


def _data_edge_index(data: Any, transform: str) -> Tensor:
    """``data.edge_index``, checked: an integer ``[2, E]`` with ids in ``[0, N)`` when the graph
    states ``N`` (rows of ``x`` or ``num_nodes``), else ``>= 0``."""
    edge_index = getattr(data, "edge_index", None)
    if edge_index is None:
        raise ValueError(f"{transform}: expected data.edge_index of shape [2, E], got None")
    return check_edge_index("data.edge_index", edge_index, _data_num_nodes(data))


def _data_x(data: Any, transform: str) -> Tensor:
    x = getattr(data, "x", None)
    if x is None:
        raise ValueError(f"{transform}: expected data.x of shape [N, F], got None")
    return check_tensor("data.x", x, ndim=2)


def _filter_edges(data: Data, keep: Tensor) -> Data:
    """Keep the edge entries selected by the boolean mask ``keep`` [E] (and aligned attributes)."""
    num_edges = data.edge_index.size(1)
    data.edge_index = data.edge_index[:, keep]
    for key in _EDGE_KEYS:
        value = getattr(data, key, None)
        if isinstance(value, Tensor) and value.dim() > 0 and value.size(0) == num_edges:
            setattr(data, key, value[keep])
    return data


class _GraphCache:
    """Tiny LRU cache keyed by the identity *and* version of some tensors.

    The key of a tensor is ``(id, _version, shape, device)``; a weak reference guards against a
    recycled ``id`` after the original tensor was freed, and ``_version`` (bumped by every in-place
    operation) invalidates an entry whose tensor was modified in place.
    """

    def __init__(self, max_size: int = 8) -> None:
        self.max_size = max_size
        self._entries: OrderedDict[tuple, tuple[list[weakref.ref], Any]] = OrderedDict()

    @staticmethod
    def _key(tensors: tuple[Tensor, ...], extra: tuple) -> tuple:
        return tuple((id(t), t._version, tuple(t.shape), str(t.device)) for t in tensors) + extra

    def get(self, tensors: tuple[Tensor, ...], extra: tuple = ()) -> Any | None:
        key = self._key(tensors, extra)
        entry = self._entries.get(key)
        if entry is None:
            return None
        refs, value = entry
        if any(ref() is not t for ref, t in zip(refs, tensors)):
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, tensors: tuple[Tensor, ...], extra: tuple, value: Any) -> None:
        key = self._key(tensors, extra)
        self._entries[key] = ([weakref.ref(t) for t in tensors], value)
        self._entries.move_to_end(key)
        # Purge dead entries first, then the least recently used ones.
        for k in [k for k, (refs, _) in self._entries.items() if any(r() is None for r in refs)]:
            del self._entries[k]
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


# --------------------------------------------------------------------------------------------
# uniform augmentations (GRACE)
# --------------------------------------------------------------------------------------------

class DropEdges(BaseTransform):
    r"""Remove edges uniformly at random (GRACE's edge removal).

    Each directed entry ``(u → v)`` of ``edge_index`` [2, E] is kept independently with
    probability :math:`1 - p`:

    .. math:: \tilde{E} = \{(u, v) \in E : r_{uv} \ge p\}, \quad r_{uv} \sim U[0, 1).

    This is PyG's :func:`~torch_geometric.utils.dropout_edge` (which is called when no
    ``generator`` is given), so an undirected graph stored as two entries per edge generally
    becomes asymmetric (pitfall 1 of the spec: GRACE/GCA do exactly this). With
    ``symmetric=True`` one draw is made per *unordered* pair ``{u, v}`` and both directions are
    kept or removed together, so an undirected graph stays undirected; duplicates and self-loops
    are kept or dropped as a whole. Edge-aligned attributes (``edge_attr``, ``edge_weight``,
    ``edge_type`` with E rows) are filtered with the edges.

    Args:
        p: Drop probability in [0, 1].
        symmetric: Drop whole undirected edges instead of directed entries.
        generator: Optional ``torch.Generator``; the global torch RNG is used when ``None``.

    Example:
        >>> view = DropEdges(0.2)(data)   # data is unchanged, view.edge_index has ~0.8 E entries
    """

    def __init__(self, p: float, symmetric: bool = False, *,
                 generator: torch.Generator | None = None) -> None:
        self.p = check_probability("p", p)
        if not isinstance(symmetric, bool):
            raise TypeError(f"symmetric: expected a bool, got {type(symmetric).__name__}")
        self.symmetric = symmetric
        self.generator = _check_generator(generator)

    def keep_mask(self, edge_index: Tensor) -> Tensor:
        """Sample the boolean keep mask [E] for ``edge_index`` [2, E]."""
        return self._keep_mask(check_edge_index("edge_index", edge_index))

    def _keep_mask(self, edge_index: Tensor) -> Tensor:
        num_edges = edge_index.size(1)
        device = edge_index.device
        if self.p == 0.0 or num_edges == 0:
            return torch.ones(num_edges, dtype=torch.bool, device=device)
        if not self.symmetric:
            if self.generator is None:
                _, mask = dropout_edge(edge_index, p=self.p, force_undirected=False,
                                       training=True)
                return mask
            return _rand(num_edges, device, self.generator) >= self.p
        # One draw per unordered pair {u, v}: key = min * n + max.
        n = int(edge_index.max()) + 1
        lo = torch.minimum(edge_index[0], edge_index[1]).long()
        hi = torch.maximum(edge_index[0], edge_index[1]).long()
        pair, inverse = torch.unique(lo * n + hi, return_inverse=True)
        keep_pair = _rand(pair.numel(), device, self.generator) >= self.p
        return keep_pair[inverse]

    def forward(self, data: Data) -> Data:
        edge_index = _data_edge_index(data, type(self).__name__)  # checked once, here
        return _filter_edges(data, self._keep_mask(edge_index))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p}, symmetric={self.symmetric})"


class MaskFeatures(BaseTransform):
    r"""Zero whole feature columns at random (GRACE's feature masking).

    One Bernoulli draw per column j of ``x`` [N, F], shared by all nodes:

    .. math:: \tilde{X}_{:, j} = (1 - m_j) X_{:, j}, \quad m_j \sim \mathrm{Bernoulli}(p).

    Args:
        p: Probability of masking a column, in [0, 1].
        generator: Optional ``torch.Generator``; the global torch RNG is used when ``None``.
    """

    def __init__(self, p: float, *, generator: torch.Generator | None = None) -> None:
        self.p = check_probability("p", p)
        self.generator = _check_generator(generator)

    def forward(self, data: Data) -> Data:
        x = _data_x(data, type(self).__name__)
        drop = _rand(x.size(1), x.device, self.generator) < self.p
        data.x = x.masked_fill(drop.unsqueeze(0), 0)
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


# --------------------------------------------------------------------------------------------
# centralities (GCA)
# --------------------------------------------------------------------------------------------

def degree_centrality(edge_index: Tensor, num_nodes: int) -> Tensor:
    r"""Degree of every node in the symmetrised, de-duplicated graph.

    .. math:: \varphi(v) = |\{u : (u, v) \in E \cup E^\top\}|

    (a self-loop counts once), as GCA computes it: ``degree(to_undirected(edge_index)[1])``.

    Args:
        edge_index: Integer tensor [2, E].
        num_nodes: N.

    Returns:
        Float tensor [N].
    """
    num_nodes = _check_num_nodes(num_nodes, edge_index)
    if edge_index.size(1) == 0:
        return torch.zeros(num_nodes, device=edge_index.device)
    sym = to_undirected(edge_index, num_nodes=num_nodes)
    return degree(sym[1], num_nodes=num_nodes, dtype=torch.float32)


def gca_pagerank(edge_index: Tensor, num_nodes: int, *,
                 iterations: int = GCA_PAGERANK_EDGE_ITERATIONS,
                 damping: float = GCA_PAGERANK_DAMPING) -> Tensor:
    r"""GCA's PageRank *variant* — not textbook PageRank.

    Starting from :math:`x^{(0)} = \mathbf{1}`, iterate on the directed graph given by
    ``edge_index`` (duplicates count):

    .. math:: x_v \leftarrow (1 - \alpha)\, x_v + \alpha \sum_{(u \to v) \in E}
              \frac{x_u}{\mathrm{outdeg}(u)}

    Textbook PageRank would use a uniform teleport term :math:`(1 - \alpha)/N` instead of
    :math:`(1 - \alpha) x_v` and handle dangling nodes; this update does neither, it is what GCA's
    code computes (200 iterations for edge weights, 10 for feature weights), kept for parity
    (pitfall 4). A node without in-edges decays as :math:`(1 - \alpha)^k`. Only sources of edges
    are divided by their out-degree, so no division by zero can occur.

    Args:
        edge_index: Integer tensor [2, E], read as directed edges ``u → v``.
        num_nodes: N.
        iterations: Number of updates k (GCA: 200 for edges, 10 for features).
        damping: α in [0, 1] (GCA: 0.85).

    Returns:
        Float tensor [N] (float32).
    """
    num_nodes = _check_num_nodes(num_nodes, edge_index)
    iterations = _check_positive_int("iterations", iterations)
    damping = check_probability("damping", damping)
    src, dst = edge_index[0], edge_index[1]
    out_deg = degree(src, num_nodes=num_nodes, dtype=torch.float32)
    inv_out = out_deg[src].reciprocal()  # every src has out-degree >= 1
    x = torch.ones(num_nodes, device=edge_index.device)
    for _ in range(iterations):
        msg = scatter(x[src] * inv_out, dst, dim=0, dim_size=num_nodes, reduce="sum")
        x = (1.0 - damping) * x + damping * msg
    return x


def _leading_eigenvector(graph: Any) -> np.ndarray:
    """Leading (largest real part) eigenvector of the transposed adjacency, networkx-normalised.

    Same computation as ``networkx.eigenvector_centrality_numpy`` without its connectivity check
    (networkx < 3.2 behaviour, which GCA ran with).
    """
    import networkx as nx
    import scipy.sparse.linalg as spla

    n = graph.number_of_nodes()
    adj = nx.to_scipy_sparse_array(graph, nodelist=list(range(n)), dtype=float)
    if n < 3 or adj.nnz == 0:  # ARPACK needs k < n - 1; tiny graphs go dense
        vals, vecs = np.linalg.eig(adj.T.toarray())
        vec = vecs[:, int(np.argmax(vals.real))].real
    else:
        _, vecs = spla.eigs(adj.T, k=1, which="LR")
        vec = vecs.flatten().real
    sign = np.sign(vec.sum()) or 1.0
    norm = np.linalg.norm(vec)
    return vec / (sign * norm) if norm > 0 else vec


def eigenvector_centrality(edge_index: Tensor, num_nodes: int) -> Tensor:
    r"""Eigenvector centrality as GCA computes it, shifted to be strictly positive.

    :math:`\varphi = \max(c, 0) + 10^{-8}` where ``c`` is
    ``networkx.eigenvector_centrality_numpy`` on the graph read as a directed networkx graph
    (duplicate entries collapse). networkx ≥ 3.2 refuses disconnected graphs; for those the same
    computation (leading eigenvector of Aᵀ via ARPACK, sign and norm fixed as networkx does) is run
    directly, which is what GCA obtained with older networkx. On a disconnected graph the vector
    concentrates on the dominant component and other nodes get ≈ 1e-8.

    Args:
        edge_index: Integer tensor [2, E].
        num_nodes: N (≥ 1).

    Returns:
        Float tensor [N] (float32), on the device of ``edge_index``.
    """
    import networkx as nx

    num_nodes = _check_num_nodes(num_nodes, edge_index)
    if num_nodes == 0:
        raise ValueError("num_nodes: expected at least one node for eigenvector centrality, got 0")
    graph = nx.DiGraph()
    graph.add_nodes_from(range(num_nodes))
    graph.add_edges_from(edge_index.t().cpu().tolist())
    try:
        if num_nodes < 3:
            raise nx.AmbiguousSolution  # ARPACK cannot handle n < 3; use the dense path
        values = nx.eigenvector_centrality_numpy(graph)
        vec = np.array([values[i] for i in range(num_nodes)], dtype=np.float64)
    except nx.AmbiguousSolution:
        vec = _leading_eigenvector(graph)
    phi = torch.as_tensor(vec, dtype=torch.float32).clamp_min(0.0) + _EVC_OFFSET
    return phi.to(edge_index.device)


def node_centrality(edge_index: Tensor, num_nodes: int, kind: CentralityKind = "degree", *,
                    pagerank_iterations: int = GCA_PAGERANK_EDGE_ITERATIONS) -> Tensor:
    """Node centrality φ used by GCA's adaptive augmentations.

    Args:
        edge_index: Integer tensor [2, E].
        num_nodes: N.
        kind: ``"degree"`` (:func:`degree_centrality`, degree in the symmetrised graph),
            ``"pagerank"`` (alias ``"pr"``; :func:`gca_pagerank`, GCA's non-standard variant) or
            ``"evc"`` (:func:`eigenvector_centrality`).
        pagerank_iterations: Iterations of :func:`gca_pagerank` (GCA: 200 for edge weights,
            10 for feature weights; ignored by the other kinds).

    Returns:
        Float tensor [N], non-negative.
    """
    kind = _canonical_centrality(kind)
    if kind == "degree":
        return degree_centrality(edge_index, num_nodes)
    if kind == "pagerank":
        return gca_pagerank(edge_index, num_nodes, iterations=pagerank_iterations)
    return eigenvector_centrality(edge_index, num_nodes)


# --------------------------------------------------------------------------------------------
# GCA weights and probabilities
# --------------------------------------------------------------------------------------------

def _safe_log(w: Tensor, eps: float) -> Tensor:
    return torch.log(w.clamp_min(eps))


def edge_drop_weights(edge_index: Tensor, centrality: Tensor,
                      aggregation: EdgeAggregation = "target", *, eps: float = LOG_EPS) -> Tensor:
    r"""Log edge centrality :math:`s_{uv}` of every directed entry ``(u → v)``.

    * ``"target"`` (default, GCA's code, "sink"): :math:`s_{uv} = \log \varphi(v)`.
    * ``"source"``: :math:`s_{uv} = \log \varphi(u)`.
    * ``"mean"`` (GCA paper, undirected graphs): :math:`s_{uv} = \log \tfrac{\varphi(u) +
      \varphi(v)}{2}`. (GCA's code option ``mean`` averages the two logs instead.)

    The centrality is floored at ``eps`` before the log so zero-centrality nodes give a finite
    score (pitfall 3).

    Args:
        edge_index: Integer tensor [2, E].
        centrality: Non-negative float tensor [N].
        aggregation: ``"target"``, ``"source"`` or ``"mean"``.
        eps: Floor before the logarithm.

    Returns:
        Float tensor [E].
    """
    check_tensor("centrality", centrality, ndim=1, floating=True)
    check_edge_index("edge_index", edge_index, centrality.numel())  # ids index centrality
    check_finite("centrality", centrality)
    check_choice("aggregation", aggregation, EDGE_AGGREGATIONS)
    if aggregation == "target":
        phi = centrality[edge_index[1]]
    elif aggregation == "source":
        phi = centrality[edge_index[0]]
    else:
        phi = 0.5 * (centrality[edge_index[0]] + centrality[edge_index[1]])
    return _safe_log(phi, eps)


def feature_drop_weights(x: Tensor, centrality: Tensor, dense: bool = False, *,
                         eps: float = LOG_EPS) -> Tensor:
    r"""Log importance :math:`s_j` of every feature column of ``x`` [N, F].

    .. math:: w_j = \sum_u \mathbb{1}[x_{uj} \ne 0]\, \varphi(u) \quad (\text{sparse/binary}),
              \qquad w_j = \sum_u |x_{uj}|\, \varphi(u) \quad (\texttt{dense=True}),
              \qquad s_j = \log \max(w_j, \epsilon).

    The floor ``eps`` keeps all-zero columns (and columns held only by zero-centrality nodes)
    finite; such a column gets a very low score, i.e. the capped drop probability, which is
    harmless since masking a zero column changes nothing (pitfall 3).

    Args:
        x: Node features [N, F].
        centrality: Non-negative float tensor [N].
        dense: Use ``|x|`` instead of the non-zero indicator (GCA does this for WikiCS).
        eps: Floor before the logarithm.

    Returns:
        Float tensor [F].
    """
    check_tensor("x", x, ndim=2)
    check_tensor("centrality", centrality, ndim=1, floating=True)
    check_finite("centrality", centrality)
    if centrality.numel() != x.size(0):
        raise ValueError(f"centrality: expected one value per node of x ({x.size(0)}), "
                         f"got {centrality.numel()}")
    phi = centrality.to(torch.float32)
    if dense:
        check_finite("x", x)
        weights = x.abs().to(torch.float32).t() @ phi
    else:
        weights = (x != 0).to(torch.float32).t() @ phi
    return _safe_log(weights, eps)


def drop_probabilities(s: Tensor, p: float, threshold: float = GCA_THRESHOLD) -> Tensor:
    r"""GCA drop probabilities from log-importance scores ``s`` [M].

    .. math:: p_i = \min\Big(p \cdot \frac{s_{\max} - s_i}{s_{\max} - \bar{s}},\; p_\tau\Big)

    Because :math:`(s_{\max} - s_i)/(s_{\max} - \bar{s})` has mean 1, ``p`` is the mean drop rate
    before capping. When all scores are equal (0/0), every entry gets :math:`\min(p, p_\tau)`.
    The result never holds NaN.

    Args:
        s: Finite float tensor [M] (e.g. from :func:`edge_drop_weights` or
            :func:`feature_drop_weights`).
        p: Target mean drop rate in [0, 1].
        threshold: Cap :math:`p_\tau` in [0, 1] (GCA: 0.7).

    Returns:
        Float tensor [M] with values in [0, threshold].
    """
    check_tensor("s", s, ndim=1, floating=True)
    check_finite("s", s)
    p = check_probability("p", p)
    threshold = check_probability("threshold", threshold)
    if s.numel() == 0:
        return s.clone()
    s64 = s.to(torch.float64)
    s_max = s64.max()
    spread = s_max - s64.mean()
    if float(spread) <= 1e-12 * (1.0 + abs(float(s_max))):
        return torch.full_like(s, min(p, threshold))
    probs = (p * (s_max - s64) / spread).clamp(0.0, threshold)
    return probs.to(s.dtype)


# --------------------------------------------------------------------------------------------
# adaptive augmentations (GCA)
# --------------------------------------------------------------------------------------------

class _AdaptiveBase(BaseTransform):
    """Common parts of the adaptive transforms: validation, cache, ``fit``."""

    def __init__(self, p: float, centrality: CentralityKind, threshold: float,
                 pagerank_iterations: int | None, default_iterations: int,
                 generator: torch.Generator | None) -> None:
        self.p = check_probability("p", p)
        self.centrality = _canonical_centrality(centrality)
        self.threshold = check_probability("threshold", threshold)
        self.pagerank_iterations = _check_positive_int(
            "pagerank_iterations",
            default_iterations if pagerank_iterations is None else pagerank_iterations)
        self.generator = _check_generator(generator)
        self._cache = _GraphCache()

    def _centrality(self, edge_index: Tensor, num_nodes: int) -> Tensor:
        return node_centrality(edge_index, num_nodes, self.centrality,
                               pagerank_iterations=self.pagerank_iterations)

    def _cached(self, tensors: tuple[Tensor, ...], extra: tuple,
                compute: Callable[[], Tensor]) -> Tensor:
        probs = self._cache.get(tensors, extra)
        if probs is None:
            probs = compute()
            self._cache.put(tensors, extra, probs)
        return probs

    def fit(self, data: Data) -> "_AdaptiveBase":
        """Compute and cache the drop probabilities of ``data``; returns ``self``."""
        self.probabilities(data)
        return self

    def clear_cache(self) -> None:
        """Forget every cached probability vector."""
        self._cache.clear()

    def probabilities(self, data: Data) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class AdaptiveDropEdges(_AdaptiveBase):
    r"""GCA's centrality-adaptive edge dropping.

    Each directed entry ``(u → v)`` is dropped independently with probability

    .. math:: p_{uv} = \min\Big(p \cdot \frac{s_{\max} - s_{uv}}{s_{\max} - \bar{s}},\;
              p_\tau\Big), \qquad s_{uv} = \log \varphi(v) \;(\text{aggregation="target"}),

    see :func:`edge_drop_weights` and :func:`drop_probabilities`. The probabilities depend only on
    the graph, so they are computed once per graph — lazily on first call or explicitly via
    :meth:`fit` — and cached, keyed by the identity (and in-place version) of ``data.edge_index``;
    each call then samples a fresh mask. Edge-aligned attributes are filtered with the edges.

    Args:
        p: Mean drop rate p_e in [0, 1] (before capping).
        centrality: ``"degree"``, ``"pagerank"`` or ``"evc"`` (see :func:`node_centrality`).
        threshold: Cap p_τ in [0, 1] (GCA: 0.7).
        aggregation: ``"target"`` (GCA code), ``"source"`` or ``"mean"`` (GCA paper).
        pagerank_iterations: Iterations of :func:`gca_pagerank` (default 200, as GCA for edges).
        generator: Optional ``torch.Generator``; the global torch RNG is used when ``None``.
    """

    def __init__(self, p: float, centrality: CentralityKind = "degree",
                 threshold: float = GCA_THRESHOLD, aggregation: EdgeAggregation = "target", *,
                 pagerank_iterations: int | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(p, centrality, threshold, pagerank_iterations,
                         GCA_PAGERANK_EDGE_ITERATIONS, generator)
        self.aggregation = check_choice("aggregation", aggregation, EDGE_AGGREGATIONS)

    def probabilities(self, data: Data) -> Tensor:
        """Per-entry drop probabilities p_uv [E] of ``data`` (cached)."""
        edge_index = _data_edge_index(data, type(self).__name__)
        num_nodes = int(data.num_nodes)

        def compute() -> Tensor:
            phi = self._centrality(edge_index, num_nodes)
            s = edge_drop_weights(edge_index, phi, self.aggregation)
            return drop_probabilities(s, self.p, self.threshold)

        return self._cached((edge_index,), (num_nodes,), compute)

    def forward(self, data: Data) -> Data:
        probs = self.probabilities(data)
        keep = _rand(probs.numel(), probs.device, self.generator) >= probs
        return _filter_edges(data, keep)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(p={self.p}, centrality={self.centrality!r}, "
                f"threshold={self.threshold}, aggregation={self.aggregation!r})")


class AdaptiveMaskFeatures(_AdaptiveBase):
    r"""GCA's centrality-adaptive feature masking.

    Column j of ``x`` [N, F] is zeroed for all nodes with probability

    .. math:: p_j = \min\Big(p \cdot \frac{s_{\max} - s_j}{s_{\max} - \bar{s}},\; p_\tau\Big),
              \qquad s_j = \log \sum_u \mathbb{1}[x_{uj} \ne 0]\, \varphi(u)

    (``|x_uj|`` instead of the indicator when ``dense=True``); see :func:`feature_drop_weights`.
    The probabilities are computed once per graph (lazily or via :meth:`fit`) and cached, keyed by
    the identity and version of ``data.x`` and ``data.edge_index``.

    Note:
        The centrality is computed on the ``edge_index`` the transform sees. Apply this transform
        *before* any edge dropping (``Compose([AdaptiveMaskFeatures(...), AdaptiveDropEdges(...)])``)
        so that it sees the clean graph and its cache is hit on every call.

    Args:
        p: Mean masking rate p_f in [0, 1] (before capping).
        centrality: ``"degree"``, ``"pagerank"`` or ``"evc"`` (see :func:`node_centrality`).
        threshold: Cap p_τ in [0, 1] (GCA: 0.7).
        dense: Weight columns by ``|x|`` instead of the non-zero indicator.
        pagerank_iterations: Iterations of :func:`gca_pagerank` (default 10, as GCA for features).
        generator: Optional ``torch.Generator``; the global torch RNG is used when ``None``.
    """

    def __init__(self, p: float, centrality: CentralityKind = "degree",
                 threshold: float = GCA_THRESHOLD, dense: bool = False, *,
                 pagerank_iterations: int | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(p, centrality, threshold, pagerank_iterations,
                         GCA_PAGERANK_FEATURE_ITERATIONS, generator)
        if not isinstance(dense, bool):
            raise TypeError(f"dense: expected a bool, got {type(dense).__name__}")
        self.dense = dense

    def probabilities(self, data: Data) -> Tensor:
        """Per-column masking probabilities p_j [F] of ``data`` (cached)."""
        x = _data_x(data, type(self).__name__)
        edge_index = _data_edge_index(data, type(self).__name__)

        def compute() -> Tensor:
            phi = self._centrality(edge_index, x.size(0))
            s = feature_drop_weights(x, phi, self.dense)
            return drop_probabilities(s, self.p, self.threshold)

        return self._cached((x, edge_index), (), compute)

    def forward(self, data: Data) -> Data:
        probs = self.probabilities(data)
        x = data.x
        drop = _rand(probs.numel(), x.device, self.generator) < probs.to(x.device)
        data.x = x.masked_fill(drop.unsqueeze(0), 0)
        return data

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(p={self.p}, centrality={self.centrality!r}, "
                f"threshold={self.threshold}, dense={self.dense})")
