"""Forecast a user's CSV with TS2Vec representations (``contrastkit forecast``).

The TS2Vec protocol on any CSV with a leading ``date`` column: a 60 / 20 / 20 % split by rows,
train-only scaling, TS2Vec trained on the train rows, causal sliding representations, a ridge
regression from the representation at ``t`` to ``y[t+1 .. t+H]`` (``alpha`` chosen on the
validation rows). It reports test ``mse`` / ``mae`` (normalised scale) beside the last-value
forecaster, forecasts the ``H`` steps after the last row, and can save a plot of history, truth
and forecast.

Example::

    from contrastkit.seqcl.forecast import forecast_csv
    result = forecast_csv("sales.csv", target="units", horizon=24, png="forecast.png")
    print(result.metrics, result.future)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.config import build_config
from .ts2vec import (TS2VecConfig, encode_causal, eval_forecasting, fit, last_value_metrics,
                     ridge_for_horizon)

__all__ = ["ForecastResult", "forecast_csv", "min_forecast_rows", "plot_forecast"]

_PADDING = 200  # warm-up steps the ridge forecaster drops (ridge_for_horizon's default)


@dataclass
class ForecastResult:
    """What :func:`forecast_csv` returns.

    Attributes:
        metrics: test ``mse@H``, ``mae@H`` (normalised scale) and ``last_value_mse@H``,
            ``last_value_mae@H`` of the naive forecaster on the same rows.
        future: ``[H]`` forecast of the target after the last row, in the CSV's units.
        test_start: index of the first test row.
        example: ``(origin t, truth [H], forecast [H])`` from the first test row, in CSV units.
        history: the target column in CSV units ``[T]``.
        config: the TS2Vec configuration used.
    """

    metrics: dict[str, float]
    future: np.ndarray
    test_start: int
    example: tuple[int, np.ndarray, np.ndarray]
    history: np.ndarray = field(repr=False)
    config: TS2VecConfig = field(repr=False)


def forecast_csv(csv: str | Path, target: str, horizon: int, *,
                 overrides: dict[str, Any] | None = None, seed: int = 0, device: str = "cpu",
                 progress: bool = True, png: str | Path | None = None) -> ForecastResult:
    """Train TS2Vec on ``csv`` and forecast ``target`` ``horizon`` steps ahead.

    Args:
        csv: path of a CSV (``.gz`` works) whose first column is ``date`` (ISO timestamps) and
            whose other columns are numbers.
        target: the column to forecast (univariate protocol: the calendar covariates and the
            target are the inputs).
        horizon: ``H >= 1`` steps.
        overrides: TS2Vec config overrides (e.g. ``{"iters": 100, "depth": 5}``).
        seed: random seed.
        device: ``"cpu"`` or ``"cuda"``.
        progress: show the training progress bar.
        png: save a plot of history, truth and forecast there (needs matplotlib).

    Returns:
        A :class:`ForecastResult`.
    """
    from ..datasets.timeseries import load_forecast_csv
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon: expected an int >= 1, got {horizon!r}")
    csv = Path(csv)
    if not csv.is_file():
        raise FileNotFoundError(f"csv: expected an existing CSV file, got {str(csv)!r}")
    config = build_config(TS2VecConfig, {"dataset": "custom"}, overrides or {})
    data = load_forecast_csv(csv, name=csv.stem, target=target, split="ratio",
                             pred_lens=(horizon,), univariate=True)
    _check_forecast_rows(csv, target, horizon, data)
    method, _ = fit(config, data.train_data, seed=seed, device=device, progress=progress)
    encoder = method.downstream_encoder()
    reprs = encode_causal(encoder, data.data).numpy()            # [1, T, D]
    metrics = eval_forecasting(encoder, data, (horizon,), reprs=reprs[:, :data.test_slice.stop])
    naive = last_value_metrics(data, (horizon,))
    metrics = {k: v for k, v in metrics.items() if "@" in k}
    metrics.update({f"last_value_{k}": v for k, v in naive.items() if "@" in k})
    w, b, _ = ridge_for_horizon(reprs, data, horizon)
    scale = lambda z: z * data.std[0] + data.mean[0]  # noqa: E731  (back to CSV units)
    future = scale(reprs[0, -1] @ w + b)
    t0 = data.test_slice.start
    truth = scale(data.targets[0, t0 + 1:t0 + 1 + horizon, 0])
    example = (t0, truth, scale(reprs[0, t0] @ w + b))
    result = ForecastResult(metrics=metrics, future=future, test_start=t0, example=example,
                            history=scale(data.targets[0, :, 0]), config=config)
    if png is not None:
        plot_forecast(result, png, title=f"{csv.name}: {target}, H = {horizon}")
    return result


def _check_forecast_rows(csv: Path, target: str, horizon: int, data: Any,
                         padding: int = _PADDING) -> None:
    """Enough rows for the ridge protocol and a target without gaps, or a ``ValueError`` that
    says what the CSV lacks (checked before any training)."""
    n = data.data.shape[1]
    if not _rows_suffice(n, horizon, padding):
        raise ValueError(f"csv: expected at least {min_forecast_rows(horizon, padding)} data rows "
                         f"for horizon {horizon} (60 / 20 / 20 % train / validation / test; the "
                         f"train part drops {padding} warm-up steps, each part must be longer "
                         f"than the horizon), got {n} rows in {csv}")
    y = data.targets[0, :, 0]
    missing = np.flatnonzero(np.isnan(y))
    if missing.size:  # the ridge forecaster is fitted, selected and scored on the target
        rows = (missing[:5] + 1).tolist()
        raise ValueError(f"target: column {target!r} of {csv} is missing {missing.size} values "
                         f"(data rows {rows}{' ...' if missing.size > 5 else ''}, counted from 1 "
                         f"after the header); the forecaster is fitted and scored on it: fill "
                         f"or drop those rows")


def _rows_suffice(n: int, horizon: int, padding: int) -> bool:
    from ..datasets.timeseries import forecast_splits
    train, valid, test = forecast_splits(n, "ratio")
    return (train.stop > padding + horizon and valid.stop - valid.start > horizon
            and test.stop - test.start > horizon)


def min_forecast_rows(horizon: int, padding: int = _PADDING) -> int:
    """The fewest data rows :func:`forecast_csv` accepts for ``horizon`` (about
    ``max((padding + H + 1) / 0.6, 5 (H + 1))``)."""
    n = max(math.ceil((padding + horizon + 1) / 0.6), 5 * (horizon + 1)) - 10
    while not _rows_suffice(n, horizon, padding):
        n += 1
    return n


def plot_forecast(result: ForecastResult, png: str | Path, title: str = "") -> Path:
    """Save history, truth and forecast (from the first test row and after the last row)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plot_forecast needs matplotlib: pip install 'contrastkit[plot]'") \
            from exc
    h = len(result.future)
    t0, truth, pred = result.example
    hist = result.history
    t_end = len(hist)
    lo = max(0, t0 - 4 * h)
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(np.arange(lo, t_end), hist[lo:], color="0.6", lw=1, label="history")
    ax.plot(np.arange(t0 + 1, t0 + 1 + h), truth, color="k", lw=1.5, label="truth (test)")
    ax.plot(np.arange(t0 + 1, t0 + 1 + h), pred, color="C3", lw=1.5,
            label="forecast from the first test row")
    ax.plot(np.arange(t_end, t_end + h), result.future, color="C0", lw=1.5,
            label="forecast after the last row")
    ax.axvline(t0, color="0.8", ls="--", lw=1)
    ax.set_xlabel("time step")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png
