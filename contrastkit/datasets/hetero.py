r"""Heterogeneous graph benchmarks (HeCo / MEOW formats): ACM, DBLP, AMiner, IMDB, Freebase.

Layout under the data root (``shared/data/graph/hetero``, README section 3)::

    graph/hetero/<acm|dblp|aminer|imdb|freebase>/<meow|heco>/
        labels.npy, {train,val,test}_{20,40,60}.npy, <xy>.txt relation files, *_feat.npz

Everything is built from the **relation files** (``pa.txt`` ...), the feature files, the labels and
the splits, which exist in both variants; the meta-path matrices are recomputed from the relations
as path counts:

.. math::

    A^{P} = M_P M_P^\top, \qquad M_P = R_{t_0 t_1} R_{t_1 t_2} \cdots R_{t_{h-1} t_h}

for a symmetric meta-path ``P = t_0 t_1 ... t_h ... t_1 t_0`` (``R`` the binary relation
incidences). For ACM, DBLP-APA and IMDB this equals the stored MEOW count matrices exactly (checked
in the tests). Two documented gaps of the data:

* DBLP: MEOW's ``apcpa.npz`` / ``aptpa.npz`` count matrices and the ``nei_apcp`` / ``nei_aptp``
  context files are missing upstream; they are derived here with the construction above (the
  README's recipe). The exact weighting MEOW used for them is undocumented.
* AMiner: MEOW's 64-d embedding features are missing; every node type gets identity (one-hot)
  features, as in HeCo (``x`` absent, ``num_nodes`` set: a method uses an embedding table).
  AMiner's stored meta-path files are bool; the counts here are derived from the relations.

:func:`load_hetero` returns a :class:`torch_geometric.data.HeteroData`; :func:`metapath_graph`
returns one meta-path graph of the target type as a homogeneous :class:`~torch_geometric.data.Data`
(e.g. DBLP's APA with its diagonal for PamC). :func:`metapath_contexts` gives MEOW's meta-path
contexts (target → intermediate-node reachability along every prefix of a meta-path).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch_geometric.data import Data, HeteroData

from ._text import data_line_numbers, loadtxt
from .registry import DatasetSpec, register

__all__ = ["HeteroSource", "HETERO_SOURCES", "load_hetero", "metapath_graph",
           "metapath_contexts", "metapath_counts", "add_metapath", "metapath_counts_of", "metapath_types",
           "relation_incidence", "relation_matrix", "SPLIT_RATIOS"]

SPLIT_RATIOS = (20, 40, 60)
"""Labelled target nodes per class of the shipped splits."""


@dataclass(frozen=True)
class HeteroSource:
    """One heterogeneous dataset.

    Attributes:
        id: canonical id.
        folder: folder under ``graph/hetero``.
        variants: sub-folders tried in order (``meow``, ``heco``).
        target: target (labelled) node type.
        types: node type name -> single-letter code used in file names and meta-path names.
        sizes: node type -> number of nodes (``type_num`` of the upstream loaders).
        relations: ``(file, source type, destination type)`` relation files.
        features: node type -> feature file (others get identity features).
        metapaths: meta-path names in upstream order, e.g. ``("PAP", "PSP")``.
        label_offset: subtracted from the stored labels (IMDB's start at 1).
        aliases: other accepted names.
        description: one line.
        note: data caveat shown with results.
    """

    id: str
    folder: str
    variants: tuple[str, ...]
    target: str
    types: dict
    sizes: dict
    relations: tuple
    features: dict
    metapaths: tuple[str, ...]
    label_offset: int = 0
    aliases: tuple[str, ...] = ()
    description: str = ""
    note: str = ""


HETERO_SOURCES: tuple[HeteroSource, ...] = (
    HeteroSource(
        "acm", "acm", ("meow", "heco"), "paper",
        {"paper": "P", "author": "A", "subject": "S"},
        {"paper": 4019, "author": 7167, "subject": 60},
        (("pa.txt", "paper", "author"), ("ps.txt", "paper", "subject")),
        {"paper": "p_feat.npz", "author": "a_feat.npz"}, ("PAP", "PSP"),
        description="ACM papers (HeCo/MEOW): 4,019 papers, authors, subjects; 3 classes"),
    HeteroSource(
        "dblp-hetero", "dblp", ("meow", "heco"), "author",
        {"author": "A", "paper": "P", "term": "T", "conference": "C"},
        {"author": 4057, "paper": 14328, "term": 7723, "conference": 20},
        (("pa.txt", "paper", "author"), ("pc.txt", "paper", "conference"),
         ("pt.txt", "paper", "term")),
        {"author": "a_feat.npz", "paper": "p_feat.npz", "term": "t_feat.npz"},
        ("APA", "APCPA", "APTPA"), aliases=("dblp-heco", "dblp-meow", "dblp-4area"),
        description="DBLP authors (HeCo/MEOW): 4,057 authors, papers, terms, conferences; 4 classes",
        note="APCPA/APTPA counts and A-P-C-P / A-P-T-P contexts derived from the relation files "
             "(MEOW's files are missing; original weighting undocumented)"),
    HeteroSource(
        "aminer", "aminer", ("meow", "heco"), "paper",
        {"paper": "P", "author": "A", "reference": "R"},
        {"paper": 6564, "author": 13329, "reference": 35890},
        (("pa.txt", "paper", "author"), ("pr.txt", "paper", "reference")),
        {}, ("PAP", "PRP"),
        description="AMiner papers (HeCo/MEOW): 6,564 papers, authors, references; 4 classes",
        note="one-hot features for every type (MEOW's 64-d AMiner features are missing), as HeCo"),
    HeteroSource(
        "imdb", "imdb", ("meow",), "movie",
        {"movie": "M", "actor": "A", "director": "D", "keyword": "K"},
        {"movie": 4275, "actor": 5432, "director": 2083, "keyword": 7313},
        (("ma.txt", "movie", "actor"), ("md.txt", "movie", "director"),
         ("mk.txt", "movie", "keyword")),
        {"movie": "m_feat.npz"}, ("MAM", "MDM", "MKM"), label_offset=1,
        aliases=("imdb-meow",),
        description="IMDB movies (MEOW): 4,275 movies, actors, directors, keywords; 3 classes"),
    HeteroSource(
        "freebase", "freebase", ("heco",), "movie",
        {"movie": "M", "actor": "A", "director": "D", "writer": "W"},
        {"movie": 3492, "actor": 33401, "director": 2502, "writer": 4459},
        (("ma.txt", "movie", "actor"), ("md.txt", "movie", "director"),
         ("mw.txt", "movie", "writer")),
        {}, ("MAM", "MDM", "MWM"),
        description="Freebase movies (HeCo): 3,492 movies, actors, directors, writers; 3 classes",
        note="identity features for every type (no features upstream)"),
)

_BY_ID = {s.id: s for s in HETERO_SOURCES}


def _source(name: str) -> HeteroSource:
    from .registry import canonical_name
    key = canonical_name(name)
    if key not in _BY_ID:
        raise ValueError(f"dataset: expected a heterogeneous dataset ({', '.join(_BY_ID)}), "
                         f"got {name!r}")
    return _BY_ID[key]


def _required(src: HeteroSource) -> list[str]:
    files = ["labels.npy"] + [r[0] for r in src.relations] + list(src.features.values())
    files += [f"{p}_{r}.npy" for r in SPLIT_RATIOS for p in ("train", "val", "test")]
    return files


def _dataset_dir(src: HeteroSource, root: Path) -> tuple[str, Path | None, list[str]]:
    """``(status, folder, missing files)`` of the first variant folder that has files."""
    best: tuple[str, Path | None, list[str]] = ("missing", None, [])
    for variant in src.variants:
        d = Path(root) / "graph" / "hetero" / src.folder / variant
        if not d.is_dir():
            continue
        missing = [f for f in _required(src) if not (d / f).exists()]
        if not missing:
            return "found", d, []
        if best[1] is None:
            best = ("incomplete", d, missing)
    return best


def _locate(src: HeteroSource, root: Path) -> tuple[str, str | None]:
    status, d, _ = _dataset_dir(src, root)
    return status, None if d is None else str(d)


# ----------------------------------------------------------------------------- matrices
def _read_relation(path: Path, n_src: int, n_dst: int) -> sp.csr_matrix:
    """Binary ``[n_src, n_dst]`` incidence from ``src dst`` lines; a malformed line or an id out
    of range is a ``ValueError`` naming the file and the line."""
    pairs = loadtxt(path, dtype=np.int64, ndmin=2)
    if pairs.size and pairs.shape[1] != 2:
        raise ValueError(f"{path}: expected 2 ids per line ('source destination'), got "
                         f"{pairs.shape[1]}")
    pairs = pairs.reshape(-1, 2)
    for col, n, what in ((0, n_src, "source"), (1, n_dst, "destination")):
        bad = np.flatnonzero((pairs[:, col] < 0) | (pairs[:, col] >= n))
        if bad.size:
            line = data_line_numbers(path)[bad[0]]
            raise ValueError(f"{path}, line {line}: {what} id: expected a value in [0, {n}) "
                             f"(the number of {what} nodes), got {pairs[bad[0], col]} "
                             f"({bad.size} such lines)")
    m = sp.coo_matrix((np.ones(len(pairs), dtype=np.float64), (pairs[:, 0], pairs[:, 1])),
                      shape=(n_src, n_dst)).tocsr()
    m.data[:] = 1.0  # duplicate lines count once: a relation is binary
    return m


def relation_matrix(src: HeteroSource, directory: Path, a: str, b: str) -> sp.csr_matrix:
    """Binary incidence ``[n_a, n_b]`` between node types ``a`` and ``b`` (either direction)."""
    for file, s, d in src.relations:
        if (s, d) == (a, b):
            return _read_relation(directory / file, src.sizes[s], src.sizes[d])
        if (s, d) == (b, a):
            return _read_relation(directory / file, src.sizes[s], src.sizes[d]).T.tocsr()
    raise ValueError(f"relation: expected a relation between {a!r} and {b!r} in dataset "
                     f"{src.id!r}, got none")


def _path_types(src: HeteroSource, metapath: str) -> list[str]:
    code = {v: k for k, v in src.types.items()}
    mp = metapath.upper()
    if len(mp) < 3 or len(mp) % 2 == 0 or mp != mp[::-1] or any(c not in code for c in mp):
        raise ValueError(f"metapath: expected a symmetric meta-path over {sorted(code)} of odd "
                         f"length >= 3 (e.g. {src.metapaths[0]}), got {metapath!r}")
    if code[mp[0]] != src.target:
        raise ValueError(f"metapath: expected a meta-path starting at the target type "
                         f"{src.target!r}, got {metapath!r}")
    return [code[c] for c in mp]


def _half_products(src: HeteroSource, directory: Path, metapath: str
                   ) -> list[tuple[str, sp.csr_matrix]]:
    """Count matrices ``[N, n_t]`` along every prefix ``t_0 .. t_k`` of the first half."""
    types = _path_types(src, metapath)
    out, m = [], None
    for k in range(1, len(types) // 2 + 1):
        r = relation_matrix(src, directory, types[k - 1], types[k])
        m = r if m is None else (m @ r).tocsr()
        out.append((types[k], m))
    return out


@lru_cache(maxsize=16)
def _counts_cached(src_id: str, directory: str, metapath: str) -> sp.csr_matrix:
    src = _BY_ID[src_id]
    half = _half_products(src, Path(directory), metapath)[-1][1]
    return (half @ half.T).tocsr().astype(np.float64)


def metapath_counts(name: str, metapath: str, root: str | Path | None = None) -> sp.csr_matrix:
    r"""Meta-path count matrix :math:`A^P = M_P M_P^\top` ``[N, N]`` (diagonal included).

    Args:
        name: dataset id (``acm``, ``dblp-hetero``, ``aminer``, ``imdb``, ``freebase``).
        metapath: e.g. ``"PAP"`` or ``"APCPA"``.
        root: data root (default :func:`~contrastkit.datasets.root.data_root`).

    Returns:
        ``scipy.sparse.csr_matrix`` float64 of path counts.
    """
    src = _source(name)
    d = _directory(src, root)
    return _counts_cached(src.id, str(d), metapath.upper()).copy()


def _directory(src: HeteroSource, root: str | Path | None) -> Path:
    from .root import data_root
    status, d, missing = _dataset_dir(src, Path(root) if root is not None else data_root())
    if status != "found":
        raise FileNotFoundError(f"dataset {src.id!r}: files missing under "
                                f"{d or 'graph/hetero/' + src.folder}: {', '.join(missing) or 'all'}")
    return d


def relation_incidence(data: HeteroData, a: str, b: str) -> sp.csr_matrix:
    """Binary incidence ``[n_a, n_b]`` from the relation edges of ``data`` (either direction)."""
    n_a, n_b = int(data[a].num_nodes), int(data[b].num_nodes)
    for et in data.edge_types:
        s, rel, t = et
        if rel not in ("to", "rev_to") or (s, t) not in ((a, b), (b, a)):
            continue
        ei = data[et].edge_index.numpy()
        r, c = (ei[0], ei[1]) if (s, t) == (a, b) else (ei[1], ei[0])
        m = sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(n_a, n_b))
        m.data[:] = 1.0
        return m
    raise ValueError(f"relation: expected relation edges between {a!r} and {b!r} in the "
                     f"HeteroData (edge type ({a!r}, 'to', {b!r})), got none")


def metapath_types(data: HeteroData, metapath: str) -> list[str]:
    """Node types along ``metapath`` (e.g. ``"APCPA"``) using ``data.type_codes``."""
    codes = dict(data.type_codes)
    mp = metapath.upper()
    if len(mp) < 3 or len(mp) % 2 == 0 or mp != mp[::-1] or any(c not in codes for c in mp):
        raise ValueError(f"metapath: expected a symmetric meta-path over {sorted(codes)} of odd "
                         f"length >= 3, got {metapath!r}")
    types = [codes[c] for c in mp]
    if types[0] != data.target_type:
        raise ValueError(f"metapath: expected a meta-path starting at the target type "
                         f"{data.target_type!r}, got {metapath!r}")
    return types


def metapath_contexts(data: HeteroData, metapath: str) -> list[tuple[str, Tensor]]:
    """MEOW's meta-path contexts: for every prefix ``t_0 .. t_k`` (``1 <= k <= len - 2``) of the
    meta-path, the binary reachability ``[N, n_{t_k}]`` of target nodes to type-``t_k`` nodes.

    ACM's PAP gives ``[("author", P-A)]``; DBLP's APCPA gives A-P, A-P-C and A-P-C-P (the last
    two are the files ``nei_apc`` and the missing ``nei_apcp`` of MEOW, derived here).
    Built from the relation edges of ``data`` (works for any hand-built :class:`HeteroData` with
    ``target_type``, ``type_codes`` and ``(s, "to", t)`` relations).

    Returns:
        ``[(node type, sparse COO tensor [N, n_t] of ones)]``.
    """
    types = metapath_types(data, metapath)
    out, m = [], None
    for k in range(1, len(types) - 1):
        r = relation_incidence(data, types[k - 1], types[k])
        m = r if m is None else (m @ r).tocsr()
        m.data[:] = 1.0  # reachability: binary after every hop
        m.eliminate_zeros()
        out.append((types[k], _to_torch_sparse(m)))
    return out


def metapath_counts_of(data: HeteroData, metapath: str) -> sp.csr_matrix:
    r"""Path counts :math:`M_P M_P^\top` ``[N, N]`` from the relation edges of ``data``."""
    types = metapath_types(data, metapath)
    m = None
    for k in range(1, len(types) // 2 + 1):
        r = relation_incidence(data, types[k - 1], types[k])
        m = r if m is None else (m @ r).tocsr()
    return (m @ m.T).tocsr()


def add_metapath(data: HeteroData, metapath: str) -> HeteroData:
    """Store the count graph of ``metapath`` as ``data[target, metapath, target]``
    (``edge_index``, ``edge_weight`` = path counts) and append it to ``data.metapaths``."""
    a = metapath_counts_of(data, metapath).tocoo()
    tgt = data.target_type
    store = data[tgt, metapath.upper(), tgt]
    store.edge_index = torch.from_numpy(np.vstack([a.row, a.col]).astype(np.int64))
    store.edge_weight = torch.from_numpy(a.data.astype(np.float32))
    mps = list(getattr(data, "metapaths", None) or [])
    if metapath.upper() not in mps:
        mps.append(metapath.upper())
    data.metapaths = mps
    return data


def _to_torch_sparse(m: sp.spmatrix) -> torch.Tensor:
    m = m.tocoo()
    idx = torch.from_numpy(np.vstack([m.row, m.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(m.data.astype(np.float32)),
                                   m.shape, check_invariants=False).coalesce()


def _read_features(path: Path) -> np.ndarray | sp.spmatrix:
    try:
        return sp.load_npz(path).tocsr()
    except Exception:  # dblp t_feat.npz is a plain .npy file despite its name
        return np.load(path)


def _row_normalize(x: np.ndarray | sp.spmatrix) -> torch.Tensor:
    x = sp.csr_matrix(x, dtype=np.float64)
    s = np.asarray(x.sum(1)).ravel()
    s[s == 0] = 1.0
    x = sp.diags(1.0 / s) @ x
    return torch.from_numpy(np.asarray(x.todense(), dtype=np.float32))


def _read_labels(path: Path, num_nodes: int, offset: int) -> np.ndarray:
    """``labels.npy`` as int64 labels ``>= 0`` (after subtracting ``offset``), one per target
    node; anything else is a ``ValueError`` naming the file."""
    raw = np.load(path)
    if raw.ndim != 1:
        raise ValueError(f"{path}: expected a 1-D array of {num_nodes} labels (one per target "
                         f"node), got shape {raw.shape}")
    if raw.shape[0] != num_nodes:
        raise ValueError(f"{path}: expected {num_nodes} labels (one per target node), got "
                         f"{raw.shape[0]}")
    if not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)):
        raise ValueError(f"{path}: expected integer class labels, got dtype {raw.dtype}")
    if np.issubdtype(raw.dtype, np.floating):  # ACM stores them as float64
        bad = np.flatnonzero(~np.isfinite(raw) | (raw != np.round(raw)))
        if bad.size:
            raise ValueError(f"{path}: expected integer class labels, got {float(raw[bad[0]])} at "
                             f"index {bad[0]} ({bad.size} such entries)")
    y = raw.astype(np.int64) - offset
    if num_nodes and int(y.min()) < 0:
        i = int(np.argmin(y))
        raise ValueError(f"{path}: expected labels >= {offset}"
                         + (f" (stored {offset}-based)" if offset else "")
                         + f", got {int(raw[i])} at index {i} "
                         f"({int((y < 0).sum())} such entries)")
    return y


def _read_split(path: Path, num_nodes: int) -> np.ndarray:
    """A split file: a 1-D array of target-node indices in ``[0, num_nodes)``."""
    idx = np.load(path)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{path}: expected a 1-D integer array of node indices, got shape "
                         f"{idx.shape} and dtype {idx.dtype}")
    idx = idx.astype(np.int64)
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= num_nodes):
        raise ValueError(f"{path}: expected node indices in [0, {num_nodes}), got values in "
                         f"[{int(idx.min())}, {int(idx.max())}]")
    return idx


def _load(src: HeteroSource, root: Path, *, download: bool = False,
          normalize_features: bool = True) -> HeteroData:
    """Registry loader: the dataset as a :class:`HeteroData` (see :func:`load_hetero`)."""
    d = _directory(src, root)
    data = HeteroData()
    for t, n in src.sizes.items():
        data[t].num_nodes = n
        if t in src.features:
            f = _read_features(d / src.features[t])
            if f.shape[0] != n:
                raise ValueError(f"{src.features[t]}: expected {n} rows, got {f.shape[0]}")
            data[t].x = (_row_normalize(f) if normalize_features else torch.as_tensor(
                np.asarray(sp.csr_matrix(f).todense()), dtype=torch.float32))
    tgt = data[src.target]
    n_target = src.sizes[src.target]
    y = _read_labels(d / "labels.npy", n_target, src.label_offset)
    tgt.y = torch.from_numpy(y)
    for r in SPLIT_RATIOS:
        for part in ("train", "val", "test"):
            tgt[f"{part}_{r}"] = torch.from_numpy(_read_split(d / f"{part}_{r}.npy", n_target))
    for file, s, t in src.relations:
        m = _read_relation(d / file, src.sizes[s], src.sizes[t]).tocoo()
        ei = torch.from_numpy(np.vstack([m.row, m.col]).astype(np.int64))
        data[s, "to", t].edge_index = ei
        data[t, "rev_to", s].edge_index = ei.flip(0)
    for mp in src.metapaths:
        a = _counts_cached(src.id, str(d), mp).tocoo()
        store = data[src.target, mp, src.target]
        store.edge_index = torch.from_numpy(np.vstack([a.row, a.col]).astype(np.int64))
        store.edge_weight = torch.from_numpy(a.data.astype(np.float32))
    data.name = src.id
    data.target_type = src.target
    data.metapaths = list(src.metapaths)
    data.type_codes = {v: k for k, v in src.types.items()}
    data.num_classes = int(y.max()) + 1
    data.data_note = src.note
    return data


def load_hetero(name: str, root: str | Path | None = None, *,
                normalize_features: bool = True) -> HeteroData:
    """Load a heterogeneous benchmark as a :class:`~torch_geometric.data.HeteroData`.

    Contents: ``data[t].num_nodes`` for every type, ``data[t].x`` (float32, row-normalised) for the
    types with features (absent = identity features), ``data[target].y`` (0-based) and the split
    indices ``data[target].{train,val,test}_{20,40,60}``, relations ``data[s, "to", t]`` and
    ``data[t, "rev_to", s]``, meta-path count graphs ``data[target, "PAP", target]`` with
    ``edge_weight`` = path counts, and the attributes ``name``, ``target_type``, ``metapaths``,
    ``num_classes``, ``type_codes`` (letter -> node type), ``data_note`` (caveats of the data).
    """
    from .root import data_root
    src = _source(name)
    return _load(src, Path(root) if root is not None else data_root(),
                 normalize_features=normalize_features)


def metapath_graph(name: str, metapath: str | None = None, root: str | Path | None = None, *,
                   normalize_features: bool = True, self_loops: bool = True) -> Data:
    """One meta-path graph of the target type as a homogeneous :class:`~torch_geometric.data.Data`.

    For PamC: ``metapath_graph("dblp-hetero", "APA")`` gives the 4,057 DBLP authors with their
    334 bag-of-words features, the A-P-A graph with its diagonal (``edge_weight`` = path counts),
    labels and the 20/40/60 splits.

    Args:
        name: dataset id.
        metapath: meta-path name (default: the dataset's first).
        root: data root.
        normalize_features: row-normalise ``x``.
        self_loops: keep the diagonal (``A^P_ii`` = number of middle-type neighbours).

    Returns:
        ``Data(x, edge_index, edge_weight, y, train_20 ... test_60, name, num_classes,
        metapath)``; ``x`` is the identity when the target type has no features.
    """
    src = _source(name)
    mp = (metapath or src.metapaths[0]).upper()
    het = load_hetero(name, root, normalize_features=normalize_features)
    tgt = het[src.target]
    a = metapath_counts(name, mp, root).tocoo()
    keep = np.ones(a.nnz, dtype=bool) if self_loops else a.row != a.col
    x = tgt.x if "x" in tgt else torch.eye(tgt.num_nodes)
    data = Data(x=x, edge_index=torch.from_numpy(np.vstack([a.row[keep], a.col[keep]])
                                                 .astype(np.int64)),
                edge_weight=torch.from_numpy(a.data[keep].astype(np.float32)), y=tgt.y)
    for r in SPLIT_RATIOS:
        for part in ("train", "val", "test"):
            data[f"{part}_{r}"] = tgt[f"{part}_{r}"]
    data.name, data.num_classes, data.metapath = src.id, het.num_classes, mp
    return data


for _src in HETERO_SOURCES:
    register(DatasetSpec(id=_src.id, domain="graph", description=_src.description,
                         loader=partial(_load, _src), locate=partial(_locate, _src),
                         aliases=_src.aliases, kind="heterogeneous"))
del _src

Tensor = torch.Tensor
