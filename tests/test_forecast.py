"""`contrastkit forecast` / `forecast_csv` on a user's CSV."""

from __future__ import annotations

import re

import numpy as np
import pytest

from contrastkit.cli import main
from contrastkit.seqcl.forecast import forecast_csv

TINY = ["--set", "iters=4", "--set", "depth=2", "--set", "output_dims=16",
        "--set", "hidden_dims=8"]


def _csv(path, hours=900):
    t = np.arange(hours)
    y = 5 + np.sin(2 * np.pi * t / 24) + 0.05 * np.random.default_rng(0).standard_normal(hours)
    dates = np.datetime64("2024-01-01T00:00") + t.astype("timedelta64[h]")
    path.write_text("date,load,other\n" + "".join(
        f"{d},{v:.5f},{i % 7}\n" for i, (d, v) in enumerate(zip(dates.astype(str), y))))
    return path


def test_forecast_command_prints_metrics_forecast_and_saves_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    csv, png = _csv(tmp_path / "load.csv"), tmp_path / "f.png"
    code = main(["forecast", "--csv", str(csv), "--target", "load", "--horizon", "12",
                 "--plot", str(png), "--no-progress", *TINY])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "mse@12" in out and "last_value_mse@12" in out and png.stat().st_size > 1000
    assert len(out.split("after the last row:")[1].split()) >= 12


def test_forecast_csv_result_is_in_csv_units(tmp_path):
    csv = _csv(tmp_path / "load.csv")
    res = forecast_csv(csv, "load", 6, overrides={"iters": 4, "depth": 2, "output_dims": 16,
                                                  "hidden_dims": 8}, progress=False)
    assert res.future.shape == (6,) and 3.0 < float(res.future.mean()) < 7.0
    t0, truth, pred = res.example
    assert t0 == int(0.8 * 900) and truth.shape == pred.shape == (6,)
    assert np.allclose(truth, res.history[t0 + 1:t0 + 7])


@pytest.mark.parametrize("args,match", [
    (["--horizon", "0"], "horizon"), (["--horizon", "500"], "horizon"),
    (["--target", "nope"], "target")])
def test_forecast_bad_input_is_one_clear_error(tmp_path, capsys, args, match):
    csv = _csv(tmp_path / "load.csv")
    base = {"--target": "load", "--horizon": "6"}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    argv = ["forecast", "--csv", str(csv), "--no-progress", *TINY]
    for k, v in base.items():
        argv += [k, v]
    assert main(argv) == 2
    assert match in capsys.readouterr().err


def _lines_edit(path, edit):
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")
    return path


def _set_field(lines, row, col, value):
    parts = lines[row].split(",")
    parts[col] = value
    lines[row] = ",".join(parts)
    return lines


@pytest.mark.parametrize("edit,match", [
    (lambda ls: ls[:300], r"csv: expected at least 345 data rows for horizon 6 .* got 299 rows"),
    (lambda ls: ["date,load,load", *ls[1:]], r"expected distinct column names .*'load'"),
    (lambda ls: _set_field(ls, 51, 1, "inf"), r"line 52: column 'load': expected a finite number"),
    (lambda ls: [ls[0], *(",".join([r.split(",")[0], "", r.split(",")[2]]) for r in ls[1:])],
     r"target: column 'load' .* has no values"),
    (lambda ls: _set_field(_set_field(ls, 800, 1, ""), 801, 1, "nan"),
     r"target: column 'load' .* missing 2 values \(data rows \[800, 801\],"),
])
def test_forecast_csv_problems_are_named_before_training(tmp_path, capsys, monkeypatch, edit,
                                                          match):
    import contrastkit.seqcl.forecast as forecast

    def no_training(*args, **kwargs):
        raise AssertionError("training started before the CSV was checked")

    monkeypatch.setattr(forecast, "fit", no_training)
    csv = _lines_edit(_csv(tmp_path / "load.csv"), edit)
    argv = ["forecast", "--csv", str(csv), "--target", "load", "--horizon", "6",
            "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(match, err), err


@pytest.mark.parametrize("horizon", [1, 6, 168, 720])
def test_min_forecast_rows_is_the_boundary(tmp_path, monkeypatch, horizon):
    """``min_forecast_rows(H)`` rows pass the checks (training is stubbed), one fewer fails."""
    import contrastkit.seqcl.forecast as forecast
    from contrastkit.seqcl.forecast import min_forecast_rows

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(forecast, "fit", stop)
    need = min_forecast_rows(horizon)
    assert abs(need - max((200 + horizon + 1) / 0.6, 5 * (horizon + 1))) <= 5  # the README's
    full = _csv(tmp_path / "full.csv", hours=need).read_text().splitlines()
    for n, ok in ((need, True), (need - 1, False)):
        (tmp_path / "f.csv").write_text("\n".join(full[:n + 1]) + "\n")
        if ok:
            with pytest.raises(Stop):
                forecast_csv(tmp_path / "f.csv", "load", horizon, progress=False)
        else:
            with pytest.raises(ValueError, match=f"at least {need} data rows"):
                forecast_csv(tmp_path / "f.csv", "load", horizon, progress=False)
