"""Forecast a column of your own CSV with TS2Vec and save a plot of history, truth and forecast.

    python examples/forecasting.py                       # a synthetic daily-cycle series
    python examples/forecasting.py my.csv units 24       # your CSV: first column `date`
    python examples/forecasting.py --out results/        # where the plot (and demo CSV) go

The same as ``contrastkit forecast --csv my.csv --target units --horizon 24 --plot forecast.png``.
"""
import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="?", help="your CSV (first column `date`); "
                        "default: a synthetic hourly load series written to --out")
    parser.add_argument("target", nargs="?", help="the column to forecast")
    parser.add_argument("horizon", nargs="?", type=int, help="steps to forecast")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for forecast.png (and the demo CSV); default: here")
    args = parser.parse_args()
    given = [a is not None for a in (args.csv, args.target, args.horizon)]
    if any(given) and not all(given):
        parser.error("give all of CSV TARGET HORIZON, or none for the synthetic demo")
    if args.horizon is not None and args.horizon < 1:
        parser.error(f"HORIZON must be a positive number of steps, got {args.horizon}")
    args.out.mkdir(parents=True, exist_ok=True)
    if all(given):
        csv, target, horizon = args.csv, args.target, args.horizon
        overrides = {}
    else:
        csv, target, horizon = synthetic_csv(args.out / "synthetic_load.csv"), "load", 24
        overrides = {"iters": 60, "depth": 4, "output_dims": 64}     # a quick demo
    png = args.out / "forecast.png"
    result = forecast_csv(csv, target, horizon, overrides=overrides, png=png)
    for key, value in result.metrics.items():
        print(f"{key:>20}  {value:.4f}")
    print("next", horizon, "steps:", np.round(result.future, 3))
    print("plot:", png)


if __name__ == "__main__":
    main()
