"""Tests for the method registry and the ``contrastkit`` command line, with a dummy method."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import torch
import yaml

import contrastkit
from contrastkit import cli, registry
from contrastkit.registry import MethodSpec, RunContext, RunResult

REPO = Path(__file__).resolve().parents[1]


@dataclass
class DummyEncoder:
    hidden: int = 8
    act: Literal["relu", "prelu"] = "relu"


@dataclass
class DummyConfig:
    dataset: str = "toy"
    dim: int = 4
    lr: float = 0.01
    epochs: int = 2
    mode: Literal["fast", "slow"] = "fast"
    encoder: DummyEncoder = field(default_factory=DummyEncoder)


class Recorder:
    """The dummy method: records every call, writes what the trainer would write."""

    def __init__(self) -> None:
        self.runs: list[tuple[DummyConfig, RunContext, bool]] = []
        self.evals: list[tuple[DummyConfig, torch.Tensor, RunContext]] = []

    def run(self, cfg: DummyConfig, ctx: RunContext) -> RunResult:
        config_written = (ctx.out_dir / "config.yaml").exists() or \
            (ctx.out_dir.parent / "config.yaml").exists()
        self.runs.append((cfg, ctx, config_written))
        (ctx.out_dir / "log.jsonl").write_text(json.dumps({"epoch": 0, "loss": 1.0}) + "\n")
        gen = torch.Generator().manual_seed(ctx.seed)
        emb = torch.randn(10, cfg.dim, generator=gen)
        return RunResult(metrics={"accuracy": 0.5 + 0.1 * ctx.seed, "f1": torch.tensor(0.25)},
                         embeddings=emb)

    def evaluate(self, cfg: DummyConfig, emb: torch.Tensor, ctx: RunContext) -> dict[str, float]:
        self.evals.append((cfg, emb, ctx))
        return {"accuracy": 0.9, "f1": 0.75}


@pytest.fixture
def dummy(monkeypatch, tmp_path):
    """A registry holding only the dummy method (plus a broken built-in), cwd in tmp_path."""
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "_IMPORT_ERRORS", {})
    monkeypatch.setattr(registry, "_BUILTIN", {"broken": "contrastkit._no_such_method_module"})
    rec = Recorder()
    registry.register(MethodSpec(
        name="Dummy", config_cls=DummyConfig, run=rec.run, evaluate=rec.evaluate,
        description="a dummy method for tests", default_dataset="toy",
        presets={"toy": {"dim": 3, "lr": 0.05}, "toy-big": {"dim": 6}}))
    monkeypatch.chdir(tmp_path)
    return rec


def _train(*args: str) -> int:
    return cli.main(["train", *args, "--no-progress", "--device", "cpu"])


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert lines and lines[-1].startswith("error: "), err
    assert "Traceback" not in err
    return lines[-1]


def _saved(run_dir: Path) -> tuple[dict, dict]:
    data = yaml.safe_load((run_dir / "config.yaml").read_text())
    return data, data.pop("run")


# ---- registry -------------------------------------------------------------------------------
def test_registry_lookup(dummy):
    spec = registry.get_method("DUMMY")
    assert spec.name == "Dummy" and registry.get_method(" dummy ") is spec
    assert registry.list_methods() == ["dummy"]  # the broken built-in is skipped
    assert "broken" in registry.unavailable_methods()
    with pytest.raises(ValueError, match=r"unknown method 'dumy'.*did you mean 'dummy'.*known "
                                         r"methods: dummy"):
        registry.get_method("dumy")
    with pytest.raises(ValueError, match=r"method 'broken' is unavailable.*ModuleNotFoundError"):
        registry.get_method("broken")


def test_register_validates(dummy):
    @dataclass
    class NoDataset:
        lr: float = 0.1

    def run(cfg, ctx):
        raise AssertionError

    with pytest.raises(ValueError, match="dataset"):
        registry.register(MethodSpec("x", NoDataset, run, run, "", "toy", {}))
    with pytest.raises(TypeError, match="config_cls"):
        registry.register(MethodSpec("x", dict, run, run, "", "toy", {}))
    with pytest.raises(TypeError, match="evaluate"):
        registry.register(MethodSpec("x", DummyConfig, run, None, "", "toy", {}))
    with pytest.raises(ValueError, match="name"):
        registry.register(MethodSpec(" ", DummyConfig, run, run, "", "toy", {}))


# ---- train ----------------------------------------------------------------------------------
def test_train_single_seed(dummy, tmp_path, capsys):
    out = tmp_path / "run1"
    assert _train("dummy", "--set", "lr=1e-3", "--set", "encoder.hidden=16", "--out",
                  str(out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "embeddings.pt", "log.jsonl",
                                                    "metrics.json"]
    (cfg, ctx, config_written), = dummy.runs
    assert config_written  # config.yaml exists before training starts
    assert ctx == RunContext(out_dir=out, device="cpu", seed=0, progress=False)
    assert cfg == DummyConfig(dataset="toy", dim=3, lr=1e-3, encoder=DummyEncoder(hidden=16))

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(0.5) and metrics["f1"] == pytest.approx(0.25)
    assert metrics["seed"] == 0 and metrics["time_total_s"] >= 0

    emb = torch.load(out / "embeddings.pt", weights_only=True)
    assert isinstance(emb, torch.Tensor) and emb.shape == (10, 3)

    data, run = _saved(out)
    assert data == {"dataset": "toy", "dim": 3, "lr": 1e-3, "epochs": 2, "mode": "fast",
                    "encoder": {"hidden": 16, "act": "relu"}}
    assert run["method"] == "dummy" and run["seed"] == 0 and run["device"] == "cpu"
    assert run["contrastkit_version"] == contrastkit.__version__
    assert run["torch_version"] == torch.__version__
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "0.5000" in printed


def test_train_default_out_dir_and_dataset_alias(dummy, tmp_path):
    assert _train("dummy", "--dataset", "TOY_BIG") == 0
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    assert re.fullmatch(r"dummy-toy-big-\d{8}-\d{6}", runs[0].name)
    cfg = dummy.runs[0][0]
    assert cfg.dataset == "toy-big" and cfg.dim == 6 and cfg.lr == 0.01  # toy-big preset


def test_layer_order_preset_yaml_set(dummy, tmp_path):
    cfg_file = tmp_path / "my.yaml"
    cfg_file.write_text("dim: 7\nepochs: 5\nencoder:\n  act: prelu\n")
    assert _train("dummy", "--config", str(cfg_file), "--set", "epochs=9", "--out", "a") == 0
    cfg = dummy.runs[-1][0]
    assert (cfg.dim, cfg.epochs, cfg.lr, cfg.encoder.act) == (7, 9, 0.05, "prelu")
    # the dataset can also come from --set; --dataset wins over everything
    assert _train("dummy", "--set", "dataset=toy-big", "--out", "b") == 0
    assert dummy.runs[-1][0].dim == 6
    assert _train("dummy", "--dataset", "toy-big", "--set", "dataset=toy", "--out", "c") == 0
    assert dummy.runs[-1][0].dataset == "toy-big"


def test_metrics_json_is_strict_json_and_nan_survives_eval(dummy, tmp_path, monkeypatch):
    """An undefined metric (NaN) is written as ``null`` (JSON has no NaN) and read back as NaN."""
    real_run = dummy.run

    def nan_run(cfg, ctx):
        result = real_run(cfg, ctx)
        return RunResult(metrics={**result.metrics, "auroc": float("nan")},
                         embeddings=result.embeddings)

    monkeypatch.setattr(registry.get_method("dummy"), "run", nan_run)
    out = tmp_path / "nan"
    assert _train("dummy", "--seeds", "2", "--out", str(out)) == 0
    text = (out / "metrics.json").read_text()
    assert "NaN" not in text
    metrics = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert metrics["per_seed"][0]["auroc"] is None and metrics["per_seed"][0]["accuracy"] == 0.5
    assert cli.main(["eval", str(out), "--no-progress", "--device", "cpu"]) == 0
    after = json.loads((out / "metrics.json").read_text())
    assert after["per_seed"][1]["auroc"] is None and after["per_seed"][0]["accuracy"] == 0.9


def test_train_multi_seed_layout(dummy, tmp_path, capsys):
    out = tmp_path / "multi"
    assert _train("dummy", "--seeds", "3", "--out", str(out)) == 0
    assert [ctx.seed for _, ctx, _ in dummy.runs] == [0, 1, 2]
    assert [ctx.out_dir for _, ctx, _ in dummy.runs] == [out, out / "seed-1", out / "seed-2"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("metrics.json")) == \
        ["metrics.json"]
    assert (out / "seed-1" / "log.jsonl").exists() and (out / "seed-2" / "log.jsonl").exists()
    assert not (out / "seed-0").exists()

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seeds"] == [0, 1, 2] and len(metrics["per_seed"]) == 3
    assert metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["accuracy_std"] == pytest.approx((0.02 / 3) ** 0.5)
    assert "time_total_s" in metrics
    emb = torch.load(out / "embeddings.pt", weights_only=True)
    assert torch.equal(emb, torch.randn(10, 3, generator=torch.Generator().manual_seed(0)))
    assert _saved(out)[1]["seeds"] == [0, 1, 2]
    assert "+-" in capsys.readouterr().out

    assert _train("dummy", "--seed", "5", "--seeds", "2", "--out", "other") == 0
    assert [ctx.seed for _, ctx, _ in dummy.runs[-2:]] == [5, 6]
    assert dummy.runs[-1][1].out_dir == Path("other") / "seed-6"


def test_rerun_from_saved_config(dummy, tmp_path):
    first = tmp_path / "first"
    assert _train("dummy", "--dataset", "toy-big", "--set", "lr=0.125", "--set", "mode=slow",
                  "--set", "encoder.act=prelu", "--seeds", "2", "--out", str(first)) == 0
    again = tmp_path / "again"
    assert _train("dummy", "--config", str(first / "config.yaml"), "--out", str(again)) == 0
    data1, run1 = _saved(first)
    data2, run2 = _saved(again)
    assert data1 == data2
    assert {k: run1[k] for k in ("method", "seeds", "device")} == \
        {k: run2[k] for k in ("method", "seeds", "device")}
    assert dummy.runs[0][0] == dummy.runs[2][0]
    assert [ctx.seed for _, ctx, _ in dummy.runs[2:]] == [0, 1]

    # METHOD may be omitted; command-line flags override the saved run section and config
    third = tmp_path / "third"
    assert cli.main(["train", "--config", str(first / "config.yaml"), "--seed", "3",
                     "--set", "epochs=4", "--out", str(third), "--no-progress"]) == 0
    data3, run3 = _saved(third)
    assert run3["seed"] == 3 and "seeds" not in run3 and run3["device"] == "cpu"
    assert data3 == {**data1, "epochs": 4}


def test_eval_single_seed(dummy, tmp_path, capsys):
    out = tmp_path / "r"
    assert _train("dummy", "--seed", "2", "--out", str(out)) == 0
    before = json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    assert cli.main(["eval", str(out), "--device", "cpu"]) == 0
    (cfg, emb, ctx), = dummy.evals
    assert cfg == dummy.runs[0][0] and emb.shape == (10, 3)
    assert ctx.out_dir == out and ctx.seed == 2 and ctx.device == "cpu"
    after = json.loads((out / "metrics.json").read_text())
    assert after == {"accuracy": 0.9, "f1": 0.75, "seed": 2,
                     "time_total_s": before["time_total_s"]}
    assert "0.9000" in capsys.readouterr().out


def test_eval_multi_seed_keeps_seed_info(dummy, tmp_path):
    out = tmp_path / "m"
    assert _train("dummy", "--seeds", "2", "--out", str(out)) == 0
    assert cli.main(["eval", str(out)]) == 0
    after = json.loads((out / "metrics.json").read_text())
    assert after["seeds"] == [0, 1]
    assert after["per_seed"][0]["accuracy"] == pytest.approx(0.9)
    assert after["per_seed"][1]["accuracy"] == pytest.approx(0.6)
    assert after["accuracy"] == pytest.approx(0.75)
    assert len(list(out.rglob("metrics.json"))) == 1


def test_eval_errors(dummy, tmp_path, capsys):
    assert cli.main(["eval", str(tmp_path / "nope")]) == 2
    assert "nope" in _error(capsys)
    run = tmp_path / "half"
    run.mkdir()
    (run / "config.yaml").write_text("run:\n  method: dummy\ndataset: toy\n")
    assert cli.main(["eval", str(run)]) == 2
    assert "embeddings.pt" in _error(capsys)
    torch.save({"not": "a tensor"}, run / "embeddings.pt")
    assert cli.main(["eval", str(run)]) == 2
    assert "embeddings.pt" in _error(capsys)
    (run / "config.yaml").write_text("dataset: toy\n")
    torch.save(torch.zeros(3, 2), run / "embeddings.pt")
    assert cli.main(["eval", str(run)]) == 2
    assert "method" in _error(capsys)


# ---- error cases ----------------------------------------------------------------------------
@pytest.mark.parametrize("args, expected", [
    (["dumy"], r"unknown method 'dumy'.*did you mean 'dummy'"),
    (["dummy", "--dataset", "nosuch"], r"unknown dataset 'nosuch'.*toy"),
    (["dummy", "--set", "lrr=0.1"], r"unknown config key 'lrr'.*did you mean 'lr'"),
    (["dummy", "--set", "encoder.hiden=3"], r"'encoder.hiden'.*did you mean 'encoder.hidden'"),
    (["dummy", "--set", "lr"], r"malformed override 'lr'"),
    (["dummy", "--set", "epochs=many"], r"epochs: expected int, got 'many'"),
    (["dummy", "--set", "mode=medium"], r"mode: expected one of \['fast', 'slow'\]"),
    (["dummy", "--config", "missing.yaml"], r"config file not found: missing.yaml"),
    (["dummy", "--seeds", "0"], r"--seeds"),
    (["dummy", "--seed", "-1"], r"--seed"),
    (["dummy", "--seeds", "10000000000"], r"--seeds: expected a number of seeds in \[1, 1000\]"),
    (["dummy", "--seed", "4294967295"], r"--seed: expected an int in \[0, 2\*\*32 - 1024\]"),
    (["dummy", "--seed", "4294966000", "--seeds", "500"], r"--seed \+ --seeds - 1"),
    ([], r"METHOD"),
])
def test_train_errors_exit_2(dummy, tmp_path, capsys, args, expected):
    assert _train(*args) == 2
    assert re.search(expected, _error(capsys))
    assert not (tmp_path / "runs").exists()  # nothing is written before the config is valid


@pytest.mark.parametrize("method, dataset, expected", [
    ("mclrec", "cora", r"method 'mclrec' takes sequence datasets, got 'cora' \(a "
                       r"graph:homogeneous dataset\); datasets it takes: beauty, sports, "),
    ("sasrec", "etth1", r"takes sequence datasets, got 'etth1' \(a timeseries:forecast"),
    ("grace", "beauty", r"takes graph:homogeneous datasets, got 'beauty' \(a sequence"),
    ("grace", "acm", r"takes graph:homogeneous datasets, got 'acm' \(a graph:heterogeneous"),
    ("pamc", "ml-100k", r"takes graph:homogeneous datasets, got 'ml-100k' \(a sequence"),
    ("meow", "cora", r"takes graph:heterogeneous datasets, got 'cora' \(a graph:homogeneous"),
    ("ts2vec", "cora", r"takes timeseries:forecast or timeseries:classification datasets, got "
                       r"'cora' \(a graph"),
    ("ts2vec", "adfsu", r"got 'adfsu' \(a timeseries:patients dataset\)"),
    ("autotcl", "beauty", r"takes timeseries:forecast or timeseries:classification datasets"),
    ("comet", "citeseer", r"takes timeseries:patients datasets, got 'citeseer' \(a graph"),
    ("simclr", "cora", r"takes image datasets, got 'cora'"),
    ("mclrec", "nosuch", r"unknown dataset 'nosuch' .*\(known datasets: beauty, ml-100k, sports, "
                         r"taobao, toys, yelp\)$"),
])
def test_method_given_another_kind_of_dataset_exits_2(tmp_path, monkeypatch, capsys, method,
                                                      dataset, expected):
    """A dataset the method cannot use is refused before any file is read or written (no data
    needed); the message lists only the datasets the method takes."""
    monkeypatch.chdir(tmp_path)
    assert _train(method, "--dataset", dataset, "--out", str(tmp_path / "run")) == 2
    assert re.search(expected, _error(capsys))
    assert not (tmp_path / "run").exists()


def test_unknown_dataset_lists_only_those_the_method_takes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _train("grace", "--dataset", "nosuch", "--out", str(tmp_path / "run")) == 2
    known = _error(capsys).split("known datasets: ")[1].rstrip(")").split(", ")
    assert "cora" in known and "citeseer" in known
    assert not {"acm", "imdb", "beauty", "etth1", "fashion-mnist"} & set(known), known


def test_run_refused_by_the_method_leaves_no_run_folder(dummy, tmp_path, capsys, monkeypatch):
    """A config value the method refuses (checked inside ``run``) stops with exit 2 and removes
    the folder the command created (only ``config.yaml`` was in it); a folder that existed
    before, or one where an epoch was logged, stays."""
    def refuse(cfg, ctx):
        (ctx.out_dir / "log.jsonl").write_text("")
        raise ValueError("dim: expected a positive int, got -3")

    monkeypatch.setattr(registry.get_method("dummy"), "run", refuse)
    assert _train("dummy", "--set", "dim=-3", "--out", "new") == 2
    assert "dim: expected a positive int" in _error(capsys)
    assert not (tmp_path / "new").exists()

    (tmp_path / "mine").mkdir()
    assert _train("dummy", "--set", "dim=-3", "--out", "mine") == 2
    assert (tmp_path / "mine" / "config.yaml").is_file()

    def fail_after_an_epoch(cfg, ctx):
        (ctx.out_dir / "log.jsonl").write_text('{"epoch": 0, "loss": 1.0}\n')
        raise ValueError("loss: expected a finite value, got nan")

    monkeypatch.setattr(registry.get_method("dummy"), "run", fail_after_an_epoch)
    assert _train("dummy", "--out", "partial") == 2
    assert (tmp_path / "partial" / "log.jsonl").is_file()


@pytest.mark.parametrize("content, expected", [
    ("lr: [0.1\n", r"invalid YAML at line"),
    ("- 1\n", r"expected a mapping"),
    ("lr: fast\n", r"lr: expected float"),
    ("run: 3\n", r"'run' section"),
])
def test_bad_yaml_exit_2(dummy, tmp_path, capsys, content, expected):
    (tmp_path / "bad.yaml").write_text(content)
    assert _train("dummy", "--config", "bad.yaml") == 2
    assert re.search(expected, _error(capsys))


def test_debug_shows_traceback(dummy, capsys):
    assert _train("dummy", "--set", "lrr=1", "--debug") == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")


def test_argparse_errors_return_2(dummy, capsys):
    assert cli.main([]) == 2
    assert cli.main(["train", "dummy", "--device", "tpu"]) == 2
    assert cli.main(["--help"]) == 0


# ---- methods, datasets ----------------------------------------------------------------------
def test_methods_lists_dummy_despite_broken_builtin(dummy, capsys):
    assert cli.main(["methods"]) == 0
    captured = capsys.readouterr()
    assert re.search(r"dummy\s+toy\s+toy, toy-big\s+a dummy method for tests", captured.out)
    assert "broken" in captured.err


def test_datasets_table(dummy, monkeypatch, capsys):
    import contrastkit.datasets as ds

    @dataclass
    class Status:
        id: str
        aliases: tuple
        domain: str
        status: str
        path: str | None
        description: str

    roots = []

    def fake_available(root=None):
        roots.append(root)
        return [Status("cora", (), "graph", "found", "/d/cora", "Cora citation graph"),
                Status("computers", ("amazon-computers",), "graph", "missing", None, "Amazon")]

    monkeypatch.setattr(ds, "available", fake_available, raising=False)
    assert cli.main(["datasets", "--root", "/some/root"]) == 0
    out = capsys.readouterr().out
    assert roots == ["/some/root"]
    assert re.search(r"cora\s+-\s+graph\s+found", out)
    assert re.search(r"computers\s+amazon-computers\s+graph\s+missing", out)
    assert "1 found, 1 missing" in out


def test_python_dash_m_methods():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "contrastkit", "methods"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(r"^method\s+default dataset", proc.stdout, re.M), proc.stdout[:300]
    for name, dataset in [("grace", "cora"), ("gca", "computers"), ("mclrec", "beauty"),
                          ("ts2vec", "etth1")]:
        assert re.search(rf"^{name}\s+{dataset}\s", proc.stdout, re.M), name


def test_embeddings_are_written_atomically(dummy, tmp_path, monkeypatch):
    """A failure while writing embeddings.pt (disk full, ...) leaves the previous file intact and
    no temporary file behind."""
    out = tmp_path / "run"
    assert _train("dummy", "--out", str(out)) == 0
    before = (out / "embeddings.pt").read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):
            Path(f).write_bytes(b"PK\x03\x04 half an embeddings file")
        else:
            f.write(b"PK\x03\x04 half an embeddings file")
        raise OSError("No space left on device (simulated)")

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", failing_save)
        with pytest.raises(OSError, match="simulated"):
            _train("dummy", "--seed", "1", "--out", str(out))
    assert (out / "embeddings.pt").read_bytes() == before
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


class _Linear(torch.nn.Module):
    """A one-layer 'method' for the real Trainer: its loss is the mean square of its output."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.lin(batch).pow(2).mean()

    def configure_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer_run(cfg: DummyConfig, ctx: RunContext) -> RunResult:
    """Trains with the shared Trainer and reports its costs, as the built-in methods do."""
    from contrastkit.core.trainer import Trainer
    torch.manual_seed(ctx.seed)
    method = _Linear()
    trainer = Trainer(cfg.epochs, seed=ctx.seed, progress=False, out_dir=ctx.out_dir)
    data = [torch.randn(4, 3, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    trainer.fit(method, data, resume=ctx.resume and (ctx.out_dir / "checkpoint.pt").exists())
    with torch.no_grad():
        emb = method.lin(torch.cat(data))
    return RunResult(metrics={"loss": trainer.history[-1]["loss"],
                              "time_per_epoch_s": trainer.stats["time_per_epoch_s"],
                              "train_time_s": trainer.stats["train_time_s"],
                              "peak_mem_bytes": float(trainer.stats["peak_mem_bytes"])},
                     embeddings=emb)


@pytest.mark.parametrize("seeds", [1, 2])
def test_resume_of_a_finished_run_keeps_its_cost_metrics(dummy, tmp_path, seeds):
    """`--resume` of a finished run trains nothing: metrics.json keeps the earlier timings and
    memory (time_per_epoch_s used to become 0.0); a resume that trains more epochs reports the
    whole run (mean over all its epochs)."""
    registry.register(MethodSpec(
        name="trainerdummy", config_cls=DummyConfig, run=_trainer_run,
        evaluate=lambda cfg, emb, ctx: {}, description="", default_dataset="toy", presets={}))
    out = tmp_path / "run"
    args = ["trainerdummy", "--seeds", str(seeds), "--out", str(out)]
    assert _train(*args) == 0
    first = json.loads((out / "metrics.json").read_text())
    assert first["time_per_epoch_s"] > 0
    with pytest.warns(RuntimeWarning, match="nothing to train"):
        assert _train(*args, "--resume") == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again == first
    assert _train(*args, "--resume", "--set", "epochs=3") == 0
    more = json.loads((out / "metrics.json").read_text())
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1, 2]
    per_seed = more["per_seed"][0] if seeds > 1 else more
    assert per_seed["time_per_epoch_s"] == pytest.approx(sum(r["time_s"] for r in log) / 3)
    assert per_seed["train_time_s"] > sum(r["time_s"] for r in log[:2])
