"""Tests for contrastkit.core.probes on synthetic data (no network, no datasets)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.multiclass import OneVsRestClassifier
from torch import nn

from contrastkit.core import probes as P

SMALL_CS = tuple(2.0 ** np.arange(-4, 6, 2))  # keeps the CV probes fast


def mixture(n=600, d=16, c=4, sep=3.0, seed=0):
    """Gaussian mixture whose classes are linearly separable with margin ~ sep."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(c, d))
    means *= sep / np.linalg.norm(means, axis=1, keepdims=True)
    y = rng.integers(0, c, n)
    x = means[y] + 0.3 * rng.normal(size=(n, d))
    return x.astype(np.float32), y


def split(n, n_train, n_val=0, seed=0):
    perm = np.random.default_rng(seed).permutation(n)
    return perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]


# ---------------------------------------------------------------------------------------------
# random_split
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [2708, 3327, 1000, 101])
def test_random_split_reproduces_grace_train_test_split(n):
    tr, va, te = P.random_split(n, 0.1, seed=3)
    ref_tr, ref_te = train_test_split(np.arange(n), test_size=0.9, random_state=3)
    assert tr.dtype == torch.long and va.numel() == 0
    np.testing.assert_array_equal(tr.numpy(), ref_tr)
    np.testing.assert_array_equal(te.numpy(), ref_te)


def test_random_split_three_parts_and_stratified():
    tr, va, te = P.random_split(1000, 0.1, 0.1, seed=0)
    assert (len(tr), len(va), len(te)) == (100, 100, 800)
    allidx = torch.cat([tr, va, te]).sort().values
    assert torch.equal(allidx, torch.arange(1000))              # disjoint and complete
    tr2, _, _ = P.random_split(1000, 0.1, 0.1, seed=0)
    assert torch.equal(tr, tr2)                                   # seeded
    assert not torch.equal(tr, P.random_split(1000, 0.1, 0.1, seed=1)[0])
    y = np.repeat([0, 1, 2, 3], [500, 300, 150, 50])
    tr, va, te = P.random_split(1000, 0.2, 0.1, seed=0, stratify=torch.tensor(y))
    counts = np.bincount(y[tr.numpy()], minlength=4)
    np.testing.assert_allclose(counts, [100, 60, 30, 10], atol=1)
    np.testing.assert_allclose(np.bincount(y[va.numpy()], minlength=4), [50, 30, 15, 5], atol=1)


def test_random_split_errors():
    with pytest.raises(ValueError, match="train_ratio and val_ratio"):
        P.random_split(100, 0.6, 0.4, seed=0)
    with pytest.raises(ValueError, match="train_ratio"):
        P.random_split(100, 1.5, seed=0)
    with pytest.raises(ValueError, match="empty training part"):
        P.random_split(5, 0.1, seed=0)
    with pytest.raises(ValueError, match="stratify: expected 10 labels"):
        P.random_split(10, 0.5, seed=0, stratify=[0, 1])
    with pytest.raises(ValueError, match="stratify: class 2 has only 1"):
        P.random_split(7, 0.5, seed=0, stratify=[0, 0, 0, 1, 1, 1, 2])
    with pytest.raises(TypeError, match="seed"):
        P.random_split(10, 0.5, seed=None)


# ---------------------------------------------------------------------------------------------
# linear_probe_cv (GRACE)
# ---------------------------------------------------------------------------------------------
def test_linear_probe_cv_separable_high_and_random_labels_at_chance():
    x, y = mixture(n=2000, c=4)
    tr, _, te = split(2000, 200)
    res = P.linear_probe_cv(torch.tensor(x), torch.tensor(y), tr, te, cs=SMALL_CS)
    assert set(res) >= {"acc", "micro_f1", "macro_f1", "best_C"}
    assert res["acc"] > 0.97 and res["macro_f1"] > 0.97
    assert res["micro_f1"] == pytest.approx(res["acc"])
    y_rand = np.random.default_rng(1).integers(0, 4, 2000)   # labels independent of x
    res = P.linear_probe_cv(x, y_rand, tr, te, cs=SMALL_CS)
    assert abs(res["acc"] - 0.25) < 0.05


def test_linear_probe_cv_selects_C_on_training_part_only():
    x, y = mixture(n=500, c=3, sep=1.0)
    tr, _, te = split(500, 90)
    base = P.linear_probe_cv(x, y, tr, te, cs=SMALL_CS)
    y2, x2 = y.copy(), x.copy()
    rng = np.random.default_rng(5)
    y2[te] = rng.integers(0, 3, te.size)                        # new test labels
    x2[te] = rng.normal(size=(te.size, x.shape[1]))              # and new test embeddings
    other = P.linear_probe_cv(x2, y2, tr, te, cs=SMALL_CS)
    assert other["best_C"] == base["best_C"]
    assert other["cv_score"] == base["cv_score"]
    # ... whereas the training labels do matter
    y3 = y.copy()
    y3[tr] = rng.permutation(y3[tr])
    assert P.linear_probe_cv(x, y3, tr, te, cs=SMALL_CS)["cv_score"] != base["cv_score"]


def _onehot(y):
    return (y[:, None] == np.unique(y)[None, :]).astype(int)


def test_linear_probe_cv_matches_gridsearchcv_in_both_modes():
    x, y = mixture(n=400, c=3, sep=0.8, seed=2)
    tr, _, te = split(400, 120, seed=2)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    est = OneVsRestClassifier(LogisticRegression(solver="liblinear", random_state=0))
    grid = {"estimator__C": list(SMALL_CS)}
    # default: stratified shuffled folds, multi-class accuracy
    gs = GridSearchCV(est, grid, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    gs.fit(xn[tr], y[tr])
    res = P.linear_probe_cv(x, y, tr, te, cs=SMALL_CS, seed=0)
    assert res["best_C"] == gs.best_params_["estimator__C"]
    assert res["cv_score"] == pytest.approx(gs.best_score_)
    pred = gs.best_estimator_.classes_[gs.best_estimator_.predict_proba(xn[te]).argmax(1)]
    assert res["acc"] == pytest.approx(np.mean(pred == y[te]))
    # GRACE's code path: one-hot targets, cv=5 -> unshuffled KFold, subset accuracy
    gs = GridSearchCV(est, grid, cv=5).fit(xn[tr], _onehot(y[tr]))
    res = P.linear_probe_cv(x, y, tr, te, cs=SMALL_CS, cv_mode="grace")
    assert res["best_C"] == gs.best_params_["estimator__C"]
    assert res["cv_score"] == pytest.approx(gs.best_score_)
    pred = gs.best_estimator_.predict_proba(xn[te]).argmax(1)
    assert res["acc"] == pytest.approx(np.mean(pred == y[te]))


def test_linear_probe_cv_errors():
    x, y = mixture(n=100, c=3)
    tr, _, te = split(100, 40)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="embeddings: expected finite"):
        P.linear_probe_cv(bad, y, tr, te)
    with pytest.raises(ValueError, match="y: expected one label per row of embeddings"):
        P.linear_probe_cv(x, y[:-1], tr, te)
    y_small = y.copy()
    y_small[tr] = 0
    y_small[tr[:3]] = 1
    y_small[tr[3:10]] = 2
    with pytest.raises(ValueError, match="y: class 1 has 3 training sample.*folds=5"):
        P.linear_probe_cv(x, y_small, tr, te)
    with pytest.raises(ValueError, match="train_idx and test_idx: expected disjoint"):
        P.linear_probe_cv(x, y, tr, np.concatenate([te, tr[:2]]))
    with pytest.raises(ValueError, match=r"test_idx: expected indices in \[0, 100\)"):
        P.linear_probe_cv(x, y, tr, np.array([5000]))
    with pytest.raises(TypeError, match="train_idx: expected an integer"):
        P.linear_probe_cv(x, y, tr.astype(float), te)
    with pytest.raises(ValueError, match="cs: expected positive"):
        P.linear_probe_cv(x, y, tr, te, cs=[0.0, 1.0])
    with pytest.raises(ValueError, match="cv_mode"):
        P.linear_probe_cv(x, y, tr, te, cv_mode="loo")


def test_probes_accept_boolean_masks():
    x, y = mixture(n=300, c=3)
    mask = np.zeros(300, dtype=bool)
    mask[:60] = True
    a = P.linear_probe_cv(x, y, torch.tensor(mask), torch.tensor(~mask), cs=SMALL_CS)
    b = P.linear_probe_cv(x, y, np.arange(60), np.arange(60, 300), cs=SMALL_CS)
    assert a == b


# ---------------------------------------------------------------------------------------------
# torch_lr_probe (GCA)
# ---------------------------------------------------------------------------------------------
def _reference_curve(x, y, tr, va, te, epochs, lr, eval_every, seed):
    """Naive re-implementation of GCA's loop that records val and test accuracy at every eval."""
    classes, yi = np.unique(y, return_inverse=True)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(yi)
    lin = nn.Linear(x.shape[1], classes.size)
    with torch.no_grad():
        nn.init.xavier_uniform_(lin.weight, generator=torch.Generator().manual_seed(seed))
        lin.bias.zero_()
    opt = torch.optim.Adam(lin.parameters(), lr=lr)
    curve = []
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for ep in range(1, epochs + 1):
            opt.zero_grad()
            nn.functional.nll_loss(nn.functional.log_softmax(lin(xt[tr]), -1), yt[tr]).backward()
            opt.step()
            if ep % eval_every == 0:
                with torch.no_grad():
                    val_acc = (lin(xt[va]).argmax(-1) == yt[va]).double().mean().item()
                    test_acc = (lin(xt[te]).argmax(-1) == yt[te]).double().mean().item()
                curve.append((ep, val_acc, test_acc))
    finally:
        torch.set_num_threads(prev)
    return curve


def _overfitting_task():
    """Binary task whose noisy 30-node training part overfits; test labels are random."""
    rng = np.random.default_rng(4)
    w = rng.normal(size=40)
    x = rng.normal(size=(400, 40))
    y = (x @ w > 0).astype(int)
    tr, va, te = np.arange(30), np.arange(30, 130), np.arange(130, 400)
    flip = rng.random(30) < 0.3
    y[tr[flip]] = 1 - y[tr[flip]]                 # noisy training labels -> overfitting
    y[te] = rng.integers(0, 2, te.size)           # test curve unrelated to the val curve
    return x, y, tr, va, te


def test_torch_lr_probe_reports_test_at_best_validation_epoch():
    x, y, tr, va, te = _overfitting_task()
    kw = dict(epochs=400, lr=0.05, eval_every=10, seed=0)
    curve = _reference_curve(x, y, tr, va, te, **kw)
    vals = np.array([v for _, v, _ in curve])
    tests = np.array([t for _, _, t in curve])
    i = int(np.argmax(vals))                      # first epoch with the best val accuracy
    # the fixture discriminates: best-val epoch is neither the last nor the best-test one
    assert curve[i][0] != 400 and tests[i] < tests.max() and tests[i] != tests[-1]
    res = P.torch_lr_probe(x, y, tr, va, te, **kw)
    assert res["best_epoch"] == curve[i][0]
    assert res["val_acc"] == pytest.approx(vals[i])
    assert res["acc"] == pytest.approx(tests[i])
    # test labels never influence the selection
    y2 = y.copy()
    y2[te] = 1 - y2[te]
    res2 = P.torch_lr_probe(x, y2, tr, va, te, **kw)
    assert res2["best_epoch"] == res["best_epoch"] and res2["val_acc"] == res["val_acc"]
    assert res2["acc"] == pytest.approx(1 - res["acc"])


def test_torch_lr_probe_test_max_is_the_max_over_checkpoints_and_leaves_selection_alone():
    x, y, tr, va, te = _overfitting_task()
    kw = dict(epochs=400, lr=0.05, eval_every=10, seed=0)
    curve = _reference_curve(x, y, tr, va, te, **kw)
    tests = np.array([t for _, _, t in curve])
    plain = P.torch_lr_probe(x, y, tr, va, te, **kw)
    res = P.torch_lr_probe(x, y, tr, va, te, report_test_max=True, **kw)
    # binary task: micro-F1 == accuracy, so the max over checkpoints is the curve's max
    assert res["micro_f1_max_over_epochs"] == pytest.approx(tests.max())
    assert res["micro_f1_max_over_epochs"] > res["micro_f1"]          # optimistic, by design
    assert res["macro_f1_max_over_epochs"] >= res["macro_f1"]
    for k in plain:                                                  # headline unchanged
        assert res[k] == pytest.approx(plain[k])


def test_torch_lr_probe_separable_high_random_chance_and_no_val():
    x, y = mixture(n=1500, c=4)
    tr, va, te = split(1500, 150, 150)
    res = P.torch_lr_probe(torch.tensor(x), torch.tensor(y), tr, va, te, epochs=200)
    assert set(res) == {"acc", "micro_f1", "macro_f1", "val_acc", "best_epoch"}
    assert res["acc"] > 0.97 and res["best_epoch"] % 20 == 0
    y_rand = np.random.default_rng(1).integers(0, 4, 1500)
    res = P.torch_lr_probe(x, y_rand, tr, va, te, epochs=200)
    assert abs(res["acc"] - 0.25) < 0.05
    res = P.torch_lr_probe(x, y, tr, np.array([], dtype=np.int64), te, epochs=30, eval_every=20)
    assert res["best_epoch"] == 30 and np.isnan(res["val_acc"])


def test_torch_lr_probe_errors():
    x, y = mixture(n=100)
    tr, va, te = split(100, 20, 20)
    with pytest.raises(ValueError, match="train_idx and val_idx: expected disjoint"):
        P.torch_lr_probe(x, y, tr, np.concatenate([va, tr[:1]]), te, epochs=5)
    with pytest.raises(ValueError, match="epochs"):
        P.torch_lr_probe(x, y, tr, va, te, epochs=0)
    with pytest.raises(ValueError, match="lr"):
        P.torch_lr_probe(x, y, tr, va, te, lr=-1.0)
    with pytest.raises(TypeError, match="y: expected an integer"):
        P.torch_lr_probe(x, y.astype(np.float32), tr, va, te)


# ---------------------------------------------------------------------------------------------
# knn_probe
# ---------------------------------------------------------------------------------------------
def _knn_brute(xtr, ytr, xte, yte, k, t, c, weighting):
    a = xtr / np.linalg.norm(xtr, axis=1, keepdims=True)
    b = xte / np.linalg.norm(xte, axis=1, keepdims=True)
    correct = 0
    for q, target in zip(b, yte):
        s = a @ q
        nbr = np.argsort(-s, kind="stable")[:k]
        votes = np.zeros(c)
        for j in nbr:
            votes[ytr[j]] += np.exp(s[j] / t) if weighting == "exp" else 1.0
        correct += int(np.argmax(votes) == target)
    return correct / len(yte)


@pytest.mark.parametrize("weighting", ["exp", "uniform"])
def test_knn_probe_matches_brute_force(weighting):
    x, y = mixture(n=500, c=7, sep=1.0)
    x = x.astype(np.float64)
    res = P.knn_probe(x[:300], y[:300], x[300:], y[300:], k=15, temperature=0.2,
                      batch_size=37, weighting=weighting)
    ref = _knn_brute(x[:300], y[:300], x[300:], y[300:], 15, 0.2, 7, weighting)
    assert res["knn_top1"] == pytest.approx(ref)
    assert res["knn_top5"] >= res["knn_top1"]


def test_knn_probe_separable_high_and_random_chance():
    x, y = mixture(n=1500, c=4)
    res = P.knn_probe(torch.tensor(x[:500]), torch.tensor(y[:500]), torch.tensor(x[500:]),
                      torch.tensor(y[500:]))
    assert res["knn_top1"] > 0.97 and "knn_top5" not in res
    y_rand = np.random.default_rng(1).integers(0, 4, 1500)
    res = P.knn_probe(x[:500], y_rand[:500], x[500:], y_rand[500:], k=20)
    assert abs(res["knn_top1"] - 0.25) < 0.05


def test_knn_probe_tiny_temperature_votes_stay_finite():
    x, y = mixture(n=300, c=5, sep=1.0)
    x32 = x.astype(np.float32)
    # float32 exp(s / 1e-3) overflows: the votes were inf / NaN and argmax picked class 0
    votes = P.knn_scores(torch.nn.functional.normalize(torch.tensor(x32[200:]), dim=1),
                         torch.nn.functional.normalize(torch.tensor(x32[:200]), dim=1),
                         torch.tensor(y[:200]), 5, k=15, temperature=1e-3)
    assert bool(torch.isfinite(votes).all())
    res = P.knn_probe(x32[:200], y[:200], x32[200:], y[200:], k=15, temperature=1e-3)
    assert res["knn_top1"] == pytest.approx(_knn_brute(x[:200], y[:200], x[200:], y[200:], 1,
                                                       1.0, 5, "uniform"))  # 1-NN limit
    # normal temperatures: identical to before
    assert P.knn_probe(x[:200], y[:200], x[200:], y[200:], k=15, temperature=0.2)["knn_top1"] \
        == pytest.approx(_knn_brute(x[:200], y[:200], x[200:], y[200:], 15, 0.2, 5, "exp"))


def test_knn_probe_errors():
    x, y = mixture(n=50)
    with pytest.raises(ValueError, match="train_y: expected one label per row"):
        P.knn_probe(x[:20], y[:19], x[20:], y[20:])
    with pytest.raises(ValueError, match="train_emb and test_emb"):
        P.knn_probe(x[:20], y[:20], x[20:, :3], y[20:])
    with pytest.raises(ValueError, match="num_classes"):
        P.knn_probe(x[:20], y[:20], x[20:], y[20:], num_classes=2)
    with pytest.raises(ValueError, match="weighting"):
        P.knn_probe(x[:20], y[:20], x[20:], y[20:], weighting="cosine")
    with pytest.raises(ValueError, match="temperature"):
        P.knn_probe(x[:20], y[:20], x[20:], y[20:], temperature=0.0)


# ---------------------------------------------------------------------------------------------
# svm_probe
# ---------------------------------------------------------------------------------------------
def test_svm_probe_separable_random_and_train_only_selection():
    x, y = mixture(n=1500, c=4, sep=1.5)
    tr, _, te = split(1500, 150)
    res = P.svm_probe(x, y, tr, te)
    assert res["acc"] > 0.95 and res["best_C"] in P.SVM_CS
    y2 = y.copy()
    y2[te] = np.random.default_rng(0).integers(0, 4, te.size)
    assert P.svm_probe(x, y2, tr, te)["best_C"] == res["best_C"]
    y_rand = np.random.default_rng(1).integers(0, 4, 1500)
    assert abs(P.svm_probe(x, y_rand, tr, te)["acc"] - 0.25) < 0.05
    with pytest.raises(ValueError, match="fewer than folds=10"):
        P.svm_probe(x, y, tr[:30], te, folds=10)


# ---------------------------------------------------------------------------------------------
# fixed_split_probe (HeCo / MEOW style)
# ---------------------------------------------------------------------------------------------
def test_fixed_split_probe_selects_C_on_validation():
    x, y = mixture(n=900, c=3, sep=0.7, seed=3)
    tr, va, te = split(900, 60, 200, seed=3)
    res = P.fixed_split_probe(x, y, tr, va, te, cs=SMALL_CS)
    assert set(res) == {"acc", "micro_f1", "macro_f1", "auc", "best_C", "val_acc"}
    # manual reference: argmax over C of validation accuracy, then test scores
    val_accs, models = [], []
    for c in SMALL_CS:
        m = LogisticRegression(C=c, max_iter=1000, random_state=0).fit(x[tr], y[tr])
        val_accs.append(np.mean(m.predict(x[va]) == y[va]))
        models.append(m)
    best = int(np.argmax(val_accs))
    assert res["best_C"] == SMALL_CS[best]
    assert res["val_acc"] == pytest.approx(val_accs[best])
    proba = models[best].predict_proba(x[te])
    assert res["acc"] == pytest.approx(np.mean(proba.argmax(1) == y[te]))
    assert res["auc"] == pytest.approx(roc_auc_score(y[te], proba, multi_class="ovr"))
    # the test part has no influence on the choice
    y2 = y.copy()
    y2[te] = np.random.default_rng(9).permutation(y2[te])
    assert P.fixed_split_probe(x, y2, tr, va, te, cs=SMALL_CS)["best_C"] == res["best_C"]
    res_auc = P.fixed_split_probe(x, y, tr, va, te, cs=SMALL_CS, select_by="auc")
    val_aucs = [roc_auc_score(y[va], m.predict_proba(x[va]), multi_class="ovr") for m in models]
    best_auc = int(np.argmax(val_aucs))                  # ties: the first C, as documented
    assert res_auc["best_C"] == SMALL_CS[best_auc]
    assert res_auc["val_auc"] == pytest.approx(val_aucs[best_auc])
    proba = models[best_auc].predict_proba(x[te])
    assert res_auc["auc"] == pytest.approx(roc_auc_score(y[te], proba, multi_class="ovr"))


def test_fixed_split_probe_separable_high_and_random_chance():
    x, y = mixture(n=1500, c=4)
    tr, va, te = split(1500, 80, 300)
    res = P.fixed_split_probe(x, y, tr, va, te, cs=SMALL_CS)
    assert res["acc"] > 0.97 and res["auc"] > 0.99
    y_rand = np.random.default_rng(1).integers(0, 4, 1500)
    res = P.fixed_split_probe(x, y_rand, tr, va, te, cs=SMALL_CS)
    assert abs(res["acc"] - 0.25) < 0.06 and abs(res["auc"] - 0.5) < 0.06


def test_fixed_split_probe_errors():
    x, y = mixture(n=200, c=3)
    tr, va, te = split(200, 40, 40)
    y2 = y.copy()
    y2[te] = 0                                    # classes 1 and 2 absent from the test part
    with pytest.raises(ValueError, match="test_idx: one-vs-rest AUC is undefined for class 0"):
        P.fixed_split_probe(x, y2, tr, va, te, cs=SMALL_CS)
    with pytest.raises(ValueError, match="val_idx and test_idx: expected disjoint"):
        P.fixed_split_probe(x, y, tr, te[:5], te, cs=SMALL_CS)
    with pytest.raises(ValueError, match="select_by"):
        P.fixed_split_probe(x, y, tr, va, te, select_by="loss")


def test_torch_lr_probe_trains_under_no_grad():
    """A trainer runs evaluators under no_grad; the probe must still train its classifier."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (300,), generator=g)
    emb = torch.nn.functional.one_hot(y, 3).float() + 0.2 * torch.randn(300, 3, generator=g)
    idx = torch.randperm(300, generator=g)
    with torch.no_grad():
        res = P.torch_lr_probe(emb, y, idx[:60], idx[60:120], idx[120:], epochs=200, seed=0)
    assert res["acc"] > 0.9
