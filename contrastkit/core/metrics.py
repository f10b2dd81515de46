"""Evaluation metrics: classification, clustering, representation quality, seed aggregation.

Every function here is pure: it accepts numpy arrays or torch tensors (on any device; they are
detached and moved to the CPU), validates them with :mod:`contrastkit.core.checks` and returns
Python floats, as fractions in [0, 1] (not percentages) where the metric is a rate.

Classification
    :func:`accuracy`, :func:`micro_f1`, :func:`macro_f1` on hard labels and :func:`auc` on scores
    (binary, or multi-class one-vs-rest macro AUC from probability scores, the HeCo/MEOW protocol).

Clustering (the PamC / SDCN and HeCo / MEOW protocols)
    :func:`kmeans`, :func:`nmi` (arithmetic normalisation), :func:`ari`, :func:`cluster_acc`
    (best one-to-one cluster-to-class mapping by the Hungarian algorithm), :func:`cluster_f1`
    (macro-F1 after that mapping) and :func:`clustering_metrics` for all four at once.

Representation quality (Wang & Isola, 2020)
    :func:`alignment` and :func:`uniformity`; the latter never materialises the ``N x N`` matrix.

Reporting
    :func:`aggregate_seeds` turns per-seed result dicts into mean / population std.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata
from torch import Tensor

from .similarity import l2_normalize

from contrastkit.core.checks import check_finite, check_positive, check_tensor

__all__ = [
    "accuracy", "micro_f1", "macro_f1", "auc",
    "kmeans", "nmi", "ari", "cluster_acc", "cluster_f1", "clustering_metrics",
    "alignment", "uniformity",
    "aggregate_seeds",
]

ArrayLike = Any  # numpy array, torch tensor or a (nested) list of numbers


# ---------------------------------------------------------------------------------------------
# Input conversion (shared with contrastkit.core.probes)
# ---------------------------------------------------------------------------------------------
def _as_tensor(name: str, value: ArrayLike) -> Tensor:
    """Convert a tensor / numpy array / list to a detached CPU tensor, naming ``name`` on failure."""
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        try:
            return torch.from_numpy(np.ascontiguousarray(value))
        except TypeError as err:
            raise TypeError(f"{name}: expected a numeric array, got a numpy array of dtype "
                            f"{value.dtype}") from err
    if isinstance(value, (list, tuple)):
        try:
            return torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name}: expected a numeric array, got a {type(value).__name__} "
                            f"that cannot be converted to one ({err})") from err
    raise TypeError(f"{name}: expected a torch.Tensor or numpy array, got {type(value).__name__}")


def _embeddings(name: str, value: ArrayLike, *, min_rows: int = 1) -> Tensor:
    """Validate an embedding matrix ``[N, D]``: 2-D, floating point, finite, ``N >= min_rows``."""
    t = check_tensor(name, _as_tensor(name, value), ndim=2, floating=True)
    if t.shape[0] < min_rows or t.shape[1] == 0:
        raise ValueError(f"{name}: expected at least {min_rows} row(s) and 1 column, got shape "
                         f"{tuple(t.shape)}")
    return check_finite(name, t)


def _labels(name: str, value: ArrayLike, *, min_len: int = 1) -> np.ndarray:
    """Validate a label vector ``[N]`` of integers (or booleans); return it as int64 numpy."""
    t = _as_tensor(name, value)
    if t.dtype == torch.bool:
        t = t.long()
    check_tensor(name, t, ndim=1, integer=True)
    if t.numel() < min_len:
        raise ValueError(f"{name}: expected at least {min_len} label(s), got {t.numel()}")
    return t.numpy().astype(np.int64, copy=False)


def _same_length(name_a: str, a: Any, name_b: str, b: Any) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b}: expected the same number of entries, got "
                         f"{len(a)} and {len(b)}")


def _pair(y_true: ArrayLike, y_pred: ArrayLike, *, names: tuple[str, str] = ("y_true", "y_pred")
          ) -> tuple[np.ndarray, np.ndarray]:
    a = _labels(names[0], y_true)
    b = _labels(names[1], y_pred)
    _same_length(names[0], a, names[1], b)
    return a, b


def _check_int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


# ---------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------
def _f1_counts(y_true: np.ndarray, y_pred: np.ndarray, labels: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label true positives, false positives and false negatives for ``labels``."""
    tp = np.array([np.sum((y_true == c) & (y_pred == c)) for c in labels], dtype=np.float64)
    n_true = np.array([np.sum(y_true == c) for c in labels], dtype=np.float64)
    n_pred = np.array([np.sum(y_pred == c) for c in labels], dtype=np.float64)
    return tp, n_pred - tp, n_true - tp


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of correct predictions.

    Args:
        y_true: true labels ``[N]`` (integers).
        y_pred: predicted labels ``[N]`` (integers).

    Returns:
        ``(1/N) * sum_i 1[y_pred_i == y_true_i]`` in [0, 1].
    """
    a, b = _pair(y_true, y_pred)
    return float(np.mean(a == b))


def micro_f1(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Micro-averaged F1 over the labels present in ``y_true`` or ``y_pred``.

    ``F1_micro = 2 * sum_c TP_c / (2 * sum_c TP_c + sum_c FP_c + sum_c FN_c)``; for single-label
    multi-class data this equals :func:`accuracy`.

    Args:
        y_true: true labels ``[N]``.
        y_pred: predicted labels ``[N]``.

    Returns:
        Micro-F1 in [0, 1].
    """
    a, b = _pair(y_true, y_pred)
    tp, fp, fn = _f1_counts(a, b, np.union1d(a, b))
    return float(2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()))


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike, *, labels: Sequence[int] | None = None
             ) -> float:
    """Macro-averaged F1: the unweighted mean of per-class F1 scores.

    ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)`` and ``F1_macro = mean_c F1_c``. By default the classes
    are the union of the labels in ``y_true`` and ``y_pred`` (as scikit-learn does); pass ``labels``
    to average over a fixed class set instead (a class that is neither true nor predicted then has
    F1 = 0).

    Args:
        y_true: true labels ``[N]``.
        y_pred: predicted labels ``[N]``.
        labels: optional class set to average over.

    Returns:
        Macro-F1 in [0, 1].
    """
    a, b = _pair(y_true, y_pred)
    if labels is None:
        lab = np.union1d(a, b)
    else:
        lab = _labels("labels", np.asarray(labels))
    tp, fp, fn = _f1_counts(a, b, lab)
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1.mean())


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank statistic (ties get average ranks)."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    ranks = rankdata(scores)  # average ranks for ties
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve; binary, or multi-class one-vs-rest macro average.

    Computed by the Mann-Whitney statistic: for positives P and negatives N of a class,
    ``AUC = (1 / (|P| |N|)) * sum_{p in P} sum_{n in N} (1[s_p > s_n] + 0.5 * 1[s_p == s_n])``.

    * ``scores`` 1-D ``[N]``: binary AUC; ``y_true`` must hold exactly two distinct values and the
      larger one is the positive class.
    * ``scores`` 2-D ``[N, C]`` (e.g. class probabilities): ``y_true`` must hold integers in
      ``[0, C)`` and every class ``c < C`` must occur in ``y_true`` (and not be the only class);
      the result is ``(1/C) sum_c AUC(1[y == c], scores[:, c])`` (one-vs-rest macro AUC, as
      ``sklearn.metrics.roc_auc_score(..., multi_class="ovr", average="macro")``).

    Args:
        y_true: true labels ``[N]``.
        scores: scores ``[N]`` or ``[N, C]``; higher means more likely positive / of class ``c``.

    Returns:
        AUC in [0, 1].
    """
    y = _labels("y_true", y_true)
    s_t = check_tensor("scores", _as_tensor("scores", scores), ndim=(1, 2), floating=True)
    check_finite("scores", s_t)
    s = s_t.numpy().astype(np.float64)
    _same_length("y_true", y, "scores", s)
    if s.ndim == 1:
        classes = np.unique(y)
        if classes.size != 2:
            raise ValueError(f"y_true: binary AUC (1-D scores) needs exactly two classes, got "
                             f"{classes.size} ({classes.tolist()[:10]})")
        return _binary_auc(y == classes[1], s)
    return _ovr_macro_auc(y, s, name="y_true")


def _ovr_macro_auc(y_idx: np.ndarray, scores: np.ndarray, *, name: str) -> float:
    """Macro one-vs-rest AUC; ``y_idx[i]`` is the column of row i's class (or -1 for none)."""
    n_classes = scores.shape[1]
    if n_classes < 2:
        raise ValueError(f"scores: expected at least 2 columns for one-vs-rest AUC, got "
                         f"{n_classes}")
    if y_idx.max() >= n_classes or y_idx.min() < -1:
        raise ValueError(f"{name}: expected class indices in [0, {n_classes}) to match the "
                         f"{n_classes} score columns, got range [{y_idx.min()}, {y_idx.max()}]")
    out = []
    for c in range(n_classes):
        pos = y_idx == c
        n_pos = int(pos.sum())
        if n_pos == 0 or n_pos == y_idx.size:
            raise ValueError(f"{name}: one-vs-rest AUC is undefined for class {c}: it has "
                             f"{n_pos} positive(s) out of {y_idx.size} samples")
        out.append(_binary_auc(pos, scores[:, c]))
    return float(np.mean(out))


# ---------------------------------------------------------------------------------------------
# Clustering
# ---------------------------------------------------------------------------------------------
def kmeans(embeddings: ArrayLike, n_clusters: int, *, n_init: int = 10, seed: int = 0
           ) -> np.ndarray:
    """k-means (Lloyd, k-means++ initialisation) with ``n_init`` restarts; the best inertia wins.

    Minimises ``sum_i min_k ||x_i - mu_k||^2`` via :class:`sklearn.cluster.KMeans`.

    Args:
        embeddings: data ``[N, D]``.
        n_clusters: number of clusters ``K`` (``1 <= K <= N``).
        n_init: number of restarts.
        seed: random seed (deterministic result for a fixed seed).

    Returns:
        Cluster labels ``[N]`` (int64 numpy array with values in ``[0, K)``).
    """
    from sklearn.cluster import KMeans

    x = _embeddings("embeddings", embeddings)
    k = _check_int("n_clusters", n_clusters, minimum=1)
    if k > x.shape[0]:
        raise ValueError(f"n_clusters: expected at most the number of rows of embeddings "
                         f"({x.shape[0]}), got {k}")
    n_init = _check_int("n_init", n_init, minimum=1)
    km = KMeans(n_clusters=k, n_init=n_init, random_state=int(seed))
    return km.fit_predict(x.numpy().astype(np.float64)).astype(np.int64)


def _contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Contingency table ``[n_unique(a), n_unique(b)]`` of counts."""
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1), dtype=np.int64)
    np.add.at(table, (ia, ib), 1)
    return table


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi(labels_true: ArrayLike, labels_pred: ArrayLike) -> float:
    """Normalised mutual information with arithmetic normalisation.

    ``NMI = I(U; V) / ((H(U) + H(V)) / 2)`` (scikit-learn's default). Two constant labelings give
    1; a constant labeling against a non-constant one gives 0. Invariant to label permutations.

    Args:
        labels_true: reference labels ``[N]``.
        labels_pred: cluster labels ``[N]``.

    Returns:
        NMI in [0, 1].
    """
    a, b = _pair(labels_true, labels_pred, names=("labels_true", "labels_pred"))
    table = _contingency(a, b)
    if table.shape[0] == table.shape[1] == 1:
        return 1.0
    n = table.sum()
    nz = table > 0
    pij = table[nz] / n
    pi = table.sum(1, keepdims=True) / n
    pj = table.sum(0, keepdims=True) / n
    outer = (pi @ pj)[nz]
    mi = float(np.sum(pij * (np.log(pij) - np.log(outer))))
    if mi <= 0.0:
        return 0.0
    denom = 0.5 * (_entropy(table.sum(1)) + _entropy(table.sum(0)))
    return float(min(1.0, mi / max(denom, np.finfo(np.float64).eps)))


def ari(labels_true: ArrayLike, labels_pred: ArrayLike) -> float:
    """Adjusted Rand index (Hubert & Arabie).

    With contingency counts ``n_ij``, row sums ``a_i``, column sums ``b_j`` and
    ``E = sum_i C(a_i, 2) * sum_j C(b_j, 2) / C(N, 2)``::

        ARI = (sum_ij C(n_ij, 2) - E) / (0.5 * (sum_i C(a_i, 2) + sum_j C(b_j, 2)) - E)

    It is 1 for identical partitions (up to relabelling), about 0 for random ones and can be
    negative. Counts are handled in float64 so large ``N`` cannot overflow.

    Args:
        labels_true: reference labels ``[N]``.
        labels_pred: cluster labels ``[N]``.

    Returns:
        ARI in [-1, 1] (a fraction, not a percentage).
    """
    a, b = _pair(labels_true, labels_pred, names=("labels_true", "labels_pred"))
    table = _contingency(a, b).astype(np.float64)
    n = table.sum()

    def comb2(x: np.ndarray | float) -> Any:
        return x * (x - 1) / 2.0

    sum_ij = comb2(table).sum()
    sum_a = comb2(table.sum(1)).sum()
    sum_b = comb2(table.sum(0)).sum()
    total = comb2(n)
    if total == 0:
        return 1.0
    expected = sum_a * sum_b / total
    max_index = 0.5 * (sum_a + sum_b)
    if max_index == expected:  # both partitions trivial in the same way (all-one or all-singleton)
        return 1.0
    return float((sum_ij - expected) / (max_index - expected))


def _hungarian_map(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Relabel clusters to classes by the maximum-weight one-to-one matching.

    Returns predictions in class space; clusters left unmatched (more clusters than classes)
    become the sentinel ``min(y_true) - 1``, which is never a correct class.
    """
    classes = np.unique(y_true)
    clusters, inv = np.unique(y_pred, return_inverse=True)
    table = np.zeros((clusters.size, classes.size), dtype=np.int64)
    np.add.at(table, (inv, np.searchsorted(classes, y_true)), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    mapping = np.full(clusters.size, classes.min() - 1, dtype=np.int64)
    mapping[rows] = classes[cols]
    return mapping[inv]


def cluster_acc(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Clustering accuracy under the best one-to-one cluster-to-class mapping.

    ``ACC = max_m (1/N) sum_i 1[y_true_i == m(y_pred_i)]`` over injective maps ``m`` from clusters
    to classes, found with the Hungarian algorithm (:func:`scipy.optimize.linear_sum_assignment`
    on the ``[K, C]`` contingency table). ``K != C`` is allowed: with more clusters than classes the
    unmatched clusters count as errors; with fewer, some classes receive no cluster.

    Args:
        y_true: class labels ``[N]``.
        y_pred: cluster labels ``[N]`` (arbitrary integer ids).

    Returns:
        Accuracy in [0, 1].
    """
    a, b = _pair(y_true, y_pred)
    return float(np.mean(_hungarian_map(a, b) == a))


def cluster_f1(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Macro-F1 after the Hungarian cluster-to-class mapping of :func:`cluster_acc`.

    The average runs over the classes of ``y_true``; points in unmatched clusters count as false
    negatives of their true class, and classes that receive no cluster get F1 = 0.

    Args:
        y_true: class labels ``[N]``.
        y_pred: cluster labels ``[N]``.

    Returns:
        Macro-F1 in [0, 1].
    """
    a, b = _pair(y_true, y_pred)
    return macro_f1(a, _hungarian_map(a, b), labels=np.unique(a).tolist())


def clustering_metrics(embeddings: ArrayLike, y: ArrayLike, n_clusters: int | None = None,
                       seed: int = 0, n_init: int = 10) -> dict[str, float]:
    """k-means on the embeddings, then NMI, ARI, clustering accuracy and clustering macro-F1.

    Args:
        embeddings: embeddings ``[N, D]``.
        y: class labels ``[N]``.
        n_clusters: number of clusters; defaults to the number of distinct classes in ``y``.
        seed: k-means seed.
        n_init: k-means restarts.

    Returns:
        ``{"nmi", "ari", "cluster_acc", "cluster_f1"}`` as floats.
    """
    x = _embeddings("embeddings", embeddings)
    labels = _labels("y", y)
    if labels.size != x.shape[0]:
        raise ValueError(f"y: expected one label per row of embeddings ({x.shape[0]}), got "
                         f"{labels.size} labels")
    k = int(np.unique(labels).size) if n_clusters is None else n_clusters
    pred = kmeans(x, k, n_init=n_init, seed=seed)
    return {"nmi": nmi(labels, pred), "ari": ari(labels, pred),
            "cluster_acc": cluster_acc(labels, pred), "cluster_f1": cluster_f1(labels, pred)}


# ---------------------------------------------------------------------------------------------
# Representation quality
# ---------------------------------------------------------------------------------------------
def _normalize_rows(z: Tensor) -> Tensor:
    return l2_normalize(z, dim=1)


def alignment(z1: ArrayLike, z2: ArrayLike, alpha: float = 2) -> float:
    """Alignment of positive pairs (Wang & Isola, 2020).

    ``L_align = (1/N) sum_i ||f(x_i) - f(y_i)||_2^alpha`` with rows ℓ2-normalised first
    (``f = z / ||z||``). Lower is better; the range is [0, 2^alpha].

    Args:
        z1: first-view embeddings ``[N, D]``.
        z2: second-view embeddings ``[N, D]``; row i is the positive of ``z1[i]``.
        alpha: exponent (> 0).

    Returns:
        The alignment loss as a float.
    """
    a = _embeddings("z1", z1)
    b = _embeddings("z2", z2)
    if a.shape != b.shape:
        raise ValueError(f"z1 and z2: expected the same shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    check_positive("alpha", alpha)
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    with torch.no_grad():
        d = (_normalize_rows(a.to(dtype)) - _normalize_rows(b.to(dtype))).norm(dim=1)
        return float(d.pow(alpha).mean())


def uniformity(z: ArrayLike, t: float = 2, *, block_size: int = 1024) -> float:
    """Uniformity of the embedding distribution on the sphere (Wang & Isola, 2020).

    ``L_unif = log( (2 / (N (N - 1))) sum_{i<j} exp(-t ||f(z_i) - f(z_j)||_2^2) )`` with rows
    ℓ2-normalised (``f = z / ||z||``, so ``||f_i - f_j||^2 = 2 - 2 f_i.f_j``). Lower is better.

    The pairwise terms are computed ``block_size`` rows at a time and combined with a running
    log-sum-exp, so memory is ``O(block_size * N)``; the result equals the dense computation
    (``torch.pdist(f).pow(2).mul(-t).exp().mean().log()``) up to floating-point rounding.

    Args:
        z: embeddings ``[N, D]`` with ``N >= 2``.
        t: temperature (> 0).
        block_size: rows per block (> 0).

    Returns:
        The uniformity loss as a float (in [-4t, 0]).
    """
    x = _embeddings("z", z, min_rows=2)
    check_positive("t", t)
    bs = _check_int("block_size", block_size, minimum=1)
    x = _normalize_rows(x.to(torch.promote_types(x.dtype, torch.float32)))
    n = x.shape[0]
    lse_blocks = []
    with torch.no_grad():
        for start in range(0, n - 1, bs):
            stop = min(start + bs, n)
            rows = x[start:stop]                      # [B, D]
            cols = x[start:]                          # [N - start, D]: only j >= start matter
            sq = (2.0 - 2.0 * rows @ cols.T).clamp_min(0.0)  # [B, N - start]
            i = torch.arange(stop - start).unsqueeze(1)
            j = torch.arange(n - start).unsqueeze(0)
            logits = (-t * sq).masked_fill(j <= i, float("-inf"))  # keep pairs i < j
            lse_blocks.append(torch.logsumexp(logits.flatten(), dim=0))
        total = torch.logsumexp(torch.stack(lse_blocks), dim=0)
    return float(total) - math.log(n * (n - 1) / 2.0)


# ---------------------------------------------------------------------------------------------
# Aggregation over seeds
# ---------------------------------------------------------------------------------------------
def _is_number(v: Any) -> bool:
    if isinstance(v, Tensor):
        return v.numel() == 1 and not v.dtype == torch.bool
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool,
                                                                                      np.bool_))


def aggregate_seeds(per_seed: list[dict[str, float]], seeds: list[int]) -> dict[str, Any]:
    """Mean and population standard deviation of every numeric metric over seeds.

    For each numeric key ``k``: ``out[k] = mean_s x_s`` and
    ``out[k + "_std"] = sqrt((1/S) sum_s (x_s - mean)^2)`` (population std, ``ddof = 0``).
    Non-numeric entries (strings, lists, booleans) are kept only inside ``per_seed``.

    Args:
        per_seed: one result dict per seed, e.g. ``[{"acc": 0.83, "best_C": 4.0}, ...]``.
        seeds: the seeds, in the same order.

    Returns:
        ``{k: mean, k_std: std, ..., "seeds": seeds, "per_seed": per_seed}``.
    """
    if not isinstance(per_seed, (list, tuple)) or not all(isinstance(d, dict) for d in per_seed):
        raise TypeError(f"per_seed: expected a list of dicts, got {type(per_seed).__name__}")
    if not isinstance(seeds, (list, tuple)):
        raise TypeError(f"seeds: expected a list of ints, got {type(seeds).__name__}")
    if len(per_seed) == 0:
        raise ValueError("per_seed: expected at least one result dict, got an empty list")
    if len(per_seed) != len(seeds):
        raise ValueError(f"per_seed and seeds: expected one result dict per seed, got "
                         f"{len(per_seed)} dicts and {len(seeds)} seeds")
    keys: list[str] = []
    for d in per_seed:
        for k, v in d.items():
            if _is_number(v) and k not in keys:
                keys.append(k)
    out: dict[str, Any] = {}
    for k in keys:
        if k in ("seeds", "per_seed") or f"{k}_std" in keys:
            raise ValueError(f"per_seed: metric name {k!r} collides with an output key "
                             f"('seeds', 'per_seed' or '{k}_std')")
        values = []
        for s, d in zip(seeds, per_seed):
            if k not in d or not _is_number(d[k]):
                raise ValueError(f"per_seed: metric {k!r} is numeric for some seeds but "
                                 f"{'missing' if k not in d else repr(d[k])} for seed {s}")
            values.append(float(d[k]))
        arr = np.asarray(values, dtype=np.float64)
        out[k] = float(arr.mean())
        out[f"{k}_std"] = float(arr.std(ddof=0))
    out["seeds"] = list(seeds)
    out["per_seed"] = [dict(d) for d in per_seed]
    return out
