r"""SwAV: Sinkhorn-Knopp codes and the swapped-prediction loss over crops (incl. multi-crop).

Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments",
NeurIPS 2020. Every crop's normalised projection is scored against ``K`` normalised prototypes,
``scores = z C`` (``[B, K]``). The codes of a global crop solve the entropy-regularised
equipartition problem

.. math::

    Q^* = \arg\max_{Q \in \mathcal{Q}} \mathrm{Tr}(Q^\top C^\top Z) + \varepsilon H(Q), \quad
    \mathcal{Q} = \{ Q \in \mathbb{R}_+^{K \times B} : Q 1_B = \tfrac{1}{K} 1_K,\;
                     Q^\top 1_K = \tfrac{1}{B} 1_B \}

whose solution ``Diag(a) exp(C^T Z / eps) Diag(b)`` is found by alternating row (prototype) and
column (sample) normalisation (3 iterations), after which every sample's code is rescaled to sum
to 1. Every other crop predicts it with ``p = softmax(scores / tau)``:

.. math::

    \mathcal{L} = \frac{1}{V_g} \sum_{i \in \text{global}} \frac{1}{V - 1} \sum_{v \ne i}
        \frac{1}{B} \sum_b \Big( -\sum_k q_{i,b}^{(k)} \log p_{v,b}^{(k)} \Big)

Codes come from the ``V_g`` global crops only; small crops only predict (paper, Section 3.2;
official ``main_swav.py``). The codes are computed under no-grad, in float32, in the log domain
(``exp(S / eps)`` reaches ``e^{20}`` at ``eps = 0.05``, beyond fp16). The log-domain iteration is
exactly the official one: the first division by the total sum is a constant that the following
row normalisation removes.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..checks import (check_embeddings, check_finite, check_int, check_positive,
                      check_same_device, check_tensor, check_weights)
from ..distributed import get_world_size, is_distributed
from ..similarity import l2_normalize

__all__ = ["sinkhorn_knopp", "swav_loss", "SwAVLoss", "SwAVPrototypes"]


def _global_logsumexp(x: Tensor, dim: int, distributed: bool) -> Tensor:
    """``log sum exp`` along ``dim``; with ``distributed`` also summed over every process."""
    if not distributed:
        return torch.logsumexp(x, dim=dim, keepdim=True)
    m = x.amax(dim=dim, keepdim=True)
    dist.all_reduce(m, op=dist.ReduceOp.MAX)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    total = (x - m).exp().sum(dim=dim, keepdim=True)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.log() + m


@torch.no_grad()
def sinkhorn_knopp(scores: Tensor, *, epsilon: float = 0.05, iterations: int = 3,
                   gather: bool = False) -> Tensor:
    r"""SwAV's equipartitioned soft codes for ``scores [B, K]`` (no grad), ``[B, K]``.

    Starting from ``Q = exp(scores / epsilon)`` (``K x B``), each iteration divides every
    prototype row by its sum and by ``K`` (prototype marginals ``1/K``), then every sample column
    by its sum and by ``B`` (sample marginals ``1/B``); finally the codes are multiplied by ``B``,
    so each sample's code sums to 1 and each prototype receives ``B/K`` in total (exactly after
    the row step, approximately after the final column step). Computed in the log domain in
    float32 (float64 input stays float64).

    Args:
        scores: ``[B, K]`` prototype scores ``z^T c_k`` of one crop (plus queue rows if used).
        epsilon: entropy weight ``eps > 0`` (0.05; lower it, e.g. 0.03, against collapse).
        iterations: Sinkhorn iterations (3).
        gather: in a distributed run, all-reduce the prototype sums so the codes are those of the
            global batch (``B`` = global batch size); rows stay local.

    Returns:
        ``[B, K]`` codes in the dtype of the computation (float32 or float64).
    """
    check_tensor("scores", scores, ndim=2, floating=True)
    if scores.size(0) == 0 or scores.size(1) == 0:
        raise ValueError(f"scores: expected a non-empty [B, K] tensor, got shape "
                         f"{tuple(scores.shape)}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores: expected finite values, got NaN or infinite entries")
    check_positive("epsilon", epsilon)
    check_int("iterations", iterations, 1)
    distributed = bool(gather) and is_distributed() and get_world_size() > 1
    dtype = torch.promote_types(scores.dtype, torch.float32)
    B, K = scores.shape
    if distributed:
        b = torch.tensor([float(B)], dtype=dtype, device=scores.device)
        dist.all_reduce(b, op=dist.ReduceOp.SUM)
        B_total = float(b.item())
    else:
        B_total = float(B)
    log_q = scores.to(dtype) / epsilon                    # [B, K], log of Q^T up to a constant
    for _ in range(iterations):
        # prototype (row of Q) marginals 1/K: sums over samples, across processes
        log_q = log_q - _global_logsumexp(log_q, 0, distributed) - math.log(K)
        # sample (column of Q) marginals 1/B: sums over prototypes, local
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(B_total)
    return (log_q + math.log(B_total)).exp()


def swav_loss(scores: Sequence[Tensor], *, num_global: int = 2, temperature: float = 0.1,
              epsilon: float = 0.05, iterations: int = 3,
              queue_scores: Sequence[Tensor | None] | None = None, gather: bool = False,
              codes: Sequence[Tensor] | None = None) -> Tensor:
    r"""SwAV's swapped-prediction loss over ``V`` crops, the first ``num_global`` being global.

    Args:
        scores: ``V`` tensors ``[B, K]`` (prototype scores ``normalize(z) @ C`` of each crop, rows
            aligned: row ``b`` is the same image in every crop), global crops first.
        num_global: ``V_g``, the crops whose codes are computed (2), at most ``V``; every crop
            other than ``i`` (global or small) predicts global crop ``i``'s codes.
        temperature: softmax temperature ``tau`` of the predictions (0.1).
        epsilon: Sinkhorn entropy weight (0.05).
        iterations: Sinkhorn iterations (3).
        queue_scores: optional, one ``[L, K]`` tensor (or ``None``) per global crop: the queued
            features of that crop re-scored with the current prototypes; appended to its Sinkhorn
            problem, only the batch rows' codes are used.
        gather: distributed Sinkhorn (sums over every process's batch).
        codes: precomputed codes ``[B, K]`` for the global crops (skips Sinkhorn).

    Returns:
        Scalar loss ``1/V_g sum_i 1/(V-1) sum_{v != i} mean_b CE(q_i, softmax(s_v / tau))``.

    Raises:
        ValueError / TypeError: ``scores`` not a list of at least 2 non-empty, finite ``[B, K]``
            tensors of one shape and device; ``num_global`` not in ``[1, V]``; ``queue_scores``
            / ``codes`` not a list of ``num_global`` entries (``[L, K]`` finite scores / ``[B, K]``
            finite non-negative codes); both ``queue_scores`` and ``codes`` given (the queue
            only feeds Sinkhorn, which precomputed codes skip).
    """
    if isinstance(scores, Tensor) or not isinstance(scores, (list, tuple)):
        raise TypeError(f"scores: expected a list of [B, K] tensors (one per crop), got "
                        f"{type(scores).__name__}")
    V = len(scores)
    if V < 2:
        raise ValueError(f"scores: expected at least 2 crops, got {V}")
    for v, s in enumerate(scores):
        # every crop, global or small, is checked: a small crop only predicts, so its NaN
        # would otherwise pass straight into the loss (the global ones also go through Sinkhorn)
        check_embeddings(f"scores[{v}]", s, ndim=2)
        if s.shape != scores[0].shape:
            raise ValueError(f"scores[{v}]: expected shape {tuple(scores[0].shape)} like "
                             f"scores[0] (every crop: the same B images, the same K "
                             f"prototypes), got {tuple(s.shape)}")
        check_same_device("scores[0]", scores[0], f"scores[{v}]", s)
    check_int("num_global", num_global, 1)
    if num_global > V:
        raise ValueError(f"num_global: expected at most the number of crops ({V}), got "
                         f"{num_global}")
    check_positive("temperature", temperature)
    B, K = scores[0].shape
    for name, seq in (("queue_scores", queue_scores), ("codes", codes)):
        if seq is None:
            continue
        if isinstance(seq, Tensor) or not isinstance(seq, (list, tuple)):
            raise TypeError(f"{name}: expected a list of {num_global} entries (one per global "
                            f"crop), got {type(seq).__name__}")
        if len(seq) != num_global:
            raise ValueError(f"{name}: expected {num_global} entries (one per global crop), "
                             f"got {len(seq)}")
    if codes is not None and queue_scores is not None:
        raise ValueError("queue_scores and codes: expected at most one of them (precomputed "
                         "codes skip Sinkhorn, so the queue would be ignored), got both")
    if codes is not None:
        for i, q in enumerate(codes):
            check_tensor(f"codes[{i}]", q, ndim=2, floating=True)
            if q.shape != scores[0].shape:
                raise ValueError(f"codes[{i}]: expected shape {tuple(scores[0].shape)} (the "
                                 f"scores' [B, K]), got {tuple(q.shape)}")
            check_same_device("scores[0]", scores[0], f"codes[{i}]", q)
            check_weights(f"codes[{i}]", q.detach())
    # predictions in float32 at least (bf16/fp16 scores are upcast before the log-softmax)
    log_p = [torch.log_softmax(s.to(torch.promote_types(s.dtype, torch.float32)) / temperature,
                               dim=1) for s in scores]
    total = log_p[0].new_zeros(())
    for i in range(num_global):
        if codes is not None:
            q = codes[i].detach()
        else:
            s = scores[i].detach()
            extra = None if queue_scores is None else queue_scores[i]
            if extra is not None:
                check_tensor(f"queue_scores[{i}]", extra, ndim=2, floating=True)
                if extra.size(1) != s.size(1):
                    raise ValueError(f"queue_scores[{i}]: expected {s.size(1)} prototype "
                                     f"columns, got shape {tuple(extra.shape)}")
                check_same_device("scores[0]", s, f"queue_scores[{i}]", extra)
                check_finite(f"queue_scores[{i}]", extra)
                s = torch.cat([s, extra.detach().to(s.dtype)], 0)
            q = sinkhorn_knopp(s, epsilon=epsilon, iterations=iterations, gather=gather)[:B]
        sub = log_p[0].new_zeros(())
        for v in range(V):
            if v != i:
                sub = sub - (q.to(log_p[v].dtype) * log_p[v]).sum(1).mean()
        total = total + sub / (V - 1)
    return total / num_global


class SwAVPrototypes(nn.Module):
    """``K`` prototype vectors ``C`` (``weight [K, D]``); scores ``normalize(z) @ C^T``.

    Call :meth:`normalize_` before every forward (SwAV re-normalises the prototypes each step;
    exclude ``weight`` from weight decay when relying on the norm).
    """

    def __init__(self, dim: int, num_prototypes: int) -> None:
        super().__init__()
        check_int("dim", dim, 1)
        check_int("num_prototypes", num_prototypes, 1)
        self.weight = nn.Parameter(torch.empty(num_prototypes, dim))
        nn.init.normal_(self.weight)
        self.normalize_()

    @torch.no_grad()
    def normalize_(self) -> None:
        """L2-normalise every prototype in place (no grad)."""
        self.weight.copy_(l2_normalize(self.weight, dim=1))

    def forward(self, z: Tensor) -> Tensor:
        check_embeddings("z", z, ndim=2)
        if z.size(1) != self.weight.size(1):
            raise ValueError(f"z: expected feature size {self.weight.size(1)}, got shape "
                             f"{tuple(z.shape)}")
        return l2_normalize(z, dim=1) @ self.weight.t().to(z.dtype)


class SwAVLoss(nn.Module):
    """Module wrapper of :func:`swav_loss`."""

    def __init__(self, num_global: int = 2, temperature: float = 0.1, epsilon: float = 0.05,
                 iterations: int = 3, gather: bool = False) -> None:
        super().__init__()
        check_int("num_global", num_global, 1)
        check_positive("temperature", temperature)
        check_positive("epsilon", epsilon)
        check_int("iterations", iterations, 1)
        self.num_global, self.temperature = num_global, temperature
        self.epsilon, self.iterations, self.gather = epsilon, iterations, gather

    def forward(self, scores: Sequence[Tensor],
                queue_scores: Sequence[Tensor | None] | None = None) -> Tensor:
        return swav_loss(scores, num_global=self.num_global, temperature=self.temperature,
                         epsilon=self.epsilon, iterations=self.iterations,
                         queue_scores=queue_scores, gather=self.gather)
