"""Validation of graph inputs (PyG ``Data``) before training or evaluation.

:func:`validate_graph` turns malformed graphs into one clear error that names the attribute, says
what was expected and what came, instead of a silent NaN or an index error deep inside a message-
passing kernel. It costs O(N·F + E) (one finiteness pass over ``x``, one min/max over
``edge_index``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from contrastkit.core.checks import check_finite

__all__ = ["validate_graph", "GraphDTypeError"]

_MASK_KEYS = ("train_mask", "val_mask", "test_mask")


class GraphDTypeError(TypeError, ValueError):
    """Wrong dtype of a graph tensor; both a ``TypeError`` and a ``ValueError``."""


def _is_integer(t: Tensor) -> bool:
    return not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)


def validate_graph(data: Any, *, name: str = "data", check_labels: bool = True) -> Any:
    """Check that ``data`` is a well-formed node-level graph; return it unchanged.

    Checks, in order:

    * ``x``: present, a floating tensor [N, F] with N ≥ 1 (else "empty graph") and F ≥ 1,
      all values finite;
    * ``edge_index``: present, an integer tensor [2, E], every index in [0, N);
    * ``edge_weight`` / ``edge_attr`` (when present): E rows, ``edge_weight`` finite;
    * ``y`` (when present and ``check_labels``): N rows;
    * ``train_mask`` / ``val_mask`` / ``test_mask`` (when present): N entries.

    Args:
        data: A PyG ``Data`` (or any object with these attributes).
        name: Name used in messages (e.g. ``"data"`` → ``"data.edge_index: ..."``).
        check_labels: Check that ``y`` has one row per node (set ``False`` for graph-level
            labels).

    Returns:
        ``data``.

    Raises:
        ValueError: For a missing, empty, non-finite or mis-shaped attribute, out-of-range node
            indices (the message gives the offending min/max and N) or a length mismatch.
        TypeError: For an attribute that is not a tensor. A wrong dtype raises
            :class:`GraphDTypeError`, which is both a ``TypeError`` and a ``ValueError``.
    """
    if data is None:
        raise TypeError(f"{name}: expected a torch_geometric Data object, got None")

    # --- node features --------------------------------------------------------------------
    x = getattr(data, "x", None)
    if x is None:
        raise ValueError(f"{name}.x: expected a node feature tensor [N, F], got None "
                         f"(missing node features)")
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}.x: expected a torch.Tensor [N, F], got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name}.x: expected a 2-D tensor [N, F], got shape {tuple(x.shape)}")
    num_nodes = x.size(0)
    if num_nodes == 0:
        raise ValueError(f"{name}.x: empty graph: expected at least one node, "
                         f"got shape {tuple(x.shape)}")
    if x.size(1) == 0:
        raise ValueError(f"{name}.x: expected at least one feature column, "
                         f"got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise GraphDTypeError(f"{name}.x: expected a floating-point tensor, got dtype {x.dtype}")
    check_finite(f"{name}.x", x)

    # --- edges ----------------------------------------------------------------------------
    edge_index = getattr(data, "edge_index", None)
    if edge_index is None:
        raise ValueError(f"{name}.edge_index: expected an integer tensor [2, E], got None")
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"{name}.edge_index: expected a torch.Tensor [2, E], "
                        f"got {type(edge_index).__name__}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"{name}.edge_index: expected shape [2, E], "
                         f"got {tuple(edge_index.shape)}")
    if not _is_integer(edge_index):
        raise GraphDTypeError(f"{name}.edge_index: expected an integer tensor [2, E], "
                              f"got dtype {edge_index.dtype}")
    num_edges = edge_index.size(1)
    if num_edges > 0:
        lo, hi = int(edge_index.min()), int(edge_index.max())
        if lo < 0:
            raise ValueError(f"{name}.edge_index: expected node indices >= 0, got min {lo} "
                             f"(num_nodes={num_nodes})")
        if hi >= num_nodes:
            raise ValueError(f"{name}.edge_index: expected node indices < num_nodes={num_nodes} "
                             f"(the number of rows of {name}.x), got max {hi}")

    edge_weight = getattr(data, "edge_weight", None)
    if edge_weight is not None:
        if not isinstance(edge_weight, Tensor):
            raise TypeError(f"{name}.edge_weight: expected a torch.Tensor [E], "
                            f"got {type(edge_weight).__name__}")
        if edge_weight.dim() != 1 or edge_weight.numel() != num_edges:
            raise ValueError(f"{name}.edge_weight: expected shape [{num_edges}] (one weight per "
                             f"edge), got {tuple(edge_weight.shape)}")
        check_finite(f"{name}.edge_weight", edge_weight)
    edge_attr = getattr(data, "edge_attr", None)
    if isinstance(edge_attr, Tensor) and (edge_attr.dim() == 0 or edge_attr.size(0) != num_edges):
        raise ValueError(f"{name}.edge_attr: expected {num_edges} rows (one per edge), "
                         f"got shape {tuple(edge_attr.shape)}")

    # --- labels and masks -------------------------------------------------------------------
    y = getattr(data, "y", None)
    if check_labels and y is not None:
        if not isinstance(y, Tensor):
            raise TypeError(f"{name}.y: expected a torch.Tensor, got {type(y).__name__}")
        if y.dim() == 0 or y.size(0) != num_nodes:
            raise ValueError(f"{name}.y: expected one label per node ({num_nodes} rows), "
                             f"got shape {tuple(y.shape)}")
    for key in _MASK_KEYS:
        mask = getattr(data, key, None)
        if isinstance(mask, Tensor) and (mask.dim() == 0 or mask.size(0) != num_nodes):
            raise ValueError(f"{name}.{key}: expected {num_nodes} entries (one per node), "
                             f"got shape {tuple(mask.shape)}")
    return data
