r"""Full-ranking metrics for next-item recommendation (one held-out target per user).

With the 0-based rank ``r_u`` of user ``u``'s target among all scored items (the number of items
scored strictly higher; ties count in the target's favour, as ``torch.topk`` order is unspecified
for ties):

.. math::

    \mathrm{HR@K} = \frac{1}{U}\sum_u [r_u < K], \quad
    \mathrm{NDCG@K} = \frac{1}{U}\sum_u \frac{[r_u < K]}{\log_2(r_u + 2)}, \quad
    \mathrm{MRR@K} = \frac{1}{U}\sum_u \frac{[r_u < K]}{r_u + 1}

(RecBole's Recall@K = HR@K with one target; NDCG with 1-based rank ``r + 1`` and ``log2(rank + 1)``).

The original SASRec protocol (sampled ranking: the target against 100 items the user never
interacted with, drawn uniformly with replacement) is :func:`sample_negatives` +
:func:`sampled_target_ranks`; its numbers are an order of magnitude higher and must be labelled
as such.
Scores are ``[U, I]``; the caller excludes the padding column (``-inf``); history items are **not**
filtered (the protocol of CL4SRec / DuoRec / MCLRec).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from .checks import check_ids, check_no_nan_or_posinf, check_tensor

__all__ = ["target_ranks", "ranking_metrics", "rank_users", "sample_negatives",
           "sampled_target_ranks", "DEFAULT_KS"]

DEFAULT_KS: tuple[int, ...] = (5, 10, 20)


def target_ranks(scores: Tensor, targets: Tensor) -> Tensor:
    """0-based rank ``[U]`` of each target: the number of items scored strictly higher.

    Args:
        scores: ``[U, I]`` item scores.
        targets: ``[U]`` target column indices in ``[0, I)``.

    Raises:
        ValueError / TypeError: shapes or ids out of range, or NaN / ``+inf`` scores (a NaN
            compares false with everything, so it would rank as a perfect hit); ``-inf`` marks
            excluded columns and is allowed.
    """
    _check_scores_and_targets(scores, targets)
    t = scores.gather(1, targets.view(-1, 1).to(scores.device))
    return (scores > t).sum(1)


def _check_scores_and_targets(scores: Tensor, targets: Tensor) -> None:
    check_tensor("scores", scores, ndim=2, floating=True)
    check_tensor("targets", targets, ndim=1, integer=True)
    if targets.numel() != scores.size(0):
        raise ValueError(f"targets: expected {scores.size(0)} entries (one per score row), "
                         f"got {targets.numel()}")
    check_ids("targets", targets, scores.size(1), what="item ids (score columns)")
    check_no_nan_or_posinf("scores", scores)


def ranking_metrics(ranks: Tensor, ks: Sequence[int] = DEFAULT_KS,
                    mrr_ks: Sequence[int] = (10,)) -> dict[str, float]:
    """``hr@k``, ``ndcg@k`` for ``k in ks`` and ``mrr@k`` for ``k in mrr_ks`` from ranks ``[U]``.

    ``ks`` / ``mrr_ks`` are sequences of positive ints; a single int ``k`` means ``(k,)``.

    Raises:
        ValueError / TypeError: ranks not a non-empty 1-D integer tensor of non-negative
            values, or ``ks`` / ``mrr_ks`` not positive ints.
    """
    check_tensor("ranks", ranks, ndim=1, integer=True)
    if ranks.numel() == 0:
        raise ValueError("ranks: expected at least one user, got an empty tensor")
    lo = int(ranks.min())
    if lo < 0:
        raise ValueError(f"ranks: expected non-negative 0-based ranks, got minimum {lo}")
    ks, mrr_ks = _k_list("ks", ks), _k_list("mrr_ks", mrr_ks)
    r = ranks.double()
    out: dict[str, float] = {}
    for k in ks:
        hit = r < k
        out[f"hr@{k}"] = float(hit.double().mean())
        gain = torch.where(hit, 1.0 / torch.log2(r + 2), torch.zeros_like(r))
        out[f"ndcg@{k}"] = float(gain.mean())
    for k in mrr_ks:
        out[f"mrr@{k}"] = float(torch.where(r < k, 1.0 / (r + 1), torch.zeros_like(r)).mean())
    return out


def _k_list(name: str, vals: object) -> tuple[int, ...]:
    if isinstance(vals, int) and not isinstance(vals, bool):
        vals = (vals,)
    if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence):
        raise TypeError(f"{name}: expected an int or a sequence of positive ints, got "
                        f"{type(vals).__name__}")
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in vals):
        raise ValueError(f"{name}: expected positive ints, got {list(vals)}")
    return tuple(vals)


@torch.no_grad()
def rank_users(user_repr: Callable[[Tensor], Tensor], item_matrix: Tensor, users: Tensor,
               targets: Tensor, *, chunk_size: int = 1024, exclude_columns: Sequence[int] = (0,)
               ) -> Tensor:
    """Ranks ``[U]`` of ``targets`` under scores ``user_repr(users_chunk) @ item_matrix.T``.

    Computed in user chunks so that only ``chunk_size x I`` scores exist at a time.

    Args:
        user_repr: maps a chunk of ``users`` (any index tensor) to ``[C, D]`` representations.
        item_matrix: ``[I, D]`` item embeddings (row ``i`` scores item id ``i``).
        users: ``[U]`` what ``user_repr`` receives, chunked.
        targets: ``[U]`` target item ids (rows of ``item_matrix``).
        chunk_size: users per chunk.
        exclude_columns: columns set to ``-inf`` (the padding item 0).
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")
    out = []
    for i in range(0, users.numel(), chunk_size):
        h = user_repr(users[i:i + chunk_size])
        s = h @ item_matrix.t()
        if exclude_columns:
            s[:, list(exclude_columns)] = float("-inf")
        out.append(target_ranks(s, targets[i:i + chunk_size].to(s.device)).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def sample_negatives(histories: Tensor, num_items: int, num_negatives: int = 100, *,
                     generator: torch.Generator | None = None) -> Tensor:
    """``[U, num_negatives]`` item ids in ``[1, num_items]`` drawn uniformly (with replacement)
    among the items **not** in each row of ``histories`` (``[U, L]``, 0 = padding), as
    SASRec's ``util.py`` evaluation does.

    Raises:
        ValueError: a user has interacted with every item, an id of ``histories`` outside
            ``[0, num_items]``, or bad sizes.
    """
    check_tensor("histories", histories, ndim=2, integer=True)
    if isinstance(num_items, bool) or not isinstance(num_items, int) or num_items < 1:
        raise ValueError(f"num_items: expected a positive int, got {num_items!r}")
    check_ids("histories", histories, num_items + 1,
              what=f"item ids (0 = padding, 1..num_items={num_items})")
    if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
        raise ValueError(f"num_negatives: expected a positive int, got {num_negatives!r}")
    U = histories.size(0)
    seen = torch.zeros(U, num_items + 1, dtype=torch.bool)
    seen.scatter_(1, histories.cpu().long(), True)
    seen[:, 0] = True
    free = (~seen).sum(1)
    if U and int(free.min()) == 0:
        raise ValueError("histories: a user has interacted with every item; no negative to sample")
    # inverse-CDF sampling over each user's unseen items: exact and vectorised
    cdf = (~seen).cumsum(1)
    u = torch.rand(U, num_negatives, generator=generator)
    k = (u * free[:, None]).long() + 1  # 1..free
    k = torch.minimum(k, free[:, None])
    return torch.searchsorted(cdf, k)


def sampled_target_ranks(scores: Tensor, targets: Tensor, negatives: Tensor) -> Tensor:
    """0-based rank ``[U]`` of each target among itself and its sampled ``negatives [U, C]``
    (the number of negatives scored strictly higher).

    Raises:
        ValueError / TypeError: shapes, target or negative ids outside ``[0, I)``, or NaN /
            ``+inf`` scores (as :func:`target_ranks`).
    """
    _check_scores_and_targets(scores, targets)
    check_tensor("negatives", negatives, ndim=2, integer=True)
    if negatives.size(0) != scores.size(0):
        raise ValueError(f"negatives: expected {scores.size(0)} rows (one per score row), got "
                         f"shape {tuple(negatives.shape)}")
    check_ids("negatives", negatives, scores.size(1), what="item ids (score columns)")
    t = scores.gather(1, targets.view(-1, 1).to(scores.device))
    return (scores.gather(1, negatives.to(scores.device)) > t).sum(1)
