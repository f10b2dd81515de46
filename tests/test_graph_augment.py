"""Tests for contrastkit.graphcl.augment: GRACE/GCA augmentations and GCA centralities."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.transforms import Compose
from torch_geometric.utils import degree, is_undirected, to_undirected

from contrastkit.graphcl import augment
from contrastkit.graphcl.augment import (AdaptiveDropEdges, AdaptiveMaskFeatures, DropEdges,
                                         MaskFeatures, drop_probabilities, edge_drop_weights,
                                         eigenvector_centrality, feature_drop_weights,
                                         gca_pagerank, node_centrality)
from contrastkit.graphcl.validate import validate_graph

# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def random_undirected_graph(num_nodes: int, num_pairs: int, num_features: int = 16,
                            seed: int = 0, isolated: int = 0) -> Data:
    """Random undirected graph (both directions stored); the last ``isolated`` nodes have no edge."""
    g = torch.Generator().manual_seed(seed)
    connected = num_nodes - isolated
    row = torch.randint(0, connected, (num_pairs,), generator=g)
    col = torch.randint(0, connected, (num_pairs,), generator=g)
    keep = row != col
    edge_index = to_undirected(torch.stack([row[keep], col[keep]]), num_nodes=num_nodes)
    x = (torch.rand(num_nodes, num_features, generator=g) < 0.3).float()
    return Data(x=x, edge_index=edge_index, num_nodes=num_nodes)


def directed_test_graph() -> torch.Tensor:
    """Small directed multigraph: one-way edges, a duplicate, a self-loop, a source-only node."""
    edges = [(0, 1), (1, 2), (2, 0), (2, 3), (3, 2), (3, 4), (4, 0), (5, 0), (5, 3),
             (1, 2), (4, 4), (0, 3)]
    return torch.tensor(edges, dtype=torch.long).t().contiguous()


@pytest.fixture(scope="module")
def cora(cora_pyg) -> Data:
    return cora_pyg


def _sigma_bound(p: float, n: int, k: float = 6.0) -> float:
    return k * math.sqrt(p * (1 - p) / n)


# ----------------------------------------------------------------------------------------------
# uniform augmentations
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_generator", [False, True])
def test_drop_edges_rate_and_subset(use_generator):
    data = random_undirected_graph(2000, 12000)
    num_edges = data.edge_index.size(1)
    p = 0.3
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(2) if use_generator else None
    view = DropEdges(p, generator=gen)(data)
    kept = view.edge_index.size(1)
    assert abs(kept / num_edges - (1 - p)) < _sigma_bound(p, num_edges)
    # kept entries are a subsequence of the original entries
    orig = set(map(tuple, data.edge_index.t().tolist()))
    assert set(map(tuple, view.edge_index.t().tolist())) <= orig


def test_drop_edges_default_is_directed_symmetric_keeps_undirected():
    data = random_undirected_graph(500, 3000)
    assert is_undirected(data.edge_index)
    torch.manual_seed(0)
    directed = DropEdges(0.4)(data)
    assert not is_undirected(directed.edge_index, num_nodes=500)  # pitfall 1: asymmetric views

    p = 0.4
    torch.manual_seed(0)
    sym = DropEdges(p, symmetric=True)(data)
    assert is_undirected(sym.edge_index, num_nodes=500)
    n_pairs = data.edge_index.size(1) // 2
    kept_pairs = sym.edge_index.size(1) // 2
    assert abs(kept_pairs / n_pairs - (1 - p)) < _sigma_bound(p, n_pairs)


def test_drop_edges_filters_edge_attributes_and_keeps_nodes():
    data = random_undirected_graph(100, 400)
    num_edges = data.edge_index.size(1)
    data.edge_weight = torch.arange(num_edges, dtype=torch.float)
    data.edge_attr = torch.arange(num_edges, dtype=torch.float).unsqueeze(1).repeat(1, 3)
    torch.manual_seed(3)
    view = DropEdges(0.5, generator=torch.Generator().manual_seed(0))(data)
    idx = view.edge_weight.long()
    assert torch.equal(view.edge_index, data.edge_index[:, idx])
    assert torch.equal(view.edge_attr[:, 0], view.edge_weight)
    assert view.num_nodes == data.num_nodes
    sym = DropEdges(0.5, symmetric=True)(data)
    assert torch.equal(sym.edge_index, data.edge_index[:, sym.edge_weight.long()])


def test_drop_edges_extremes():
    data = random_undirected_graph(50, 200)
    assert torch.equal(DropEdges(0.0)(data).edge_index, data.edge_index)
    assert DropEdges(1.0)(data).edge_index.size(1) == 0
    assert DropEdges(1.0, symmetric=True)(data).edge_index.size(1) == 0


def test_mask_features_zeroes_whole_columns_at_rate_p():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 5000, generator=g) + 0.5  # no zero entries
    data = Data(x=x, edge_index=torch.zeros(2, 0, dtype=torch.long))
    p = 0.35
    torch.manual_seed(5)
    view = MaskFeatures(p)(data)
    zero_col = (view.x == 0).all(dim=0)
    untouched = (view.x == x).all(dim=0)
    assert bool((zero_col | untouched).all()), "columns must be masked for all nodes or none"
    rate = zero_col.float().mean().item()
    assert abs(rate - p) < _sigma_bound(p, x.size(1))


@pytest.mark.parametrize("make", [
    lambda: DropEdges(0.5),
    lambda: DropEdges(0.5, symmetric=True),
    lambda: MaskFeatures(0.5),
    lambda: AdaptiveDropEdges(0.5),
    lambda: AdaptiveMaskFeatures(0.5, centrality="pagerank"),
])
def test_transforms_leave_original_untouched(make):
    data = random_undirected_graph(200, 800)
    data.edge_weight = torch.rand(data.edge_index.size(1))
    x0, ei0, ew0 = data.x.clone(), data.edge_index.clone(), data.edge_weight.clone()
    x_obj, ei_obj = data.x, data.edge_index
    torch.manual_seed(0)
    view = make()(data)
    assert view is not data
    assert data.x is x_obj and data.edge_index is ei_obj
    assert torch.equal(data.x, x0) and torch.equal(data.edge_index, ei0)
    assert torch.equal(data.edge_weight, ew0)
    changed = (view.edge_index.size(1) != ei0.size(1)) or not torch.equal(view.x, x0)
    assert changed, "p=0.5 should change something"


@pytest.mark.parametrize("make", [
    lambda g: DropEdges(0.3, generator=g),
    lambda g: DropEdges(0.3, symmetric=True, generator=g),
    lambda g: MaskFeatures(0.3, generator=g),
    lambda g: AdaptiveDropEdges(0.3, generator=g),
    lambda g: AdaptiveMaskFeatures(0.3, generator=g),
])
def test_randomness_global_rng_and_generator(make):
    data = random_undirected_graph(300, 1500)
    t = make(None)
    torch.manual_seed(11)
    a = t(data)
    torch.manual_seed(11)
    b = t(data)
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.x, b.x)
    # an explicit generator leaves the global RNG alone and is reproducible itself
    state = torch.get_rng_state()
    c = make(torch.Generator().manual_seed(4))(data)
    d = make(torch.Generator().manual_seed(4))(data)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(c.edge_index, d.edge_index) and torch.equal(c.x, d.x)


@pytest.mark.parametrize("cls", [DropEdges, MaskFeatures, AdaptiveDropEdges,
                                 AdaptiveMaskFeatures])
@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_probability_validated(cls, bad):
    with pytest.raises(ValueError, match=r"^p: expected a probability"):
        cls(bad)


def test_argument_errors_name_the_argument():
    with pytest.raises(TypeError, match=r"^p: expected a probability"):
        DropEdges("0.2")
    with pytest.raises(ValueError, match="threshold"):
        AdaptiveDropEdges(0.2, threshold=1.2)
    with pytest.raises(ValueError, match="centrality"):
        AdaptiveMaskFeatures(0.2, centrality="betweenness")
    with pytest.raises(ValueError, match="aggregation"):
        AdaptiveDropEdges(0.2, aggregation="max")
    with pytest.raises(ValueError, match="edge_index"):
        DropEdges(0.2)(Data(x=torch.ones(3, 2)))
    with pytest.raises(ValueError, match=r"data\.x"):
        MaskFeatures(0.2)(Data(edge_index=torch.zeros(2, 0, dtype=torch.long), num_nodes=3))
    with pytest.raises(TypeError, match="generator"):
        DropEdges(0.2, generator=0)


# ----------------------------------------------------------------------------------------------
# centralities
# ----------------------------------------------------------------------------------------------


def test_degree_centrality_is_symmetrised_degree():
    ei = directed_test_graph()
    n = 7  # node 6 isolated
    phi = node_centrality(ei, n, "degree")
    # dense reference: A ∨ Aᵀ, duplicates collapsed, self-loop counted once
    a = np.zeros((n, n), dtype=bool)
    a[ei[0].numpy(), ei[1].numpy()] = True
    a = a | a.T
    np.testing.assert_array_equal(phi.numpy(), a.sum(axis=0).astype(np.float32))
    # and equal to torch_geometric.utils.degree on the symmetrised graph
    sym = to_undirected(ei, num_nodes=n)
    assert torch.equal(phi, degree(sym[1], num_nodes=n))
    # not the raw in-degree of the directed graph
    assert not torch.equal(phi, degree(ei[1], num_nodes=n))


def _gca_pagerank_reference(edge_index: torch.Tensor, n: int, iterations: int,
                            alpha: float = 0.85) -> np.ndarray:
    """Literal dense float64 implementation of x ← (1−α)x + α Σ_{u→v} x_u / outdeg(u)."""
    src, dst = edge_index.numpy()
    outdeg = np.zeros(n)
    for u in src:
        outdeg[u] += 1
    x = np.ones(n)
    for _ in range(iterations):
        agg = np.zeros(n)
        for u, v in zip(src, dst):
            agg[v] += x[u] / outdeg[u]
        x = (1 - alpha) * x + alpha * agg
    return x


@pytest.mark.parametrize("iterations", [1, 10, 200])
def test_gca_pagerank_matches_literal_reference(iterations):
    ei = directed_test_graph()
    n = 7
    ours = gca_pagerank(ei, n, iterations=iterations).double().numpy()
    ref = _gca_pagerank_reference(ei, n, iterations)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-30)
    # node 5 has no in-edges: it decays as 0.15^k; node 6 is isolated
    assert ours[5] == pytest.approx(0.15 ** iterations, rel=1e-4)
    via_kind = node_centrality(ei, n, "pagerank", pagerank_iterations=iterations)
    np.testing.assert_allclose(via_kind.double().numpy(), ref, rtol=1e-4, atol=1e-30)
    # "pr" is GCA's alias
    assert torch.equal(node_centrality(ei, n, "pr", pagerank_iterations=iterations), via_kind)


def test_gca_pagerank_is_not_textbook_pagerank():
    ei = to_undirected(directed_test_graph()[:, :9])
    ours = gca_pagerank(ei, 6).double().numpy()
    g = nx.DiGraph()
    g.add_nodes_from(range(6))
    g.add_edges_from(ei.t().tolist())
    textbook = nx.pagerank(g, alpha=0.85)
    assert not np.allclose(ours / ours.sum(), [textbook[i] for i in range(6)], atol=1e-3)


def test_evc_matches_networkx_on_strongly_connected_graph():
    ei = directed_test_graph()[:, :9]  # nodes 0..4 strongly connected + node 5 → no; drop 5
    ei = ei[:, (ei < 5).all(0)]
    n = 5
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_edges_from(ei.t().tolist())
    ref = nx.eigenvector_centrality_numpy(g)
    ref = np.clip(np.array([ref[i] for i in range(n)]), 0, None) + 1e-8
    ours = node_centrality(ei, n, "evc").double().numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)


def test_evc_disconnected_graph_falls_back_without_nan():
    # K4 (spectral radius 3) plus one separate edge (radius 1) plus an isolated node
    k4 = [(i, j) for i in range(4) for j in range(4) if i != j]
    ei = torch.tensor(k4 + [(4, 5), (5, 4)], dtype=torch.long).t()
    phi = eigenvector_centrality(ei, 7)
    assert torch.isfinite(phi).all() and (phi >= 1e-8).all()
    assert torch.allclose(phi[:4], torch.full((4,), 0.5), atol=1e-5)  # unit-norm on K4
    assert torch.allclose(phi[4:], torch.full((3,), 1e-8), atol=1e-6)


# ----------------------------------------------------------------------------------------------
# GCA weights and probabilities
# ----------------------------------------------------------------------------------------------


def test_edge_drop_weights_aggregations():
    ei = torch.tensor([[0, 1, 2], [1, 2, 0]])
    phi = torch.tensor([1.0, 2.0, 4.0])
    t = edge_drop_weights(ei, phi)  # default = target ("sink")
    assert torch.allclose(t, torch.log(torch.tensor([2.0, 4.0, 1.0])))
    s = edge_drop_weights(ei, phi, "source")
    assert torch.allclose(s, torch.log(torch.tensor([1.0, 2.0, 4.0])))
    m = edge_drop_weights(ei, phi, "mean")
    assert torch.allclose(m, torch.log(torch.tensor([1.5, 3.0, 2.5])))


def test_feature_drop_weights_sparse_and_dense():
    x = torch.tensor([[1.0, 0.0, -2.0], [0.5, 0.0, 0.0], [0.0, 0.0, 3.0]])
    phi = torch.tensor([1.0, 2.0, 4.0])
    s = feature_drop_weights(x, phi)
    assert torch.allclose(s[[0, 2]], torch.log(torch.tensor([3.0, 5.0])))
    assert torch.isfinite(s[1]) and s[1] < s.min() + 1e-6  # zero column: finite, lowest score
    sd = feature_drop_weights(x, phi, dense=True)
    assert torch.allclose(sd[[0, 2]], torch.log(torch.tensor([2.0, 14.0])))


def test_drop_probabilities_formula_mean_and_cap():
    g = torch.Generator().manual_seed(0)
    s = torch.rand(1000, generator=g, dtype=torch.float64) * 3
    p = 0.3
    probs = drop_probabilities(s, p, threshold=1.0)
    expected = p * (s.max() - s) / (s.max() - s.mean())
    assert torch.allclose(probs, expected)
    assert probs.mean().item() == pytest.approx(p, abs=1e-9)
    capped = drop_probabilities(s, 0.6, threshold=0.7)
    assert capped.max().item() <= 0.7 + 1e-12
    assert (capped == 0.7).any()
    assert capped.argmin() == s.argmax() and capped.min() == 0


def test_drop_probabilities_constant_and_empty_scores():
    s = torch.full((10,), 2.5)
    assert torch.equal(drop_probabilities(s, 0.3), torch.full((10,), 0.3))
    assert torch.equal(drop_probabilities(s, 0.9), torch.full((10,), 0.7))
    assert drop_probabilities(torch.zeros(0), 0.3).numel() == 0
    with pytest.raises(ValueError, match=r"^s: expected finite values"):
        drop_probabilities(torch.tensor([0.0, -math.inf]), 0.3)


@pytest.mark.parametrize("kind", ["degree", "pagerank", "evc"])
def test_gca_edge_probabilities_mean_and_cap(kind):
    data = random_undirected_graph(400, 2400, seed=1)
    p = 0.1
    probs = AdaptiveDropEdges(p, centrality=kind).probabilities(data)
    assert probs.shape == (data.edge_index.size(1),)
    assert bool(torch.isfinite(probs).all())
    # GCA: s_uv = log φ(v) (target), p_uv = min(p (s_max - s_uv) / (s_max - mean s), 0.7)
    phi = node_centrality(data.edge_index, data.num_nodes, kind).double()
    s = torch.log(phi[data.edge_index[1]])
    ref = torch.clamp(p * (s.max() - s) / (s.max() - s.mean()), max=0.7)
    torch.testing.assert_close(probs.double(), ref, rtol=1e-5, atol=1e-7)
    if bool((probs < 0.7).all()):  # nothing capped → mean is exactly p
        assert probs.mean().item() == pytest.approx(p, abs=1e-4)
    high = AdaptiveDropEdges(0.6, centrality=kind).probabilities(data)
    assert high.max().item() <= 0.7 + 1e-6
    assert high.mean().item() <= 0.6 + 1e-4


def test_gca_degree_edge_probabilities_mean_uncapped():
    data = random_undirected_graph(400, 2400, seed=1)
    probs = AdaptiveDropEdges(0.2, centrality="degree").probabilities(data)
    assert bool((probs < 0.7).all())  # precondition for the exact-mean property
    assert probs.mean().item() == pytest.approx(0.2, abs=1e-5)
    # the most central target gets probability 0, less central targets higher probabilities
    phi = node_centrality(data.edge_index, data.num_nodes, "degree")[data.edge_index[1]]
    assert probs[phi == phi.max()].max() == 0
    assert probs[phi == phi.min()].min() == probs.max()


@pytest.mark.parametrize("kind", ["degree", "pagerank", "evc"])
@pytest.mark.parametrize("aggregation", ["target", "source", "mean"])
def test_no_nan_with_isolated_nodes_and_zero_columns(kind, aggregation):
    data = random_undirected_graph(120, 300, num_features=12, seed=2, isolated=10)
    data.x[:, 3] = 0.0  # all-zero column
    data.x[-10:, 5] = 1.0
    data.x[:-10, 5] = 0.0  # column held only by isolated nodes
    edges = AdaptiveDropEdges(0.4, centrality=kind, aggregation=aggregation)
    feats = AdaptiveMaskFeatures(0.4, centrality=kind)
    for probs in (edges.probabilities(data), feats.probabilities(data)):
        assert bool(torch.isfinite(probs).all())
        assert probs.min() >= 0 and probs.max() <= 0.7 + 1e-6
    torch.manual_seed(0)
    view = Compose([feats, edges])(data)
    assert torch.isfinite(view.x).all()
    feats_dense = AdaptiveMaskFeatures(0.4, centrality=kind, dense=True)
    assert bool(torch.isfinite(feats_dense.probabilities(data)).all())


def test_adaptive_drop_edges_samples_with_cached_probabilities(monkeypatch):
    data = random_undirected_graph(300, 1500, seed=3)
    calls = []
    original = augment.node_centrality

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(augment, "node_centrality", counting)
    t = AdaptiveDropEdges(0.3).fit(data)
    probs = t.probabilities(data)
    torch.manual_seed(0)
    draws = 200
    kept = torch.zeros(data.edge_index.size(1))
    views = []
    for _ in range(draws):
        view = t(data)
        views.append(view.edge_index.size(1))
        kept += torch.isin(_edge_ids(data.edge_index), _edge_ids(view.edge_index)).float()
    assert len(calls) == 1, "probabilities must be computed once and cached"
    assert len(set(views)) > 1, "each call must sample a fresh mask"
    # every entry of this graph is unique, so kept/draws estimates 1 - p_uv: per entry within
    # five binomial standard deviations, and on average over the entries to within 0.005
    rate = kept / draws
    sd = torch.sqrt(probs * (1 - probs) / draws)
    assert bool(((rate - (1 - probs)).abs() <= 5 * sd + 0.01).all())
    assert abs(float(rate.mean() - (1 - probs).mean())) < 0.005
    assert bool((kept[probs == 0] == draws).all())
    # in-place modification or a new graph invalidates the cache
    data.edge_index[:, [0, 1]] = data.edge_index[:, [1, 0]]
    t(data)
    assert len(calls) == 2
    other = random_undirected_graph(300, 1500, seed=4)
    t(other)
    assert len(calls) == 3


def _edge_ids(edge_index: torch.Tensor) -> torch.Tensor:
    return edge_index[0] * 100_000 + edge_index[1]


def test_adaptive_mask_features_whole_columns_and_rate():
    data = random_undirected_graph(300, 1500, num_features=400, seed=5)
    data.x = data.x + 0.1  # no zero entries → a masked column is exactly all zeros
    t = AdaptiveMaskFeatures(0.3)
    probs = t.probabilities(data)
    # no zero entry: every column has the same weight, so every p_j is exactly p
    assert torch.equal(probs, torch.full_like(probs, 0.3))
    # sparse features: w_j = Σ_u 1[x_uj ≠ 0] φ(u), s_j = log w_j,
    # p_j = min(0.3 (s_max - s_j) / (s_max - s̄), 0.7)
    sparse = data.clone()
    g = torch.Generator().manual_seed(6)
    sparse.x = (torch.rand(data.x.shape, generator=g) < 0.05).float()
    sparse.x[0] = 1.0                                    # no empty column (log 0)
    phi = node_centrality(data.edge_index, data.num_nodes, "degree").double()
    s = torch.log(((sparse.x != 0).double() * phi[:, None]).sum(0))
    ref = torch.clamp(0.3 * (s.max() - s) / (s.max() - s.mean()), max=0.7)
    got = AdaptiveMaskFeatures(0.3).probabilities(sparse)
    assert float(ref.std()) > 0.05                       # the weights really differ
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    rates = []
    for _ in range(50):
        view = t(data)
        zero = (view.x == 0).all(0)
        same = (view.x == data.x).all(0)
        assert bool((zero | same).all())
        rates.append(zero.float().mean().item())
    expected = probs.mean().item()
    assert abs(np.mean(rates) - expected) < 6 * math.sqrt(0.25 / (50 * 400))


def test_adaptive_pagerank_iteration_defaults():
    assert AdaptiveDropEdges(0.2, "pagerank").pagerank_iterations == 200
    assert AdaptiveMaskFeatures(0.2, "pagerank").pagerank_iterations == 10
    assert AdaptiveMaskFeatures(0.2, "pr", pagerank_iterations=3).pagerank_iterations == 3


# ----------------------------------------------------------------------------------------------
# real data
# ----------------------------------------------------------------------------------------------


def test_cora_every_transform(cora):
    validate_graph(cora)
    n, e = cora.num_nodes, cora.edge_index.size(1)
    assert (n, e) == (2708, 10556)
    torch.manual_seed(0)
    transforms = [DropEdges(0.2), DropEdges(0.4, symmetric=True), MaskFeatures(0.3)]
    for kind in ("degree", "pagerank", "evc"):
        transforms += [AdaptiveMaskFeatures(0.3, centrality=kind),
                       AdaptiveDropEdges(0.2, centrality=kind)]
    for t in transforms:
        view = t(cora)
        validate_graph(view)
        assert view.x.shape == cora.x.shape
        assert view.edge_index.size(1) <= e
        if isinstance(t, (AdaptiveDropEdges, AdaptiveMaskFeatures)):
            probs = t.probabilities(cora)
            assert bool(torch.isfinite(probs).all()) and probs.max() <= 0.7 + 1e-6
        if isinstance(t, AdaptiveDropEdges):
            assert probs.mean().item() <= 0.2 + 1e-4
            assert probs.mean().item() == pytest.approx(0.2, abs=0.02)
    assert cora.edge_index.size(1) == e and bool((cora.x.sum(1) > 0).all())  # untouched


@pytest.mark.parametrize("symmetric", [False, True])
def test_drop_edges_checks_edge_ids_against_the_graph(symmetric):
    from contrastkit.graphcl.augment import DropEdges
    ei = torch.tensor([[0, 1, 2], [1, 2, 0]])
    drop = DropEdges(0.5, symmetric, generator=torch.Generator().manual_seed(0))
    drop(Data(x=torch.rand(3, 2), edge_index=ei))
    with pytest.raises(ValueError, match=r"^data.edge_index: expected node indices in \[0, 3\) "
                                         r"\(num_nodes=3\), got values in \[0, 7\]"):
        drop(Data(x=torch.rand(3, 2), edge_index=torch.tensor([[0, 1], [7, 2]])))
    with pytest.raises(ValueError, match=r"^data.edge_index: expected node indices in \[0, 4\)"):
        drop(Data(edge_index=torch.tensor([[0, 4], [1, 2]]), num_nodes=4))
    # a negative id gave wrong pair keys with symmetric=True (and passed through otherwise)
    with pytest.raises(ValueError, match=r"^edge_index: expected node indices >= 0, got values "
                                         r"in \[-1, 2\]"):
        drop.keep_mask(torch.tensor([[0, -1], [1, 2]]))
    assert drop.keep_mask(ei).shape == (3,)
