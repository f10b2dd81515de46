"""Graph benchmark datasets (PyTorch Geometric), registered in :mod:`.registry`.

Layout under the data root (as in ``shared/data/graph``)::

    graph/planetoid/<Cora|CiteSeer|PubMed>/raw/ind.<name>.{x,tx,allx,y,ty,ally,graph,test.index}
    graph/planetoid_partial/PubMed/raw/...        (accepted for PubMed as well)
    graph/amazon/<Computers|Photo>/raw/amazon_electronics_<name>.npz
    graph/coauthor/<CS|Physics>/raw/ms_academic_<cs|phy>.npz
    graph/wikics/raw/data.json
    graph/citationfull/dblp/raw/dblp.npz

A data root other than the default root is never written to: the raw files are symlinked
into ``<cache>/<family>/<Name>/raw/`` and PyG processes them there. Cora is also embedded in
the package (``embedded/cora.npz``) and loads without any data root.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset

from .registry import DatasetSpec, register
from .root import CACHE_ENV, DATA_ENV, cache_root, download_root, is_default_root

__all__ = ["GraphSource", "GRAPH_SOURCES", "EMBEDDED_DIR", "EMBEDDED_FORMAT",
           "graph_source", "read_raw", "read_embedded", "finish"]

EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"
"""Folder of the datasets shipped inside the package."""

EMBEDDED_FORMAT = 1
"""Version of the embedded ``.npz`` layout written by ``_make_embedded.py``."""

_PLANETOID_URL = "https://github.com/kimiyoung/planetoid/raw/master/data"
_GNN_BENCHMARK_URL = "https://github.com/shchur/gnn-benchmark/raw/master/data/npz"


# ----------------------------------------------------------------------------- PyG builders
def _planetoid(dataset_dir: Path, force_reload: bool) -> InMemoryDataset:
    from torch_geometric.datasets import Planetoid
    return Planetoid(str(dataset_dir.parent), dataset_dir.name, force_reload=force_reload)


def _amazon(dataset_dir: Path, force_reload: bool) -> InMemoryDataset:
    from torch_geometric.datasets import Amazon
    return Amazon(str(dataset_dir.parent), dataset_dir.name, force_reload=force_reload)


def _coauthor(dataset_dir: Path, force_reload: bool) -> InMemoryDataset:
    from torch_geometric.datasets import Coauthor
    return Coauthor(str(dataset_dir.parent), dataset_dir.name, force_reload=force_reload)


def _wikics(dataset_dir: Path, force_reload: bool) -> InMemoryDataset:
    from torch_geometric.datasets import WikiCS
    return WikiCS(str(dataset_dir), is_undirected=True, force_reload=force_reload)


def _citationfull(dataset_dir: Path, force_reload: bool) -> InMemoryDataset:
    from torch_geometric.datasets import CitationFull
    return CitationFull(str(dataset_dir.parent), dataset_dir.name, force_reload=force_reload)


def _planetoid_files(name: str) -> tuple[str, ...]:
    parts = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
    return tuple(f"ind.{name}.{p}" for p in parts)


@dataclass(frozen=True)
class GraphSource:
    """Where one graph dataset's raw files live and how PyG reads them.

    Attributes:
        id: Canonical dataset id.
        title: Human-readable name, e.g. ``"Planetoid Cora"``.
        description: One-line description (statistics).
        subdir: Dataset folder relative to ``graph/`` (and to the cache root); its ``raw/``
            holds :attr:`files`, e.g. ``"planetoid/Cora"``.
        files: Raw file names PyG needs.
        build: ``build(dataset_dir, force_reload)`` returns the PyG dataset whose raw folder
            is ``dataset_dir / "raw"``.
        origin: Where the raw files come from (PyG's download URL).
        aliases: Other accepted names.
        alt_subdirs: Further accepted dataset folders relative to ``graph/``.
        embedded: File name in :data:`EMBEDDED_DIR` of the embedded copy, if any.
    """

    id: str
    title: str
    description: str
    subdir: str
    files: tuple[str, ...]
    build: Callable[[Path, bool], InMemoryDataset]
    origin: str
    aliases: tuple[str, ...] = ()
    alt_subdirs: tuple[str, ...] = ()
    embedded: str | None = None


GRAPH_SOURCES: tuple[GraphSource, ...] = (
    GraphSource("cora", "Planetoid Cora",
                "Cora citation graph (Planetoid): 2,708 nodes, 1,433 features, 7 classes, "
                "public split", "planetoid/Cora", _planetoid_files("cora"), _planetoid,
                _PLANETOID_URL, embedded="cora.npz"),
    GraphSource("citeseer", "Planetoid CiteSeer",
                "CiteSeer citation graph (Planetoid): 3,327 nodes, 3,703 features, 6 classes, "
                "public split", "planetoid/CiteSeer", _planetoid_files("citeseer"), _planetoid,
                _PLANETOID_URL),
    GraphSource("pubmed", "Planetoid PubMed",
                "PubMed citation graph (Planetoid): 19,717 nodes, 500 features, 3 classes, "
                "public split", "planetoid/PubMed", _planetoid_files("pubmed"), _planetoid,
                _PLANETOID_URL, alt_subdirs=("planetoid_partial/PubMed",)),
    GraphSource("computers", "Amazon Computers",
                "Amazon Computers co-purchase graph: 13,752 nodes, 767 features, 10 classes",
                "amazon/Computers", ("amazon_electronics_computers.npz",), _amazon,
                _GNN_BENCHMARK_URL, aliases=("amazon-computers", "amazon_computers")),
    GraphSource("photo", "Amazon Photo",
                "Amazon Photo co-purchase graph: 7,650 nodes, 745 features, 8 classes",
                "amazon/Photo", ("amazon_electronics_photo.npz",), _amazon,
                _GNN_BENCHMARK_URL, aliases=("amazon-photo",)),
    GraphSource("cs", "Coauthor CS",
                "Coauthor CS co-authorship graph: 18,333 nodes, 6,805 features, 15 classes",
                "coauthor/CS", ("ms_academic_cs.npz",), _coauthor, _GNN_BENCHMARK_URL,
                aliases=("coauthor-cs",)),
    GraphSource("physics", "Coauthor Physics",
                "Coauthor Physics co-authorship graph: 34,493 nodes, 8,415 features, 5 classes",
                "coauthor/Physics", ("ms_academic_phy.npz",), _coauthor, _GNN_BENCHMARK_URL,
                aliases=("coauthor-physics",)),
    GraphSource("wikics", "WikiCS",
                "Wiki-CS Wikipedia hyperlink graph: 11,701 nodes, 300 features, 10 classes, "
                "20 train/val splits", "wikics", ("data.json",), _wikics,
                "https://github.com/pmernyei/wiki-cs-dataset/raw/master/dataset"),
    GraphSource("dblp-citation", "CitationFull DBLP",
                "DBLP citation graph (PyG CitationFull): 17,716 nodes, 1,639 features, "
                "4 classes", "citationfull/dblp", ("dblp.npz",), _citationfull,
                "https://github.com/abojchevski/graph2gauss/raw/master/data",
                aliases=("citationfull-dblp",)),
)
"""All graph datasets, in registration order."""

_BY_ID = {s.id: s for s in GRAPH_SOURCES}


def graph_source(dataset_id: str) -> GraphSource:
    """Return the :class:`GraphSource` of a canonical graph dataset id.

    Args:
        dataset_id: Canonical id, e.g. ``"cora"``.

    Returns:
        The source description.

    Raises:
        ValueError: If ``dataset_id`` is not a canonical graph id.
    """
    if dataset_id not in _BY_ID:
        raise ValueError(f"dataset_id: expected one of {sorted(_BY_ID)}, got {dataset_id!r}")
    return _BY_ID[dataset_id]


# ----------------------------------------------------------------------------- locating
@dataclass(frozen=True)
class _Where:
    """Result of looking for a dataset's raw files."""

    status: str                 # found | incomplete | embedded | missing
    raw_dir: Path | None        # complete (found) or partial (incomplete) raw folder
    missing: tuple[str, ...]    # files absent from raw_dir when incomplete
    looked: tuple[Path, ...]    # every raw folder looked in, in order


def _search_roots(root: Path) -> list[Path]:
    """Data roots to search: the data root, then the download root in the cache."""
    dl = download_root()
    return [root] if dl == root else [root, dl]


def _locate(src: GraphSource, root: Path) -> _Where:
    """Find ``src``'s raw files under ``root`` (and previously downloaded ones)."""
    looked = tuple(r / "graph" / sub / "raw"
                   for r in _search_roots(root) for sub in (src.subdir, *src.alt_subdirs))
    partial_dir, partial_missing = None, ()
    for raw in looked:
        present = [f for f in src.files if (raw / f).is_file()]
        if len(present) == len(src.files):
            return _Where("found", raw, (), looked)
        if present and partial_dir is None:
            partial_dir = raw
            partial_missing = tuple(f for f in src.files if f not in present)
    if partial_dir is not None:
        return _Where("incomplete", partial_dir, partial_missing, looked)
    if src.embedded is not None and (EMBEDDED_DIR / src.embedded).is_file():
        return _Where("embedded", None, (), looked)
    return _Where("missing", None, (), looked)


def _status(src: GraphSource, root: Path) -> tuple[str, str | None]:
    """``locate`` callable of the registry: ``(status, path)``."""
    where = _locate(src, root)
    if where.status == "embedded":
        return "embedded", str(EMBEDDED_DIR / src.embedded)  # type: ignore[operator]
    return where.status, None if where.raw_dir is None else str(where.raw_dir)


# ----------------------------------------------------------------------------- errors
def _how_to_obtain(src: GraphSource, root: Path) -> str:
    """Explain how to make ``src`` loadable."""
    target = root if is_default_root(root) else download_root()
    files = ", ".join(src.files)
    return (f"To obtain it: set {DATA_ENV} (or pass root=) to a data folder holding "
            f"graph/{src.subdir}/raw/ with {files}; or call "
            f"contrastkit.datasets.load({src.id!r}, download=True) on a machine with network "
            f"access, which downloads from {src.origin} into "
            f"{target / 'graph' / src.subdir / 'raw'}.")


def _looked_lines(src: GraphSource, where: _Where) -> str:
    if len(src.files) == 1:
        return "\n".join(f"  {d / src.files[0]}" for d in where.looked)
    return "\n".join(f"  {d}{os.sep} : {', '.join(src.files)}" for d in where.looked)


def _missing_error(src: GraphSource, root: Path, where: _Where) -> FileNotFoundError:
    if where.status == "incomplete":
        assert where.raw_dir is not None
        return FileNotFoundError(
            f"dataset {src.id!r} ({src.title}) is incomplete: {where.raw_dir} holds "
            f"{len(src.files) - len(where.missing)} of its {len(src.files)} raw files; missing: "
            f"{', '.join(where.missing)}. Put the missing file(s) (from {src.origin}) into "
            f"{where.raw_dir} (in a writable copy of the data folder if it is read-only), or a "
            f"complete set into {root / 'graph' / src.subdir / 'raw'}. "
            + _how_to_obtain(src, root))
    return FileNotFoundError(
        f"dataset {src.id!r} ({src.title}): raw files not found under the data root {root}. "
        f"Looked for:\n{_looked_lines(src, where)}\n" + _how_to_obtain(src, root))


# ----------------------------------------------------------------------------- loading
def _link_raw(src_raw: Path, dst_raw: Path, files: tuple[str, ...]) -> bool:
    """Make ``dst_raw/<file>`` symlinks to ``src_raw/<file>``; return whether any changed."""
    dst_raw.mkdir(parents=True, exist_ok=True)
    changed = False
    for name in files:
        target, link = src_raw / name, dst_raw / name
        if link.is_symlink() and os.readlink(link) == str(target):
            continue
        tmp = dst_raw / f".{name}.{os.getpid()}.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, link)  # atomic: concurrent loaders never see a half-made link
        changed = True
    return changed


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def read_raw(src: GraphSource, root: Path, *, download: bool) -> Data:
    """Read ``src`` with PyG from the files under ``root`` (no normalisation, no embedded).

    Args:
        src: The dataset.
        root: Resolved data root.
        download: Whether missing files may be downloaded.

    Returns:
        PyG's ``Data`` exactly as the PyG dataset class produces it.

    Raises:
        FileNotFoundError: If the files are missing or incomplete and ``download`` is false,
            or the download fails.
    """
    where = _locate(src, root)
    if where.status == "found":
        assert where.raw_dir is not None
        dataset_dir = where.raw_dir.parent
        writable = ((is_default_root(root) and _is_within(dataset_dir, root))
                    or _is_within(dataset_dir, download_root()))
        if writable:
            return src.build(dataset_dir, False)[0]
        link_dir = cache_root() / src.subdir
        try:
            changed = _link_raw(where.raw_dir, link_dir / "raw", src.files)
        except OSError as err:
            raise FileNotFoundError(
                f"dataset {src.id!r}: could not create the PyG cache folder {link_dir} "
                f"({type(err).__name__}: {err}); set {CACHE_ENV} to a writable folder") from err
        return src.build(link_dir, changed)[0]
    if not download:
        raise _missing_error(src, root, where)
    target = (root if is_default_root(root) else download_root()) / "graph" / src.subdir
    try:
        return src.build(target, False)[0]
    except Exception as err:  # network errors come in many types (URLError, aiohttp, ...)
        raise FileNotFoundError(
            f"dataset {src.id!r} ({src.title}): files missing and downloading them from "
            f"{src.origin} into {target / 'raw'} failed ({type(err).__name__}: {err}). "
            + _how_to_obtain(src, root)) from err


def read_embedded(src: GraphSource) -> Data:
    """Read the embedded copy of ``src`` (no normalisation).

    Args:
        src: A dataset with an embedded copy.

    Returns:
        A ``Data`` identical to what PyG produces from the raw files.

    Raises:
        ValueError: If ``src`` has no embedded copy or the file is malformed.
        FileNotFoundError: If the embedded file is absent from the installation.
    """
    if src.embedded is None:
        raise ValueError(f"src: expected a dataset with an embedded copy, got {src.id!r}")
    path = EMBEDDED_DIR / src.embedded
    if not path.is_file():
        raise FileNotFoundError(f"dataset {src.id!r}: embedded file {path} is missing from the "
                                "installation; reinstall contrastkit")
    with np.load(path, allow_pickle=False) as z:
        need = {"format", "num_nodes", "num_features", "x_indices", "x_values", "edge_index",
                "y", "train_mask", "val_mask", "test_mask"}
        if not need <= set(z.files) or int(z["format"]) != EMBEDDED_FORMAT:
            raise ValueError(f"embedded file {path}: expected format {EMBEDDED_FORMAT} with keys "
                             f"{sorted(need)}, got keys {sorted(z.files)}")
        n, f = int(z["num_nodes"]), int(z["num_features"])
        idx = torch.from_numpy(z["x_indices"].astype(np.int64))
        x = torch.zeros(n, f, dtype=torch.float32)
        x[idx[0], idx[1]] = torch.from_numpy(z["x_values"].astype(np.float32))
        data = Data(x=x,
                    edge_index=torch.from_numpy(z["edge_index"].astype(np.int64)),
                    y=torch.from_numpy(z["y"].astype(np.int64)),
                    train_mask=torch.from_numpy(z["train_mask"].astype(bool)),
                    val_mask=torch.from_numpy(z["val_mask"].astype(bool)),
                    test_mask=torch.from_numpy(z["test_mask"].astype(bool)))
    if data.y.numel() != n or data.train_mask.numel() != n:
        raise ValueError(f"embedded file {path}: expected {n} labels and mask entries, got "
                         f"{data.y.numel()} and {data.train_mask.numel()}")
    return data


def finish(data: Data, dataset_id: str, *, normalize_features: bool) -> Data:
    """Give ``data`` float32 features, ``name`` and ``num_classes``; optionally normalise.

    Normalisation is PyG's ``NormalizeFeatures``: subtract the global minimum, then divide
    each row by its sum (rows summing to less than 1, e.g. all-zero rows, are divided by 1).

    Args:
        data: A graph.
        dataset_id: Canonical id stored as ``data.name``.
        normalize_features: Row-normalise ``data.x``.

    Returns:
        ``data`` (modified in place).
    """
    x = data.x.to(torch.float32)
    if normalize_features and x.numel() > 0:
        lo = x.min()
        if lo != 0:  # subtracting 0 changes nothing; skipping it saves a copy of x
            x = x - lo
        # in place: x is a fresh tensor (or owned by a PyG dataset object that is discarded)
        x = x.div_(x.sum(dim=-1, keepdim=True).clamp_(min=1.0))
    data.x = x
    y = data.y
    data.num_classes = (int(y.max()) + 1 if y.numel() else 0) if y.dim() == 1 else int(y.size(-1))
    data.name = dataset_id
    return data


def _load(src: GraphSource, root: Path, *, download: bool, normalize_features: bool) -> Data:
    """``loader`` callable of the registry."""
    where = _locate(src, root)
    if where.status not in ("found",) and src.embedded is not None:
        if where.status == "incomplete":
            warnings.warn(f"dataset {src.id!r}: {where.raw_dir} is incomplete (missing "
                          f"{', '.join(where.missing)}); using the copy embedded in contrastkit",
                          stacklevel=3)
        data = read_embedded(src)
    else:
        data = read_raw(src, root, download=download)
    return finish(data, src.id, normalize_features=normalize_features)


for _src in GRAPH_SOURCES:
    register(DatasetSpec(id=_src.id, domain="graph", description=_src.description,
                         loader=partial(_load, _src), locate=partial(_status, _src),
                         aliases=_src.aliases, kind="homogeneous"))
del _src
