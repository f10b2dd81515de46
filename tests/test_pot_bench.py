"""benchmarks/pot.py: paired summary and ``--append`` (new seeds join a saved run, nothing reruns)."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import load_benchmark


def _fake_run(calls):
    def run_one(dataset, base, pot, seed, epochs, subset, data, official=False,
                pot_bound="official"):
        calls.append((seed, pot))
        f1 = 0.70 + 0.01 * seed + ((0.02 if pot_bound == "official" else -0.01) if pot else 0.0)
        return dict(dataset=dataset, base=base, pot=pot, seed=seed, epochs=epochs,
                    loss_subset=subset, kappa=0.5, pot_bound=pot_bound, train_s=1.0, wall_s=1.0,
                    final_loss=0.0, micro_f1=f1, macro_f1=f1 - 0.05)
    return run_one


def _fake_bench(monkeypatch):
    """benchmarks/pot.py with training replaced by a recorder of (seed, pot) calls."""
    bench = load_benchmark("pot")
    calls: list = []
    monkeypatch.setattr(bench, "run_one", _fake_run(calls))
    monkeypatch.setattr(bench, "load", lambda name: None)
    return bench, calls


def test_append_adds_only_missing_seeds(tmp_path, monkeypatch):
    bench, calls = _fake_bench(monkeypatch)
    out = tmp_path / "pot_x"
    argv = ["pot.py", "--plan", "cora:grace:5:0", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv + ["--seeds", "0", "1"])
    bench.main()
    assert calls == [(0, False), (0, True), (1, False), (1, True)]
    calls.clear()
    monkeypatch.setattr(sys, "argv", argv + ["--seeds", "1", "2", "--append"])
    bench.main()
    assert calls == [(2, False), (2, True)]  # seed 1 was saved already
    saved = json.loads(out.with_suffix(".json").read_text())
    assert sorted((r["seed"], r["pot"]) for r in saved["runs"]) == [
        (s, p) for s in (0, 1, 2) for p in (False, True)]
    row = saved["summary"][0]
    assert row["seeds"] == [0, 1, 2]
    assert row["micro_f1"]["diff_mean"] == pytest.approx(0.02)
    assert saved["meta"]["seeds"] == [0, 1, 2]
    # without --append the saved runs are replaced
    calls.clear()
    monkeypatch.setattr(sys, "argv", argv + ["--seeds", "3"])
    bench.main()
    saved = json.loads(out.with_suffix(".json").read_text())
    assert [r["seed"] for r in saved["runs"]] == [3, 3]


def test_merge_joins_runs_of_another_process(tmp_path, monkeypatch):
    bench, calls = _fake_bench(monkeypatch)
    main, other = tmp_path / "pot_main", tmp_path / "pot_other"
    plan = ["pot.py", "--plan", "cora:gca:5:0"]
    monkeypatch.setattr(sys, "argv", plan + ["--seeds", "0", "1", "--out", str(main)])
    bench.main()
    monkeypatch.setattr(sys, "argv", plan + ["--seeds", "2", "--out", str(other)])
    bench.main()
    calls.clear()
    monkeypatch.setattr(sys, "argv", plan + ["--seeds", "0", "1", "2", "--append", "--merge",
                                             str(other.with_suffix(".json")), "--out", str(main)])
    bench.main()
    assert calls == []  # everything was saved by one of the two processes
    saved = json.loads(main.with_suffix(".json").read_text())
    assert saved["summary"][0]["seeds"] == [0, 1, 2] and len(saved["runs"]) == 6
    assert saved["meta"]["total_wall_s"] >= 0
    monkeypatch.setattr(sys, "argv", plan + ["--merge", str(tmp_path / "missing.json"),
                                             "--out", str(main)])
    with pytest.raises(SystemExit, match="missing.json"):
        bench.main()


def test_arms_split_one_seed_over_two_processes(tmp_path, monkeypatch):
    bench, calls = _fake_bench(monkeypatch)
    first, second = tmp_path / "pot_first", tmp_path / "pot_second"
    plan = ["pot.py", "--plan", "cora:gca:5:0", "--seeds", "0", "1"]
    monkeypatch.setattr(sys, "argv", plan + ["--arms", "pot", "--out", str(first)])
    bench.main()
    assert calls == [(0, True), (1, True)]
    calls.clear()
    monkeypatch.setattr(sys, "argv", plan + ["--arms", "base", "--out", str(second)])
    bench.main()
    assert calls == [(0, False), (1, False)]
    calls.clear()
    monkeypatch.setattr(sys, "argv", plan + ["--append", "--merge", str(second.with_suffix(".json")),
                                             "--out", str(first)])
    bench.main()
    assert calls == []
    row = json.loads(first.with_suffix(".json").read_text())["summary"][0]
    assert row["seeds"] == [0, 1] and row["micro_f1"]["diff_mean"] == pytest.approx(0.02)


def test_certified_pot_arms_pair_with_the_saved_base_arms(tmp_path, monkeypatch):
    bench, calls = _fake_bench(monkeypatch)
    official, certified = tmp_path / "pot_official", tmp_path / "pot_certified"
    plan = ["pot.py", "--plan", "cora:grace:5:0", "--seeds", "0", "1"]
    monkeypatch.setattr(sys, "argv", plan + ["--out", str(official)])
    bench.main()
    calls.clear()
    monkeypatch.setattr(sys, "argv", plan + ["--pot-bound", "certified", "--merge",
                                             str(official.with_suffix(".json")), "--out",
                                             str(certified)])
    bench.main()
    assert calls == [(0, True), (1, True)]  # only the certified POT arms are new
    saved = json.loads(certified.with_suffix(".json").read_text())
    rows = {r["pot_bound"]: r for r in saved["summary"]}
    assert set(rows) == {"official", "certified"}
    assert rows["official"]["micro_f1"]["diff_mean"] == pytest.approx(0.02)
    assert rows["certified"]["micro_f1"]["diff_mean"] == pytest.approx(-0.01)
    assert rows["certified"]["seeds"] == [0, 1]
    assert "grace (certified POT)" in certified.with_suffix(".md").read_text()
