"""benchmarks/graph_clustering.py: the paired PamC-minus-SCGC* table."""

from __future__ import annotations

from conftest import load_benchmark


def _row(method: str, seed: int, acc: float, nmi: float, ari: float, sets=()) -> dict:
    return {"method": method, "dataset": "toy", "seed": seed, "set": list(sets),
            "metrics": {"cluster_acc": acc, "nmi": nmi, "ari": ari}}


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| toy")]


def test_paired_table_pairs_by_seed_and_overrides():
    bench = load_benchmark("graph_clustering")
    results = [
        _row("pamc", 0, 0.60, 0.40, 0.30), _row("pamc", 1, 0.62, 0.40, 0.30),
        _row("pamc", 2, 0.90, 0.90, 0.90),  # no SCGC* seed 2: not paired
        _row("scgc", 0, 0.61, 0.40, 0.30), _row("scgc", 1, 0.61, 0.40, 0.30),
        _row("pamc", 0, 0.50, 0.40, 0.30, ["epochs=50"]),
        _row("scgc", 0, 0.52, 0.40, 0.30, ["epochs=50"]),
        _row("grace", 0, 0.55, 0.45, 0.25, ["eval_repeats=1"]),
    ]
    lines = _lines(bench.paired_table(results))
    assert len(lines) == 2
    full = next(line for line in lines if "| – |" in line)
    # seeds 0 and 1: ACC -1 and +1 points, NMI and ARI equal
    assert "| 2 | +0.0 ± 1.0 | +0.0 ± 0.0 | +0.0 ± 0.0 | yes |" in full
    assert full.endswith("| +6.0 / -5.0 / +5.0 |")  # below GRACE on NMI: not "above"
    short = next(line for line in lines if "epochs=50" in line)
    assert "| 1 | -2.0 ± 0.0 |" in short and "| no |" in short


def test_readme_paste_replaces_only_between_its_markers(tmp_path):
    import pytest
    load_benchmark("graph_clustering")  # puts benchmarks/ on sys.path
    from _runner import paste_between_markers
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- t -->\nold\nrows\n<!-- end t -->\nafter <!-- u -->\n")
    paste_between_markers(readme, "t", "| new |\n")
    assert readme.read_text() == "intro\n<!-- t -->\n| new |\n<!-- end t -->\nafter <!-- u -->\n"
    with pytest.raises(ValueError, match="one '<!-- u -->'"):
        paste_between_markers(readme, "u", "x")
    assert "| new |" in readme.read_text()  # a failed paste leaves the file as it was
