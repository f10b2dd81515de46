"""Mini-batch sampling of graphs (pure torch) and mini-batch GRACE."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data

from contrastkit.core.losses import nt_xent
from contrastkit.graphcl.grace import GRACE, GRACEConfig
from contrastkit.graphcl.sampling import NeighborBatches


def _graph(n: int = 60, e: int = 400, seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    ei = ei[:, ei[0] != ei[1]]
    ei = torch.unique(ei, dim=1)
    return Data(x=torch.randn(n, 5, generator=g), edge_index=ei, y=torch.arange(n) % 3)


def test_sampled_subgraph_is_a_real_neighbourhood():
    data = _graph()
    edges = {tuple(p) for p in data.edge_index.t().tolist()}
    sampler = NeighborBatches(data, 8, (3, 2), backend="torch")
    torch.manual_seed(0)
    seeds = torch.tensor([5, 9, 0, 33])
    b = sampler.sample(seeds)
    assert b.batch_size == 4 and b.n_id[:4].tolist() == seeds.tolist()
    assert torch.equal(b.x, data.x[b.n_id]) and torch.equal(b.y, data.y[b.n_id])
    glob = b.n_id[b.edge_index]
    assert all(tuple(p) in edges for p in glob.t().tolist())  # only edges of the graph
    # hop 1: each seed keeps at most 3 distinct in-neighbours
    for s in range(4):
        assert int((b.edge_index[1] == s).sum()) <= 3
    assert len(set(b.n_id.tolist())) == b.num_nodes  # no duplicated node


def test_full_fanout_keeps_every_in_neighbour():
    data = _graph()
    b = NeighborBatches(data, 4, (-1,), backend="torch").sample(torch.tensor([1, 2]))
    for local, node in enumerate([1, 2]):
        want = set(data.edge_index[0, data.edge_index[1] == node].tolist())
        got = set(b.n_id[b.edge_index[0, b.edge_index[1] == local]].tolist())
        assert got == want


def test_batches_cover_every_node_once_per_epoch():
    data = _graph()
    sampler = NeighborBatches(data, 16, (2, 2), backend="torch")
    seen = torch.cat([b.n_id[:b.batch_size] for b in sampler])
    assert len(sampler) == 4 and sorted(seen.tolist()) == list(range(60))


def test_sampler_errors_name_the_argument():
    data = _graph()
    with pytest.raises(ValueError, match="batch_size"):
        NeighborBatches(data, 0)
    with pytest.raises(ValueError, match="num_neighbors"):
        NeighborBatches(data, 4, (0,))
    with pytest.raises(ValueError, match="backend"):
        NeighborBatches(data, 4, backend="dgl")
    with pytest.raises(ValueError, match="num_neighbors"):
        GRACEConfig(batch_size=8, num_neighbors=(5,))
    with pytest.raises(ValueError, match="batch_size"):
        GRACEConfig(batch_size=8, pot=True)


def test_minibatch_grace_loss_uses_the_seeds_only():
    data = _graph()
    torch.manual_seed(0)
    method = GRACE(GRACEConfig(batch_size=8), data.num_features)
    b = NeighborBatches(data, 8, (3, 3), backend="torch").sample(torch.arange(8))
    assert b.num_nodes > 8
    loss = method.training_step(b)
    views = method.current_views  # the step's two augmented subgraphs
    h = [method.project(method.encode(v)[:8]) for v in views]
    assert torch.allclose(loss, nt_xent(h[0], h[1], temperature=0.4), atol=1e-6)
    h_all = [method.project(method.encode(v)) for v in views]
    assert not torch.allclose(loss, nt_xent(h_all[0], h_all[1], temperature=0.4), atol=1e-3)


def test_minibatch_grace_learns_on_cora(tmp_path):
    """Five epochs of 1,024-seed batches on Cora: the linear probe reaches 70% and beats the same
    encoder untrained by 5 points (raw features of Cora give about 57-60% with this probe, the
    untrained GCN about 64-68%)."""
    from contrastkit.datasets import load
    from contrastkit.graphcl.grace import GRACE, evaluate_embeddings, run
    from contrastkit.registry import RunContext
    cfg = GRACEConfig(dataset="cora", epochs=5, batch_size=1024, eval_repeats=1)
    data = load("cora")
    torch.manual_seed(0)  # run() seeds the same way before building the model
    untrained = GRACE(cfg, data.num_features).eval()
    with torch.no_grad():
        before = evaluate_embeddings(cfg, untrained.embed(data), data, 0)["micro_f1"]
    res = run(cfg, RunContext(out_dir=tmp_path, device="cpu", seed=0, progress=False))
    after = res.metrics["micro_f1"]
    assert after >= 0.70 and after >= before + 0.05, (before, after)
