"""Plots of a run folder: training loss (and any periodic evaluation) per epoch, per seed.

Needs the ``plot`` extra (``pip install "contrastkit[plot]"``, i.e. matplotlib).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any


def _require_matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError as exc:  # the optional extra is missing
        raise ImportError("plotting needs matplotlib: install the 'plot' extra "
                          "(pip install \"contrastkit[plot]\")") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _first_seed_label(run_dir: Path) -> str:
    try:
        m = json.loads((run_dir / "metrics.json").read_text())
        return f"seed {m['seeds'][0] if 'seeds' in m else m['seed']}"
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return "first seed"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``log.jsonl``; a cut-off last line (a run killed mid-write) is skipped with a
    warning, any other unreadable line is a ``ValueError`` naming the file and line."""
    lines = [(i, line) for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    rows = []
    for k, (i, line) in enumerate(lines):
        try:
            row = json.loads(line)
        except ValueError as exc:
            if k == len(lines) - 1:
                warnings.warn(f"{path}:{i}: skipping an incomplete last line ({exc})",
                              stacklevel=3)
                break
            raise ValueError(f"{path}:{i}: expected one JSON object per line, got {line[:80]!r} "
                             f"({exc})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{i}: expected a JSON object, got {line[:80]!r}")
        rows.append(row)
    return rows


def read_logs(run_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """``{label: rows}`` for ``run_dir/log.jsonl`` and every ``run_dir/seed-*/log.jsonl``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"DIR: expected a run folder, got {run_dir} (not a folder)")
    logs: dict[str, list[dict[str, Any]]] = {}
    for path in [run_dir / "log.jsonl", *sorted(run_dir.glob("seed-*/log.jsonl"))]:
        if path.is_file():
            rows = _read_jsonl(path)
            logs[_first_seed_label(run_dir) if path.parent == run_dir
                 else path.parent.name.replace("-", " ")] = rows
    if not logs:
        raise FileNotFoundError(f"DIR: no log.jsonl in {run_dir} or its seed-* folders")
    return logs


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Plot loss per epoch (left) and evaluated metrics per epoch (right); return the PNG path."""
    plt = _require_matplotlib()
    logs = read_logs(run_dir)
    metric_keys = sorted({k for rows in logs.values() for r in rows for k, v in r.items()
                          if k not in ("epoch", "loss", "time_s", "lr")
                          and isinstance(v, (int, float)) and 0.0 <= v <= 1.0})
    fig, axes = plt.subplots(1, 2 if metric_keys else 1, figsize=(11 if metric_keys else 6, 4),
                             squeeze=False)
    for label, rows in logs.items():
        axes[0, 0].plot([r["epoch"] for r in rows], [r["loss"] for r in rows], label=label)
    axes[0, 0].set(xlabel="epoch", ylabel="training loss", title=Path(run_dir).name)
    axes[0, 0].legend()
    if metric_keys:
        for key in metric_keys:
            for label, rows in logs.items():
                pts = [(r["epoch"], r[key]) for r in rows if key in r]
                if pts:
                    axes[0, 1].plot(*zip(*pts), marker="o", label=f"{key} ({label})")
        axes[0, 1].set(xlabel="epoch", ylabel="metric", title="evaluation during training")
        axes[0, 1].legend(fontsize="small")
    fig.tight_layout()
    out_path = Path(out) if out is not None else Path(run_dir) / "training.png"
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path
