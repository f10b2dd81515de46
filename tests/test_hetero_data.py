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
