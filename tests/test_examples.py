"""Every script in ``examples/`` runs as a user would run it, with a short budget, and prints
or saves what its docstring promises (each in its own process, in a temporary working folder).

About 10-60 s each on one core; the Fashion-MNIST and MovieLens ones need the real data.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_dataset, shared_data_root, skip_without_data

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(script: str, *args: str, cwd: Path, timeout: float = 600) -> str:
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    root = shared_data_root()
    if root is not None:  # the cwd is a temporary folder: ../shared/data is not beside it
        env["CONTRASTKIT_DATA"] = str(root)
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in the output:\n{text[-2000:]}"
    return float(match.group(1))


def _png(path: Path) -> None:
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


def test_every_example_is_tested_here():
    names = {p.name for p in EXAMPLES.glob("*.py")}
    source = Path(__file__).read_text()
    untested = sorted(n for n in names if f'"{n}"' not in source)
    assert not untested, f"examples without a test in {Path(__file__).name}: {untested}"
    for path in EXAMPLES.glob("*.py"):  # each says how to run it
        assert ast.get_docstring(ast.parse(path.read_text())), path


def test_grace_cora(tmp_path):
    out = _run("grace_cora.py", "--epochs", "5", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert _number(r"'acc': ([0-9.]+)", out) > 0.5  # measured 0.735 (chance 0.30)
    assert (tmp_path / "run" / "log.jsonl").read_text().count("\n") >= 5


def test_node_classification(tmp_path):
    out = _run("node_classification.py", cwd=tmp_path)
    assert _number(r"linear probe: \{'acc': ([0-9.]+)", out) > 0.8  # measured 0.898 (chance 1/3)
    sizes = re.search(r"community sizes: \[([0-9, ]+)\]", out)
    assert sizes and sum(int(s) for s in sizes.group(1).split(",")) == 600, out


def test_graph_clustering(tmp_path):
    out = _run("graph_clustering.py", "--epochs", "5", "--out", str(tmp_path / "c.png"),
               cwd=tmp_path)
    assert _number(r"cluster_acc: ([0-9.]+)", out) > 0.6  # planted partition; measured 0.838
    assert 0 <= _number(r"\bnmi: ([0-9.]+)", out) <= 1
    _png(tmp_path / "c.png")


def test_graph_clustering_reads_a_saved_data_safely(tmp_path):
    import importlib.util

    import torch
    from torch_geometric.data import Data

    spec = importlib.util.spec_from_file_location("graph_clustering_example",
                                                  EXAMPLES / "graph_clustering.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    data = Data(x=torch.randn(5, 3), edge_index=torch.tensor([[0, 1], [1, 2]]),
                y=torch.tensor([0, 1, 0, 1, 1]))
    torch.save(data, tmp_path / "g.pt")
    got = example.load_graph_file(str(tmp_path / "g.pt"))  # weights_only=True, PyG classes only
    assert isinstance(got, Data) and torch.equal(got.x, data.x)
    assert torch.equal(got.edge_index, data.edge_index)
    torch.save(torch.randn(3), tmp_path / "t.pt")
    with pytest.raises(TypeError, match="--graph: expected .*Data.*got Tensor"):
        example.load_graph_file(str(tmp_path / "t.pt"))
    (tmp_path / "x.pt").write_text("not a torch file")
    with pytest.raises(ValueError, match="--graph: could not read"):
        example.load_graph_file(str(tmp_path / "x.pt"))

    from fractions import Fraction  # any class outside PyG's Data is refused, not unpickled

    torch.save({"x": Fraction(1, 3)}, tmp_path / "c.pt")
    with pytest.raises(ValueError, match="--graph: could not read"):
        example.load_graph_file(str(tmp_path / "c.pt"))


def test_forecasting(tmp_path):
    out = _run("forecasting.py", "--out", "results", cwd=tmp_path)
    assert _number(r"\bmse@24\s+([0-9.]+)", out) < _number(r"last_value_mse@24\s+([0-9.]+)", out)
    future = re.search(r"next 24 steps: \[([^\]]*)\]", out)
    assert future and len(future.group(1).split()) == 24, out
    _png(tmp_path / "results" / "forecast.png")


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_examples_help_runs_nothing(tmp_path, script):
    """``--help`` prints the usage and exits: no training, no files written."""
    out = _run(script, "--help", cwd=tmp_path, timeout=60)
    assert "usage:" in out
    assert not list(tmp_path.iterdir())


def test_medical_timeseries(tmp_path):
    out = _run("medical_timeseries.py", "--epochs", "1", cwd=tmp_path)
    for row in ("linear", "100%", "10%", "1%"):
        assert 0 <= _number(rf"{re.escape(row)}: \{{\"acc\": ([0-9.]+)", out) <= 1, row
    assert _number(r"100%: \{\"acc\": ([0-9.]+)", out) > 0.7  # synthetic patients; measured 0.967


def test_sequential_recommendation(tmp_path):
    require_dataset("ml-100k")
    out = _run("sequential_recommendation.py", "--epochs", "1", "--max-train-samples", "2000",
               cwd=tmp_path)
    assert "943 users, 1682 items, 100000 interactions" in out
    items = re.findall(r"^\s+\d+\. item (\S+)", out, flags=re.M)
    seen = re.search(r"last items \[([^\]]*)\]", out)
    assert len(items) == 10 and len(set(items)) == 10, out
    assert seen and not set(items) & set(re.findall(r"'([^']+)'", seen.group(1))), out


def test_vision_fashion_mnist(tmp_path):
    from contrastkit.datasets.images import find_fashion_mnist
    if find_fashion_mnist(data_root=shared_data_root()) is None:
        skip_without_data("Fashion-MNIST files absent (apt-get install dataset-fashion-mnist)")
    out = _run("vision_fashion_mnist.py", "--subset", "512", "--epochs", "1", "--out",
               str(tmp_path / "v"), cwd=tmp_path)
    # a smoke test of the script (its kNN read-out and plot): 512 images for one epoch do not
    # beat the random initialisation; learning is asserted in tests/test_vision.py
    assert 0.3 < _number(r"random init: kNN top-1 ([0-9.]+)", out) < 1  # measured 0.649
    assert 0.3 < _number(r"epoch 0: loss [0-9.]+, kNN top-1 ([0-9.]+)", out) < 1
    _png(tmp_path / "v" / "views.png")
