r"""MoCo's queue loss and MoCHi's hard negative mixing (Kalantidis et al., NeurIPS 2020).

MoCo loss for query ``q`` (online encoder), positive key ``k`` (momentum encoder) and queue
``{n_1 ... n_Q}`` (keys of past batches, no grad):

.. math::

    \ell(q) = -\log \frac{e^{q^\top k/\tau}}{e^{q^\top k/\tau} + \sum_{n} e^{q^\top n/\tau}
                                             + \sum_{h \in H(q)} e^{q^\top h/\tau}}

MoCHi adds per-query synthetic negatives ``H(q)`` built from ``Q_N(q)``, the ``N`` queue entries
most similar to ``q``:

* type 1 (``s`` per query): :math:`h_k = \mathrm{normalise}(a_k n_i + (1 - a_k) n_j)`,
  ``n_i, n_j ~ Uniform(Q_N(q))``, ``a_k ~ U(0, 1)``;
* type 2 (``s'`` per query): :math:`h'_k = \mathrm{normalise}(b_k q + (1 - b_k) n_j)`,
  ``n_j ~ Uniform(Q_N(q))``, ``b_k ~ U(0, 0.5)`` (the query's share stays below one half).

Coefficients are drawn independently per query and per synthetic point; the synthetic points are
built under no-grad (gradient reaches the encoder only through ``q`` in the extra logits, as in
the unofficial reference that detaches) and are never enqueued. The queue keeps image ids so that
an image's own older key (the hardest "negative" when the queue outlives an epoch) can be
excluded from both the denominator and ``Q_N(q)``.

The ``B x Q`` queue term goes through the engine (:func:`~contrastkit.core.engine.row_statistics`,
blockwise for big queues); the positive and the ``B x (s + s')`` synthetic logits are per-row
and join it as a sum of log-sum-exps, in float32 at least.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..checks import (check_choice, check_embeddings, check_finite, check_int, check_positive,
                      check_same_device, check_tensor, scalar_temperature)
from ..engine import row_statistics
from ..similarity import SIMILARITIES, l2_normalize, paired_similarity

__all__ = ["moco_loss", "id_match_pairs", "mochi_negatives", "mochi_loss", "KeyQueue",
           "MoCoLoss", "MoCHiLoss"]


def id_match_pairs(ids: Tensor, queue_ids: Tensor) -> Tensor:
    """``[2, P]`` index of the pairs ``(b, j)`` with ``ids[b] == queue_ids[j] >= 0``.

    Sort-based (``O((B + Q) log Q)``), so no ``B x Q`` mask is formed. Negative ids never match
    (``-1`` marks an empty queue slot).
    """
    check_tensor("ids", ids, ndim=1, integer=True)
    check_tensor("queue_ids", queue_ids, ndim=1, integer=True)
    ids = ids.to(queue_ids.device)
    sorted_q, order = torch.sort(queue_ids)
    lo = torch.searchsorted(sorted_q, ids, right=False)
    hi = torch.searchsorted(sorted_q, ids, right=True)
    counts = torch.where(ids >= 0, hi - lo, torch.zeros_like(hi))
    rows = torch.repeat_interleave(torch.arange(ids.numel(), device=ids.device), counts)
    starts = torch.repeat_interleave(lo, counts)
    first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    offs = torch.arange(rows.numel(), device=ids.device) - first
    return torch.stack([rows, order[starts + offs]])


def _check_ids(queue: Tensor, queue_ids: Tensor | None, ids: Tensor | None, B: int
               ) -> Tensor | None:
    if (queue_ids is None) != (ids is None):
        raise ValueError("queue_ids and ids: expected both (to exclude an image's own queue "
                         "entries) or neither, got only "
                         + ("queue_ids" if ids is None else "ids"))
    if queue_ids is None:
        return None
    check_tensor("queue_ids", queue_ids, integer=True)
    check_tensor("ids", ids, ndim=1, integer=True)
    if queue_ids.dim() not in (1, 2) or queue_ids.size(0) != queue.size(0):
        raise ValueError(f"queue_ids: expected [{queue.size(0)}] ids (one per queue entry) or "
                         f"[{queue.size(0)}, K] (the K images a mixed entry is made of), got "
                         f"shape {tuple(queue_ids.shape)}")
    if ids.numel() != B:
        raise ValueError(f"ids: expected {B} ids (one per query), got {ids.numel()}")
    if queue_ids.dim() == 1:
        return id_match_pairs(ids, queue_ids)
    # an entry made of several images is excluded when any of them is the query's
    pairs = torch.cat([id_match_pairs(ids, col) for col in queue_ids.unbind(1)], 1)
    return torch.unique(pairs, dim=1)


def moco_loss(query: Tensor, key: Tensor, queue: Tensor, *, temperature: float | Tensor = 0.2,
              extra_negatives: Tensor | None = None, queue_ids: Tensor | None = None,
              ids: Tensor | None = None, decoupled: bool = False, similarity: str = "cosine",
              reduction: str = "mean", block_size: int | None = None) -> Tensor:
    r"""MoCo's InfoNCE of ``query`` against its own ``key`` and a queue of negatives.

    Args:
        query: ``[B, D]`` online-encoder embeddings (grad).
        key: ``[B, D]`` positive keys (momentum encoder; detach them yourself unless the method
            needs gradient through them, as Feature Transformation's ``k_hat`` does).
        queue: ``[Q, D]`` negatives; detached here (queue entries never carry gradient).
        temperature: ``tau`` (MoCo-v2: 0.2; lightly's CIFAR MoCo: 0.1).
        extra_negatives: optional ``[B, E, D]`` per-query negatives (MoCHi's synthetic points,
            seen by their own row only), used as given.
        queue_ids: ``[Q]`` image ids of the queue entries (``-1`` = none), or ``[Q, K]`` when
            an entry mixes ``K`` images (Feature Transformation's interpolated negatives).
        ids: ``[B]`` image ids of the queries; queue entries with the same id (any of their
            ``K`` ids) are excluded.
        decoupled: drop the positive from the denominator (DCL with a queue).
        similarity: ``"cosine"`` (default; MoCo's embeddings are unit vectors), ``"dot"`` (for
            transformed, non-unit features) or ``"neg_sq_dist"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``[B]``).
        block_size: engine row block for the ``B x Q`` term.

    Returns:
        Scalar loss (``[B]`` with ``reduction="none"``).
    """
    check_embeddings("query", query, ndim=2, finite=False)  # the engine checks the values
    check_embeddings("key", key, ndim=2)
    check_tensor("queue", queue, ndim=2, floating=True)
    if key.shape != query.shape:
        raise ValueError(f"key: expected shape {tuple(query.shape)} like query, got "
                         f"{tuple(key.shape)}")
    if queue.size(0) == 0 or queue.size(1) != query.size(1):
        raise ValueError(f"queue: expected a non-empty [Q, {query.size(1)}] tensor, got shape "
                         f"{tuple(queue.shape)}")
    check_choice("similarity", similarity, SIMILARITIES)
    check_choice("reduction", reduction, ("mean", "sum", "none"))
    B = query.size(0)
    excl = _check_ids(queue, queue_ids, ids, B)
    dtype = torch.promote_types(torch.promote_types(query.dtype, key.dtype), torch.float32)
    tau = scalar_temperature(temperature, dtype, query.device)
    q = query.to(dtype)
    l_pos = paired_similarity(q, key.to(dtype), similarity) / tau            # [B]
    stats = row_statistics(q, queue.detach().to(dtype), positives=None, temperature=tau,
                           similarity=similarity, exclude=excl, block_size=block_size)
    parts = [stats.lse]                                                        # [B]
    if extra_negatives is not None:
        check_tensor("extra_negatives", extra_negatives, ndim=3, floating=True)
        if extra_negatives.size(0) != B or extra_negatives.size(2) != query.size(1):
            raise ValueError(f"extra_negatives: expected shape [{B}, E, {query.size(1)}], got "
                             f"{tuple(extra_negatives.shape)}")
        check_same_device("query", query, "extra_negatives", extra_negatives)
        check_finite("extra_negatives", extra_negatives)
        if extra_negatives.size(1) > 0:
            h = extra_negatives.to(dtype)
            if similarity == "neg_sq_dist":
                l_extra = paired_similarity(q[:, None, :], h, similarity)
            else:  # one batched matmul, no [B, E, D] temporary
                qq = l2_normalize(q, dim=-1, eps=1e-12) if similarity == "cosine" else q
                l_extra = torch.bmm(h, qq[:, :, None]).squeeze(-1)
                if similarity == "cosine":
                    # norms accumulated in float64: float32 squares overflow above ~1e19
                    norm = torch.linalg.vector_norm(h, dim=-1, dtype=torch.float64)
                    l_extra = l_extra / norm.to(l_extra.dtype).clamp_min(1e-12)
            l_extra = l_extra / tau                                              # [B, E]
            parts.append(torch.logsumexp(l_extra, dim=1))
    if not decoupled:
        parts.append(l_pos)
    per_row = torch.logsumexp(torch.stack(parts, 0), dim=0) - l_pos
    if reduction == "none":
        return per_row
    return per_row.sum() if reduction == "sum" else per_row.mean()


@torch.no_grad()
def mochi_negatives(query: Tensor, queue: Tensor, *, num_hard: int = 1024, num_mix: int = 1024,
                    num_mix_query: int = 128, query_max: float = 0.5,
                    queue_ids: Tensor | None = None, ids: Tensor | None = None,
                    generator: torch.Generator | None = None, return_info: bool = False
                    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
    r"""MoCHi's synthetic hard negatives per query, ``[B, num_mix + num_mix_query, D]`` (no grad).

    Type-1 points (``num_mix``) come first, then type-2 points (``num_mix_query``); all are
    L2-normalised. ``Q_N(q)`` is the top-``num_hard`` queue entries by cosine similarity with
    ``q`` (after excluding the query's own image ids); the mixing indices are uniform over it.

    Args:
        query: ``[B, D]`` queries (detached, normalised here).
        queue: ``[Q, D]`` queue (normalised here).
        num_hard: ``N`` (clipped to the number of usable queue entries of each query).
        num_mix: ``s``, type-1 points per query (``a ~ U(0, 1)``).
        num_mix_query: ``s'``, type-2 points per query (``b ~ U(0, query_max)``).
        query_max: upper bound of the query's share ``b`` (0.5 in the paper), in ``[0, 1]``.
        queue_ids, ids: image ids (see :func:`moco_loss`); matching entries are never mixed.
        generator: random generator for the indices and coefficients.
        return_info: also return ``{"hard_indices" [B, N], "mix_index" [B, s, 2], "mix_coef"
            [B, s], "query_index" [B, s'], "query_coef" [B, s']}`` (queue indices, ``a``, ``b``;
            ``hard_indices`` entries beyond a query's usable count are ``-1``).

    Returns:
        ``[B, s + s', D]`` synthetic negatives (float32 at least), or ``(negatives, info)``.
    """
    check_embeddings("query", query, ndim=2, finite=False)  # mixed into the engine's inputs
    check_tensor("queue", queue, ndim=2, floating=True)
    if queue.size(0) == 0 or queue.size(1) != query.size(1):
        raise ValueError(f"queue: expected a non-empty [Q, {query.size(1)}] tensor, got shape "
                         f"{tuple(queue.shape)}")
    check_int("num_hard", num_hard, 1)
    check_int("num_mix", num_mix, 0)
    check_int("num_mix_query", num_mix_query, 0)
    if isinstance(query_max, bool) or not isinstance(query_max, (int, float)) \
            or not 0.0 <= float(query_max) <= 1.0:
        raise ValueError(f"query_max: expected a number in [0, 1], got {query_max!r}")
    B, D = query.shape
    excl = _check_ids(queue, queue_ids, ids, B)
    dtype = torch.promote_types(query.dtype, torch.float32)
    dev = query.device
    q = l2_normalize(query.detach().to(dtype), dim=1, eps=1e-12)
    n = l2_normalize(queue.detach().to(device=dev, dtype=dtype), dim=1, eps=1e-12)
    N = min(num_hard, n.size(0))
    scores = q @ n.t()                                                           # [B, Q]
    if excl is not None and excl.size(1):
        scores[excl[0], excl[1]] = float("-inf")
    top_val, top_idx = torch.topk(scores, N, dim=1)                             # sorted
    usable = torch.isfinite(top_val).sum(1)                                      # [B]
    if bool((usable == 0).any()):
        raise ValueError("queue_ids: every queue entry of some query has that query's own id; "
                         "no negative is left to mix")
    del scores

    gdev = generator.device if generator is not None else dev  # draw where the generator lives

    def uniform(shape: tuple[int, ...]) -> Tensor:
        return torch.rand(shape, generator=generator, device=gdev, dtype=dtype).to(dev)

    def pick(shape: tuple[int, ...]) -> Tensor:
        u = uniform(shape)
        cap = usable.view(B, *([1] * (len(shape) - 1))).to(dtype)
        pos = torch.minimum((u * cap).long(), usable.view_as(cap).long() - 1)
        return torch.gather(top_idx, 1, pos.reshape(B, -1)).reshape(shape)

    mix_index = pick((B, num_mix, 2))
    a = uniform((B, num_mix))
    query_index = pick((B, num_mix_query))
    b = uniform((B, num_mix_query)) * query_max
    out = torch.empty(B, num_mix + num_mix_query, D, device=dev, dtype=dtype)
    # a n_i + (1 - a) n_j = lerp(n_j, n_i, a);  b q + (1 - b) n_j = lerp(n_j, q, b)
    torch.lerp(n[mix_index[..., 1]], n[mix_index[..., 0]], a[..., None], out=out[:, :num_mix])
    torch.lerp(n[query_index], q[:, None, :].expand(B, num_mix_query, D), b[..., None],
               out=out[:, num_mix:])
    out.div_(torch.linalg.vector_norm(out, dim=-1, keepdim=True).clamp_min_(1e-12))
    if not return_info:
        return out
    hard = torch.where(torch.isfinite(top_val), top_idx, torch.full_like(top_idx, -1))
    return out, {"hard_indices": hard, "mix_index": mix_index, "mix_coef": a,
                 "query_index": query_index, "query_coef": b}


def mochi_loss(query: Tensor, key: Tensor, queue: Tensor, *, temperature: float | Tensor = 0.2,
               num_hard: int = 1024, num_mix: int = 1024, num_mix_query: int = 128,
               query_max: float = 0.5, queue_ids: Tensor | None = None,
               ids: Tensor | None = None, generator: torch.Generator | None = None,
               reduction: str = "mean", block_size: int | None = None) -> Tensor:
    """MoCo loss with MoCHi's synthetic negatives ``MoCHi(num_hard, num_mix, num_mix_query)``.

    Arguments as in :func:`moco_loss` and :func:`mochi_negatives` (cosine similarity).
    """
    extra = mochi_negatives(query, queue, num_hard=num_hard, num_mix=num_mix,
                            num_mix_query=num_mix_query, query_max=query_max,
                            queue_ids=queue_ids, ids=ids, generator=generator)
    return moco_loss(query, key, queue, temperature=temperature, extra_negatives=extra,
                     queue_ids=queue_ids, ids=ids, reduction=reduction, block_size=block_size)


class KeyQueue(nn.Module):
    """FIFO queue of ``size`` normalised keys ``[Q, D]`` with their image ids ``[Q]``.

    Buffers (saved in checkpoints): ``features`` (initialised to random unit vectors, as MoCo),
    ``ids`` (``-1`` = no image yet), the write pointer ``ptr`` and ``count`` (slots written).
    In a distributed run, gather the keys and ids of every process before :meth:`enqueue`.
    """

    features: Tensor
    ids: Tensor
    ptr: Tensor

    def __init__(self, dim: int, size: int, *, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        check_int("dim", dim, 1)
        check_int("size", size, 1)
        self.register_buffer("features",
                             l2_normalize(torch.randn(size, dim, dtype=dtype), dim=1))
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @property
    def num_filled(self) -> int:
        """Number of slots written at least once."""
        return int(self.count)

    def filled(self) -> tuple[Tensor, Tensor]:
        """The written rows only: ``(features [F, D], ids [F])``."""
        f = self.num_filled
        return self.features[:f], self.ids[:f]

    @torch.no_grad()
    def enqueue(self, keys: Tensor, ids: Tensor | None = None) -> None:
        """Write ``keys [B, D]`` (normalised, detached) and their ``ids [B]`` (default ``-1``).

        Raises:
            ValueError / TypeError: ``keys`` not a non-empty, finite floating ``[B, D]`` with
                ``B <= size`` (a NaN key would poison every later step's denominator), or
                ``ids`` not ``B`` integers.
        """
        check_embeddings("keys", keys, ndim=2)
        Q, D = self.features.shape
        if keys.size(1) != D:
            raise ValueError(f"keys: expected feature size {D}, got shape {tuple(keys.shape)}")
        if keys.size(0) > Q:
            raise ValueError(f"keys: expected at most {Q} rows (the queue size), got "
                             f"{keys.size(0)}")
        if ids is not None:
            check_tensor("ids", ids, ndim=1, integer=True)
            if ids.numel() != keys.size(0):
                raise ValueError(f"ids: expected {keys.size(0)} ids (one per key), got "
                                 f"{ids.numel()}")
        B = keys.size(0)
        slots = (int(self.ptr) + torch.arange(B, device=self.features.device)) % Q
        self.features[slots] = l2_normalize(
            keys.detach().to(self.features), dim=1, eps=1e-12)
        self.ids[slots] = (ids.to(self.ids) if ids is not None
                           else torch.full((B,), -1, dtype=torch.long, device=self.ids.device))
        self.ptr.fill_((int(self.ptr) + B) % Q)
        self.count.fill_(min(Q, int(self.count) + B))


class MoCoLoss(nn.Module):
    """Module wrapper of :func:`moco_loss`."""

    def __init__(self, temperature: float = 0.2, *, decoupled: bool = False,
                 similarity: str = "cosine") -> None:
        super().__init__()
        check_positive("temperature", temperature)
        check_choice("similarity", similarity, SIMILARITIES)
        self.temperature, self.decoupled, self.similarity = temperature, decoupled, similarity

    def forward(self, query: Tensor, key: Tensor, queue: Tensor, queue_ids: Tensor | None = None,
                ids: Tensor | None = None, **kwargs: Any) -> Tensor:
        return moco_loss(query, key, queue, temperature=self.temperature, queue_ids=queue_ids,
                         ids=ids, decoupled=self.decoupled, similarity=self.similarity, **kwargs)


class MoCHiLoss(nn.Module):
    """Module wrapper of :func:`mochi_loss`; ``enabled=False`` (e.g. during warm-up) gives MoCo."""

    def __init__(self, temperature: float = 0.2, num_hard: int = 1024, num_mix: int = 1024,
                 num_mix_query: int = 128, query_max: float = 0.5) -> None:
        super().__init__()
        check_positive("temperature", temperature)
        check_int("num_hard", num_hard, 1)
        check_int("num_mix", num_mix, 0)
        check_int("num_mix_query", num_mix_query, 0)
        self.temperature, self.num_hard = temperature, num_hard
        self.num_mix, self.num_mix_query, self.query_max = num_mix, num_mix_query, query_max
        self.enabled = True

    def forward(self, query: Tensor, key: Tensor, queue: Tensor, queue_ids: Tensor | None = None,
                ids: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        if not self.enabled:
            return moco_loss(query, key, queue, temperature=self.temperature,
                             queue_ids=queue_ids, ids=ids)
        return mochi_loss(query, key, queue, temperature=self.temperature,
                          num_hard=self.num_hard, num_mix=self.num_mix,
                          num_mix_query=self.num_mix_query, query_max=self.query_max,
                          queue_ids=queue_ids, ids=ids, generator=generator)
