"""Forecast a column of your own CSV with TS2Vec and save a plot of history, truth and forecast.

    python examples/forecasting.py                       # a synthetic daily-cycle series
    python examples/forecasting.py my.csv units 24       # your CSV: first column `date`

The same as ``contrastkit forecast --csv my.csv --target units --horizon 24 --plot forecast.png``.
"""
import sys
from pathlib import Path

import numpy as np

from contrastkit.seqcl.forecast import forecast_csv


def synthetic_csv(path: Path, hours: int = 2400) -> Path:
    """Hourly load with a daily cycle, a weekly cycle, a slow trend and noise."""
    rng = np.random.default_rng(0)
    t = np.arange(hours)
    load = (10 + 3 * np.sin(2 * np.pi * t / 24) + np.sin(2 * np.pi * t / 168) + t / 800
            + 0.3 * rng.standard_normal(hours))
    dates = np.datetime64("2024-01-01T00:00") + t.astype("timedelta64[h]")
    lines = ["date,load"] + [f"{d},{v:.4f}" for d, v in zip(dates.astype(str), load)]
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    if len(sys.argv) == 4:
        csv, target, horizon = sys.argv[1], sys.argv[2], int(sys.argv[3])
        overrides = {}
    else:
        csv, target, horizon = synthetic_csv(Path("synthetic_load.csv")), "load", 24
        overrides = {"iters": 60, "depth": 4, "output_dims": 64}     # a quick demo
    result = forecast_csv(csv, target, horizon, overrides=overrides, png="forecast.png")
    for key, value in result.metrics.items():
        print(f"{key:>20}  {value:.4f}")
    print("next", horizon, "steps:", np.round(result.future, 3))
    print("plot: forecast.png")
