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

from .checks import check_tensor

__all__ = ["target_ranks", "ranking_metrics", "rank_users", "sample_negatives",
           "sampled_target_ranks", "DEFAULT_KS"]

DEFAULT_KS: tuple[int, ...] = (5, 10, 20)


def target_ranks(scores: Tensor, targets: Tensor) -> Tensor:
    """0-based rank ``[U]`` of each target: the number of items scored strictly higher.

    Args:
        scores: ``[U, I]`` item scores.
        targets: ``[U]`` target column indices in ``[0, I)``.

    Raises:
        ValueError / TypeError: shapes or ids out of range.
    """
    check_tensor("scores", scores, ndim=2, floating=True)
    check_tensor("targets", targets, ndim=1, integer=True)
    if targets.numel() != scores.size(0):
        raise ValueError(f"targets: expected {scores.size(0)} entries (one per score row), "
                         f"got {targets.numel()}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= scores.size(1)):
        raise ValueError(f"targets: expected ids in [0, {scores.size(1)}), got "
                         f"[{int(targets.min())}, {int(targets.max())}]")
    t = scores.gather(1, targets.view(-1, 1).to(scores.device))
    return (scores > t).sum(1)


def ranking_metrics(ranks: Tensor, ks: Sequence[int] = DEFAULT_KS,
                    mrr_ks: Sequence[int] = (10,)) -> dict[str, float]:
    """``hr@k``, ``ndcg@k`` for ``k in ks`` and ``mrr@k`` for ``k in mrr_ks`` from ranks ``[U]``."""
    check_tensor("ranks", ranks, ndim=1, integer=True)
    if ranks.numel() == 0:
        raise ValueError("ranks: expected at least one user, got an empty tensor")
    for name, vals in (("ks", ks), ("mrr_ks", mrr_ks)):
        if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in vals):
            raise ValueError(f"{name}: expected positive ints, got {list(vals)}")
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
        ValueError: a user has interacted with every item, or bad sizes.
    """
    check_tensor("histories", histories, ndim=2, integer=True)
    if isinstance(num_items, bool) or not isinstance(num_items, int) or num_items < 1:
        raise ValueError(f"num_items: expected a positive int, got {num_items!r}")
    if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
        raise ValueError(f"num_negatives: expected a positive int, got {num_negatives!r}")
    U = histories.size(0)
    seen = torch.zeros(U, num_items + 1, dtype=torch.bool)
    seen.scatter_(1, histories.cpu().clamp(0, num_items), True)
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
    (the number of negatives scored strictly higher)."""
    check_tensor("scores", scores, ndim=2, floating=True)
    check_tensor("negatives", negatives, ndim=2, integer=True)
    t = scores.gather(1, targets.view(-1, 1).to(scores.device))
    return (scores.gather(1, negatives.to(scores.device)) > t).sum(1)
