"""Tests for contrastkit.graphcl.encoders (GCN encoder, projection head) and graphcl.validate."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Data
from torch_geometric.utils import to_undirected

from contrastkit.graphcl.augment import (AdaptiveDropEdges, AdaptiveMaskFeatures, DropEdges,
                                         MaskFeatures)
from contrastkit.graphcl.encoders import ACTIVATIONS, GCNEncoder, ProjectionHead
from contrastkit.graphcl.validate import GraphDTypeError, validate_graph

RRELU_SLOPE = (1 / 8 + 1 / 3) / 2


def small_graph(n: int = 30, f: int = 8, seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    row = torch.randint(0, n, (4 * n,), generator=g)
    col = torch.randint(0, n, (4 * n,), generator=g)
    ei = to_undirected(torch.stack([row, col])[:, row != col], num_nodes=n)
    x = torch.randn(n, f, generator=g)
    return Data(x=x, edge_index=ei, y=torch.randint(0, 3, (n,), generator=g))


@pytest.fixture(scope="module")
def cora(cora_pyg) -> Data:
    return cora_pyg


def manual_forward(enc: GCNEncoder, x, edge_index, act) -> torch.Tensor:
    h = x
    for conv in enc.convs:
        h = act(conv(h, edge_index))
    return h


# ----------------------------------------------------------------------------------------------
# encoder
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_layers,widths", [(1, [(8, 16)]), (2, [(8, 32), (32, 16)]),
                                               (3, [(8, 32), (32, 32), (32, 16)])])
def test_encoder_shapes_and_widths(num_layers, widths):
    data = small_graph()
    enc = GCNEncoder(8, 16, num_layers=num_layers)
    assert [(c.in_channels, c.out_channels) for c in enc.convs] == widths
    out = enc(data.x, data.edge_index)
    assert out.shape == (30, 16)
    assert enc.out_channels == 16


def test_last_layer_is_activated_relu():
    torch.manual_seed(0)
    data = small_graph()
    enc = GCNEncoder(8, 16, activation="relu")
    out = enc(data.x, data.edge_index)
    assert bool((out >= 0).all()) and bool((out > 0).any())
    # the same layers without the last activation would give negative entries
    pre = enc.convs[1](torch.relu(enc.convs[0](data.x, data.edge_index)), data.edge_index)
    assert bool((pre < 0).any())
    assert torch.allclose(out, torch.relu(pre))


def test_prelu_is_one_shared_parameter():
    torch.manual_seed(0)
    data = small_graph()
    enc = GCNEncoder(8, 16, num_layers=3, activation="prelu")
    prelus = [m for m in enc.modules() if isinstance(m, nn.PReLU)]
    assert len(prelus) == 1 and prelus[0].weight.numel() == 1
    conv_params = sum(p.numel() for c in enc.convs for p in c.parameters())
    assert sum(p.numel() for p in enc.parameters()) == conv_params + 1
    assert enc.negative_slope is prelus[0].weight
    # the one slope acts in every layer: slope 1 → identity activation everywhere
    with torch.no_grad():
        prelus[0].weight.fill_(1.0)
    assert torch.allclose(enc(data.x, data.edge_index),
                          manual_forward(enc, data.x, data.edge_index, lambda t: t), atol=1e-6)
    with torch.no_grad():
        prelus[0].weight.fill_(0.0)
    assert torch.allclose(enc(data.x, data.edge_index),
                          manual_forward(enc, data.x, data.edge_index, torch.relu), atol=1e-6)


def test_rrelu_is_gca_fixed_leaky_relu():
    torch.manual_seed(0)
    data = small_graph()
    enc = GCNEncoder(8, 16, activation="rrelu").train()
    a = enc(data.x, data.edge_index)
    b = enc(data.x, data.edge_index)
    assert torch.equal(a, b), "GCA's rrelu must be deterministic in training mode"
    ref = manual_forward(enc, data.x, data.edge_index,
                         lambda t: F.leaky_relu(t, negative_slope=RRELU_SLOPE))
    assert torch.allclose(a, ref, atol=1e-6)
    assert bool((a < 0).any())  # a leaky activation, not ReLU
    assert enc.negative_slope == pytest.approx(RRELU_SLOPE)


def test_rrelu_random_is_the_module_with_random_slopes():
    torch.manual_seed(0)
    data = small_graph()
    enc = GCNEncoder(8, 16, activation="rrelu_random")
    assert isinstance(enc.activation, nn.RReLU)
    enc.train()
    assert not torch.equal(enc(data.x, data.edge_index), enc(data.x, data.edge_index))
    enc.eval()
    out = enc(data.x, data.edge_index)
    assert torch.equal(out, enc(data.x, data.edge_index))
    ref = manual_forward(enc, data.x, data.edge_index,
                         lambda t: F.leaky_relu(t, negative_slope=RRELU_SLOPE))
    assert torch.allclose(out, ref, atol=1e-6)
    assert enc.negative_slope is None


@pytest.mark.parametrize("name,fn", [("elu", F.elu), ("leaky_relu", F.leaky_relu),
                                     ("relu", F.relu)])
def test_other_activations(name, fn):
    torch.manual_seed(0)
    data = small_graph()
    enc = GCNEncoder(8, 16, activation=name)
    ref = manual_forward(enc, data.x, data.edge_index, fn)
    assert torch.allclose(enc(data.x, data.edge_index), ref, atol=1e-6)


def test_encoder_accepts_data_and_edge_weight():
    torch.manual_seed(0)
    data = small_graph()
    enc = GCNEncoder(8, 16)
    assert torch.equal(enc(data), enc(data.x, data.edge_index))
    w = torch.rand(data.edge_index.size(1)) + 0.1
    data.edge_weight = w
    out_w = enc(data)
    assert torch.allclose(out_w, enc(data.x, data.edge_index, w))
    assert not torch.allclose(out_w, enc(data.x, data.edge_index))


def test_encoder_argument_errors():
    with pytest.raises(ValueError, match="activation") as err:
        GCNEncoder(8, 16, activation="swish")
    for known in ACTIVATIONS:
        assert known in str(err.value)
    with pytest.raises(ValueError, match="num_layers"):
        GCNEncoder(8, 16, num_layers=0)
    with pytest.raises(ValueError, match="hidden_channels"):
        GCNEncoder(8, 0)
    with pytest.raises(TypeError, match="in_channels"):
        GCNEncoder(8.0, 16)
    enc = GCNEncoder(8, 16)
    data = small_graph()
    with pytest.raises(ValueError, match=r"^x: expected 8 feature columns"):
        enc(data.x[:, :5], data.edge_index)
    with pytest.raises(ValueError, match="edge_index"):
        enc(data.x, data.edge_index[:1])
    with pytest.raises(ValueError, match="edge_weight"):
        enc(data.x, data.edge_index, torch.ones(3))


def _paired_encoders(in_channels: int, hidden: int, mid: int | None = None):
    torch.manual_seed(0)
    msg = GCNEncoder(in_channels, hidden, activation="prelu", mid_channels=mid,
                     propagation="message").double()
    sparse = GCNEncoder(in_channels, hidden, activation="prelu", mid_channels=mid).double()
    sparse.load_state_dict(msg.state_dict())
    for conv in msg.convs:                      # non-zero biases, so they are checked too
        nn.init.normal_(conv.bias)
    sparse.load_state_dict(msg.state_dict())
    return msg, sparse


def _assert_same_function(msg: GCNEncoder, sparse: GCNEncoder, x, edge_index, edge_weight=None):
    outs = []
    for enc in (msg, sparse):
        enc.zero_grad()
        out = enc(x, edge_index, edge_weight)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        outs.append(out)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-10, atol=1e-12)
    for (name, p), q in zip(msg.named_parameters(), sparse.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("mid", [None, 40])     # F=8 < 2h: (A H) W first; F > mid: A (H W)
def test_sparse_propagation_equals_pyg_message_passing(mid):
    data = small_graph(n=40, f=24, seed=3)
    msg, sparse = _paired_encoders(24, 16, mid)
    assert sparse.propagation == "sparse" and msg.propagation == "message"
    x = data.x.double()
    _assert_same_function(msg, sparse, x, data.edge_index)
    w = torch.rand(data.edge_index.size(1), dtype=torch.float64) + 0.1
    _assert_same_function(msg, sparse, x, data.edge_index, w)
    # a graph with isolated nodes and a duplicate edge
    ei = torch.tensor([[0, 1, 1, 5], [1, 0, 0, 6]])
    _assert_same_function(msg, sparse, x, ei)


def test_sparse_features_take_the_csr_path_and_match():
    from contrastkit.graphcl import encoders as E
    n, f = 600, 2000                            # >= 2**20 entries, 1 % non-zeros: CSR input
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, f, generator=g, dtype=torch.float64)
    x = x * (torch.rand(n, f, generator=g, dtype=torch.float64) < 0.01)
    assert x.numel() >= E.SPARSE_FEATURE_MIN_NUMEL
    assert E._as_sparse_features(x).layout == torch.sparse_csr
    assert E._as_sparse_features(torch.ones(n, f)).layout == torch.strided   # too dense
    assert E._as_sparse_features(x.requires_grad_()).layout == torch.strided  # needs its grad
    x = x.detach()
    ei = small_graph(n=n, f=1, seed=1).edge_index
    msg, sparse = _paired_encoders(f, 8)
    _assert_same_function(msg, sparse, x, ei)


def test_sparse_propagation_under_bf16_autocast():
    """The CSR products run in float32 outside autocast; the result tracks float32 closely."""
    data = small_graph(n=40, f=24, seed=3)
    torch.manual_seed(0)
    enc = GCNEncoder(24, 16, activation="prelu")
    ref = enc(data.x, data.edge_index)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = enc(data.x, data.edge_index)
    out.float().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.05)


def test_propagation_argument_error():
    with pytest.raises(ValueError, match="propagation.*'sparse'.*'dense'"):
        GCNEncoder(8, 16, propagation="dense")


def test_encoder_gradients_flow():
    torch.manual_seed(0)
    data = small_graph()
    enc = GCNEncoder(8, 16, activation="prelu")
    enc(data).sum().backward()
    assert all(p.grad is not None for p in enc.parameters())


# ----------------------------------------------------------------------------------------------
# projection head
# ----------------------------------------------------------------------------------------------


def test_projection_head():
    torch.manual_seed(0)
    z = torch.randn(10, 16)
    head = ProjectionHead(16, 32)
    out = head(z)
    assert out.shape == (10, 16)  # maps back to h by default
    assert torch.allclose(out, head.fc2(F.elu(head.fc1(z))))
    assert (head.fc1.in_features, head.fc1.out_features) == (16, 32)
    assert ProjectionHead(16, 32, out_channels=8)(z).shape == (10, 8)
    with pytest.raises(ValueError, match=r"^z: expected 16 columns"):
        head(torch.randn(10, 5))
    with pytest.raises(ValueError, match="out_channels"):
        ProjectionHead(16, 32, out_channels=0)


# ----------------------------------------------------------------------------------------------
# validate_graph
# ----------------------------------------------------------------------------------------------


def test_validate_graph_accepts_valid_graph():
    data = small_graph()
    assert validate_graph(data) is data
    data.edge_index = torch.zeros(2, 0, dtype=torch.long)  # no edges is allowed
    validate_graph(data)


def _bad(**changes) -> Data:
    data = small_graph()
    for key, value in changes.items():
        setattr(data, key, value)
    return data


@pytest.mark.parametrize("data,pattern", [
    (Data(edge_index=torch.zeros(2, 0, dtype=torch.long), num_nodes=3), r"graph\.x.*None"),
    (_bad(x=torch.zeros(0, 8), edge_index=torch.zeros(2, 0, dtype=torch.long),
          y=torch.zeros(0)), r"graph\.x.*empty graph"),
    (_bad(x=torch.ones(30)), r"graph\.x.*2-D"),
    (_bad(x=torch.ones(30, 8).index_put_((torch.tensor(3), torch.tensor(2)),
                                         torch.tensor(math.nan))), r"graph\.x.*1 NaN"),
    (_bad(x=torch.ones(30, 8).index_put_((torch.tensor(3), torch.tensor(2)),
                                         torch.tensor(math.inf))), r"graph\.x.*1 infinite"),
    (_bad(edge_index=None), r"graph\.edge_index.*\[2, E\]"),
    (_bad(edge_index=torch.zeros(3, 4, dtype=torch.long)), r"graph\.edge_index.*\[2, E\].*\(3, 4\)"),
    (_bad(edge_index=torch.zeros(2, 4)), r"graph\.edge_index.*integer.*float32"),
    (_bad(edge_index=torch.tensor([[0, -2], [1, 0]])), r"graph\.edge_index.*min -2.*num_nodes=30"),
    (_bad(edge_index=torch.tensor([[0, 31], [1, 0]])), r"graph\.edge_index.*num_nodes=30.*max 31"),
    (_bad(edge_index=torch.tensor([[0, 1], [30, 0]])), r"graph\.edge_index.*num_nodes=30.*max 30"),
    (_bad(y=torch.zeros(29, dtype=torch.long)), r"graph\.y.*30.*\(29,\)"),
    (_bad(train_mask=torch.zeros(10, dtype=torch.bool)), r"graph\.train_mask.*30"),
    (_bad(edge_weight=torch.ones(5)), r"graph\.edge_weight"),
])
def test_validate_graph_errors(data, pattern):
    with pytest.raises(ValueError, match=pattern):
        validate_graph(data, name="graph")


def test_validate_graph_type_errors():
    with pytest.raises(TypeError, match=r"data\.x"):
        validate_graph(_bad(x=[[1.0]]))
    with pytest.raises(TypeError, match=r"data\.x.*floating"):
        validate_graph(_bad(x=torch.ones(30, 8, dtype=torch.long)))
    with pytest.raises(GraphDTypeError):
        validate_graph(_bad(edge_index=torch.zeros(2, 4)))
    # graph-level labels are fine when asked not to check node labels
    validate_graph(_bad(y=torch.tensor([1])), check_labels=False)


# ----------------------------------------------------------------------------------------------
# real data
# ----------------------------------------------------------------------------------------------


def test_cora_validates_and_encodes_every_view(cora):
    assert validate_graph(cora) is cora
    torch.manual_seed(0)
    enc = GCNEncoder(cora.num_features, 64, activation="prelu")
    head = ProjectionHead(64, 64)
    with torch.no_grad():
        clean = enc(cora)
        assert clean.shape == (2708, 64) and torch.isfinite(clean).all()
        for t in (DropEdges(0.2), MaskFeatures(0.3), AdaptiveDropEdges(0.3),
                  AdaptiveMaskFeatures(0.3, centrality="pagerank")):
            view = t(cora)
            z = enc(view)
            assert z.shape == (2708, 64) and torch.isfinite(z).all()
            assert head(z).shape == (2708, 64)
            assert not torch.equal(z, clean)


@pytest.mark.parametrize("propagation", ["sparse", "message"])
def test_edge_index_out_of_range_is_named_not_an_index_error(propagation):
    from contrastkit.graphcl.encoders import gcn_adjacency
    x = torch.randn(5, 8)
    ei = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
    enc = GCNEncoder(8, 16, propagation=propagation)
    assert enc(x, ei).shape == (5, 16)
    for bad, got in ((torch.tensor([[0, 1], [1, 5]]), r"\[0, 5\]"),
                     (torch.tensor([[0, -1], [1, 2]]), r"\[-1, 2\]")):
        with pytest.raises(ValueError, match=r"^edge_index: expected node indices in \[0, 5\) "
                                             r"\(num_nodes=5\), got values in " + got):
            enc(x, bad)
        with pytest.raises(ValueError, match=r"^edge_index: expected node indices in \[0, 5\)"):
            gcn_adjacency(bad, 5)
    with pytest.raises(TypeError, match=r"^edge_index: expected an integer tensor"):
        gcn_adjacency(ei.float(), 5)
    with pytest.raises(ValueError, match=r"^edge_index: expected shape \[2, E\]"):
        gcn_adjacency(ei[:1], 5)
    with pytest.raises(ValueError, match=r"^edge_weight: expected 4 values"):
        gcn_adjacency(ei, 5, torch.ones(3))
    with pytest.raises(ValueError, match=r"^num_nodes: expected a non-negative int"):
        gcn_adjacency(ei, -1)
