"""Tests of ``contrastkit.datasets``: registry, data root, cache, embedded Cora, real data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require_dataset, shared_data_root, skip_without_data
from torch_geometric.transforms import NormalizeFeatures

from contrastkit import datasets
from contrastkit.datasets import graph as graph_mod
from contrastkit.datasets import registry

ALL_IDS = ["cora", "citeseer", "pubmed", "computers", "photo", "cs", "physics", "wikics",
           "dblp-citation"]
TENSOR_KEYS = ("x", "edge_index", "y", "train_mask", "val_mask", "test_mask")


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime (to detect writes)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    """Own cache, HOME and working directory; no CONTRASTKIT_DATA. Returns ``tmp_path``."""
    monkeypatch.setenv("CONTRASTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CONTRASTKIT_DATA", raising=False)
    (tmp_path / "cwd" / "work").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "cwd" / "work")
    return tmp_path


def tiny_gnn_benchmark_npz(path: Path) -> None:
    """Write a 4-node graph in the gnn-benchmark ``.npz`` layout PyG's Amazon reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    adj = np.array([[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0]], np.float32)
    attr = np.array([[1, 0, 2], [0, 1, 0], [3, 0, 0], [0, 0, 1]], np.float32)

    def csr(m):
        rows, cols = np.nonzero(m)
        indptr = np.searchsorted(rows, np.arange(m.shape[0] + 1))
        return m[rows, cols], cols.astype(np.int32), indptr.astype(np.int32), np.array(m.shape)

    a, f = csr(adj), csr(attr)
    np.savez(path, adj_data=a[0], adj_indices=a[1], adj_indptr=a[2], adj_shape=a[3],
             attr_data=f[0], attr_indices=f[1], attr_indptr=f[2], attr_shape=f[3],
             labels=np.array([0, 1, 1, 0], np.int32))


# ----------------------------------------------------------------------------- real data
STATS = [  # id, nodes, directed edges, features, classes, (train, val, test) or None
    ("cora", 2708, 10556, 1433, 7, (140, 500, 1000)),
    ("citeseer", 3327, 9104, 3703, 6, (120, 500, 1000)),
    ("computers", 13752, 491722, 767, 10, None),
    ("cs", 18333, 163788, 6805, 15, None),
    ("physics", 34493, 495924, 8415, 5, None),
]


@pytest.mark.parametrize("name,nodes,edges,feats,classes,split", STATS,
                         ids=[s[0] for s in STATS])
def test_real_dataset_statistics(name, nodes, edges, feats, classes, split):
    root = require_dataset(name)
    data = datasets.load(name, root=root)
    assert data.name == name
    assert isinstance(data.num_classes, int) and data.num_classes == classes
    assert data.x.dtype == torch.float32
    assert tuple(data.x.shape) == (nodes, feats)
    assert tuple(data.edge_index.shape) == (2, edges)
    assert data.edge_index.dtype == torch.long and data.y.shape == (nodes,)
    assert int(data.edge_index.max()) < nodes
    # row-normalised: every row sums to 1, or is all zero
    sums = data.x.sum(dim=1)
    assert torch.all(((sums - 1).abs() < 1e-5) | (sums == 0))
    if split is None:
        assert "train_mask" not in data
    else:
        assert tuple(int(data[k].sum()) for k in ("train_mask", "val_mask", "test_mask")) == split
    del data


def test_normalisation_matches_pyg_normalize_features(tmp_path):
    raw = datasets.load("cora", root=tmp_path, normalize_features=False)
    assert set(torch.unique(raw.x).tolist()) == {0.0, 1.0}  # binary bag of words
    norm = datasets.load("cora", root=tmp_path)
    assert torch.equal(norm.x, NormalizeFeatures()(raw.clone()).x)


# ----------------------------------------------------------------------------- names
@pytest.mark.parametrize("alias,cid", [
    ("Cora", "cora"), ("CORA", "cora"), ("CiteSeer", "citeseer"), ("PubMed", "pubmed"),
    ("amazon-computers", "computers"), ("Amazon_Computers", "computers"),
    ("AMAZON-COMPUTERS", "computers"), ("amazon-photo", "photo"), ("Photo", "photo"),
    ("coauthor-cs", "cs"), ("CS", "cs"), ("Coauthor-Physics", "physics"),
    ("WikiCS", "wikics"), ("DBLP-Citation", "dblp-citation"), (" cora ", "cora"),
])
def test_aliases_are_case_insensitive(alias, cid):
    assert datasets.canonical_name(alias) == cid


def test_load_by_alias_sets_canonical_name(tmp_path):
    assert datasets.load("CORA", root=tmp_path).name == "cora"
    root = require_dataset("computers")
    assert datasets.load("Amazon_Computers", root=root).name == "computers"


def test_unknown_name_lists_known_ids():
    with pytest.raises(ValueError) as info:
        datasets.load("imagenet-graph")
    msg = str(info.value)
    assert "name" in msg and "imagenet-graph" in msg
    for cid in ALL_IDS:
        assert cid in msg


def test_argument_types(tmp_path):
    with pytest.raises(TypeError, match="name"):
        datasets.load(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="download"):
        datasets.load("cora", root=tmp_path, download="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="normalize_features"):
        datasets.load("cora", root=tmp_path, normalize_features=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="root"):
        datasets.load("cora", root=3)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="root"):
        datasets.load("cora", root=tmp_path / "does-not-exist")


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", ["photo", "wikics", "dblp-citation", "computers", "physics"])
def test_missing_single_file_error_names_paths(isolated, name):
    empty = isolated / "empty"
    empty.mkdir()
    src = graph_mod.graph_source(datasets.canonical_name(name))
    with pytest.raises(FileNotFoundError) as info:
        datasets.load(name, root=empty)
    msg = str(info.value)
    assert repr(src.id) in msg
    assert str(empty / "graph" / src.subdir / "raw" / src.files[0]) in msg
    assert "CONTRASTKIT_DATA" in msg and "root=" in msg and "download=True" in msg


def test_missing_multi_file_error_names_folder_and_files(isolated):
    empty = isolated / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as info:
        datasets.load("citeseer", root=empty)
    msg = str(info.value)
    assert str(empty / "graph" / "planetoid" / "CiteSeer" / "raw") in msg
    assert "ind.citeseer.allx" in msg and "ind.citeseer.test.index" in msg


def test_pubmed_incomplete_in_shared_data():
    root = shared_data_root()
    if root is None:
        skip_without_data("no shared data root")
    partial = root / "graph" / "planetoid_partial" / "PubMed" / "raw"
    if not partial.is_dir() or (partial / "ind.pubmed.allx").exists():
        pytest.skip("shared data has no incomplete PubMed")
    status = {s.id: s for s in datasets.available(root)}["pubmed"]
    assert status.status == "incomplete" and status.path == str(partial)
    with pytest.raises(FileNotFoundError) as info:
        datasets.load("pubmed", root=root)
    msg = str(info.value)
    assert "incomplete" in msg and "ind.pubmed.allx" in msg and str(partial) in msg


def test_incomplete_planetoid_is_reported(isolated):
    raw = isolated / "data" / "graph" / "planetoid" / "PubMed" / "raw"
    raw.mkdir(parents=True)
    for part in ("x", "tx", "y", "ty", "ally", "graph", "test.index"):
        (raw / f"ind.pubmed.{part}").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"incomplete.*ind\.pubmed\.allx"):
        datasets.load("pubmed", root=isolated / "data")


# ----------------------------------------------------------------------------- embedded Cora
def test_embedded_cora_equals_shared_cora(tmp_path):
    root = require_dataset("cora")
    for normalize in (False, True):
        shared = datasets.load("cora", root=root, normalize_features=normalize)
        embedded = datasets.load("cora", root=tmp_path, normalize_features=normalize)
        assert sorted(shared.keys()) == sorted(embedded.keys())
        for key in TENSOR_KEYS:
            assert shared[key].dtype == embedded[key].dtype, key
            assert torch.equal(shared[key], embedded[key]), key
        assert (shared.name, shared.num_classes) == (embedded.name, embedded.num_classes)


def test_embedded_cora_without_any_data(isolated, monkeypatch):
    empty = isolated / "empty"
    empty.mkdir()
    monkeypatch.setenv("CONTRASTKIT_DATA", str(empty))
    data = datasets.load("cora")
    assert data.x.shape == (2708, 1433) and data.edge_index.shape == (2, 10556)
    assert data.num_classes == 7 and int(data.train_mask.sum()) == 140
    status = {s.id: s for s in datasets.available()}["cora"]
    assert status.status == "embedded" and status.path.endswith("cora.npz")
    assert not (isolated / "cache").exists()  # the embedded copy needs no cache


# ----------------------------------------------------------------------------- data root
def test_data_root_resolution_order(isolated, monkeypatch):
    arg, env = isolated / "arg", isolated / "env"
    arg.mkdir()
    env.mkdir()
    home_default = (isolated / "home" / ".cache" / "contrastkit").resolve()
    # nothing set, no ../shared/data: the default cache root
    assert datasets.data_root() == home_default == datasets.default_root()
    # ../shared/data relative to the working directory
    shared = isolated / "cwd" / "shared" / "data"
    shared.mkdir(parents=True)
    assert datasets.data_root() == shared.resolve()
    # env beats ../shared/data
    monkeypatch.setenv("CONTRASTKIT_DATA", str(env))
    assert datasets.data_root() == env.resolve()
    # the argument beats everything
    assert datasets.data_root(arg) == arg.resolve()
    assert datasets.data_root(str(arg)) == arg.resolve()
    # a wrong env value is reported with the variable's name
    monkeypatch.setenv("CONTRASTKIT_DATA", str(isolated / "nowhere"))
    with pytest.raises(FileNotFoundError, match="CONTRASTKIT_DATA"):
        datasets.data_root()


def test_cache_root(isolated, monkeypatch):
    assert datasets.cache_root() == (isolated / "cache").resolve()
    monkeypatch.delenv("CONTRASTKIT_CACHE")
    assert datasets.cache_root() == (isolated / "home" / ".cache" / "contrastkit" / "pyg").resolve()


# ----------------------------------------------------------------------------- no writes
def test_nothing_is_written_under_the_shared_root():
    root = require_dataset("citeseer")
    before = listing(root / "graph")
    datasets.available(root)
    datasets.load("citeseer", root=root)
    datasets.load("cora", root=root)
    assert listing(root / "graph") == before
    link = datasets.cache_root() / "planetoid" / "CiteSeer" / "raw" / "ind.citeseer.x"
    assert link.is_symlink()
    assert Path(os.readlink(link)) == root.resolve() / "graph/planetoid/CiteSeer/raw/ind.citeseer.x"


def test_writable_root_stays_untouched_and_links_follow_the_root(isolated):
    source = require_dataset("cora") / "graph" / "planetoid" / "Cora" / "raw"
    copy = isolated / "copy"
    shutil.copytree(source, copy / "graph" / "planetoid" / "Cora" / "raw")
    before = listing(copy)
    from_copy = datasets.load("cora", root=copy, normalize_features=False)
    assert listing(copy) == before  # processed/ went to the cache, not beside raw/
    cache_raw = isolated / "cache" / "planetoid" / "Cora" / "raw"
    copied_x = copy.resolve() / "graph/planetoid/Cora/raw/ind.cora.x"
    assert Path(os.readlink(cache_raw / "ind.cora.x")) == copied_x
    assert (isolated / "cache" / "planetoid" / "Cora" / "processed").is_dir()
    # switching roots re-points the links (and re-processes)
    from_shared = datasets.load("cora", root=source.parents[3], normalize_features=False)
    assert Path(os.readlink(cache_raw / "ind.cora.x")) == source.resolve() / "ind.cora.x"
    assert torch.equal(from_copy.x, from_shared.x)


# ----------------------------------------------------------------------------- downloads
@pytest.fixture
def fake_download(monkeypatch):
    """Replace PyG's downloader for Amazon with one that writes a tiny graph (no network)."""
    calls: list[str] = []

    def fake(url: str, folder: str, *args, **kwargs) -> str:
        calls.append(folder)
        path = Path(folder) / url.rsplit("/", 1)[-1]
        tiny_gnn_benchmark_npz(path)
        return str(path)

    import torch_geometric.datasets.amazon as amazon_mod
    monkeypatch.setattr(amazon_mod, "download_url", fake)
    return calls


def test_default_root_downloads_by_default(isolated, fake_download):
    root = datasets.default_root()
    data = datasets.load("photo")  # data root = default root, download=None -> allowed
    assert data.num_nodes == 4 and data.name == "photo" and data.num_classes == 2
    assert fake_download == [str(root / "graph" / "amazon" / "Photo" / "raw")]
    status = {s.id: s for s in datasets.available()}["photo"]
    assert status.status == "found" and status.path == str(root / "graph/amazon/Photo/raw")
    datasets.load("photo")  # now found: no second download
    assert len(fake_download) == 1


def test_default_root_download_false_raises(isolated, fake_download):
    with pytest.raises(FileNotFoundError, match="amazon_electronics_photo.npz"):
        datasets.load("photo", download=False)
    assert fake_download == []


def test_read_only_root_downloads_only_when_asked(isolated, fake_download):
    root = isolated / "readonly"
    root.mkdir()
    with pytest.raises(FileNotFoundError):
        datasets.load("amazon-photo", root=root)  # download=None: not the default root
    assert fake_download == []
    data = datasets.load("amazon-photo", root=root, download=True)
    assert data.num_nodes == 4
    target = datasets.download_root() / "graph" / "amazon" / "Photo" / "raw"
    assert fake_download == [str(target)] and listing(root) == {}
    # later loads find the downloaded copy without downloading again
    assert datasets.load("photo", root=root).num_nodes == 4 and len(fake_download) == 1
    status = {s.id: s for s in datasets.available(root)}["photo"]
    assert status.status == "found" and status.path == str(target)


def test_failed_download_is_reported(isolated, monkeypatch):
    def offline(url, folder, *args, **kwargs):
        raise OSError("network is unreachable")

    import torch_geometric.datasets.amazon as amazon_mod
    monkeypatch.setattr(amazon_mod, "download_url", offline)
    with pytest.raises(FileNotFoundError, match="network is unreachable") as info:
        datasets.load("photo", download=True, root=isolated / "cwd")
    assert "amazon/Photo/raw" in str(info.value)


# ----------------------------------------------------------------------------- registry
def test_available_reports_every_dataset(tmp_path):
    rows = datasets.available(tmp_path)
    assert [r.id for r in rows][:len(ALL_IDS)] == ALL_IDS
    by_id = {r.id: r for r in rows}
    assert by_id["cora"].status == "embedded"
    assert all(by_id[i].status == "missing" and by_id[i].path is None for i in ALL_IDS[1:])
    assert by_id["computers"].aliases == ("amazon-computers", "amazon_computers")
    assert {r.domain for r in rows if r.id in ALL_IDS} == {"graph"}
    assert all(r.description for r in rows)
    root = shared_data_root()
    if root is not None:
        shared = {r.id: r for r in datasets.available(root)}
        for cid in ("photo", "wikics"):
            if not (root / "graph" / graph_mod.graph_source(cid).subdir).exists():
                assert shared[cid].status == "missing"


def test_load_for_checks_the_domain_before_reading_and_the_type_after(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_SPECS", dict(registry._SPECS))
    monkeypatch.setattr(registry, "_KEYS", dict(registry._KEYS))
    calls = []

    def loader(root, *, download, normalize_features):
        calls.append(root)
        return ["item"]

    datasets.register(datasets.DatasetSpec(
        id="toy-seq", domain="sequence", description="toy", loader=loader,
        locate=lambda root: ("found", str(root))))
    with pytest.raises(ValueError, match=r"^dataset: expected a graph dataset \(cora\), "
                                         r"got 'toy-seq' \(a sequence dataset\)$"):
        datasets.load_for("toy-seq", domain="graph", what="a graph dataset (cora)",
                          root=tmp_path)
    assert calls == []  # nothing was read
    with pytest.raises(ValueError, match=r"expected sessions, got 'TOY_SEQ' \(list\)$"):
        datasets.load_for("TOY_SEQ", domain="sequence", types=dict, what="sessions",
                          root=tmp_path)
    assert datasets.load_for("toy-seq", domain="sequence", types=list, what="sessions",
                             root=tmp_path) == ["item"]
    assert len(calls) == 2


def test_other_domains_can_register(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_SPECS", dict(registry._SPECS))
    monkeypatch.setattr(registry, "_KEYS", dict(registry._KEYS))
    seen = {}

    def loader(root, *, download, normalize_features):
        seen.update(root=root, download=download)
        return ["item"]

    datasets.register(datasets.DatasetSpec(
        id="toy-seq", domain="sequence", description="toy", loader=loader,
        locate=lambda root: ("found", str(root)), aliases=("toy_sequence",)))
    assert datasets.load("Toy_Sequence", root=tmp_path) == ["item"]
    assert seen == {"root": tmp_path.resolve(), "download": False}
    row = {r.id: r for r in datasets.available(tmp_path)}["toy-seq"]
    assert (row.domain, row.status) == ("sequence", "found")
    with pytest.raises(ValueError, match="already"):
        datasets.register(datasets.DatasetSpec(
            id="other", domain="sequence", description="x", loader=loader,
            locate=lambda root: ("missing", None), aliases=("CORA",)))


def test_every_dataset_declares_what_it_is_and_methods_find_theirs():
    """Each registered dataset has a kind where its domain holds several (graphs, time series),
    so a method can list exactly the datasets it takes."""
    from contrastkit.datasets import compatible, get_spec, registered

    kinds = {"graph": {"homogeneous", "heterogeneous"},
             "timeseries": {"forecast", "classification", "patients"}}
    for spec in registered():
        if spec.domain in kinds:
            assert spec.kind in kinds[spec.domain], (spec.id, spec.kind)
    assert get_spec("acm").tag == "graph:heterogeneous"
    assert get_spec("dblp-apa").tag == "graph:homogeneous"
    assert get_spec("adfsu").tag == "timeseries:patients"
    assert get_spec("etth1").tag == "timeseries:forecast"
    assert get_spec("beauty").tag == "sequence"
    homogeneous = {s.id for s in compatible(("graph:homogeneous",))}
    assert {"cora", "citeseer", "usps", "dblp-apa"} <= homogeneous
    assert not {"acm", "imdb", "beauty"} & homogeneous
    assert {s.id for s in compatible(("graph",))} >= homogeneous | {"acm"}
    assert get_spec("ucr-coffee").fits(("timeseries:forecast", "timeseries:classification"))
    assert not get_spec("adfsu").fits(("timeseries:forecast", "timeseries:classification"))
    assert get_spec("adfsu").fits(())  # nothing declared: anything


def test_sdcn_text_files_name_file_and_line(tmp_path):
    from contrastkit.datasets.sdcn import read_sdcn
    (tmp_path / "toy.txt").write_text("1 0 0\n0 1 0\n0 0 1\n0.5 oops 0\n")
    (tmp_path / "toy_label.txt").write_text("0\n0\n1\n1\n")
    (tmp_path / "toy_graph.txt").write_text("0 1\n1 2\n")
    with pytest.raises(ValueError, match=r"toy.txt, line 4: field 2: expected a number, got "
                                         r"'oops'"):
        read_sdcn(tmp_path, "toy")
    (tmp_path / "toy.txt").write_text("1 0 0\n0 1 0\n0 0 1\n0 0 1\n")
    (tmp_path / "toy_label.txt").write_text("0\n0\n1.5\n1\n")
    with pytest.raises(ValueError, match=r"toy_label.txt, line 3: field 1: expected an integer"):
        read_sdcn(tmp_path, "toy")
    (tmp_path / "toy_label.txt").write_text("0\n0\n1\n1\n")
    (tmp_path / "toy_graph.txt").write_text("0 1\n\n1 2 3\n")
    with pytest.raises(ValueError, match=r"toy_graph.txt, line 3: expected 2 fields as on line 1"):
        read_sdcn(tmp_path, "toy")
    (tmp_path / "toy_graph.txt").write_text("0 1\n# comment\n2 4\n")
    with pytest.raises(ValueError, match=r"toy_graph.txt, line 3: expected lines 'i j' with "
                                         r"0 <= i, j < 4 .*got \[2, 4\]"):
        read_sdcn(tmp_path, "toy")
    (tmp_path / "toy_graph.txt").write_text("0 1\n1 2\n")
    assert read_sdcn(tmp_path, "toy").edge_index.size(1) == 4
