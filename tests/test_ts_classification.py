"""The UCR/UEA classification benchmark (benchmarks/ts_classification.py): dataset list,
resume logic, summary, and a short TS2Vec learning run on a real UCR set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import load_benchmark, require_dataset


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("ts_classification")


def test_reference_tables(bench):
    assert len(bench.UCR_REFERENCE) == 61
    assert round(np.mean(list(bench.UCR_REFERENCE.values())), 3) == 0.843  # the spec's mean
    assert bench.reference("ts2vec", "UEA", "ERing") == 0.874
    assert bench.reference("autotcl", "UEA", "ERing") == 0.944
    assert bench.reference("autotcl", "UCR", "Coffee") == 1.0  # UCR: TS2Vec's numbers


def test_dataset_list_order_and_names(bench):
    require_dataset("ucr-smoothsubspace")
    require_dataset("uea-ering")
    every = bench.dataset_list("all")
    ucr = bench.dataset_list("ucr")
    assert len(ucr) == 61 and len(every) == 64 and len(bench.dataset_list("uea")) == 3
    costs = [bench.estimated_cost(d["n_train"], d["n_test"], d["length"]) for d in ucr]
    assert costs == sorted(costs) and ucr[0]["name"] == "SmoothSubspace"
    names = [d["name"] for d in every]
    # the UEA sets come before the costly UCR tail (Rock, ACSF1, Worms...)
    assert names.index("ERing") < names.index("Rock") and names.index("ERing") > names.index(
        "Coffee")
    picked = bench.dataset_list("Coffee,uea-ering,ucr-gunpoint")
    assert [d["id"] for d in picked] == ["ucr-coffee", "uea-ering", "ucr-gunpoint"]
    assert picked[0]["n_train"] == 28 and picked[0]["length"] == 286
    with pytest.raises(ValueError, match="--datasets"):
        bench.dataset_list("NoSuchSet")


def _fake_row(name, acc):
    return {"status": "ok", "acc": acc, "auprc": acc, "train_time_s": 1.0, "eval_time_s": 0.5,
            "iters": 3, "official_iters": 200, "final_loss": 1.0, "n_train": 10, "n_test": 10,
            "length": 20, "channels": 1, "classes": 2, "wall_s": 2.0}


def test_resume_force_and_retry_skipped(bench, tmp_path, monkeypatch):
    require_dataset("ucr-coffee")
    require_dataset("ucr-gunpoint")
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    calls = []

    def fake(method, d, seed, iters, timeout, sets=None):
        calls.append(d["name"])
        if d["name"] == "GunPoint" and calls.count("GunPoint") == 1:
            return {"status": "skipped", "reason": "over the per-dataset cap", "wall_s": timeout}
        return _fake_row(d["name"], 0.9)

    monkeypatch.setattr(bench, "run_in_subprocess", fake)
    args = ["--datasets", "Coffee,GunPoint", "--timeout", "5"]
    bench.main(args)
    assert calls == ["Coffee", "GunPoint"]
    res = json.loads((tmp_path / "ts_classification_ts2vec.json").read_text())
    assert res["datasets"]["ucr-gunpoint"]["status"] == "skipped"
    assert res["summary"]["UCR"]["count"] == 1
    assert res["summary"]["UCR"]["mean_reference"] == pytest.approx(1.0)  # Coffee only
    md = (tmp_path / "ts_classification_ts2vec.md").read_text()
    assert "| Coffee | UCR | 10 / 10 |" in md and "skipped: GunPoint" in md
    bench.main(args)  # resume: nothing to do
    assert calls == ["Coffee", "GunPoint"]
    bench.main(args + ["--retry-skipped"])  # only the skipped one
    assert calls == ["Coffee", "GunPoint", "GunPoint"]
    res = json.loads((tmp_path / "ts_classification_ts2vec.json").read_text())
    s = res["summary"]["UCR"]
    assert s["count"] == 2 and s["mean_acc"] == pytest.approx(0.9)
    assert s["mean_reference"] == pytest.approx((1.0 + 0.980) / 2)  # same datasets both sides
    bench.main(args + ["--force"])
    assert calls[3:] == ["Coffee", "GunPoint"]


def _svm_accuracy(embed, d, **svm) -> float:
    """Test accuracy of the benchmark's RBF-SVM on ``embed`` (an untrained encoder here) applied
    to the train and test series of the UCR set ``d``."""
    from contrastkit.seqcl.ts2vec import eval_classification
    return eval_classification(embed(d.x_train).numpy(), d.y_train,
                               embed(d.x_test).numpy(), d.y_test, **svm)["acc"]


def test_ts2vec_learns_smoothsubspace(bench):
    """40 TS2Vec steps on SmoothSubspace (150 train series of length 15, 3 classes; chance 0.33).
    An untrained encoder + the same SVM scores 0.88 / 0.89 (seeds 0 / 1) and the official 200
    steps 0.98 (the paper's 0.980); 40 steps score 0.967 on both seeds: floor 0.93, and above the
    untrained encoder of the same seed."""
    import torch
    from contrastkit.datasets import load
    from contrastkit.seqcl import ts2vec as T
    require_dataset("ucr-smoothsubspace")
    r = bench.run_one("ts2vec", "ucr-smoothsubspace", seed=0, iters=40)
    assert r["iters"] == 40 and r["official_iters"] == 200 and r["classes"] == 3
    d = load("ucr-smoothsubspace")
    torch.manual_seed(0)
    enc = T.TS2Vec(T.TS2VecConfig(), 1).encoder
    u = _svm_accuracy(lambda x: T.encode_full(enc, x), d)
    assert r["acc"] >= 0.93, r
    assert r["acc"] > u + 0.03, (r["acc"], u)


def test_autotcl_learns_smoothsubspace(bench):
    """40 AutoTCL steps (the classification setting: TS2Vec backbone, learnt augmentation) on
    SmoothSubspace. The untrained encoder + the same SVM scores 0.880 / 0.893 (seeds 0 / 1), 40
    steps 0.940 / 0.987, the official 200 steps 0.980: floor 0.92, and 0.03 above the
    untrained encoder of the same seed."""
    import torch
    from contrastkit.datasets import load
    from contrastkit.seqcl import autotcl as A
    require_dataset("ucr-smoothsubspace")
    r = bench.run_one("autotcl", "ucr-smoothsubspace", seed=0, iters=40)
    assert r["iters"] == 40 and r["classes"] == 3
    d = load("ucr-smoothsubspace")
    cfg = bench.method_config("autotcl", "ucr-smoothsubspace", int(d.x_train.size), 40)
    torch.manual_seed(0)
    untrained = A.AutoTCL(cfg, 1).eval()
    u = _svm_accuracy(lambda x: untrained.embed(torch.from_numpy(x)), d,
                      max_train=cfg.max_svm_train, seed=0, tiny_c=1e8)
    assert r["acc"] >= 0.92, r
    assert r["acc"] > u + 0.03, (r["acc"], u)


def test_autotcl_config_and_overrides(bench):
    """``--method autotcl`` uses the classification setting with TS2Vec's budget; ``--set``
    overrides fields (how the cosine-loss results were produced)."""
    cfg = bench.method_config("autotcl", "ucr-beef", 1000, None)
    assert (cfg.backbone, cfg.iters, cfg.global_similarity, cfg.view_timestamp_mask) == (
        "ts2vec", 200, "dot", True)
    cfg = bench.method_config("autotcl", "ucr-beef", 200_000, None, bench.parse_overrides(
        ["global_similarity=cosine", "view_timestamp_mask=false"]))
    assert (cfg.iters, cfg.global_similarity, cfg.view_timestamp_mask) == (600, "cosine", False)


def test_autotcl_variant_selection_criterion():
    """The train-only criterion that chose AutoTCL's classification setting: leave-one-out
    1-NN (cosine) against a brute-force loop, and the Markdown means."""
    mod = load_benchmark("autotcl_classification_variants")
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(12, 3)), rng.integers(0, 3, 12)
    hits = 0
    for i in range(12):
        sims = [z[i] @ z[j] / np.linalg.norm(z[i]) / np.linalg.norm(z[j]) if j != i else -np.inf
                for j in range(12)]
        hits += y[int(np.argmax(sims))] == y[i]
    assert mod.loo_1nn(z, y) == pytest.approx(hits / 12)
    rows = [{"dataset": d, "variant": "dot_dv", "train_loo1nn": a, "acc": 0.5, "std": 1.0}
            for d, a in (("A", 0.2), ("B", 0.6))]
    assert "| dot_dv | 0.200 / 0.500 / 1 | 0.600 / 0.500 / 1 | 0.400 | 0.500 |" in mod.render(rows)
