"""Linear and non-parametric probes that score frozen embeddings, plus seeded splits.

Protocols (see the specs under ``shared/specs/graph``):

* :func:`linear_probe_cv` — GRACE's evaluator: ℓ2-normalised rows, one-vs-rest liblinear logistic
  regression, ``C`` chosen by k-fold cross-validation on the training part, arg-max of the class
  probabilities, Micro-/Macro-F1 on the test part.
* :func:`torch_lr_probe` — GCA's / PyGCL's evaluator: one ``nn.Linear`` trained with Adam on the
  training part; the test metrics are read at the epoch with the best validation accuracy.
* :func:`fixed_split_probe` — logistic regression on a provided train/val/test split with ``C``
  chosen on the validation part (HeCo / MEOW-style datasets); reports accuracy, F1 and macro
  one-vs-rest AUC.
* :func:`heco_probe` — HeCo's evaluator (HeCo / MEOW / AdaMEOW): 50 Adam-trained linear
  classifiers on the fixed 20/40/60-per-class splits, each metric read at its best validation
  step; mean and std over the classifier initialisations.
* :func:`svm_probe` — linear SVM with ``C`` chosen by cross-validation on the training part.
* :func:`knn_probe` — weighted k-nearest-neighbour vote on cosine similarity (InstDisc,
  solo-learn).
* :func:`random_split` — seeded random (optionally stratified) train/val/test indices.

No probe ever looks at test labels before the final scoring: every choice (``C``, epoch) is made on
the training part (cross-validation) or on the validation part.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from contrastkit.core.checks import (check_choice, check_positive, check_probability,
                                     check_tensor)
from contrastkit.core.metrics import (_as_tensor, _check_int, _embeddings, _labels,
                                      _ovr_macro_auc, accuracy, macro_f1, micro_f1)
from contrastkit.core.similarity import l2_normalize

__all__ = ["GRACE_CS", "SVM_CS", "random_split", "linear_probe_cv", "torch_lr_probe",
           "knn_probe", "svm_probe", "fixed_split_probe", "heco_probe"]

#: GRACE's grid of inverse regularisation strengths, 2^-10 ... 2^9.
GRACE_CS: tuple[float, ...] = tuple(float(c) for c in 2.0 ** np.arange(-10, 10))
#: Grid for the SVM probe, 10^-3 ... 10^3 (InfoGraph / GraphCL graph-level protocol).
SVM_CS: tuple[float, ...] = tuple(float(c) for c in 10.0 ** np.arange(-3, 4))


# ---------------------------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------------------------
def _features_and_labels(embeddings: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x = _embeddings("embeddings", embeddings)
    labels = _labels("y", y)
    if labels.size != x.shape[0]:
        raise ValueError(f"y: expected one label per row of embeddings ({x.shape[0]}), got "
                         f"{labels.size} labels")
    return x.numpy().astype(np.float64), labels


def _indices(name: str, idx: Any, n: int) -> np.ndarray:
    """Index set as int64 numpy; accepts integer indices or a boolean mask of length ``n``."""
    t = _as_tensor(name, idx)
    if t.dtype == torch.bool:
        if t.dim() != 1 or t.numel() != n:
            raise ValueError(f"{name}: a boolean mask must be 1-D of length {n}, got shape "
                             f"{tuple(t.shape)}")
        t = t.nonzero().flatten()
    else:
        check_tensor(name, t, ndim=1, integer=True)
    if t.numel() == 0:
        raise ValueError(f"{name}: expected at least one index, got an empty index set")
    out = t.numpy().astype(np.int64)
    if out.min() < 0 or out.max() >= n:
        raise ValueError(f"{name}: expected indices in [0, {n}), got range "
                         f"[{out.min()}, {out.max()}]")
    return out


def _disjoint(**sets: np.ndarray) -> None:
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = np.intersect1d(sets[a], sets[b])
            if shared.size:
                raise ValueError(f"{a} and {b}: expected disjoint index sets, got {shared.size} "
                                 f"shared indices (e.g. {shared[:5].tolist()})")


def _n_jobs(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"n_jobs: expected an integer, got {type(value).__name__}")
    if value == 0:
        raise ValueError("n_jobs: expected 1 (serial), a positive count or -1 (all cores), got 0")
    return int(value)


def _normalize_rows(x: np.ndarray) -> np.ndarray:
    """ℓ2-normalise rows; all-zero rows stay zero (as ``sklearn.preprocessing.normalize``)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _grid(name: str, cs: Any) -> np.ndarray:
    """Validate a grid of regularisation values: non-empty, positive, finite; return float64."""
    if isinstance(cs, Tensor):
        cs = cs.detach().cpu().double().numpy()
    try:
        arr = np.asarray(cs, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: expected a sequence of numbers, got {cs!r}") from err
    if arr.size == 0:
        raise ValueError(f"{name}: expected at least one value, got an empty grid")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name}: expected positive finite values, got {arr.tolist()}")
    return arr


def _check_cv_classes(y_train: np.ndarray, folds: int) -> None:
    classes, counts = np.unique(y_train, return_counts=True)
    if classes.size < 2:
        raise ValueError(f"y: the training part must hold at least 2 classes, got "
                         f"{classes.tolist()}")
    small = counts < folds
    if small.any():
        c, k = classes[small][0], counts[small][0]
        raise ValueError(f"y: class {c} has {k} training sample(s), fewer than folds={folds} "
                         f"needed for stratified cross-validation ({int(small.sum())} class(es) "
                         f"affected); use fewer folds or a larger training split")


def _scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {"acc": accuracy(y_true, y_pred), "micro_f1": micro_f1(y_true, y_pred),
            "macro_f1": macro_f1(y_true, y_pred)}


def _grid_search(make: Callable[[float], Any], x: np.ndarray, y_fit: np.ndarray,
                 cs: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]],
                 score: Callable[[Any, np.ndarray, np.ndarray], float], n_jobs: int
                 ) -> tuple[float, float]:
    """Mean validation score of every ``C`` over ``splits``; return (best C, its mean score).

    Ties go to the first ``C`` in the grid (as :class:`sklearn.model_selection.GridSearchCV`).
    """
    from sklearn.exceptions import ConvergenceWarning

    def run(c: float) -> float:
        vals = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.filterwarnings("ignore", message="Label .* present in all training")
            for tr, va in splits:
                est = make(c).fit(x[tr], y_fit[tr])
                vals.append(score(est, x[va], y_fit[va]))
        return float(np.average(np.asarray(vals, dtype=np.float64)))

    if n_jobs == 1:
        means = [run(c) for c in cs]
    else:
        from joblib import Parallel, delayed
        means = Parallel(n_jobs=n_jobs)(delayed(run)(c) for c in cs)
    best = int(np.argmax(means))
    return float(cs[best]), float(means[best])


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------
def _cv_inputs(embeddings: Any, y: Any, train_idx: Any, test_idx: Any, cs: Any, folds: Any,
               n_jobs: Any, normalize: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                      np.ndarray, np.ndarray, int, int]:
    """Validated inputs of a cross-validated probe: ``(x, labels, train, test, grid, folds, jobs)``."""
    x, labels = _features_and_labels(embeddings, y)
    tr = _indices("train_idx", train_idx, x.shape[0])
    te = _indices("test_idx", test_idx, x.shape[0])
    _disjoint(train_idx=tr, test_idx=te)
    grid = _grid("cs", cs)
    folds = _check_int("folds", folds, minimum=2)
    if normalize:
        x = _normalize_rows(x)
    return x, labels, tr, te, grid, folds, _n_jobs(n_jobs)


def random_split(num_nodes: int, train_ratio: float, val_ratio: float = 0.0, *, seed: int,
                 stratify: Any = None) -> tuple[Tensor, Tensor, Tensor]:
    """Seeded random train / validation / test split of ``range(num_nodes)``.

    Sizes: ``n_train = floor(train_ratio * N)``, ``n_val = floor(val_ratio * N)``, the rest is test.
    The split is drawn with :func:`sklearn.model_selection.train_test_split`
    (``random_state=seed``): first the test part is split off, then (if ``val_ratio > 0``) the
    validation part from the rest. With ``val_ratio = 0`` and ``stratify=None`` the result is
    exactly GRACE's ``train_test_split(range(N), test_size=1 - train_ratio, random_state=seed)``
    (non-stratified, 10% / 90% for ``train_ratio = 0.1``).

    Args:
        num_nodes: number of items ``N`` (>= 2).
        train_ratio: fraction for training, in (0, 1).
        val_ratio: fraction for validation, in [0, 1); ``train_ratio + val_ratio < 1``.
        seed: random seed (required).
        stratify: optional labels ``[N]`` for a class-stratified split.

    Returns:
        ``(train_idx, val_idx, test_idx)`` as int64 tensors (``val_idx`` is empty when
        ``val_ratio = 0``), in the shuffled order of the draw.
    """
    from sklearn.model_selection import train_test_split

    n = _check_int("num_nodes", num_nodes, minimum=2)
    tr = check_probability("train_ratio", train_ratio)
    va = check_probability("val_ratio", val_ratio)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an integer, got {type(seed).__name__}")
    if tr + va >= 1.0:
        raise ValueError(f"train_ratio and val_ratio: expected a sum below 1 so that a test part "
                         f"remains, got {tr} + {va} = {tr + va}")
    n_train = int(math.floor(tr * n + 1e-9))
    n_val = int(math.floor(va * n + 1e-9))
    n_test = n - n_train - n_val
    if n_train < 1:
        raise ValueError(f"train_ratio: {tr} of {n} items leaves an empty training part")
    if n_test < 1:
        raise ValueError(f"train_ratio and val_ratio: {tr} + {va} of {n} items leave an empty "
                         f"test part")
    strat = None
    if stratify is not None:
        strat = _labels("stratify", stratify)
        if strat.size != n:
            raise ValueError(f"stratify: expected {n} labels (one per item), got {strat.size}")
        classes, counts = np.unique(strat, return_counts=True)
        if counts.min() < 2:
            raise ValueError(f"stratify: class {classes[counts.argmin()]} has only "
                             f"{counts.min()} member(s); a stratified split needs at least 2")
    idx = np.arange(n)
    try:
        rest, test = train_test_split(idx, test_size=n_test, random_state=int(seed),
                                      stratify=strat)
        if n_val > 0:
            train, val = train_test_split(rest, test_size=n_val, random_state=int(seed),
                                          stratify=None if strat is None else strat[rest])
        else:
            train, val = rest, idx[:0]
    except ValueError as err:  # sklearn's stratification limits (too few items per class)
        raise ValueError(f"stratify: cannot draw a stratified split with {n_train} train / "
                         f"{n_val} val / {n_test} test items: {err}") from err
    as_long = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64))  # noqa: E731
    return as_long(train), as_long(val), as_long(test)


# ---------------------------------------------------------------------------------------------
# GRACE: cross-validated liblinear logistic regression
# ---------------------------------------------------------------------------------------------
def linear_probe_cv(embeddings: Any, y: Any, train_idx: Any, test_idx: Any, *,
                    cs: Sequence[float] = GRACE_CS, folds: int = 5, normalize: bool = True,
                    seed: int = 0, n_jobs: int = 1, cv_mode: str = "stratified"
                    ) -> dict[str, float]:
    """GRACE's evaluator: one-vs-rest logistic regression with ``C`` chosen by k-fold CV on train.

    Steps: (1) ℓ2-normalise each row ``z_i <- z_i / ||z_i||`` (if ``normalize``); (2) for every
    ``C`` in ``cs`` fit ``OneVsRestClassifier(LogisticRegression(solver="liblinear", C=C))`` — per
    class ``c`` it minimises ``0.5 ||w_c||^2 + C sum_i log(1 + exp(-s_ic (w_c.z_i + b_c)))`` with
    ``s_ic = +1`` if ``y_i = c`` else ``-1`` — on ``folds - 1`` folds of the *training part* and score
    accuracy on the held-out fold; (3) refit on the whole training part with the ``C`` of the best
    mean fold accuracy (ties: first in ``cs``); (4) predict ``argmax_c p(c | z)`` on the test part.

    ``cv_mode``:
        ``"stratified"`` (default): ``StratifiedKFold(folds, shuffle=True, random_state=seed)``,
        multi-class accuracy. Every class needs at least ``folds`` training samples.
        ``"grace"``: GRACE's exact code path — unshuffled ``KFold(folds)`` over the training order
        and one-hot targets, so the CV score is the subset accuracy of the per-class 0.5
        thresholds (a row counts only if exactly its class is predicted). This reproduces
        ``GridSearchCV(OneVsRestClassifier(...), cv=5)`` fitted on one-hot labels and can select a
        different ``C`` from the default mode.

    Liblinear convergence warnings are silenced (the grid reaches C = 512, where liblinear can
    stop at its iteration cap, as in the reference).

    Args:
        embeddings: frozen embeddings ``[N, D]``.
        y: integer labels ``[N]``.
        train_idx: training indices ``[N_train]`` (or a boolean mask ``[N]``).
        test_idx: test indices ``[N_test]`` (or a boolean mask), disjoint from ``train_idx``.
        cs: grid of inverse regularisation strengths (default 2^-10 ... 2^9).
        folds: number of CV folds (>= 2).
        normalize: ℓ2-normalise rows first (GRACE does).
        seed: seed of the fold shuffling and of liblinear.
        n_jobs: parallel jobs over the ``C`` grid (joblib; 1 = serial).
        cv_mode: ``"stratified"`` or ``"grace"``.

    Returns:
        ``{"acc", "micro_f1", "macro_f1", "best_C", "cv_score"}`` (test metrics as fractions,
        ``cv_score`` = mean CV accuracy of the chosen ``C``).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.multiclass import OneVsRestClassifier

    check_choice("cv_mode", cv_mode, ("stratified", "grace"))
    x, labels, tr, te, grid, folds, n_jobs = _cv_inputs(embeddings, y, train_idx, test_idx, cs,
                                                        folds, n_jobs, normalize)
    x_tr, y_tr = x[tr], labels[tr]
    if tr.size < folds:
        raise ValueError(f"train_idx: {tr.size} training samples cannot be split into "
                         f"folds={folds} folds")

    def make(c: float) -> Any:
        return OneVsRestClassifier(LogisticRegression(solver="liblinear", C=c,
                                                      random_state=seed))

    if cv_mode == "stratified":
        _check_cv_classes(y_tr, folds)
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        splits = list(cv.split(x_tr, y_tr))
        y_fit = y_tr

        def score(est: Any, xv: np.ndarray, yv: np.ndarray) -> float:
            return float(np.mean(est.predict(xv) == yv))
    else:
        if np.unique(y_tr).size < 2:
            raise ValueError(f"y: the training part must hold at least 2 classes, got "
                             f"{np.unique(y_tr).tolist()}")
        classes = np.unique(y_tr)
        y_fit = (y_tr[:, None] == classes[None, :]).astype(np.int64)  # one-hot [N_train, C]
        splits = list(KFold(n_splits=folds).split(x_tr))

        def score(est: Any, xv: np.ndarray, yv: np.ndarray) -> float:
            return float(np.mean(np.all(est.predict(xv) == yv, axis=1)))

    best_c, cv_score = _grid_search(make, x_tr, y_fit, grid, splits, score, n_jobs)
    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = make(best_c).fit(x_tr, y_tr)
    pred = clf.classes_[np.argmax(clf.predict_proba(x[te]), axis=1)]
    out = _scores(labels[te], pred)
    out.update(best_C=best_c, cv_score=cv_score)
    return out


# ---------------------------------------------------------------------------------------------
# GCA / PyGCL: torch logistic regression with validation selection
# ---------------------------------------------------------------------------------------------
def torch_lr_probe(embeddings: Any, y: Any, train_idx: Any, val_idx: Any, test_idx: Any, *,
                   epochs: int = 3000, lr: float = 0.01, weight_decay: float = 0.0,
                   eval_every: int = 20, device: str | torch.device = "cpu", seed: int = 0,
                   report_test_max: bool = False) -> dict[str, float]:
    """GCA's evaluator: a linear softmax classifier trained with Adam, selected on validation.

    Model ``p(c | z) = softmax(W z + b)_c`` with ``W`` Xavier-uniform and ``b = 0`` (embeddings are
    used as given, not normalised), loss ``-(1/|T|) sum_{i in T} log p(y_i | z_i)`` on the full
    training part ``T`` every epoch, Adam(``lr``, ``weight_decay``). Every ``eval_every`` epochs (and
    after the last one) the validation accuracy is computed; the weights with the highest
    validation accuracy (the earliest on ties) are kept, and only those are scored on the test
    part. With an empty ``val_idx`` the final epoch is used (``val_acc`` is then NaN).

    The class set is ``unique(y)`` over all nodes (only its size is used: it fixes the output
    width, as GCA's ``y.max() + 1``).

    Args:
        embeddings: frozen embeddings ``[N, D]``.
        y: integer labels ``[N]``.
        train_idx: training indices (or boolean mask).
        val_idx: validation indices (or boolean mask); may be empty / None.
        test_idx: test indices (or boolean mask).
        epochs: number of full-batch Adam steps (>= 1).
        lr: Adam learning rate.
        weight_decay: Adam weight decay (GCA uses 0).
        eval_every: validation period in epochs.
        device: device to train on.
        seed: seed of the weight initialisation.
        report_test_max: also score the *test* part every ``eval_every`` epochs and report the
            maximum over epochs of test Micro-F1 and of test Macro-F1, each maximised separately
            (gCooL's official evaluator). These select on test labels: they are returned only
            under their own keys ``micro_f1_max_over_epochs`` / ``macro_f1_max_over_epochs``,
            never as the headline numbers, and do not influence the validation selection.

    Returns:
        ``{"acc", "micro_f1", "macro_f1", "val_acc", "best_epoch"}`` (plus the two
        ``*_max_over_epochs`` keys with ``report_test_max``); ``best_epoch`` counts completed
        epochs (1-based, a multiple of ``eval_every`` or ``epochs``).
    """
    x_np, labels = _features_and_labels(embeddings, y)
    n = x_np.shape[0]
    tr = _indices("train_idx", train_idx, n)
    te = _indices("test_idx", test_idx, n)
    va = np.zeros(0, dtype=np.int64)
    if val_idx is not None:
        vt = _as_tensor("val_idx", val_idx)
        if vt.numel() > 0 and not (vt.dtype == torch.bool and not bool(vt.any())):
            va = _indices("val_idx", vt, n)
    has_val = va.size > 0
    _disjoint(train_idx=tr, val_idx=va, test_idx=te)
    epochs = _check_int("epochs", epochs, minimum=1)
    eval_every = _check_int("eval_every", eval_every, minimum=1)
    check_positive("lr", lr)
    check_positive("weight_decay", weight_decay, allow_zero=True)

    classes, y_idx = np.unique(labels, return_inverse=True)
    dev = torch.device(device)
    src = embeddings if isinstance(embeddings, Tensor) else torch.from_numpy(x_np)
    x = src.detach().to(dev, torch.float32)
    yt = torch.as_tensor(y_idx, dtype=torch.long, device=dev)
    tr_t = torch.as_tensor(tr, device=dev)
    va_t = torch.as_tensor(va, device=dev)

    gen = torch.Generator().manual_seed(int(seed))
    lin = nn.Linear(x.shape[1], classes.size)
    with torch.no_grad():
        nn.init.xavier_uniform_(lin.weight, generator=gen)
        nn.init.zeros_(lin.bias)
    lin = lin.to(dev)
    opt = torch.optim.Adam(lin.parameters(), lr=lr, weight_decay=weight_decay)
    x_tr, y_tr = x[tr_t], yt[tr_t]
    x_va, y_va = x[va_t], yt[va_t]

    # Tiny full-batch steps are dominated by thread start-up: run them single-threaded on CPU.
    small = dev.type == "cpu" and tr.size * x.shape[1] * classes.size <= 2 ** 24
    # the probe trains even when called under no_grad (e.g. as a trainer's periodic evaluator)
    with _single_thread(small), torch.enable_grad():
        te_t = torch.as_tensor(te, device=dev)
        test_track = (x[te_t], labels[te], classes) if report_test_max else None
        best_val, best_epoch, best_state, test_max = _train_lr(
            lin, opt, x_tr, y_tr, x_va, y_va, epochs, eval_every, has_val, test_track)
    if best_state is not None:
        lin.load_state_dict(best_state)
    with torch.no_grad():
        pred = lin(x[torch.as_tensor(te, device=dev)]).argmax(dim=-1).cpu().numpy()
    out = _scores(labels[te], classes[pred])
    out.update(val_acc=best_val if has_val else float("nan"), best_epoch=best_epoch)
    if report_test_max:
        out.update(micro_f1_max_over_epochs=test_max[0], macro_f1_max_over_epochs=test_max[1])
    return out


@contextmanager
def _single_thread(enabled: bool) -> Iterator[None]:
    """Temporarily limit torch's intra-op threads to 1 (restored afterwards)."""
    if not enabled:
        yield
        return
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _train_lr(lin: nn.Linear, opt: torch.optim.Optimizer, x_tr: Tensor, y_tr: Tensor,
              x_va: Tensor, y_va: Tensor, epochs: int, eval_every: int, has_val: bool,
              test_track: tuple[Tensor, np.ndarray, np.ndarray] | None = None
              ) -> tuple[float, int, dict[str, Tensor] | None, tuple[float, float]]:
    """Full-batch training loop of :func:`torch_lr_probe`.

    Returns the best validation accuracy, its epoch, the weights at that epoch and, when
    ``test_track = (x_test, y_test_labels, classes)`` is given, the maxima over checkpoints of the
    test Micro-F1 and Macro-F1 (each on its own; ``(nan, nan)`` otherwise).
    """
    best_val, best_epoch = -1.0, epochs
    best_state = None
    test_max = [float("-inf"), float("-inf")] if test_track is not None else [float("nan")] * 2
    for epoch in range(1, epochs + 1):
        lin.train()
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.nll_loss(nn.functional.log_softmax(lin(x_tr), dim=-1), y_tr)
        loss.backward()
        opt.step()
        if epoch % eval_every != 0 and epoch != epochs:
            continue
        with torch.no_grad():
            if has_val:
                val_acc = int((lin(x_va).argmax(dim=-1) == y_va).sum()) / y_va.numel()
                if val_acc > best_val:
                    best_val, best_epoch = val_acc, epoch
                    best_state = {k: v.detach().clone() for k, v in lin.state_dict().items()}
            if test_track is not None:
                x_te, y_te, classes = test_track
                pred = classes[lin(x_te).argmax(dim=-1).cpu().numpy()]
                test_max[0] = max(test_max[0], micro_f1(y_te, pred))
                test_max[1] = max(test_max[1], macro_f1(y_te, pred))
    return best_val, best_epoch, best_state, (test_max[0], test_max[1])


# ---------------------------------------------------------------------------------------------
# k-nearest neighbours
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def knn_scores(query: Tensor, bank: Tensor, bank_labels: Tensor, num_classes: int, *,
               k: int = 200, temperature: float = 0.1, chunk_size: int = 1024,
               weighting: str = "exp") -> Tensor:
    """Class scores ``[Q, num_classes]`` of the weighted k-NN vote (see :func:`knn_probe`).

    ``query [Q, D]`` and ``bank [N, D]`` are taken as given (normalise them first for cosine);
    computed ``chunk_size`` queries at a time on the bank's device, in the bank's dtype, so memory
    is ``O(chunk_size * N)``. ``k`` is capped at ``N``. No validation: callers check inputs.

    The weights are ``exp(s / temperature)`` exactly as long as a row's sum of ``k`` weights
    fits the dtype and its largest weight is a normal number; a row whose largest weight would
    overflow or underflow (a tiny temperature) is weighted by ``exp((s - s_max) / temperature)``
    instead, i.e. rescaled by ``exp(-s_max / t)``: the same ranking of classes, finite scores
    (no ``inf`` / NaN votes, no all-zero row).
    """
    labels = bank_labels.to(bank.device).long()
    query = query.to(device=bank.device, dtype=bank.dtype)
    kk = min(k, bank.shape[0])
    # largest exponent whose k-term sum still fits the dtype (with a margin of e)
    finfo = torch.finfo(bank.dtype)
    safe_hi = math.log(finfo.max) - math.log(max(kk, 1)) - 1.0
    safe_lo = math.log(finfo.tiny)
    out = torch.empty(query.shape[0], num_classes, dtype=bank.dtype, device=bank.device)
    for start in range(0, query.shape[0], chunk_size):
        q = query[start:start + chunk_size]
        sim, nbr = (q @ bank.T).topk(kk, dim=1)                        # [B, k], descending
        if weighting == "exp":
            z = sim / temperature
            shifted = ((sim - sim[:, :1]) / temperature).exp()         # row max -> exp(0) = 1
            top = z[:, :1]
            w = torch.where((top > safe_hi) | (top < safe_lo), shifted, z.exp())
        else:
            w = torch.ones_like(sim)
        votes = torch.zeros(q.shape[0], num_classes, dtype=bank.dtype, device=bank.device)
        out[start:start + q.shape[0]] = votes.scatter_add_(1, labels[nbr], w)   # [B, C]
    return out


def knn_probe(train_emb: Any, train_y: Any, test_emb: Any, test_y: Any, *, k: int = 200,
              temperature: float = 0.1, num_classes: int | None = None, batch_size: int = 1024,
              weighting: str = "exp") -> dict[str, float]:
    """Weighted k-NN classifier on cosine similarity (InstDisc / solo-learn protocol).

    Rows are ℓ2-normalised; for a test point ``q`` with its ``k`` most similar training points
    ``N_k(q)`` (similarity ``s_j = q.x_j``) the class score is
    ``score_c = sum_{j in N_k(q)} w_j 1[y_j = c]`` with ``w_j = exp(s_j / temperature)``
    (``weighting="exp"``) or ``w_j = 1`` (``weighting="uniform"``, majority vote); the prediction is
    ``argmax_c score_c`` (ties: lowest class). Test rows are processed ``batch_size`` at a time, so
    memory is ``O(batch_size * N_train)``. ``k`` is capped at the number of training points.

    Args:
        train_emb: training embeddings ``[N_train, D]``.
        train_y: training labels ``[N_train]`` in ``[0, num_classes)``.
        test_emb: test embeddings ``[N_test, D]``.
        test_y: test labels ``[N_test]``.
        k: number of neighbours.
        temperature: τ of the exponential weights (> 0).
        num_classes: number of classes; default ``max(train_y, test_y) + 1``.
        batch_size: test rows per block.
        weighting: ``"exp"`` or ``"uniform"``.

    Returns:
        ``{"knn_top1"}`` (fraction correct), plus ``"knn_top5"`` when there are more than 5
        classes.
    """
    xtr = _embeddings("train_emb", train_emb)
    xte = _embeddings("test_emb", test_emb)
    ytr = _labels("train_y", train_y)
    yte = _labels("test_y", test_y)
    if ytr.size != xtr.shape[0]:
        raise ValueError(f"train_y: expected one label per row of train_emb ({xtr.shape[0]}), "
                         f"got {ytr.size} labels")
    if yte.size != xte.shape[0]:
        raise ValueError(f"test_y: expected one label per row of test_emb ({xte.shape[0]}), "
                         f"got {yte.size} labels")
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(f"train_emb and test_emb: expected the same dimension, got "
                         f"{xtr.shape[1]} and {xte.shape[1]}")
    k = _check_int("k", k, minimum=1)
    check_positive("temperature", temperature)
    batch_size = _check_int("batch_size", batch_size, minimum=1)
    check_choice("weighting", weighting, ("exp", "uniform"))
    for name, arr in (("train_y", ytr), ("test_y", yte)):
        if arr.min() < 0:
            raise ValueError(f"{name}: expected non-negative class indices, got {arr.min()}")
    n_cls = int(max(ytr.max(), yte.max())) + 1 if num_classes is None else \
        _check_int("num_classes", num_classes, minimum=1)
    if ytr.max() >= n_cls or yte.max() >= n_cls:
        raise ValueError(f"num_classes: labels reach {max(ytr.max(), yte.max())}, so at least "
                         f"{max(ytr.max(), yte.max()) + 1} classes are needed, got {n_cls}")
    dtype = torch.promote_types(torch.promote_types(xtr.dtype, xte.dtype), torch.float32)
    a = l2_normalize(xtr.to(dtype), dim=1)
    b = l2_normalize(xte.to(dtype), dim=1)
    ytr_t = torch.as_tensor(ytr)
    yte_t = torch.as_tensor(yte)
    top5 = n_cls > 5
    votes = knn_scores(b, a, ytr_t, n_cls, k=k, temperature=temperature, chunk_size=batch_size,
                       weighting=weighting)
    c1 = int((votes.argmax(dim=1) == yte_t).sum())
    c5 = int((votes.topk(5, dim=1).indices == yte_t[:, None]).any(dim=1).sum()) if top5 else 0
    out = {"knn_top1": c1 / yte.size}
    if top5:
        out["knn_top5"] = c5 / yte.size
    return out


# ---------------------------------------------------------------------------------------------
# Linear SVM with cross-validated C
# ---------------------------------------------------------------------------------------------
def svm_probe(embeddings: Any, y: Any, train_idx: Any, test_idx: Any, *,
              cs: Sequence[float] = SVM_CS, folds: int = 5, normalize: bool = False,
              seed: int = 0, n_jobs: int = 1) -> dict[str, float]:
    """Linear SVM probe with ``C`` chosen by stratified k-fold CV on the training part.

    :class:`sklearn.svm.LinearSVC` (one-vs-rest, squared hinge):
    ``min_w 0.5 ||w_c||^2 + C sum_i max(0, 1 - s_ic (w_c.z_i + b_c))^2`` per class; ``C`` from ``cs``
    by mean accuracy over ``StratifiedKFold(folds, shuffle=True, random_state=seed)`` of the
    training part (ties: first in ``cs``), then a refit on the whole training part.

    Args:
        embeddings: frozen embeddings ``[N, D]``.
        y: integer labels ``[N]``.
        train_idx: training indices (or boolean mask).
        test_idx: test indices (or boolean mask), disjoint from ``train_idx``.
        cs: grid of ``C`` values (default 10^-3 ... 10^3).
        folds: CV folds (>= 2); each class needs at least ``folds`` training samples.
        normalize: ℓ2-normalise rows first.
        seed: seed of the fold shuffling and of liblinear.
        n_jobs: parallel jobs over the grid.

    Returns:
        ``{"acc", "micro_f1", "macro_f1", "best_C", "cv_score"}``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import LinearSVC

    x, labels, tr, te, grid, folds, n_jobs = _cv_inputs(embeddings, y, train_idx, test_idx, cs,
                                                        folds, n_jobs, normalize)
    x_tr, y_tr = x[tr], labels[tr]
    _check_cv_classes(y_tr, folds)
    splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
                  .split(x_tr, y_tr))

    def make(c: float) -> Any:
        return LinearSVC(C=c, random_state=seed)

    def score(est: Any, xv: np.ndarray, yv: np.ndarray) -> float:
        return float(np.mean(est.predict(xv) == yv))

    best_c, cv_score = _grid_search(make, x_tr, y_tr, grid, splits, score, n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = make(best_c).fit(x_tr, y_tr)
    out = _scores(labels[te], clf.predict(x[te]))
    out.update(best_C=best_c, cv_score=cv_score)
    return out


# ---------------------------------------------------------------------------------------------
# Fixed split with validation selection (HeCo / MEOW datasets)
# ---------------------------------------------------------------------------------------------
_SELECT = ("acc", "micro_f1", "macro_f1", "auc")


def fixed_split_probe(embeddings: Any, y: Any, train_idx: Any, val_idx: Any, test_idx: Any, *,
                      cs: Sequence[float] = GRACE_CS, select_by: str = "acc",
                      normalize: bool = False, max_iter: int = 1000, seed: int = 0
                      ) -> dict[str, float]:
    """Logistic regression on a given train/val/test split, ``C`` chosen on the validation part.

    For every ``C`` in ``cs`` a multinomial logistic regression
    ``p(c | z) = softmax(W z + b)_c``, minimising ``0.5 ||W||^2 + C sum_i -log p(y_i | z_i)``
    (lbfgs), is fitted on the training part and scored on the validation part by ``select_by``;
    the best ``C`` (ties: first in ``cs``) is then scored once on the test part. AUC is the macro
    one-vs-rest AUC of the predicted probabilities (HeCo / MEOW report it with Micro-/Macro-F1).

    Args:
        embeddings: frozen embeddings ``[N, D]``.
        y: integer labels ``[N]``.
        train_idx: training indices (or boolean mask).
        val_idx: validation indices (or boolean mask).
        test_idx: test indices (or boolean mask); the three sets must be disjoint.
        cs: grid of inverse regularisation strengths (default 2^-10 ... 2^9).
        select_by: validation metric used to pick ``C``: ``"acc"``, ``"micro_f1"``,
            ``"macro_f1"`` or ``"auc"``.
        normalize: ℓ2-normalise rows first (HeCo does not).
        max_iter: lbfgs iteration cap (convergence warnings are silenced).
        seed: ``random_state`` of the solver.

    Returns:
        ``{"acc", "micro_f1", "macro_f1", "auc", "best_C", "val_<select_by>"}``; the test AUC is
        over the classes seen in training (every one of them must occur in the test part).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x, labels = _features_and_labels(embeddings, y)
    n = x.shape[0]
    tr = _indices("train_idx", train_idx, n)
    va = _indices("val_idx", val_idx, n)
    te = _indices("test_idx", test_idx, n)
    _disjoint(train_idx=tr, val_idx=va, test_idx=te)
    grid = _grid("cs", cs)
    check_choice("select_by", select_by, _SELECT)
    max_iter = _check_int("max_iter", max_iter, minimum=1)
    if np.unique(labels[tr]).size < 2:
        raise ValueError(f"y: the training part must hold at least 2 classes, got "
                         f"{np.unique(labels[tr]).tolist()}")
    if normalize:
        x = _normalize_rows(x)

    def evaluate(clf: Any, idx: np.ndarray, name: str, with_auc: bool) -> dict[str, float]:
        proba = clf.predict_proba(x[idx])
        res = _scores(labels[idx], clf.classes_[np.argmax(proba, axis=1)])
        if with_auc:
            col = {int(c): i for i, c in enumerate(clf.classes_)}
            y_idx = np.array([col.get(int(v), -1) for v in labels[idx]], dtype=np.int64)
            res["auc"] = _ovr_macro_auc(y_idx, proba, name=name)
        return res

    best_c, best_val, best_clf = None, -np.inf, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for c in grid:
            clf = LogisticRegression(C=float(c), max_iter=max_iter, random_state=seed)
            clf.fit(x[tr], labels[tr])
            val = evaluate(clf, va, "val_idx", select_by == "auc")[select_by]
            if val > best_val:
                best_c, best_val, best_clf = float(c), val, clf
    out = evaluate(best_clf, te, "test_idx", True)
    out.update({"best_C": best_c, f"val_{select_by}": float(best_val)})
    return out


# ---------------------------------------------------------------------------------------------
# HeCo's evaluator (heterogeneous-graph protocol: HeCo, MEOW, AdaMEOW)
# ---------------------------------------------------------------------------------------------
def heco_probe(embeddings: Any, y: Any, train_idx: Any, val_idx: Any, test_idx: Any, *,
               runs: int = 50, epochs: int = 200, lr: float = 0.01, weight_decay: float = 0.0,
               seed: int = 0) -> dict[str, float]:
    r"""HeCo's node-classification evaluator: ``runs`` linear classifiers, per-metric selection.

    Each run trains ``p(c | z) = softmax(W z + b)`` (Xavier-uniform ``W``, ``b = 0``) with Adam
    (``lr``, ``weight_decay``) on the training nodes for ``epochs`` full-batch steps, scoring the
    validation and test nodes after every step. For each metric separately (accuracy, Macro-F1,
    Micro-F1) the test value at the step with the best *validation* value of that metric is kept
    (first such step); the macro one-vs-rest AUC of the softmax probabilities is taken at the
    best-validation-Micro-F1 step. The ``runs`` classifiers differ only in initialisation and are
    trained together as one batched ``[runs, D, C]`` weight (Adam is elementwise, so this equals
    ``runs`` separate trainings). Nothing is selected on test labels.

    Args:
        embeddings: frozen embeddings ``[N, D]``.
        y: integer labels ``[N]`` (0-based).
        train_idx, val_idx, test_idx: disjoint index sets (or boolean masks).
        runs: classifier initialisations (HeCo: 50).
        epochs: Adam steps per run (HeCo: 200).
        lr, weight_decay: Adam settings (per dataset in HeCo / MEOW).
        seed: seed of the initialisations.

    Returns:
        ``{"acc", "macro_f1", "micro_f1", "auc"}`` (means over runs, in [0, 1]) and the same keys
        with ``_std`` (standard deviation over runs, i.e. over classifier initialisations only).
    """
    x = _embeddings("embeddings", embeddings).float()
    labels = _labels("y", y)
    n = x.shape[0]
    tr = _indices("train_idx", train_idx, n)
    va = _indices("val_idx", val_idx, n)
    te = _indices("test_idx", test_idx, n)
    _disjoint(train_idx=tr, val_idx=va, test_idx=te)
    runs = _check_int("runs", runs, minimum=1)
    epochs = _check_int("epochs", epochs, minimum=1)
    check_positive("lr", lr)
    if weight_decay < 0:
        raise ValueError(f"weight_decay: expected a value >= 0, got {weight_decay}")
    c = int(labels.max()) + 1
    yt = torch.as_tensor(labels, dtype=torch.long)
    g = torch.Generator().manual_seed(int(seed))
    d = x.shape[1]
    bound = math.sqrt(6.0 / (d + c))
    w = ((torch.rand(runs, d, c, generator=g) * 2 - 1) * bound).requires_grad_(True)
    b = torch.zeros(runs, 1, c, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr, weight_decay=weight_decay)
    x_tr, y_tr = x[tr], yt[tr]
    x_va, y_va, x_te, y_te = x[va], yt[va], x[te], yt[te]

    def scores(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        pred = logits.argmax(-1)  # [R, n]
        acc = (pred == target).float().mean(1)
        oh_p = torch.nn.functional.one_hot(pred, c).float()
        oh_t = torch.nn.functional.one_hot(target, c).float()[None]
        tp = (oh_p * oh_t).sum(1)
        den = oh_p.sum(1) + oh_t.sum(1)
        present = den > 0  # sklearn: labels in y_true or y_pred
        f1 = torch.where(present, 2 * tp / den.clamp_min(1), torch.zeros_like(tp))
        macro = f1.sum(1) / present.sum(1).clamp_min(1)
        return acc, macro  # micro-F1 == accuracy for single-label multi-class

    best_val = {k: torch.full((runs,), -1.0) for k in ("acc", "macro_f1", "micro_f1")}
    best_test = {k: torch.zeros(runs) for k in best_val}
    best_proba = torch.zeros(runs, len(te), c)
    with torch.enable_grad(), _single_thread(False):
        for _ in range(epochs):
            opt.zero_grad(set_to_none=True)
            logits = torch.baddbmm(b, x_tr.expand(runs, -1, -1), w)
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, c), y_tr.repeat(runs), reduction="sum") / len(tr)
            loss.backward()
            opt.step()
            with torch.no_grad():
                lv = torch.baddbmm(b, x_va.expand(runs, -1, -1), w)
                lt = torch.baddbmm(b, x_te.expand(runs, -1, -1), w)
                va_acc, va_mac = scores(lv, y_va)
                te_acc, te_mac = scores(lt, y_te)
                for k, v, t in (("acc", va_acc, te_acc), ("macro_f1", va_mac, te_mac),
                                ("micro_f1", va_acc, te_acc)):
                    better = v > best_val[k]
                    best_val[k] = torch.where(better, v, best_val[k])
                    best_test[k] = torch.where(better, t, best_test[k])
                    if k == "micro_f1":
                        best_proba[better] = torch.softmax(lt[better], -1)
    aucs = np.array([_ovr_macro_auc(labels[te], best_proba[r].numpy().astype(np.float64),
                                    name="y") for r in range(runs)])
    out: dict[str, float] = {}
    for k in ("acc", "macro_f1", "micro_f1"):
        v = best_test[k].double().numpy()
        out[k], out[f"{k}_std"] = float(v.mean()), float(v.std())
    out["auc"], out["auc_std"] = float(aucs.mean()), float(aucs.std())
    return out
