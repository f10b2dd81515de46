"""benchmarks/pamc_autoencoder_starts.py: joins the start quality with the saved runs correctly."""

from __future__ import annotations

import json

from conftest import load_benchmark

bench = load_benchmark("pamc_autoencoder_starts")


def test_final_acc_keeps_only_per_seed_autoencoder_runs(tmp_path, monkeypatch):
    runs = [
        {"method": "pamc", "dataset": "citeseer", "seed": 3, "set": ["pretrain_seed=-1"],
         "metrics": {"cluster_acc": 0.556}},
        {"method": "scgc", "dataset": "citeseer", "seed": 3, "set": ["pretrain_seed=-1"],
         "metrics": {"cluster_acc": 0.677}},
        # other overrides, another dataset, the shared autoencoder: not this comparison
        {"method": "pamc", "dataset": "citeseer", "seed": 3,
         "set": ["pretrain_seed=-1", "alpha=1"], "metrics": {"cluster_acc": 0.1}},
        {"method": "pamc", "dataset": "cora", "seed": 3, "set": ["pretrain_seed=-1"],
         "metrics": {"cluster_acc": 0.2}},
        {"method": "pamc", "dataset": "citeseer", "seed": 4, "set": [],
         "metrics": {"cluster_acc": 0.3}},
    ]
    (tmp_path / "graph_clustering.json").write_text(json.dumps(runs))
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    assert bench.final_acc("citeseer") == {("pamc", 3): 0.556, ("scgc", 3): 0.677}


def test_table_sorts_by_start_and_shows_the_gap():
    rows = [{"dataset": "citeseer", "seed": 4, "ae_mse": 0.0069, "start_acc": 0.44,
             "start_nmi": 0.2, "pamc_acc": 0.56, "scgc_acc": 0.617},
            {"dataset": "citeseer", "seed": 1, "ae_mse": 0.0069, "start_acc": 0.58,
             "start_nmi": 0.3, "pamc_acc": None, "scgc_acc": 0.702}]
    lines = bench.table(rows).splitlines()
    assert lines[2].startswith("| citeseer | 1 |") and lines[2].endswith("| – | 70.2 | – |")
    assert lines[3].endswith("| 56.0 | 61.7 | -5.7 |")
