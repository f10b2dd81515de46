"""`contrastkit plot DIR`: a PNG of the training curves; a clear error without the extra."""

from __future__ import annotations

import builtins
import json

import pytest

from contrastkit.cli import main


def _fake_run(tmp_path):
    run = tmp_path / "run"
    (run / "seed-1").mkdir(parents=True)
    for folder, seed in ((run, 0), (run / "seed-1", 1)):
        rows = [{"epoch": e, "loss": 5.0 - e * 0.1 - seed * 0.01, "time_s": 0.1, "lr": 1e-3}
                for e in range(10)]
        rows[4]["acc"] = 0.5
        rows[9]["acc"] = 0.7
        (folder / "log.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (run / "metrics.json").write_text(json.dumps({"acc": 0.7, "seeds": [0, 1]}))
    return run


def test_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    run = _fake_run(tmp_path)
    assert main(["plot", str(run)]) == 0
    png = run / "training.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    from contrastkit.plotting import read_logs
    assert sorted(read_logs(run)) == ["seed 0", "seed 1"]


def test_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch, capsys):
    run = _fake_run(tmp_path)
    real_import = builtins.__import__

    def no_mpl(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    assert main(["plot", str(run)]) == 2
    assert "'plot' extra" in capsys.readouterr().err


def test_plot_missing_folder(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "DIR: expected a run folder" in err and "nope" in err and "not a folder" in err


def test_cut_off_last_log_line_is_skipped_a_broken_one_is_named(tmp_path, capsys):
    from contrastkit.plotting import read_logs
    run = _fake_run(tmp_path)
    log = run / "seed-1" / "log.jsonl"
    log.write_text(log.read_text() + '{"epoch": 10, "lo')  # killed mid-write
    with pytest.warns(UserWarning, match=r"seed-1/log.jsonl:11: skipping an incomplete last"):
        assert len(read_logs(run)["seed 1"]) == 10
    lines = log.read_text().splitlines()
    lines[3] = lines[3][:-5]
    log.write_text("\n".join(lines) + "\n")
    assert main(["plot", str(run)]) == 2
    err = capsys.readouterr().err
    assert "seed-1/log.jsonl:4: expected one JSON object per line" in err and "Traceback" not in err
