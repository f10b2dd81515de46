"""Time-series dataset loaders: ETT splits and train-only scaling, UCR / UEA readers."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from conftest import require_dataset, skip_without_data
from contrastkit import datasets
from contrastkit.datasets import timeseries as ts


def test_forecast_split_rules():
    assert ts.forecast_splits(17420, "etth") == (slice(0, 8640), slice(8640, 11520),
                                                 slice(11520, 14400))
    assert ts.forecast_splits(69680, "ettm") == (slice(0, 34560), slice(34560, 46080),
                                                 slice(46080, 57600))
    assert ts.forecast_splits(100, "ratio") == (slice(0, 60), slice(60, 80), slice(80, 100))
    with pytest.raises(ValueError, match="rule"):
        ts.forecast_splits(10, "monthly")


def test_etth1_splits_and_train_only_normalisation():
    root = require_dataset("etth1")
    d = datasets.load("etth1", root)
    assert d.data.shape == (1, 17420, 8) and d.n_covariates == 7 and d.univariate
    assert (d.train_slice, d.valid_slice, d.test_slice) == (slice(0, 8640), slice(8640, 11520),
                                                            slice(11520, 14400))
    assert d.pred_lens == (24, 48, 168, 336, 720) and d.columns == ("OT",)
    # scaling statistics come from the train slice only
    path = root / "timeseries" / "ETT" / "ETTh1.csv"
    _, cols, raw = ts.read_csv_columns(path)
    ot = raw[:, cols.index("OT")]
    mu, sd = ot[:8640].mean(), ot[:8640].std()
    np.testing.assert_allclose(d.targets[0, :, 0], (ot - mu) / sd, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d.mean, [mu], rtol=1e-6)
    assert abs(d.targets[0, d.train_slice].mean()) < 1e-4
    assert abs(d.targets[0, d.train_slice].std() - 1) < 1e-4
    assert abs(d.targets[0, d.test_slice].mean()) > 0.05  # not re-fitted on test
    # covariates: z-scored on the train slice too (minute is constant for hourly data -> 0)
    cov = d.data[0, d.train_slice, :7]
    np.testing.assert_allclose(cov[:, 1:].mean(0), 0, atol=1e-4)
    assert np.all(cov[:, 0] == 0)
    m = ts.load_forecast("etth1", root, univariate=False)
    assert m.data.shape == (1, 17420, 14) and len(m.columns) == 7
    np.testing.assert_allclose(m.targets[0, m.train_slice].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(m.targets[..., -1], d.targets[..., 0], atol=1e-5)  # OT is last


def test_ettm1_split_sizes():
    d = datasets.load("ettm1", require_dataset("ettm1"))
    assert d.data.shape == (1, 69680, 8)
    assert d.pred_lens == (24, 48, 96, 288, 672)
    assert d.train_slice.stop == 34560 and d.test_slice.stop == 57600


def test_absent_informer_sets_are_missing(tmp_path):
    (tmp_path / "timeseries").mkdir()
    st = {s.id: s.status for s in datasets.available(tmp_path)}
    assert st["wth"] == "missing" and st["electricity"] == "missing" and st["etth1"] == "missing"
    with pytest.raises(FileNotFoundError, match="electricity"):
        datasets.load("electricity", tmp_path, download=False)


def test_ratio_split_csv_and_per_instance(tmp_path):
    p = tmp_path / "toy.csv"
    rows = ["date,a,b"] + [f"2020-01-01 {h:02d}:00:00,{h},{2 * h + 1}" for h in range(20)]
    p.write_text("\n".join(rows) + "\n")
    d = ts.load_forecast_csv(p, target="b", split="ratio", per_instance=True)
    assert d.data.shape == (2, 20, 8) and d.train_slice == slice(0, 12)
    a = np.arange(20.0)
    np.testing.assert_allclose(d.targets[0, :, 0], (a - a[:12].mean()) / a[:12].std(), atol=1e-5)
    u = ts.load_forecast_csv(p, target="b", univariate=True, covariates=False)
    assert u.data.shape == (1, 20, 1) and u.n_covariates == 0
    with pytest.raises(ValueError, match="target"):
        ts.load_forecast_csv(p, target="zz", univariate=True)


@pytest.mark.parametrize("text, expected", [
    ("", r"toy.csv: expected a header whose first column is 'date', got an empty file"),
    ("time,a\n2020-01-01 00:00:00,1\n", r"first column is 'date', got \['time'\]"),
    ("date,a\n", r"toy.csv: expected at least one data row after the header, got none"),
    ("date,a\n2020-01-01 00:00:00,1\n2020-01-01 01:00:00,x\n",
     r"toy.csv, line 3: column 'a': expected a number .*got 'x'"),
    ("date,a\n2020-01-01 00:00:00,1,2\n", r"toy.csv, line 2: expected 2 fields .*got 3"),
    ("date,a\n01/02/2020,1\n", r"toy.csv, line 2: date: expected an ISO date-time .*'01/02/2020'"),
])
def test_bad_forecast_csv_names_file_line_and_column(tmp_path, text, expected):
    p = tmp_path / "toy.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=expected):
        ts.load_forecast_csv(p)


def test_electricity_univariate_target_is_ts2vecs(tmp_path):
    """``electricity`` keeps MT_001 (TS2Vec's datautils, the published tables); the
    ``electricity-mt320`` id reads the same file with Informer's MT_320."""
    folder = tmp_path / "timeseries" / "electricity"
    folder.mkdir(parents=True)
    rows = ["date,MT_001,MT_002,MT_320"] + [
        f"2020-01-{1 + h // 24:02d} {h % 24:02d}:00:00,{h},{h * h},{-3 * h}" for h in range(40)]
    (folder / "electricity.csv").write_text("\n".join(rows) + "\n")
    a = np.arange(40.0)
    for name, col in (("electricity", a), ("electricity-mt320", -3 * a)):
        d = ts.load_forecast(name, tmp_path)
        assert d.data.shape == (1, 40, 8) and d.train_slice == slice(0, 24)
        np.testing.assert_allclose(d.targets[0, :, 0], (col - col[:24].mean()) / col[:24].std(),
                                   atol=1e-5)
    assert ts.load_forecast("electricity", tmp_path, univariate=False).data.shape == (3, 40, 8)
    # Informer's renumbered ECL.csv (MT_000 ...): MT_001 there is another client
    informer = tmp_path / "informer" / "timeseries" / "electricity"
    informer.mkdir(parents=True)
    (informer / "ECL.csv").write_text("\n".join(
        [rows[0].replace("MT_001", "MT_000,MT_001")]
        + [r.replace(",", ",0,", 1) for r in rows[1:]]) + "\n")
    with pytest.warns(RuntimeWarning, match="MT_000"):
        ts.load_forecast("electricity", tmp_path / "informer")


def _archive(name: str):
    """Skip unless the archive dataset was registered (its folder was found at import)."""
    try:
        datasets.get_spec(name)
    except ValueError:
        skip_without_data(f"{name} is not registered (no UCR/UEA folder under the data root)")
    return require_dataset(name)


def test_ucr_gunpoint_matches_file():
    root = _archive("ucr-gunpoint")
    d = datasets.load("gunpoint", root)
    assert d.x_train.shape == (50, 150, 1) and d.x_test.shape == (150, 150, 1)
    assert set(d.y_train.tolist()) == {0, 1} and d.classes == (1.0, 2.0)
    raw = np.loadtxt(root / "timeseries/UCR/GunPoint/GunPoint_TRAIN.tsv.gz",
                     delimiter="\t")
    np.testing.assert_allclose(d.x_train[..., 0], raw[:, 1:], rtol=1e-6)  # already normalised
    np.testing.assert_array_equal(d.y_train, (raw[:, 0] == 2).astype(int))


def test_ucr_unnormalised_set_gets_global_train_zscore():
    d = datasets.load("ucr-bme", _archive("ucr-bme"))
    assert "BME" in ts.UCR_UNNORMALISED
    assert abs(float(d.x_train.mean())) < 1e-4 and abs(float(d.x_train.std()) - 1) < 1e-3


def test_ucr_reader_nan_and_variable_length(tmp_path):
    folder = tmp_path / "Toy"
    folder.mkdir()
    with gzip.open(folder / "Toy_TRAIN.tsv.gz", "wt") as fh:
        fh.write("3\t1.0\t2.0\t3.0\n-1\t4.0\t\t6.0\n3\t7.0\tNaN\t\n")
    with gzip.open(folder / "Toy_TEST.tsv.gz", "wt") as fh:
        fh.write("-1\t1.0\t2.0\t3.0\n")
    d = ts.load_ucr(folder)
    assert d.x_train.shape == (3, 3, 1)
    assert np.isnan(d.x_train[1, 1, 0]) and np.isnan(d.x_train[2, 1:, 0]).all()
    assert d.y_train.tolist() == [1, 0, 1] and d.y_test.tolist() == [0]


def test_uea_ts_reader(tmp_path):
    text = ("# comment\n@problemName toy\n@univariate false\n@classLabel true a b\n@data\n"
            "1,2,3:4,5,6:7,8,9:a\n1,2:3,?:5,6:b\n")
    p = tmp_path / "toy.ts"
    p.write_text(text)
    x, y = ts.read_ts_file(p)
    assert x.shape == (2, 3, 3) and y.tolist() == ["a", "b"]
    np.testing.assert_array_equal(x[0, :, 1], [4, 5, 6])
    assert np.isnan(x[1, 2]).all() and np.isnan(x[1, 1, 1])


def test_uea_japanese_vowels_variable_length():
    root = _archive("uea-japanesevowels")
    d = datasets.load("uea-japanesevowels", root)
    assert d.x_train.shape == (270, 29, 12) and d.x_test.shape[0] == 370 and d.num_classes == 9
    assert np.isnan(d.x_train).any()  # NaN padding of the shorter series
    np.testing.assert_allclose(np.nanmean(d.x_train.reshape(-1, 12), 0), 0, atol=1e-4)
    e = datasets.load("uea-ering", root)  # ARFF only
    assert e.x_train.shape == (30, 65, 4) and e.num_classes == 6


def test_archive_sets_are_registered_without_data(tmp_path, monkeypatch):
    """A user without the archives sees the benchmark sets as missing, not as unknown ids."""
    from contrastkit import datasets
    from contrastkit.datasets.timeseries import KNOWN_ARCHIVE_SETS
    monkeypatch.setenv("CONTRASTKIT_DATA", str(tmp_path))
    status = {s.id: s.status for s in datasets.available()}
    assert len(KNOWN_ARCHIVE_SETS["UCR"]) == 61
    assert status["ucr-gunpoint"] == "missing" and status["uea-basicmotions"] == "missing"
    with pytest.raises(FileNotFoundError, match="ucr-gunpoint"):
        datasets.load("gunpoint")


_TS_HEAD = "@problemName toy\n@classLabel true a b\n@data\n"


def test_uea_test_split_with_other_channel_count_names_the_file(tmp_path):
    folder = tmp_path / "Toy"
    folder.mkdir()
    (folder / "Toy_TRAIN.ts").write_text(_TS_HEAD + "1,2,3:4,5,6:a\n2,3,4:5,6,7:b\n")
    (folder / "Toy_TEST.ts").write_text(_TS_HEAD + "1,2,3:a\n")  # 1 channel: used to broadcast
    with pytest.raises(ValueError, match=r"Toy_TEST.ts: expected 2 channels per case as in the "
                                         r"training split Toy_TRAIN.ts, got 1"):
        ts.load_uea(folder)
    (folder / "Toy_TEST.ts").write_text(_TS_HEAD + "1,2:3,4:5,6:a\n")  # 3: failed deep in numpy
    with pytest.raises(ValueError, match=r"Toy_TEST.ts: expected 2 channels .*got 3"):
        ts.load_uea(folder)
    (folder / "Toy_TEST.ts").write_text(_TS_HEAD + "1,2:3,4:a\n")
    assert ts.load_uea(folder).x_test.shape == (1, 3, 2)


@pytest.mark.parametrize("body, expected", [
    ("1,2,3:4,x,6:a\n", r"toy.ts, line 4: channel 2: expected numbers .*got 'x'"),
    ("1,2:3,4:a\n1,2:b\n", r"toy.ts, line 5: expected 2 channels as in the first case \(line 4\),"
                           r" got 1"),
    ("1,2:3,4:a\n\n1,2\n", r"toy.ts, line 6: expected channels separated by ':' and the class "
                           r"label last, got '1,2'"),
    ("1,inf:a\n", r"toy.ts, line 4: channel 1: expected finite numbers"),
    ("", r"toy.ts: expected '@data' followed by cases, got none"),
])
def test_bad_ts_file_names_file_and_line(tmp_path, body, expected):
    p = tmp_path / "toy.ts"
    p.write_text(_TS_HEAD + body)
    with pytest.raises(ValueError, match=expected):
        ts.read_ts_file(p)


@pytest.mark.parametrize("text, expected", [
    ("1\t1.0\t2.0\n2\t3.0\tabc\n", r"Toy_TRAIN.tsv, line 2: field 3: expected a number .*'abc'"),
    ("1\t1.0\t2.0\n\n2\t3.0\n", r"Toy_TRAIN.tsv, line 3: expected 3 tab-separated fields as on "
                                r"line 1, got 2"),
    ("1\t1.0\t2.0\n\t3.0\t4.0\n", r"Toy_TRAIN.tsv, line 2: field 1: expected the class label"),
    ("1\t1.0\tinf\n", r"Toy_TRAIN.tsv, line 1: field 3: expected a finite number"),
    ("\n\n", r"Toy_TRAIN.tsv: expected one case per line .*got no data"),
])
def test_bad_ucr_file_names_file_and_line(tmp_path, text, expected):
    folder = tmp_path / "Toy"
    folder.mkdir()
    (folder / "Toy_TRAIN.tsv").write_text(text)  # 'abc' used to become a silent NaN
    (folder / "Toy_TEST.tsv").write_text("1\t1.0\t2.0\n")
    with pytest.raises(ValueError, match=expected):
        ts.load_ucr(folder)
