"""Similarity functions ``s(a_i, b_j)`` used by the loss engine (before the temperature).

All functions take anchors ``a: [B, D]`` and candidates ``b: [M, D]`` and return ``[B, M]``.
"""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
import torch
from torch import Tensor

#: names accepted by the engine's ``similarity`` argument
SIMILARITIES = ("cosine", "dot", "neg_sq_dist")


#: floating dtype -> (integer dtype of the same width, mask of its exponent bits)
_EXPONENT_BITS = {torch.float64: (torch.int64, 0x7FF0000000000000),
                  torch.float32: (torch.int32, 0x7F800000),
                  torch.bfloat16: (torch.int16, 0x7F80),
                  torch.float16: (torch.int16, 0x7C00)}


def l2_normalize(x: Tensor, dim: int = -1, eps: float = 1e-12) -> Tensor:
    r"""``x / max(‖x‖, eps)`` along ``dim``: :func:`torch.nn.functional.normalize`, without
    overflow.

    ``F.normalize`` squares the entries: in float32 a row with entries above ~1.8e19 (in float16
    a row whose norm exceeds 65504) has an infinite norm and silently becomes a zero vector
    (every cosine 0, no gradient). Here each row is first divided by a power of two close to its
    largest absolute entry (the largest power of two not above it, read from its exponent bits; 1
    for rows with entries at most 1; a detached scale). Dividing by a power of two is exact and
    normalising is scale-invariant, so wherever ``F.normalize`` does not overflow the result and
    its gradient are bit-identical to it (float32, float64, bfloat16; float16 to its rounding),
    and ``eps`` keeps its meaning.

    Args:
        x: input, any shape (e.g. ``[N, D]``).
        dim: the dimension to normalise.
        eps: lower bound on the norm.

    Returns:
        Tensor of ``x``'s shape with unit-norm slices along ``dim`` (zero slices stay zero).
    """
    if x.size(dim) == 0 or x.dtype not in _EXPONENT_BITS:  # nothing to scale (amax has no
        return F.normalize(x, dim=dim, eps=eps)              # identity) / not a float type
    as_int, exponent_bits = _EXPONENT_BITS[x.dtype]
    top = x.detach().abs().amax(dim=dim, keepdim=True)
    # the largest power of two <= top: keep the exponent bits, clear the mantissa (exact, and
    # unlike torch.frexp available on every backend)
    power = (top.view(as_int) & exponent_bits).view(x.dtype)
    return F.normalize(x / power.clamp_min(1.0), dim=dim, eps=eps)


def cosine_similarity_matrix(a: Tensor, b: Tensor, eps: float = 1e-12) -> Tensor:
    r"""Cosine similarity :math:`s_{ij} = \frac{a_i^\top b_j}{\|a_i\| \|b_j\|}`, ``[B, M]``."""
    return l2_normalize(a, eps=eps) @ l2_normalize(b, eps=eps).transpose(-1, -2)


def dot_similarity_matrix(a: Tensor, b: Tensor) -> Tensor:
    r"""Dot product :math:`s_{ij} = a_i^\top b_j`, ``[B, M]``."""
    return a @ b.transpose(-1, -2)


def neg_sq_dist_matrix(a: Tensor, b: Tensor) -> Tensor:
    r"""Negative squared distance :math:`s_{ij} = -\|a_i - b_j\|^2` (RBF form), ``[B, M]``.

    Computed as :math:`2 a_i^\top b_j - \|a_i\|^2 - \|b_j\|^2`, clamped at 0 from above.
    """
    sq = 2.0 * (a @ b.transpose(-1, -2))
    sq = sq - (a * a).sum(-1, keepdim=True) - (b * b).sum(-1).unsqueeze(-2)
    return sq.clamp(max=0.0)


def paired_similarity(a: Tensor, b: Tensor, kind: str = "cosine") -> Tensor:
    """Row-wise ``sim(a[..., i, :], b[..., i, :])`` along the last dimension, with broadcasting.

    The engine's similarity kinds for explicit pairs (``[..., D]`` each, result ``[...]``).
    """
    if kind == "cosine":
        a, b = l2_normalize(a), l2_normalize(b)
    if kind in ("cosine", "dot"):
        return (a * b).sum(-1)
    return -(a - b).pow(2).sum(-1)


def get_similarity(kind: str) -> Callable[[Tensor, Tensor], Tensor]:
    """Return the similarity function called ``kind`` (one of :data:`SIMILARITIES`)."""
    table = {"cosine": cosine_similarity_matrix, "dot": dot_similarity_matrix,
             "neg_sq_dist": neg_sq_dist_matrix}
    if kind not in table:
        raise ValueError(f"similarity: expected one of {list(SIMILARITIES)}, got {kind!r}")
    return table[kind]
