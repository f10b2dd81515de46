r"""GCN encoder and projection head of GRACE / GCA (reused by gCooL and POT).

Encoder (k GCNConv layers, activation σ after **every** layer, including the last):

.. math:: H^{(0)} = X, \qquad H^{(l)} = \sigma\big(\hat{A} H^{(l-1)} W_l + b_l\big),
          \qquad \hat{A} = \tilde{D}^{-1/2} (A + I) \tilde{D}^{-1/2},

with widths F → 2h → h for k = 2, F → 2h → 2h → … → h for k > 2 and F → h for k = 1.

Projection head (used only inside the loss; evaluate on encoder outputs):

.. math:: g(z) = W_2\, \mathrm{ELU}(W_1 z + b_1) + b_2 .
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import to_torch_csr_tensor

from contrastkit.core.checks import check_choice, check_edge_index, check_tensor

__all__ = ["GCNEncoder", "ProjectionHead", "FixedRReLU", "ACTIVATIONS", "make_activation",
           "RRELU_LOWER", "RRELU_UPPER", "PROPAGATIONS", "gcn_adjacency", "gcn_layer"]

#: How :class:`GCNEncoder` aggregates neighbours: ``"sparse"`` multiplies by the normalised
#: adjacency as a CSR matrix (and sparse features as CSR); ``"message"`` calls PyG's
#: ``GCNConv.forward`` (gather / scatter of ``[E, C]`` messages).
PROPAGATIONS: tuple[str, ...] = ("sparse", "message")

#: Feature matrices at most this dense (fraction of non-zeros) and at least this large are
#: multiplied as CSR in the first layer (CPU break-even of CSR x dense vs dense GEMM ≈ 1/16).
SPARSE_FEATURE_DENSITY: float = 0.05
SPARSE_FEATURE_MIN_NUMEL: int = 1 << 20

#: Default bounds of (R)ReLU's random negative slope (PyTorch defaults, used by GCA and gCooL).
RRELU_LOWER: float = 1.0 / 8.0
RRELU_UPPER: float = 1.0 / 3.0


class FixedRReLU(nn.Module):
    r"""GCA's "rrelu": ``F.rrelu(x, training=False)``, a deterministic leaky ReLU.

    .. math:: \sigma(x) = \max(x, 0) + a \min(x, 0), \qquad a = (l + u) / 2

    with l = 1/8, u = 1/3, so a ≈ 0.229 in training and evaluation alike (pitfall 6).
    """

    def __init__(self, lower: float = RRELU_LOWER, upper: float = RRELU_UPPER) -> None:
        super().__init__()
        self.lower = float(lower)
        self.upper = float(upper)

    @property
    def negative_slope(self) -> float:
        return (self.lower + self.upper) / 2.0

    def forward(self, x: Tensor) -> Tensor:
        return F.rrelu(x, lower=self.lower, upper=self.upper, training=False)

    def extra_repr(self) -> str:
        return f"lower={self.lower}, upper={self.upper}, slope={self.negative_slope:.6f}"


#: Activation names and their constructors. "prelu" is ONE learnable slope shared by all layers
#: (GRACE/GCA); "rrelu" is GCA's fixed slope; "rrelu_random" is gCooL's ``nn.RReLU`` module with
#: random slopes in training mode.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "prelu": lambda: nn.PReLU(num_parameters=1),
    "rrelu": FixedRReLU,
    "rrelu_random": lambda: nn.RReLU(RRELU_LOWER, RRELU_UPPER),
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


def make_activation(name: str) -> nn.Module:
    """Build the activation module called ``name`` (one of :data:`ACTIVATIONS`)."""
    if not isinstance(name, str):
        raise TypeError(f"activation: expected a name (str) or an nn.Module, "
                        f"got {type(name).__name__}")
    key = name.lower()
    if key not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[key]()


def gcn_adjacency(edge_index: Tensor, num_nodes: int, edge_weight: Tensor | None = None, *,
                  add_self_loops: bool = True, improved: bool = False,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    r"""GCN's normalised adjacency :math:`\hat{A} = \tilde{D}^{-1/2}(A + I)\tilde{D}^{-1/2}` as a
    sparse CSR ``[N, N]`` matrix with ``(\hat{A} H)_i = \sum_{j \to i} \hat{A}_{ij} H_j``.

    Same normalisation as ``GCNConv`` (``gcn_norm``: missing self-loops added with weight 1, or 2
    when ``improved``; degrees over incoming edges; messages flow source → target).

    Args:
        edge_index: ``[2, E]`` directed edges ``source → target``, node ids in ``[0, N)``.
        num_nodes: ``N``.
        edge_weight: optional ``[E]`` weights.

    Raises:
        ValueError / TypeError: ``edge_index`` not an integer ``[2, E]`` with ids in
            ``[0, num_nodes)``, or ``edge_weight`` not ``E`` floats.
    """
    check_edge_index("edge_index", edge_index, num_nodes)
    _check_edge_weight(edge_weight, edge_index)
    return _gcn_adjacency(edge_index, num_nodes, edge_weight, add_self_loops=add_self_loops,
                          improved=improved, dtype=dtype)


def _check_edge_weight(edge_weight: Tensor | None, edge_index: Tensor) -> None:
    if edge_weight is not None:
        check_tensor("edge_weight", edge_weight, ndim=1, floating=True)
        if edge_weight.numel() != edge_index.size(1):
            raise ValueError(f"edge_weight: expected {edge_index.size(1)} values (one per "
                             f"edge), got {edge_weight.numel()}")


def _gcn_adjacency(edge_index: Tensor, num_nodes: int, edge_weight: Tensor | None, *,
                   add_self_loops: bool, improved: bool, dtype: torch.dtype) -> Tensor:
    """:func:`gcn_adjacency` without the input checks (the caller made them)."""
    ei, w = gcn_norm(edge_index, edge_weight, num_nodes, improved=improved,
                     add_self_loops=add_self_loops, dtype=dtype)
    with _quiet_csr():
        return to_torch_csr_tensor(ei.flip(0), w, size=(num_nodes, num_nodes))


@contextlib.contextmanager
def _quiet_csr() -> Iterator[None]:
    """Silence torch's "CSR support is in beta" / "invariant checks disabled" notices."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Sparse CSR tensor support is in beta")
        warnings.filterwarnings("ignore", message=r"Sparse invariant checks are implicitly")
        yield


def gcn_layer(conv: GCNConv, h: Tensor, adjacency: Tensor) -> Tensor:
    r"""One ``GCNConv`` as sparse products: :math:`\hat{A} (H W^\top) + b` (or
    :math:`(\hat{A} H) W^\top + b` when the input is the narrower side).

    ``h`` may be a sparse CSR matrix (bag-of-words features): then ``H W^T`` is a CSR x dense
    product and no ``[N, C]`` dense copy of ``H`` or ``[E, C]`` message tensor is built.

    Args:
        conv: the layer whose ``lin.weight [C_out, C_in]`` and ``bias [C_out]`` are used.
        h: ``[N, C_in]`` node features (dense or sparse CSR).
        adjacency: ``[N, N]`` CSR from :func:`gcn_adjacency`.

    Returns:
        ``[N, C_out]``, equal to ``conv(h, edge_index)`` up to float rounding.
    """
    weight = conv.lin.weight
    if h.layout == torch.sparse_csr:
        out = _spmm(adjacency, _spmm(h, weight.t()))
    elif h.size(1) < weight.size(0):
        out = _spmm(adjacency, h) @ weight.t()
    else:
        out = _spmm(adjacency, h @ weight.t())
    return out if conv.bias is None else out.add_(conv.bias)   # in place: one [N, C] less


def _spmm(sparse: Tensor, dense: Tensor) -> Tensor:
    """``sparse @ dense`` in the sparse matrix's dtype, outside autocast (CSR products have no
    bf16 / fp16 kernels on CPU; the dense matmuls around them still autocast)."""
    with torch.autocast(dense.device.type, enabled=False):
        return torch.sparse.mm(sparse, dense.to(sparse.dtype))


def _as_sparse_features(x: Tensor) -> Tensor:
    """``x`` as CSR when it is large, sparse enough and needs no gradient; else ``x``."""
    if x.requires_grad or x.numel() < SPARSE_FEATURE_MIN_NUMEL or x.layout != torch.strided:
        return x
    nnz = int(torch.count_nonzero(x))
    if nnz > SPARSE_FEATURE_DENSITY * x.numel():
        return x
    with _quiet_csr():
        return x.to_sparse_csr()


def _check_channels(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected a positive int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value}")
    return value


class GCNEncoder(nn.Module):
    r"""GRACE/GCA graph encoder: ``num_layers`` GCNConv layers, activation after each one.

    .. math:: H^{(l)} = \sigma\big(\hat{A} H^{(l-1)} W_l + b_l\big), \quad l = 1..k,
              \qquad f(X, A) = H^{(k)} \in \mathbb{R}^{N \times h}

    Widths: ``in_channels → m → … → m → h`` with ``m = mid_channels`` (default ``2h``, GRACE/GCA;
    gCooL tunes it per dataset), ``in_channels → h`` when k = 1. GCNConv adds
    self-loops and uses the symmetric normalisation. The last layer is activated too (pitfall 7),
    so with ReLU the embedding is non-negative. A single activation module is shared by all
    layers, which for ``"prelu"`` means one learnable slope for the whole encoder.

    Args:
        in_channels: Input feature size F.
        hidden_channels: Output size h (the inner layers have 2h channels).
        num_layers: Number of GCNConv layers k ≥ 1 (GRACE/GCA: 2).
        activation: One of ``"relu"``, ``"prelu"``, ``"rrelu"`` (GCA: fixed slope
            (1/8 + 1/3)/2), ``"rrelu_random"`` (gCooL: ``nn.RReLU``, random slopes in training),
            ``"elu"``, ``"leaky_relu"`` (slope 0.01), or an ``nn.Module`` used as is (shared).
        mid_channels: Width of the inner layers (``None``: ``2 * hidden_channels``).
        propagation: ``"sparse"`` (default): :math:`\hat{A}` as one CSR matrix per forward,
            shared by the layers, and sparse input features (at most 5 % non-zeros) as CSR:
            no ``[E, C]`` messages, so wide layers (gCooL's 7,105 on Coauthor-CS) take a
            fraction of the time and memory. ``"message"``: PyG's ``GCNConv.forward``. Same
            parameters and the same function up to float rounding.

    Shapes:
        ``forward(x [N, F], edge_index [2, E], edge_weight [E] | None) -> [N, h]``, or
        ``forward(data)`` with a PyG ``Data`` (uses ``data.x``, ``data.edge_index`` and
        ``data.edge_weight`` when present).
    """

    def __init__(self, in_channels: int, hidden_channels: int, num_layers: int = 2,
                 activation: str | nn.Module = "relu", mid_channels: int | None = None,
                 propagation: str = "sparse") -> None:
        super().__init__()
        self.propagation = check_choice("propagation", propagation, PROPAGATIONS)
        self.in_channels = _check_channels("in_channels", in_channels)
        self.hidden_channels = _check_channels("hidden_channels", hidden_channels)
        self.mid_channels = (2 * self.hidden_channels if mid_channels is None
                             else _check_channels("mid_channels", mid_channels))
        if isinstance(num_layers, bool) or not isinstance(num_layers, int):
            raise TypeError(f"num_layers: expected an int >= 1, got {type(num_layers).__name__}")
        if num_layers < 1:
            raise ValueError(f"num_layers: expected an int >= 1, got {num_layers}")
        self.num_layers = num_layers
        if isinstance(activation, nn.Module):
            self.activation_name = type(activation).__name__
            self.activation = activation
        else:
            self.activation = make_activation(activation)
            self.activation_name = activation.lower()

        h, wide = hidden_channels, self.mid_channels
        if num_layers == 1:
            dims = [in_channels, h]
        else:
            dims = [in_channels] + [wide] * (num_layers - 1) + [h]
        self.convs = nn.ModuleList(GCNConv(dims[i], dims[i + 1]) for i in range(num_layers))

    @property
    def out_channels(self) -> int:
        """Embedding size h."""
        return self.hidden_channels

    @property
    def negative_slope(self) -> float | Tensor | None:
        """Slope of the activation for negative inputs, when it is a (leaky) ReLU.

        0 for ReLU, 0.01 for leaky ReLU, (1/8 + 1/3)/2 for GCA's rrelu, the learnable parameter
        [1] for PReLU, ``None`` for activations that are not piecewise linear with one fixed
        slope (ELU, random RReLU, custom modules). Used by bound-propagation methods (POT).
        """
        act = self.activation
        if isinstance(act, nn.ReLU):
            return 0.0
        if isinstance(act, nn.LeakyReLU):
            return float(act.negative_slope)
        if isinstance(act, FixedRReLU):
            return act.negative_slope
        if isinstance(act, nn.PReLU):
            return act.weight
        return None

    def reset_parameters(self) -> None:
        """Re-initialise every layer (and a PReLU slope)."""
        for conv in self.convs:
            conv.reset_parameters()
        if isinstance(self.activation, nn.PReLU):
            nn.init.constant_(self.activation.weight, 0.25)

    def forward(self, x: Any, edge_index: Tensor | None = None,
                edge_weight: Tensor | None = None) -> Tensor:
        """Encode nodes: ``x`` [N, F], ``edge_index`` [2, E] → [N, h] (or ``forward(data)``)."""
        if not isinstance(x, Tensor) and hasattr(x, "x") and hasattr(x, "edge_index"):
            if edge_index is not None:
                raise TypeError("edge_index: expected None when a Data object is passed, "
                                f"got {type(edge_index).__name__}")
            data = x
            x, edge_index = data.x, data.edge_index
            if edge_weight is None:
                edge_weight = getattr(data, "edge_weight", None)
        check_tensor("x", x, ndim=2, floating=True)
        if x.size(1) != self.in_channels:
            raise ValueError(f"x: expected {self.in_channels} feature columns (in_channels), "
                             f"got shape {tuple(x.shape)}")
        if edge_index is None:
            raise TypeError("edge_index: expected an integer tensor [2, E], got None")
        check_edge_index("edge_index", edge_index, x.size(0))  # ids < N: one aminmax
        _check_edge_weight(edge_weight, edge_index)
        if self.propagation == "message":
            h = x
            for conv in self.convs:
                h = self.activation(conv(h, edge_index, edge_weight))
            return h
        adjacency = _gcn_adjacency(edge_index, x.size(0), edge_weight, add_self_loops=True,
                                   improved=False, dtype=x.dtype)
        h = _as_sparse_features(x)
        for conv in self.convs:
            h = self.activation(gcn_layer(conv, h, adjacency))
        return h

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, hidden_channels={self.hidden_channels}, "
                f"num_layers={self.num_layers}, activation={self.activation_name!r}, "
                f"propagation={self.propagation!r}")


class ProjectionHead(nn.Module):
    r"""GRACE's projection head :math:`g(z) = W_2\,\mathrm{ELU}(W_1 z + b_1) + b_2`.

    Args:
        in_channels: Embedding size h.
        hidden_channels: Projection size p.
        out_channels: Output size (defaults to ``in_channels``: GRACE maps back to h).

    Shapes:
        ``forward(z [N, in_channels]) -> [N, out_channels]``.
    """

    def __init__(self, in_channels: int, hidden_channels: int,
                 out_channels: int | None = None) -> None:
        super().__init__()
        self.in_channels = _check_channels("in_channels", in_channels)
        self.hidden_channels = _check_channels("hidden_channels", hidden_channels)
        self.out_channels = (in_channels if out_channels is None
                             else _check_channels("out_channels", out_channels))
        self.fc1 = nn.Linear(self.in_channels, self.hidden_channels)
        self.fc2 = nn.Linear(self.hidden_channels, self.out_channels)

    def reset_parameters(self) -> None:
        self.fc1.reset_parameters()
        self.fc2.reset_parameters()

    def forward(self, z: Tensor) -> Tensor:
        """Project ``z`` [N, in_channels] → [N, out_channels]."""
        check_tensor("z", z, ndim=2, floating=True)
        if z.size(1) != self.in_channels:
            raise ValueError(f"z: expected {self.in_channels} columns (in_channels), "
                             f"got shape {tuple(z.shape)}")
        return self.fc2(F.elu(self.fc1(z)))
