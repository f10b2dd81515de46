r"""TS2Vec: universal time-series representations (Yue et al., AAAI 2022).

A dilated-CNN encoder (:class:`~contrastkit.seqcl.hierarchical.TSEncoder`, ``[B, T, C] ->
[B, T, 320]``) is trained on two overlapping random crops of each series ("contextual
consistency", spec ``../shared/specs/sequence/ts2vec_infots.md`` A3):

.. code-block:: text

    crop_l ~ U{2^(u+1)..T}, crop_left ~ U{0..T-crop_l}, crop_right = crop_left + crop_l
    crop_eleft ~ U{0..crop_left}, crop_eright ~ U{crop_right..T}, offset_i ~ U{-crop_eleft..T-crop_eright}
    r  = enc(x_i[offset_i + crop_eleft : offset_i + crop_right])[:, -crop_l:]
    r' = enc(x_i[offset_i + crop_left  : offset_i + crop_eright])[:, :crop_l]

with the hierarchical loss (:func:`~contrastkit.seqcl.hierarchical.hierarchical_contrastive_loss`)

.. math::

    \mathcal L = \frac1d \sum_{\text{levels}} \big[\alpha\, \ell^{inst}(r, r')
        + (1 - \alpha)\, \ell^{temp}(r, r')\big],

max-pooling both views by 2 between levels, plus the instance term at length 1. AdamW, batch 8,
timestamp masks Bernoulli(0.5) on the projected input, and an equal-weight running average (SWA)
of the weights after every step, used for all encoding (official code).

Training budget (official): ``iters`` (default 200 when the training array holds at most 100,000
values, else 600) — an epoch of the shared :class:`~contrastkit.core.trainer.Trainer` is one pass
over the (sectioned) training series, and the last epoch is cut at ``iters`` steps.

Evaluation (spec A5):

* forecasting: causal sliding encoding (the representation of ``t`` is the last output of the
  encoder on ``x[t - 200 .. t]``, NaN-padded at the start, so it never sees the future); for horizon
  ``H`` a ridge regression from the representation at ``t`` to ``y[t+1 .. t+H]`` (targets only,
  flattened), ``alpha`` picked from :data:`RIDGE_ALPHAS` by RMSE + MAE on the validation split,
  refit on train, scored on test: ``mse@H``, ``mae@H`` on the normalised scale and their means
  ``mse``, ``mae``. Train / valid / test rows are cut by the dataset's fixed split; the encoder is
  trained on the train slice only.
* classification: full-series encoding max-pooled over time, RBF-SVM (``gamma='scale'``) with the
  5-fold grid over ``C`` (a single ``C = inf`` fit on tiny training sets): ``acc``, ``auprc``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from ..core.checks import check_choice, check_config_numbers, check_ints, check_positive, check_tensor
from ..core.method import ContrastiveMethod
from ..core.trainer import CHECKPOINT_NAME, Trainer
from ..registry import MethodSpec, RunContext, RunResult, register
from .hierarchical import (MASK_MODES, AveragedEncoder, TSEncoder, encode_full,
                           hierarchical_contrastive_loss)

__all__ = ["TS2VecConfig", "TS2Vec", "SeriesBatches", "default_iters", "prepare_train_data",
           "take_crops", "encode_causal", "encode_full", "fit_ridge", "ridge_for_horizon",
           "pred_samples",
           "eval_forecasting", "eval_classification", "last_value_metrics", "fit", "run",
           "evaluate", "RIDGE_ALPHAS", "SVM_CS"]

#: ridge penalties searched on the validation split (TS2Vec ``fit_ridge``)
RIDGE_ALPHAS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
#: SVM ``C`` grid (TS2Vec ``fit_svm``)
SVM_CS = (1e-4, 1e-3, 1e-2, 0.1, 1, 10, 100, 1000, 1e4, float("inf"))


@dataclass
class TS2VecConfig:
    """TS2Vec hyperparameters (defaults: the official ``train.py`` / ``ts2vec.py``).

    Attributes:
        dataset: a forecasting id (``etth1`` ...) or a classification id (``ucr-gunpoint`` ...).
        univariate: forecasting: only the target column (else all columns).
        output_dims, hidden_dims, depth, dropout, mask_mode: the encoder (320, 64, 10, 0.1,
            ``binomial``).
        lr, weight_decay: AdamW (1e-3, PyTorch default 0.01).
        batch_size: 8 (capped at the number of training instances).
        max_train_length: series longer than this are cut into sections (3000).
        iters: optimiser steps; ``None``: 200 if the training array has at most 100,000 values,
            else 600 (or ``epochs`` passes when ``epochs`` is set).
        epochs: passes over the training instances instead of ``iters`` (``None``: use iters).
        alpha, temporal_unit: the hierarchical loss (0.5, 0).
        swa: encode with the running average of the weights (official) or the last iterate.
        sliding_padding: causal context of forecasting encoding (200).
        encode_batch_size: windows per encoder call when encoding.
        pred_lens: forecasting horizons (``None``: the dataset's protocol).
        max_ridge_samples: train/valid rows for ridge (subsampled when larger; 100,000).
        max_svm_train: SVM training rows (stratified subsample when larger; 10,000).
        checkpoint_every: write ``checkpoint.pt`` every this many epochs (0: at the end);
            ``contrastkit train ... --resume`` continues from it.
    """

    dataset: str = "etth1"
    univariate: bool = True
    output_dims: int = 320
    hidden_dims: int = 64
    depth: int = 10
    dropout: float = 0.1
    mask_mode: str = "binomial"
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 8
    max_train_length: int = 3000
    iters: int | None = None
    epochs: int | None = None
    alpha: float = 0.5
    temporal_unit: int = 0
    swa: bool = True
    sliding_padding: int = 200
    encode_batch_size: int = 256
    pred_lens: tuple[int, ...] | None = None
    max_ridge_samples: int = 100_000
    max_svm_train: int = 10_000
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        check_config_numbers(self)
        check_ints(self, ("output_dims", "hidden_dims", "batch_size", "max_train_length",
                          "encode_batch_size", "max_ridge_samples", "max_svm_train"))
        check_ints(self, ("depth", "temporal_unit", "sliding_padding"), minimum=0)
        check_ints(self, ("iters", "epochs"), allow_none=True)
        check_ints(self, ("checkpoint_every",), minimum=0)
        check_positive("lr", self.lr)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout: expected a float in [0, 1), got {self.dropout}")
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ValueError(f"alpha: expected a float in [0, 1], got {self.alpha}")
        check_choice("mask_mode", self.mask_mode, MASK_MODES)
        if self.pred_lens is not None:
            self.pred_lens = tuple(int(h) for h in self.pred_lens)
            if not self.pred_lens or min(self.pred_lens) < 1:
                raise ValueError(f"pred_lens: expected positive horizons, got {self.pred_lens}")


def default_iters(n_values: int) -> int:
    """Official budget: 200 steps for a training array of at most 100,000 values, else 600
    (``train_data.size`` before sectioning, as the official ``fit``)."""
    return 200 if n_values <= 100_000 else 600


# ------------------------------------------------------------------------------ training data
def prepare_train_data(x: np.ndarray, max_train_length: int) -> np.ndarray:
    """TS2Vec's training array ``[N', T', C]`` from ``x [N, T, C]``.

    Series longer than ``max_train_length`` are split into ``T // max_train_length`` equal
    sections (``np.array_split``, NaN-padded) stacked as instances; when the array starts or ends
    with all-NaN timestamps, each instance's valid part is centred; all-NaN instances are dropped.
    """
    if x.ndim != 3:
        raise ValueError(f"x: expected an array [N, T, C], got shape {x.shape}")
    sections = x.shape[1] // max_train_length
    if sections >= 2:
        parts = np.array_split(x, sections, axis=1)
        t = parts[0].shape[1]
        parts = [np.pad(p, ((0, 0), (0, t - p.shape[1]), (0, 0)), constant_values=np.nan)
                 for p in parts]
        x = np.concatenate(parts, axis=0)
    empty = np.isnan(x).all(axis=-1)  # [N, T]
    if empty[:, 0].any() or empty[:, -1].any():
        prefix = np.argmax(~empty, axis=1)
        suffix = np.argmax(~empty[:, ::-1], axis=1)
        shift = (prefix + suffix) // 2 - prefix
        x = np.stack([np.roll(x[i], shift[i], axis=0) for i in range(len(x))])
    keep = ~np.isnan(x).all(axis=(1, 2))
    return x[keep]


class SeriesBatches:
    """Shuffled batches of training series ``[B, T, C]`` (drop last), at most ``max_steps`` in
    total over all epochs; the order is seeded by ``seed`` and the epoch (the trainer sets it)."""

    def __init__(self, x: Tensor, batch_size: int, *, max_steps: int | None = None,
                 seed: int = 0) -> None:
        check_tensor("x", x, ndim=3, floating=True)
        self.x, self.seed, self.epoch = x, int(seed), 0
        self.batch_size = min(int(batch_size), x.size(0))
        self.max_steps = max_steps

    @property
    def steps_per_epoch(self) -> int:
        return self.x.size(0) // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = self.steps_per_epoch
        if self.max_steps is not None:
            n = max(0, min(n, self.max_steps - self.epoch * self.steps_per_epoch))
        return n

    def __iter__(self) -> Iterator[Tensor]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.x.size(0), generator=g)
        for k in range(len(self)):
            yield self.x[order[k * self.batch_size:(k + 1) * self.batch_size]]


def _take_per_row(x: Tensor, start: Tensor, length: int) -> Tensor:
    idx = start[:, None] + torch.arange(length, device=x.device)
    return x[torch.arange(x.size(0), device=x.device)[:, None], idx]


def take_crops(x: Tensor, temporal_unit: int = 0) -> tuple[Tensor, Tensor, int]:
    """Two overlapping random crops of ``x [B, T, C]`` (global torch RNG).

    Returns:
        ``(view1, view2, crop_l)``: the common segment is the last ``crop_l`` steps of ``view1``
        and the first ``crop_l`` steps of ``view2``.
    """
    t = x.size(1)
    low = 2 ** (temporal_unit + 1)
    if t < low:
        raise ValueError(f"x: expected at least {low} time steps for temporal_unit="
                         f"{temporal_unit}, got {t}")

    def rint(lo: int, hi: int, size: tuple = ()) -> Tensor:  # U{lo..hi-1}
        return torch.randint(lo, hi, size)

    crop_l = int(rint(low, t + 1))
    crop_left = int(rint(0, t - crop_l + 1))
    crop_right = crop_left + crop_l
    crop_eleft = int(rint(0, crop_left + 1))
    crop_eright = int(rint(crop_right, t + 1))
    offset = rint(-crop_eleft, t - crop_eright + 1, (x.size(0),)).to(x.device)
    v1 = _take_per_row(x, offset + crop_eleft, crop_right - crop_eleft)
    v2 = _take_per_row(x, offset + crop_left, crop_eright - crop_left)
    return v1, v2, crop_l


# ------------------------------------------------------------------------------ the method
class TS2Vec(AveragedEncoder, ContrastiveMethod):
    """TS2Vec through the shared trainer: batches ``[B, T, C]`` of training series."""

    name = "ts2vec"

    def __init__(self, config: TS2VecConfig, input_dims: int) -> None:
        super().__init__(config)
        self.encoder = TSEncoder(input_dims, config.output_dims, config.hidden_dims,
                                 config.depth, mask_mode=config.mask_mode,
                                 dropout=config.dropout)
        self.init_average(config.swa)

    def configure_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.encoder.parameters(), lr=self.config.lr,
                                 weight_decay=self.config.weight_decay)

    def on_epoch_end(self, epoch: int) -> None:
        self.update_average()

    def training_step(self, x: Tensor) -> Tensor:
        self.count_step()
        m = self.config.max_train_length
        if x.size(1) > m:
            start = int(torch.randint(0, x.size(1) - m + 1, ()))
            x = x[:, start:start + m]
        v1, v2, crop_l = take_crops(x, self.config.temporal_unit)
        r1 = self.encoder(v1)[:, -crop_l:]
        r2 = self.encoder(v2)[:, :crop_l]
        return hierarchical_contrastive_loss(r1, r2, alpha=self.config.alpha,
                                             temporal_unit=self.config.temporal_unit)

    @torch.no_grad()
    def embed(self, x: Tensor) -> Tensor:
        """Max-pooled full-series representations ``[N, D]`` of ``x [N, T, C]``."""
        return encode_full(self.downstream_encoder(), x, self.config.encode_batch_size)


# ------------------------------------------------------------------------------ encoding
@torch.no_grad()
def encode_causal(encoder: nn.Module, x: Tensor | np.ndarray, padding: int = 200,
                  batch_size: int = 256) -> Tensor:
    """Causal sliding encoding ``[N, T, C] -> [N, T, D]``: row ``t`` is the last output of
    ``encoder`` on the window ``x[t - padding .. t]`` (NaN before the start, which the encoder
    masks), so it depends on ``x[:t + 1]`` only. Eval mode, no timestamp mask."""
    x = torch.as_tensor(x, dtype=torch.float32)
    check_tensor("x", x, ndim=3, floating=True)
    was = encoder.training
    encoder.eval()
    dev = next(encoder.parameters()).device
    n, t, c = x.shape
    xp = torch.cat([x.new_full((n, padding, c), float("nan")), x], dim=1)
    win = xp.unfold(1, padding + 1, 1)  # [N, T, C, W] (a view)
    out = []
    for i in range(n):
        rows = []
        for s in range(0, t, batch_size):
            w = win[i, s:s + batch_size].transpose(1, 2).contiguous().to(dev)  # [b, W, C]
            rows.append(encoder(w, "all_true")[:, -1].cpu())
        out.append(torch.cat(rows))
    encoder.train(was)
    return torch.stack(out)


# ------------------------------------------------------------------------------ forecasting
def pred_samples(features: np.ndarray, targets: np.ndarray, horizon: int,
                 drop: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ridge rows for horizon ``H``: feature at ``t`` -> ``targets[t+1 .. t+H]`` flattened.

    Args:
        features: ``[N, T, D]`` representations of one split.
        targets: ``[N, T, F]`` the target channels of the same split.
        horizon: ``H``.
        drop: leading timestamps to drop (the first ``sliding_padding`` training steps).

    Returns:
        ``X [N * (T - H - drop), D]`` and ``Y [N * (T - H - drop), H * F]``.
    """
    n, t, _ = targets.shape
    if t <= horizon + drop:
        raise ValueError(f"horizon: expected fewer than {t - drop} steps for a split of {t} "
                         f"steps (drop={drop}), got {horizon}")
    x = features[:, drop:t - horizon]
    y = np.stack([targets[:, drop + h:t - horizon + h] for h in range(1, horizon + 1)], axis=2)
    return x.reshape(-1, x.shape[-1]), y.reshape(n * y.shape[1], -1)


def _subsample(x: np.ndarray, y: np.ndarray, m: int, seed: int = 0):
    if len(x) <= m:
        return x, y
    idx = np.random.default_rng(seed).choice(len(x), m, replace=False)
    return x[idx], y[idx]


def fit_ridge(x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray,
              alphas: tuple[float, ...] = RIDGE_ALPHAS, max_samples: int = 100_000
              ) -> tuple[np.ndarray, np.ndarray, float]:
    """Ridge regression with intercept, ``alpha`` chosen by RMSE + MAE on the validation rows
    (TS2Vec ``fit_ridge``), refit on train.

    Equal to ``sklearn.linear_model.Ridge(alpha).fit`` for each alpha, computed once through the
    eigendecomposition of the centred Gram matrix: ``W(a) = V diag(1/(s + a)) V^T X_c^T Y_c``.

    Returns:
        ``(W [D, K], b [K], alpha)``; predict with ``x @ W + b``.
    """
    x_train, y_train = _subsample(x_train, y_train, max_samples)
    x_valid, y_valid = _subsample(x_valid, y_valid, max_samples)
    x = np.asarray(x_train, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.float64)
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    s, v = np.linalg.eigh(xc.T @ xc)
    s = np.clip(s, 0.0, None)
    p = v.T @ (xc.T @ yc)  # [D, K]
    xv = (np.asarray(x_valid, dtype=np.float64) - mx) @ v
    best, best_score = None, math.inf
    for a in alphas:
        pred = xv @ (p / (s + a)[:, None]) + my
        err = pred - y_valid
        score = float(np.sqrt((err ** 2).mean()) + np.abs(err).mean())
        if score < best_score:
            best, best_score = a, score
    w = v @ (p / (s + best)[:, None])
    return w, my - mx @ w, float(best)


def ridge_for_horizon(reprs: np.ndarray, data: Any, horizon: int, *, padding: int = 200,
                      max_samples: int = 100_000) -> tuple[np.ndarray, np.ndarray, float]:
    """The ridge forecaster of horizon ``H`` on representations ``reprs [N, T, D]`` of ``data``:
    trained on the train rows (the first ``padding`` dropped), ``alpha`` chosen on validation.

    Returns:
        ``(W [D, H * F], b [H * F], alpha)``.
    """
    y = data.targets
    xtr, ytr = pred_samples(reprs[:, data.train_slice], y[:, data.train_slice], horizon,
                            drop=padding)
    xva, yva = pred_samples(reprs[:, data.valid_slice], y[:, data.valid_slice], horizon)
    return fit_ridge(xtr, ytr, xva, yva, max_samples=max_samples)


def eval_forecasting(encoder: nn.Module, data: Any, pred_lens: tuple[int, ...] | None = None, *,
                     padding: int = 200, batch_size: int = 256, max_samples: int = 100_000,
                     reprs: Tensor | None = None) -> dict[str, float]:
    """TS2Vec's forecasting protocol on a :class:`~contrastkit.datasets.timeseries.ForecastData`.

    Returns:
        ``mse@H``, ``mae@H`` (normalised scale), ``alpha@H`` per horizon and the means ``mse``,
        ``mae`` on the test rows; ``valid_mse@H``, ``valid_mae@H``, ``valid_mse``, ``valid_mae``:
        the same forecaster's error on the validation rows (for checkpoint selection without the
        test labels; ``alpha`` was picked on these rows, so they are slightly optimistic).
    """
    pred_lens = tuple(pred_lens or data.pred_lens)
    end = data.test_slice.stop
    if reprs is None:
        reprs = encode_causal(encoder, data.data[:, :end], padding, batch_size)
    r = reprs.numpy() if isinstance(reprs, Tensor) else np.asarray(reprs)
    y = data.targets
    out: dict[str, float] = {}
    for h in pred_lens:
        w, b, out[f"alpha@{h}"] = ridge_for_horizon(r, data, h, padding=padding,
                                                    max_samples=max_samples)
        for prefix, rows in (("", data.test_slice), ("valid_", data.valid_slice)):
            x, target = pred_samples(r[:, rows], y[:, rows], h)
            err = x @ w + b - target
            out[f"{prefix}mse@{h}"] = float((err ** 2).mean())
            out[f"{prefix}mae@{h}"] = float(np.abs(err).mean())
    for prefix in ("", "valid_"):
        for m in ("mse", "mae"):
            out[prefix + m] = float(np.mean([out[f"{prefix}{m}@{h}"] for h in pred_lens]))
    return out


def last_value_metrics(data: Any, pred_lens: tuple[int, ...] | None = None) -> dict[str, float]:
    """The naive forecaster ``y[t+1..t+H] = y[t]`` on the test split (normalised scale)."""
    pred_lens = tuple(pred_lens or data.pred_lens)
    y = data.targets[:, data.test_slice]
    out = {}
    for h in pred_lens:
        feats, tgt = pred_samples(y, y, h)  # feature at t = y[t]
        f = y.shape[-1]
        err = tgt - np.tile(feats, (1, h)).reshape(len(feats), h * f)
        out[f"mse@{h}"] = float((err ** 2).mean())
        out[f"mae@{h}"] = float(np.abs(err).mean())
    out["mse"] = float(np.mean([out[f"mse@{h}"] for h in pred_lens]))
    out["mae"] = float(np.mean([out[f"mae@{h}"] for h in pred_lens]))
    return out


# ------------------------------------------------------------------------------ classification
def eval_classification(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray,
                        y_test: np.ndarray, *, max_train: int = 10_000,
                        seed: int = 0, tiny_c: float = float("inf")) -> dict[str, float]:
    """TS2Vec's SVM protocol on instance representations ``[N, D]``: ``acc`` and ``auprc``.

    Fewer than 5 training samples per class or fewer than 50 in all: one fit with
    ``C = tiny_c`` (TS2Vec: ``inf``; AutoTCL's copy: ``1e8``); else 5-fold grid search over
    :data:`SVM_CS` with ``max_iter = 10^7`` (as the official grid).
    """
    from sklearn.metrics import average_precision_score
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.svm import SVC
    z_train, z_test = np.asarray(z_train, np.float64), np.asarray(z_test, np.float64)
    k = len(np.unique(y_train))
    n = len(y_train)
    if n // k < 5 or n < 50:
        clf = SVC(C=float(tiny_c), gamma="scale").fit(z_train, y_train)
    else:
        if n > max_train:
            z_train, _, y_train, _ = train_test_split(z_train, y_train, train_size=max_train,
                                                      random_state=seed, stratify=y_train)
        grid = GridSearchCV(SVC(kernel="rbf", gamma="scale", max_iter=10_000_000),
                            {"C": list(SVM_CS)}, cv=5, n_jobs=1)
        clf = grid.fit(z_train, y_train).best_estimator_
    pred = clf.predict(z_test)
    score = clf.decision_function(z_test)
    classes = clf.classes_
    onehot = (np.asarray(y_test)[:, None] == classes[None]).astype(float)
    if score.ndim == 1:
        score = np.stack([-score, score], axis=1)
    return {"acc": float((pred == y_test).mean()),
            "auprc": float(average_precision_score(onehot, score))}


# ------------------------------------------------------------------------------ running
def load_task(config: Any) -> Any:
    """The data of ``config.dataset``: a forecasting split (ETT, ...) or a classification set."""
    from ..datasets import get_spec, load_for
    from ..datasets.timeseries import FORECAST_SETS, ClassificationData, load_forecast
    sid = get_spec(config.dataset).id
    if sid in FORECAST_SETS:
        return load_forecast(sid, univariate=config.univariate)
    return load_for(sid, domain="timeseries", types=ClassificationData,
                    what="a forecasting or classification time-series dataset (etth1, etth2, "
                         "ettm1, wth, electricity, ucr-*, uea-*)")


def fit(config: TS2VecConfig, train: np.ndarray, *, seed: int = 0, device: str = "cpu",
        progress: bool = False, out_dir: Any = None, resume: bool | str | Path = False
        ) -> tuple[TS2Vec, Trainer]:
    """Train TS2Vec on ``train [N, T, C]`` (NaN allowed) with the shared trainer.

    ``out_dir`` is the trainer's folder (log, ``checkpoint.pt``); ``resume`` as
    :meth:`~contrastkit.core.trainer.Trainer.fit` (``True``: continue from
    ``out_dir/checkpoint.pt``). The batch order depends only on the seed and the epoch, so a
    resumed run continues exactly.
    """
    x = prepare_train_data(np.asarray(train, dtype=np.float32), config.max_train_length)
    if config.iters is None and config.epochs is None:  # official: the array as given
        iters = default_iters(int(np.asarray(train).size))
    else:
        iters = config.iters
    loader = SeriesBatches(torch.from_numpy(x), config.batch_size, max_steps=iters, seed=seed)
    epochs = (config.epochs if config.iters is None and config.epochs is not None
              else math.ceil(iters / loader.steps_per_epoch))
    torch.manual_seed(seed)
    method = TS2Vec(config, x.shape[-1])
    trainer = Trainer(epochs, device=device, seed=seed, progress=progress, out_dir=out_dir,
                      checkpoint_every=config.checkpoint_every, deterministic=False)
    trainer.fit(method, loader, resume=resume)
    method.eval()
    return method, trainer


def run_protocol(fit_fn: Any, causal_encoder: Any, config: Any, ctx: RunContext) -> RunResult:
    """Train with ``fit_fn(config, train, seed=, device=, progress=, out_dir=, resume=)`` and
    evaluate with the dataset's protocol (shared by TS2Vec and AutoTCL). ``resume`` is true when
    ``ctx.resume`` is set and ``ctx.out_dir`` holds a checkpoint (``train --resume``).

    Forecasting: causal sliding representations from ``causal_encoder(method)``, ridge per
    horizon. Classification: ``method.embed`` on the train and test series, RBF-SVM.
    """
    data = load_task(config)
    resume = bool(ctx.resume) and (Path(ctx.out_dir) / CHECKPOINT_NAME).exists()
    if hasattr(data, "pred_lens"):
        method, trainer = fit_fn(config, data.train_data, seed=ctx.seed, device=ctx.device,
                                 progress=ctx.progress, out_dir=ctx.out_dir, resume=resume)
        reprs = encode_causal(causal_encoder(method), data.data[:, :data.test_slice.stop],
                              config.sliding_padding, config.encode_batch_size)
        metrics = eval_forecasting(None, data, config.pred_lens, padding=config.sliding_padding,
                                   max_samples=config.max_ridge_samples, reprs=reprs)
        emb = reprs.reshape(-1, reprs.size(-1))
    else:
        method, trainer = fit_fn(config, data.x_train, seed=ctx.seed, device=ctx.device,
                                 progress=ctx.progress, out_dir=ctx.out_dir, resume=resume)
        ztr, zte = method.embed(torch.from_numpy(data.x_train)), method.embed(
            torch.from_numpy(data.x_test))
        metrics = eval_classification(ztr.numpy(), data.y_train, zte.numpy(), data.y_test,
                                      max_train=config.max_svm_train, seed=ctx.seed)
        emb = torch.cat([ztr, zte])
    metrics["train_time_s"] = float(trainer.stats.get("train_time_s", 0.0))  # resumed: whole run
    return RunResult(metrics=metrics, embeddings=emb)


def run(config: TS2VecConfig, ctx: RunContext) -> RunResult:
    """CLI entry: train on the train split, evaluate with the dataset's protocol."""
    return run_protocol(fit, lambda m: m.downstream_encoder(), config, ctx)


def evaluate(config: TS2VecConfig, embeddings: Tensor, ctx: RunContext) -> dict[str, float]:
    """Re-evaluate saved embeddings: forecasting ``[N * T_end, D]`` causal representations, or
    classification ``[N_train + N_test, D]`` instance representations."""
    data = load_task(config)
    if hasattr(data, "pred_lens"):
        n, end = data.data.shape[0], data.test_slice.stop
        if embeddings.size(0) != n * end:
            raise ValueError(f"embeddings: expected {n * end} rows (instances x steps), got "
                             f"{embeddings.size(0)}")
        r = embeddings.reshape(n, end, -1).cpu()
        return eval_forecasting(None, data, config.pred_lens, padding=config.sliding_padding,
                                max_samples=config.max_ridge_samples, reprs=r)
    ntr = len(data.y_train)
    if embeddings.size(0) != ntr + len(data.y_test):
        raise ValueError(f"embeddings: expected {ntr + len(data.y_test)} rows (train + test), "
                         f"got {embeddings.size(0)}")
    z = embeddings.cpu().numpy()
    return eval_classification(z[:ntr], data.y_train, z[ntr:], data.y_test,
                               max_train=config.max_svm_train, seed=ctx.seed)


register(MethodSpec(
    name="ts2vec", config_cls=TS2VecConfig, run=run, evaluate=evaluate,
    description="TS2Vec: hierarchical contrastive time-series representations (forecasting: "
                "ridge on causal reps; classification: SVM on max-pooled reps)",
    default_dataset="etth1",
    presets={"etth1": {}, "etth2": {}, "ettm1": {}, "ettm2": {},
             "electricity": {"univariate": True}, "electricity-mt320": {"univariate": True}},
    accepts=("timeseries:forecast", "timeseries:classification")))
