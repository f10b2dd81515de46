"""GRACE and GCA on real data: the method learns (probe beats the untrained encoder and a floor),
runs through the CLI, and the paper-level numbers are reproduced in the slow tests."""

from __future__ import annotations

import json

import pytest
import torch

from contrastkit.cli import main
from contrastkit.core.trainer import Trainer
from contrastkit.datasets import load
from contrastkit.graphcl.grace import (GCA_PRESETS, GRACE, GRACE_PRESETS, GCAConfig, GRACEConfig,
                                       evaluate_embeddings)


@pytest.fixture(scope="module")
def cora():
    return load("cora")  # the data root's copy, or the embedded one


def _probe(cfg, method, data):
    method.eval()
    return evaluate_embeddings(cfg, method.embed(data), data, seed=0)["micro_f1"]


def test_grace_learns_on_cora(cora):
    """40 epochs of GRACE with the paper's Cora settings: well above the untrained encoder."""
    cfg = GRACEConfig(**dict(GRACE_PRESETS["cora"], epochs=40, eval_repeats=1))
    torch.manual_seed(0)
    method = GRACE(cfg, cora.num_features)
    before = _probe(cfg, method, cora)
    trainer = Trainer(cfg.epochs, seed=0, progress=False)
    trainer.fit(method, [cora])
    after = _probe(cfg, method, cora)
    losses = [h["loss"] for h in trainer.history]
    assert losses[-1] < losses[0] - 0.1
    assert after >= 0.78, after
    assert after >= before + 0.06, (before, after)


def test_gca_adaptive_views_learn_on_cora(cora):
    """GCA (degree-adaptive views) trains and beats the untrained encoder with GCA's evaluator."""
    cfg = GCAConfig(**dict(GRACE_PRESETS["cora"], epochs=40, drop_scheme="degree",
                           eval_protocol="gca", eval_repeats=1))
    torch.manual_seed(0)
    method = GRACE(cfg, cora.num_features)
    v1, v2 = method.views(cora)
    assert v1.edge_index.size(1) < cora.edge_index.size(1)
    assert (v1.x.abs().sum(0) == 0).sum() > (cora.x.abs().sum(0) == 0).sum()
    before = _probe(cfg, method, cora)
    Trainer(cfg.epochs, seed=0, progress=False).fit(method, [cora])
    after = _probe(cfg, method, cora)
    assert after >= 0.76 and after >= before + 0.04, (before, after)


def test_presets_follow_the_spec_tables():
    assert GRACE_PRESETS["citeseer"]["activation"] == "prelu"
    assert GRACE_PRESETS["citeseer"]["temperature"] == 0.9
    assert GCA_PRESETS["computers"]["activation"] == "rrelu"
    assert GCA_PRESETS["computers"]["drop_edge_p1"] == 0.6
    assert GCA_PRESETS["physics"]["block_size"] == 1024
    for preset in list(GRACE_PRESETS.values()) + list(GCA_PRESETS.values()):
        GCAConfig(**preset)  # every preset is a valid configuration


@pytest.mark.parametrize("seeds", [1, 2])
def test_cli_train_eval_roundtrip(tmp_path, seeds):
    out = tmp_path / "run"
    rc = main(["train", "grace", "--set", "epochs=2", "--set", "eval_repeats=1", "--out", str(out),
               "--seeds", str(seeds), "--no-progress"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (seeds > 1) == ("micro_f1_std" in metrics)
    for key in ("acc", "micro_f1", "macro_f1", "alignment", "uniformity", "time_per_epoch_s",
                "peak_mem_bytes", "eval_time_s"):
        assert key in metrics
    assert 0.0 <= metrics["micro_f1"] <= 1.0
    assert (out / "checkpoint.pt").exists() and (out / "embeddings.pt").exists()
    emb = torch.load(out / "embeddings.pt", weights_only=True)
    assert emb.shape == (2708, 128)
    assert main(["eval", str(out)]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert abs(again["micro_f1"] - metrics["micro_f1"]) < 1e-9
    assert again.keys() == metrics.keys()  # costs and alignment/uniformity survive re-evaluation


@pytest.mark.slow
@pytest.mark.parametrize("dataset,floor", [("cora", 0.825), ("citeseer", 0.705)])
def test_grace_reproduces_paper_protocol(dataset, floor, tmp_path):
    """Spec protocol: paper hyperparameters, 10/90 splits, CV logistic regression, 5 seeds."""
    from conftest import require_dataset
    require_dataset(dataset)
    out = tmp_path / dataset
    assert main(["train", "grace", "--dataset", dataset, "--seeds", "5", "--out", str(out),
                 "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["micro_f1"] >= floor, metrics


def test_gca_protocol_uses_public_splits_when_the_dataset_has_them(monkeypatch):
    """WikiCS-style data (train_mask [N, 20]): one validation-selected classifier per public split."""
    import contrastkit.graphcl.grace as grace
    from torch_geometric.data import Data

    calls = []

    def fake_probe(emb, y, train, val, test, *, epochs=3000, seed=0, **kw):
        calls.append((len(train), len(val), len(test), epochs))
        return {"acc": 0.5, "micro_f1": 0.5, "macro_f1": 0.4}

    monkeypatch.setattr(grace, "torch_lr_probe", fake_probe)
    n = 100
    tm = torch.zeros(n, 20, dtype=torch.bool)
    tm[:10] = True
    vm = torch.zeros(n, 20, dtype=torch.bool)
    vm[10:30] = True
    te = torch.zeros(n, dtype=torch.bool)
    te[50:] = True
    data = Data(y=torch.arange(n) % 3, train_mask=tm, val_mask=vm, test_mask=te)
    out = evaluate_embeddings(GCAConfig(), torch.randn(n, 4), data, seed=0)
    assert calls == [(10, 20, 50, 800)] * 20 and out["micro_f1"] == 0.5


def test_gca_periodic_evaluation_through_the_cli(tmp_path):
    """eval_every runs GCA's evaluator (which trains a classifier) inside the trainer's no_grad."""
    out = tmp_path / "gca"
    assert main(["train", "gca", "--dataset", "cora", "--set", "epochs=2", "--set", "eval_every=1",
                 "--set", "hidden_channels=32", "--set", "projection_channels=16",
                 "--out", str(out), "--no-progress"]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1] and all(0 < r["micro_f1"] <= 1 for r in log)


def test_propagation_option_builds_the_same_model(cora):
    """``propagation`` picks the GCN's aggregation; both give the same loss on the same views."""
    losses = []
    for prop in ("message", "sparse"):
        torch.manual_seed(0)
        cfg = GCAConfig(hidden_channels=32, projection_channels=16, propagation=prop)
        method = GRACE(cfg, cora.num_features)
        assert method.encoder.propagation == prop
        torch.manual_seed(1)
        losses.append(method.training_step(cora))
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="propagation"):
        GRACEConfig(propagation="dense")
