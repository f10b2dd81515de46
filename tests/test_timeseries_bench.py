"""benchmarks/timeseries.py: the mean +- std over seeds of the saved forecasting runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_benchmark


def _write(path: Path, method: str, seed: int, mse: float, iters: int = 80,
           overrides: dict | None = None) -> None:
    rec = {"dataset": "etth2", "seed": seed, "method": method, "iters": iters,
           "official_iters": 80, method: {"mse": mse, "mae": 2 * mse}, "published": {"mse": 0.158}}
    if overrides is not None:
        rec["overrides"] = overrides
    path.write_text(json.dumps(rec))


def test_seed_summary_groups_runs_and_skips_shortened_ones(tmp_path):
    bench = load_benchmark("timeseries")
    _write(tmp_path / "autotcl_etth2.json", "autotcl", 42, 0.177)
    _write(tmp_path / "autotcl_etth2_seed0.json", "autotcl", 0, 0.163)
    _write(tmp_path / "autotcl_etth2_seed1.json", "autotcl", 1, 0.149)
    _write(tmp_path / "autotcl_etth2_short.json", "autotcl", 5, 9.0, iters=3)  # not comparable
    _write(tmp_path / "autotcl_etth2_lr.json", "autotcl", 44, 0.5, overrides={"lr": 1e-5})
    _write(tmp_path / "autotcl_etth2_seed1_again.json", "autotcl", 1, 0.149)  # same run
    _write(tmp_path / "autotcl_etth2_seed1_rerun.json", "autotcl", 1, 0.150)  # differs
    md = bench.seed_summary(tmp_path)
    saved = json.loads((tmp_path / "timeseries_seeds.json").read_text())
    got = saved["summary"]
    assert [q["file"] for q in saved["reruns_not_counted"]] == ["autotcl_etth2_seed1_rerun.json"]
    assert "autotcl_etth2_seed1_rerun.json (seed 1: 0.1500" in md
    assert len(got) == 2 and got[0]["seeds"] == [42, 0, 1] and got[0]["setting"] == "official"
    assert got[1]["seeds"] == [44] and got[1]["setting"] == "lr=1e-05"  # its own row
    assert got[0]["mse_mean"] == pytest.approx(0.163)
    assert got[0]["mse_std"] == pytest.approx(0.014)  # sample std of 0.177, 0.163, 0.149
    assert got[0]["mae_mean"] == pytest.approx(0.326)
    assert ("| autotcl | official | etth2 | 42, 0, 1 | 0.177, 0.163, 0.149 | 0.163 +- 0.014 |"
            in md)
    assert "+3.2 %" in md
