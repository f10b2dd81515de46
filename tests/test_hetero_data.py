"""Heterogeneous datasets (HeCo / MEOW formats) as PyG HeteroData / Data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch_geometric.data import HeteroData

from contrastkit.datasets import get_spec, load
from contrastkit.datasets.hetero import (add_metapath, metapath_contexts, metapath_counts,
                                         metapath_counts_of, metapath_graph)

from conftest import require_dataset


def _toy() -> HeteroData:
    """3 papers, 3 authors, 2 subjects (hand-built)."""
    d = HeteroData()
    d["paper"].num_nodes, d["author"].num_nodes, d["subject"].num_nodes = 3, 3, 2
    pa = torch.tensor([[0, 0, 1, 2], [0, 1, 1, 2]])
    ps = torch.tensor([[0, 1, 2], [0, 0, 1]])
    d["paper", "to", "author"].edge_index = pa
    d["paper", "to", "subject"].edge_index = ps
    d.target_type = "paper"
    d.type_codes = {"P": "paper", "A": "author", "S": "subject"}
    return d


def test_toy_metapath_counts_and_bad_metapaths():
    d = _toy()
    pap = metapath_counts_of(d, "PAP").toarray()
    # paper0 has authors {0,1}, paper1 {1}, paper2 {2}
    np.testing.assert_array_equal(pap, [[2, 1, 0], [1, 1, 0], [0, 0, 1]])
    add_metapath(d, "PSP")
    assert d.metapaths == ["PSP"]
    assert d["paper", "PSP", "paper"].edge_weight.sum() == 5  # 2x2 block + 1
    with pytest.raises(ValueError, match="metapath"):
        metapath_counts_of(d, "PA")
    with pytest.raises(ValueError, match="target type"):
        metapath_counts_of(d, "APA")


@pytest.fixture(scope="module")
def acm():
    require_dataset("acm")
    return load("acm")


def test_acm_layout_counts_and_splits(acm):
    tgt = acm["paper"]
    assert acm.target_type == "paper" and acm.metapaths == ["PAP", "PSP"]
    assert tgt.x.shape == (4019, 1902) and acm["author"].x.shape == (7167, 1902)
    assert "x" not in acm["subject"]  # identity features
    assert acm.num_classes == 3 and set(tgt.y.unique().tolist()) == {0, 1, 2}
    np.testing.assert_allclose(tgt.x.sum(1).numpy()[tgt.x.sum(1).numpy() > 0], 1, rtol=1e-5)
    for r, n in ((20, 60), (40, 120), (60, 180)):
        tr, va, te = (tgt[f"{p}_{r}"].numpy() for p in ("train", "val", "test"))
        assert len(tr) == n and len(va) == len(te) == 1000
        assert not (set(tr) & set(va) or set(tr) & set(te) or set(va) & set(te))
    # derived path counts equal MEOW's stored count matrix
    folder = require_dataset("acm") / "graph" / "hetero" / "acm" / "meow"
    stored = sp.load_npz(folder / "pap.npz").tocsr()
    assert abs(metapath_counts("acm", "PAP") - stored).max() == 0
    assert acm["paper", "PAP", "paper"].edge_index.size(1) == 57853
    assert acm["paper", "PSP", "paper"].edge_index.size(1) == 4338213


def test_acm_contexts_are_the_relations(acm):
    (t, m), = metapath_contexts(acm, "PAP")
    assert t == "author" and m.shape == (4019, 7167) and m._nnz() == 13407


def test_dblp_derived_matrices_and_pamc_graph():
    require_dataset("dblp-hetero")
    g = metapath_graph("dblp-hetero", "APA")
    assert g.x.shape == (4057, 334) and g.num_classes == 4
    assert g.edge_index.size(1) == 11113
    assert bool((g.edge_index[0] == g.edge_index[1]).any())  # diagonal kept
    d = load("dblp-heco")  # alias
    assert d.name == "dblp-hetero" and d.metapaths == ["APA", "APCPA", "APTPA"]
    # same non-zero patterns as HeCo's bool matrices (README: 5,000,495 and 7,043,571)
    assert d["author", "APCPA", "author"].edge_index.size(1) == 5000495
    assert d["author", "APTPA", "author"].edge_index.size(1) == 7043571
    assert "dblp" not in get_spec("dblp-citation").aliases


@pytest.mark.parametrize("name,n,offset_ok", [("imdb", 4275, True), ("aminer", 6564, True),
                                              ("freebase", 3492, True)])
def test_other_sets_labels_and_identity_features(name, n, offset_ok):
    require_dataset(name)
    d = load(name)
    tgt = d[d.target_type]
    assert tgt.num_nodes == n and int(tgt.y.min()) == 0  # IMDB's 1-based labels shifted
    if name != "imdb":
        assert all("x" not in d[t] for t in d.node_types)


def test_unknown_hetero_name_is_a_clear_error():
    with pytest.raises(ValueError, match="heterogeneous"):
        metapath_graph("cora", "PAP")


# ----------------------------------------------------------------------------- bad files
def _toy_source(monkeypatch, label_offset=0):
    """A 4-paper / 3-author toy dataset registered under the id 'toy-hetero' for the test."""
    from contrastkit.datasets import hetero as H
    src = H.HeteroSource("toy-hetero", "toy", ("meow",), "paper",
                         {"paper": "P", "author": "A"}, {"paper": 4, "author": 3},
                         (("pa.txt", "paper", "author"),), {}, ("PAP",),
                         label_offset=label_offset)
    monkeypatch.setitem(H._BY_ID, src.id, src)
    return H, src


def _write_toy(root, labels, pa="# paper author\n0 0\n0 1\n\n1 1\n2 2\n3 0\n", splits=None):
    d = root / "graph" / "hetero" / "toy" / "meow"
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "labels.npy", np.asarray(labels))
    (d / "pa.txt").write_text(pa)
    for r in (20, 40, 60):
        for part in ("train", "val", "test"):
            np.save(d / f"{part}_{r}.npy", np.asarray((splits or {}).get(part, [0, 1])))
    return d


def test_toy_hetero_loads(tmp_path, monkeypatch):
    H, src = _toy_source(monkeypatch)
    _write_toy(tmp_path, np.array([0.0, 1.0, 1.0, 0.0]))  # float labels (as ACM's) are fine
    data = H._load(src, tmp_path)
    assert data["paper"].y.tolist() == [0, 1, 1, 0] and data.num_classes == 2
    assert data["paper", "to", "author"].edge_index.size(1) == 5


@pytest.mark.parametrize("labels, match", [
    ([0, 1, 1], r"labels.npy: expected 4 labels \(one per target node\), got 3"),
    ([0, 1, 1, 0, 1], r"labels.npy: expected 4 labels .*got 5"),
    ([[0, 1], [1, 0]], r"labels.npy: expected a 1-D array of 4 labels .*shape \(2, 2\)"),
    ([0, -1, 1, 0], r"labels.npy: expected labels >= 0, got -1 at index 1 \(1 such"),
    ([0.0, 1.5, 1.0, 0.0], r"labels.npy: expected integer class labels, got 1.5 at index 1"),
    ([0.0, np.nan, 1.0, 0.0], r"labels.npy: expected integer class labels, got nan"),
    (["a", "b", "c", "d"], r"labels.npy: expected integer class labels, got dtype <U1"),
])
def test_hetero_labels_are_checked_against_the_nodes(tmp_path, monkeypatch, labels, match):
    H, src = _toy_source(monkeypatch)
    _write_toy(tmp_path, labels)
    with pytest.raises(ValueError, match=match):
        H._load(src, tmp_path)


def test_hetero_one_based_labels_and_splits_and_relations_are_checked(tmp_path, monkeypatch):
    H, src = _toy_source(monkeypatch, label_offset=1)
    _write_toy(tmp_path, [1, 2, 2, 0])  # IMDB-style 1-based labels with a 0 among them
    with pytest.raises(ValueError, match=r"expected labels >= 1 \(stored 1-based\), got 0 at "
                                         r"index 3"):
        H._load(src, tmp_path)
    H, src = _toy_source(monkeypatch)
    _write_toy(tmp_path, [0, 1, 1, 0], splits={"val": [0, 4]})
    with pytest.raises(ValueError, match=r"val_20.npy: expected node indices in \[0, 4\), got "
                                         r"values in \[0, 4\]"):
        H._load(src, tmp_path)
    _write_toy(tmp_path, [0, 1, 1, 0], pa="0 0\n0 1\n\n1 x\n")
    with pytest.raises(ValueError, match=r"pa.txt, line 4: field 2: expected an integer, got 'x'"):
        H._load(src, tmp_path)
    _write_toy(tmp_path, [0, 1, 1, 0], pa="0 0\n0 1 2\n")
    with pytest.raises(ValueError, match=r"pa.txt, line 2: expected 2 fields as on line 1, got 3"):
        H._load(src, tmp_path)
    _write_toy(tmp_path, [0, 1, 1, 0], pa="# header\n0 0\n\n1 3\n")
    with pytest.raises(ValueError, match=r"pa.txt, line 4: destination id: expected a value in "
                                         r"\[0, 3\) \(the number of destination nodes\), got 3"):
        H._load(src, tmp_path)
