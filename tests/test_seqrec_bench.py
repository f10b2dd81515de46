"""benchmarks/seqrec.py: why a saved run ended (the table's "stopped by" column)."""

from __future__ import annotations

from conftest import load_benchmark


def _run(epochs_run: int, best_epoch: int, budget: int = 100, patience: int = 10) -> dict:
    return {"metrics": {"epochs_run": epochs_run, "best_epoch": best_epoch},
            "epochs_budget": budget, "config": {"patience": patience}}


def test_stop_reason():
    bench = load_benchmark("seqrec")
    assert bench._stop_reason(_run(25, 13)) == "patience"  # 11 epochs without improvement
    assert bench._stop_reason(_run(24, 13)) == "time budget"  # 10: RecBole goes on
    assert bench._stop_reason(_run(100, 95)) == "epochs"
    assert bench._stop_reason(_run(7, 6, patience=0)) == "time budget"
    assert bench._stop_reason(_run(8, 6, patience=0)) == "patience"
