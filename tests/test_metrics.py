"""Tests for contrastkit.core.metrics against scikit-learn and brute-force references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from contrastkit.core import metrics as M


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------
# classification
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_accuracy_and_f1_match_sklearn(seed):
    rng = _rng(seed)
    y_true = rng.integers(0, 5, 200)
    # labels 5 and 6 are only predicted, class 3 is never predicted
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 7, 200))
    y_pred[y_pred == 3] = 2
    assert M.accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert M.micro_f1(y_true, y_pred) == pytest.approx(
        skm.f1_score(y_true, y_pred, average="micro"))
    assert M.macro_f1(y_true, y_pred) == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
    labels = [0, 1, 2, 3, 4, 9]  # 9 occurs nowhere -> F1 0 in the average
    assert M.macro_f1(y_true, y_pred, labels=labels) == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0))


def test_metrics_accept_tensors_and_return_python_floats():
    y_true = torch.tensor([0, 1, 1, 2])
    y_pred = torch.tensor([0, 1, 2, 2])
    for fn in (M.accuracy, M.micro_f1, M.macro_f1, M.nmi, M.ari, M.cluster_acc, M.cluster_f1):
        v = fn(y_true, y_pred)
        assert type(v) is float and (-1.0 if fn is M.ari else 0.0) <= v <= 1.0
    assert M.accuracy(y_true, y_pred) == 0.75
    assert M.ari(y_true, y_pred) == pytest.approx(
        skm.adjusted_rand_score([0, 1, 1, 2], [0, 1, 2, 2]))


def test_macro_f1_by_hand():
    # class 0: tp 1, fp 0, fn 1 -> 2/3; class 1: tp 1, fp 1, fn 0 -> 2/3; class 2: tp 0 fp 0 fn 1 -> 0
    # ... plus label 3 predicted once (fp 1) -> 0
    y_true = [0, 0, 1, 2]
    y_pred = [0, 1, 1, 3]
    assert M.macro_f1(y_true, y_pred) == pytest.approx((2 / 3 + 2 / 3 + 0 + 0) / 4)


def _auc_brute(pos: np.ndarray, s: np.ndarray) -> float:
    p, n = s[pos], s[~pos]
    wins = sum((a > b) + 0.5 * (a == b) for a in p for b in n)
    return wins / (len(p) * len(n))


@pytest.mark.parametrize("seed", range(3))
def test_binary_auc_matches_sklearn_and_brute_force_with_ties(seed):
    rng = _rng(seed)
    y = rng.integers(0, 2, 60)
    s = rng.integers(0, 5, 60).astype(float)  # many ties
    ref = skm.roc_auc_score(y, s)
    assert M.auc(y, s) == pytest.approx(ref)
    assert M.auc(y, s) == pytest.approx(_auc_brute(y == 1, s))
    # arbitrary label values: the larger one is positive
    assert M.auc(np.where(y == 1, 7, 3), torch.tensor(s)) == pytest.approx(ref)


@pytest.mark.parametrize("seed", range(3))
def test_multiclass_ovr_macro_auc_matches_sklearn(seed):
    rng = _rng(seed)
    y = rng.integers(0, 4, 150)
    logits = rng.normal(size=(150, 4)) + 1.5 * np.eye(4)[y]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ref = skm.roc_auc_score(y, proba, multi_class="ovr", average="macro")
    assert M.auc(y, proba) == pytest.approx(ref)
    brute = np.mean([_auc_brute(y == c, proba[:, c]) for c in range(4)])
    assert M.auc(torch.tensor(y), torch.tensor(proba)) == pytest.approx(brute)


def test_auc_errors():
    with pytest.raises(ValueError, match="class 2"):
        M.auc([0, 1, 0, 1], np.full((4, 3), 1 / 3))           # class 2 has no positive
    with pytest.raises(ValueError, match="exactly two classes"):
        M.auc([0, 1, 2, 1], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="y_true and scores"):
        M.auc([0, 1, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="scores: expected finite"):
        M.auc([0, 1, 0], [0.1, float("nan"), 0.3])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        M.auc([0, 1, 5], np.full((3, 3), 1 / 3))


def test_label_errors_name_the_argument():
    with pytest.raises(ValueError, match="y_true and y_pred"):
        M.accuracy([0, 1, 2], [0, 1])
    with pytest.raises(TypeError, match="y_pred: expected an integer"):
        M.macro_f1([0, 1], [0.0, 1.0])
    with pytest.raises(TypeError, match="y_true"):
        M.accuracy("abc", [0, 1, 2])
    with pytest.raises(ValueError, match="labels_true: expected a 1-D"):
        M.nmi(np.zeros((2, 2), dtype=int), [0, 1])


# ---------------------------------------------------------------------------------------------
# clustering
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_nmi_ari_match_sklearn(seed):
    rng = _rng(seed)
    a = rng.integers(0, 4, 120)
    b = np.where(rng.random(120) < 0.5, a, rng.integers(0, 6, 120)) + 10  # other label ids
    assert M.nmi(a, b) == pytest.approx(skm.normalized_mutual_info_score(a, b), abs=1e-12)
    assert M.ari(a, b) == pytest.approx(skm.adjusted_rand_score(a, b), abs=1e-12)


def test_nmi_ari_special_cases():
    a = np.array([0, 0, 1, 1, 2, 2])
    perm = np.array([5, 5, 3, 3, 9, 9])
    assert M.nmi(a, perm) == pytest.approx(1.0)
    assert M.ari(a, perm) == pytest.approx(1.0)
    const = np.zeros(6, dtype=int)
    for x, y in [(const, const), (a, const), (const, a), (np.arange(6), np.arange(6)),
                 (np.arange(6), const)]:
        assert M.nmi(x, y) == pytest.approx(skm.normalized_mutual_info_score(x, y))
        assert M.ari(x, y) == pytest.approx(skm.adjusted_rand_score(x, y))


def _brute_cluster_maps(y_true: np.ndarray, y_pred: np.ndarray):
    """All injective cluster->class maps (unmatched clusters -> -1) with their accuracy."""
    classes = sorted(set(y_true.tolist()))
    clusters = sorted(set(y_pred.tolist()))
    targets = classes + [-1 - i for i in range(len(clusters))]  # padding = "no class"
    out = []
    for perm in itertools.permutations(targets, len(clusters)):
        m = dict(zip(clusters, perm))
        mapped = np.array([m[c] for c in y_pred])
        out.append((float(np.mean(mapped == y_true)), mapped))
    return out


@pytest.mark.parametrize("n_true,n_pred", [(3, 3), (4, 4), (3, 5), (5, 3), (2, 4), (4, 2)])
@pytest.mark.parametrize("seed", range(3))
def test_cluster_acc_and_f1_match_brute_force(n_true, n_pred, seed):
    rng = _rng(100 * seed + 10 * n_true + n_pred)
    y_true = rng.integers(0, n_true, 40)
    y_pred = np.where(rng.random(40) < 0.6, (y_true * 7 + 2) % n_pred,
                      rng.integers(0, n_pred, 40)) + 100
    maps = _brute_cluster_maps(y_true, y_pred)
    best = max(acc for acc, _ in maps)
    assert M.cluster_acc(y_true, y_pred) == pytest.approx(best)
    # cluster_f1 = macro-F1 (over the true classes) of one of the accuracy-optimal mappings
    f1s = [skm.f1_score(y_true, mapped, labels=np.unique(y_true), average="macro",
                        zero_division=0) for acc, mapped in maps if acc == pytest.approx(best)]
    got = M.cluster_f1(y_true, y_pred)
    assert any(got == pytest.approx(f) for f in f1s), (got, f1s)


def test_cluster_acc_is_not_plain_accuracy():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([2, 2, 0, 0, 1, 1])
    assert M.accuracy(y_true, y_pred) == 0.0
    assert M.cluster_acc(y_true, y_pred) == 1.0
    assert M.cluster_f1(y_true, y_pred) == 1.0
    # more clusters than classes: the extra cluster is wrong
    assert M.cluster_acc([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(0.75)


def _blobs(n_per=40, k=3, d=5, sep=20.0, seed=0):
    rng = _rng(seed)
    centers = rng.normal(size=(k, d)) * sep
    y = np.repeat(np.arange(k), n_per)
    return centers[y] + rng.normal(size=(k * n_per, d)), y


def test_kmeans_and_clustering_metrics_on_separated_blobs():
    x, y = _blobs()
    labels = M.kmeans(torch.tensor(x, dtype=torch.float32), 3, seed=1)
    assert labels.shape == (120,) and set(labels.tolist()) == {0, 1, 2}
    assert M.ari(y, labels) == pytest.approx(1.0)
    np.testing.assert_array_equal(labels, M.kmeans(x, 3, seed=1))  # deterministic
    res = M.clustering_metrics(x, y)
    assert set(res) == {"nmi", "ari", "cluster_acc", "cluster_f1"}
    assert all(v == pytest.approx(1.0) for v in res.values())
    # noise embeddings: metrics near zero / chance
    noise = _rng(3).normal(size=(120, 5))
    res = M.clustering_metrics(noise, y)
    assert res["nmi"] < 0.1 and abs(res["ari"]) < 0.1 and res["cluster_acc"] < 0.6


def test_clustering_metrics_with_more_clusters_than_classes():
    x, y = _blobs(k=2)
    res = M.clustering_metrics(x, y, n_clusters=4)
    assert res["cluster_acc"] < 1.0  # two clusters are unmatched
    # the same k-means partition, scored by brute force over injective cluster -> class maps
    pred = M.kmeans(x, 4, n_init=10, seed=0)
    assert len(np.unique(pred)) == 4
    maps = _brute_cluster_maps(y, pred)
    best = max(acc for acc, _ in maps)
    assert res["cluster_acc"] == pytest.approx(best)
    f1s = [skm.f1_score(y, mapped, labels=np.unique(y), average="macro", zero_division=0)
           for acc, mapped in maps if acc == pytest.approx(best)]
    assert any(res["cluster_f1"] == pytest.approx(f) for f in f1s), (res, f1s)


def test_clustering_errors():
    x, y = _blobs()
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="embeddings: expected finite"):
        M.clustering_metrics(bad, y)
    with pytest.raises(ValueError, match="y: expected one label per row"):
        M.clustering_metrics(x, y[:-1])
    with pytest.raises(ValueError, match="n_clusters"):
        M.kmeans(x[:5], 6)
    with pytest.raises(TypeError, match="embeddings: expected a floating-point"):
        M.kmeans(np.ones((4, 2), dtype=np.int64), 2)


# ---------------------------------------------------------------------------------------------
# alignment / uniformity
# ---------------------------------------------------------------------------------------------
def test_alignment_by_hand():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[0.0, 1.0], [0.0, 3.0]])  # after normalisation: distance sqrt(2) and 0
    assert M.alignment(z1, z2) == pytest.approx(1.0)             # (2 + 0) / 2
    assert M.alignment(z1, z2, alpha=1) == pytest.approx(math.sqrt(2) / 2)
    assert M.alignment(z1.numpy(), 5 * z2.numpy()) == pytest.approx(1.0)  # scale-invariant
    assert M.alignment(z1, -z1) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="z1 and z2"):
        M.alignment(z1, z2[:1])
    with pytest.raises(ValueError, match="alpha"):
        M.alignment(z1, z2, alpha=0)


@pytest.mark.parametrize("block_size", [1, 7, 64, 10_000])
@pytest.mark.parametrize("t", [0.5, 2.0])
def test_uniformity_blockwise_equals_dense_float64(block_size, t):
    z = torch.randn(53, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    f = torch.nn.functional.normalize(z, dim=1)
    dense = torch.pdist(f).pow(2).mul(-t).exp().mean().log().item()
    assert M.uniformity(z, t=t, block_size=block_size) == pytest.approx(dense, abs=1e-12)


def test_uniformity_by_hand_and_errors():
    assert M.uniformity(np.array([[1.0, 0.0], [0.0, 3.0]])) == pytest.approx(-4.0)  # |d|^2 = 2
    assert M.uniformity(np.array([[1.0, 0.0], [-1.0, 0.0]]), t=1) == pytest.approx(-4.0)
    with pytest.raises(ValueError, match="z: expected at least 2"):
        M.uniformity(np.ones((1, 3)))
    with pytest.raises(ValueError, match="z: expected finite"):
        M.uniformity(torch.tensor([[1.0, float("inf")], [0.0, 1.0]]))
    with pytest.raises(TypeError, match="z: expected a torch.Tensor or numpy array"):
        M.uniformity("not an array")


# ---------------------------------------------------------------------------------------------
# aggregate_seeds
# ---------------------------------------------------------------------------------------------
def test_aggregate_seeds_population_std():
    per_seed = [{"acc": 0.8, "best_C": 1.0, "name": "a"}, {"acc": 0.9, "best_C": 4.0, "name": "b"}]
    out = M.aggregate_seeds(per_seed, [0, 1])
    assert out["acc"] == pytest.approx(0.85)
    assert out["acc_std"] == pytest.approx(0.05)                  # population, ddof = 0
    assert out["acc_std"] != pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert out["best_C_std"] == pytest.approx(1.5)
    assert "name" not in out and "name_std" not in out
    assert out["seeds"] == [0, 1]
    assert out["per_seed"] == per_seed
    one = M.aggregate_seeds([{"acc": np.float32(0.5)}], [7])
    assert one["acc"] == pytest.approx(0.5) and one["acc_std"] == 0.0


def test_aggregate_seeds_errors():
    with pytest.raises(ValueError, match="per_seed and seeds"):
        M.aggregate_seeds([{"acc": 1.0}], [0, 1])
    with pytest.raises(ValueError, match="'acc'.*seed 1"):
        M.aggregate_seeds([{"acc": 1.0}, {"f1": 1.0}], [0, 1])
    with pytest.raises(ValueError, match="at least one"):
        M.aggregate_seeds([], [])
    with pytest.raises(TypeError, match="per_seed"):
        M.aggregate_seeds({"acc": 1.0}, [0])
