"""Deep-clustering graphs in the SDCN text format, and PamC's DBLP co-author graph.

The SDCN benchmark package (public repository bdy9527/SDCN) stores one dataset as three text
files, which :func:`read_sdcn` reads:

* ``NAME.txt``: one row of features per node (whitespace separated);
* ``NAME_label.txt``: one integer class per line;
* ``NAME_graph.txt`` (or SDCN's k-NN files ``NAME<k>_graph.txt``, e.g. ``usps3_graph.txt``):
  one edge ``i j`` per line (0-based), in the same folder or in a ``graph/`` subfolder.

Registered ids (looked for in ``<data root>/graph/sdcn/<id>/``, found when the files are there):
``usps``, ``hhar``, ``reuters`` (SDCN's ``reut``), ``acm-sdcn`` (SDCN's 3,025-paper ACM).
Users with other files call :func:`read_sdcn` directly.

``dblp-apa`` (alias ``dblp-sdcn``) is SDCN/PamC's DBLP: the 4,057 authors with their 334
bag-of-words features and the co-author graph. It is built from HeCo's DBLP
(``graph/hetero/dblp``): the A-P-A meta-path matrix with its diagonal stripped, binarised,
features unnormalised (SDCN uses the raw 0/1 features).
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, remove_self_loops, to_undirected

from ._text import data_line_numbers, loadtxt
from .registry import DatasetSpec, register

#: registered SDCN-format ids -> (file stem, description)
SDCN_SOURCES: dict[str, tuple[str, str]] = {
    "usps": ("usps", "USPS digits (9,298 x 256, 10 classes, SDCN 3-NN graph); SDCN text format"),
    "hhar": ("hhar", "HHAR activity (10,299 x 561, 6 classes, SDCN 5-NN graph); SDCN format"),
    "reuters": ("reut", "Reuters (10,000 x 2,000, 4 classes, SDCN 3-NN graph); SDCN format"),
    "acm-sdcn": ("acm", "SDCN's ACM papers (3,025 x 1,870, 3 classes, given graph); SDCN format"),
}


def _graph_file(directory: Path, stem: str) -> Path | None:
    """``stem_graph.txt`` or SDCN's ``stem<k>_graph.txt``, in ``directory`` or ``directory/graph``."""
    for d in (directory, directory / "graph"):
        exact = d / f"{stem}_graph.txt"
        if exact.is_file():
            return exact
        if d.is_dir():
            knn = sorted(p for p in d.glob(f"{stem}*_graph.txt")
                         if re.fullmatch(rf"{re.escape(stem)}\d+_graph\.txt", p.name))
            if knn:
                return knn[0]
    return None


def _data_file(directory: Path, name: str) -> Path | None:
    for d in (directory, directory / "data"):
        if (d / name).is_file():
            return d / name
    return None


def read_sdcn(directory: str | Path, name: str) -> Data:
    """Read one SDCN-format dataset.

    Args:
        directory: folder holding ``NAME.txt``, ``NAME_label.txt`` and the graph file (or the
            SDCN repository layout: ``data/`` and ``graph/`` subfolders).
        name: the file stem ``NAME`` (e.g. ``"usps"``, ``"reut"``, ``"acm"``).

    Returns:
        ``Data(x [N, F] float32, y [N], edge_index [2, E] symmetric without self loops,
        num_classes, name)``.

    Raises:
        FileNotFoundError: if a file is missing (the message names it).
        ValueError: if the files disagree (row counts, node ids out of range).
    """
    directory = Path(directory)
    feats = _data_file(directory, f"{name}.txt")
    labels = _data_file(directory, f"{name}_label.txt")
    graph = _graph_file(directory, name)
    for what, path in ((f"{name}.txt", feats), (f"{name}_label.txt", labels),
                       (f"{name}_graph.txt (or {name}<k>_graph.txt)", graph)):
        if path is None:
            raise FileNotFoundError(f"directory: expected {what} in {directory} (or its data/ "
                                    f"and graph/ subfolders), not found")
    x = loadtxt(feats, dtype=np.float32, ndmin=2)
    y = loadtxt(labels, dtype=np.int64, ndmin=1).reshape(-1)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{labels.name}: expected one label per feature row ({x.shape[0]}), "
                         f"got {y.shape[0]}")
    edges = loadtxt(graph, dtype=np.int64, ndmin=2)
    if edges.size and edges.shape[1] != 2:
        raise ValueError(f"{graph}: expected lines 'i j' (2 ids), got {edges.shape[1]} per line")
    if edges.size and (edges.min() < 0 or edges.max() >= x.shape[0]):
        row = int(np.flatnonzero(((edges < 0) | (edges >= x.shape[0])).any(1))[0])
        raise ValueError(f"{graph}, line {data_line_numbers(graph)[row]}: expected lines 'i j' "
                         f"with 0 <= i, j < {x.shape[0]} (the rows of {feats.name}), got "
                         f"{edges[row].tolist()}; ids in [{edges.min()}, {edges.max()}]")
    ei = torch.from_numpy(edges.reshape(-1, 2).T.copy())
    ei = remove_self_loops(to_undirected(ei, num_nodes=x.shape[0]))[0]
    _, y_idx = np.unique(y, return_inverse=True)
    data = Data(x=torch.from_numpy(x), edge_index=coalesce(ei, num_nodes=x.shape[0]),
                y=torch.from_numpy(y_idx.astype(np.int64)))
    data.num_classes, data.name = int(y_idx.max()) + 1, name
    return data


def _sdcn_dir(root: Path, dataset_id: str) -> Path:
    return Path(root) / "graph" / "sdcn" / dataset_id


def _sdcn_locate(dataset_id: str, root: Path) -> tuple[str, str | None]:
    d = _sdcn_dir(root, dataset_id)
    stem = SDCN_SOURCES[dataset_id][0]
    found = [_data_file(d, f"{stem}.txt"), _data_file(d, f"{stem}_label.txt"),
             _graph_file(d, stem)]
    if all(found):
        return "found", str(d)
    return ("incomplete", str(d)) if any(found) else ("missing", None)


def _sdcn_load(dataset_id: str, root: Path, *, download: bool = False,
               normalize_features: bool = False) -> Data:
    status, _ = _sdcn_locate(dataset_id, root)
    d = _sdcn_dir(root, dataset_id)
    if status != "found":
        raise FileNotFoundError(
            f"dataset {dataset_id!r}: expected the SDCN files {SDCN_SOURCES[dataset_id][0]}.txt, "
            f"{SDCN_SOURCES[dataset_id][0]}_label.txt and the graph file in {d} (SDCN benchmark "
            f"package, github.com/bdy9527/SDCN); no automatic download")
    data = read_sdcn(d, SDCN_SOURCES[dataset_id][0])
    if normalize_features:
        data.x = data.x / data.x.sum(1, keepdim=True).clamp_min(1e-12)
    data.name = dataset_id
    return data


def dblp_coauthor(root: str | Path | None = None, *, normalize_features: bool = False) -> Data:
    """PamC/SDCN's DBLP: 4,057 authors, 334 features, binary co-author (A-P-A) graph, 4 classes.

    Built from HeCo's DBLP files: the A-P-A path-count matrix with its diagonal stripped and
    every positive entry set to 1 (SDCN's graph is unweighted).
    """
    from .hetero import metapath_graph
    src = metapath_graph("dblp-hetero", "APA", root, normalize_features=normalize_features,
                         self_loops=False)
    data = Data(x=src.x, edge_index=coalesce(src.edge_index, num_nodes=src.num_nodes), y=src.y)
    data.num_classes, data.name = src.num_classes, "dblp-apa"
    return data


def _dblp_locate(root: Path) -> tuple[str, str | None]:
    from .registry import get_spec
    return get_spec("dblp-hetero").locate(root)


def _dblp_load(root: Path, *, download: bool = False, normalize_features: bool = False) -> Data:
    return dblp_coauthor(root, normalize_features=normalize_features)


for _id, (_stem, _desc) in SDCN_SOURCES.items():
    register(DatasetSpec(id=_id, domain="graph", description=_desc,
                         loader=partial(_sdcn_load, _id), locate=partial(_sdcn_locate, _id),
                         aliases=("reut",) if _id == "reuters" else (), kind="homogeneous"))
register(DatasetSpec(id="dblp-apa", domain="graph",
                     description="DBLP co-author graph of PamC/SDCN (4,057 authors x 334, 4 "
                                 "classes) from HeCo's A-P-A meta-path",
                     loader=_dblp_load, locate=_dblp_locate, aliases=("dblp-sdcn",),
                     kind="homogeneous"))
del _id, _stem, _desc
