r"""Time-series benchmarks for TS2Vec-family methods: forecasting CSVs, UCR and UEA archives.

Registered dataset ids (domain ``"timeseries"``), read from ``<data root>/timeseries/``:

* forecasting (:class:`ForecastData`): ``etth1``, ``etth2``, ``ettm1``, ``ettm2``
  (``ETT/ETTh1.csv`` ...; Informer's 12 / 4 / 4-month split: ETTh ``[0, 8640)``,
  ``[8640, 11520)``, ``[11520, 14400)``, ETTm the same months at 15 min, x4), ``weather``
  (Jena 2020, ``weather/weather.csv.gz``, target ``OT``), and, for users who have the files,
  Informer's ``wth`` (``WTH/WTH.csv.gz``, target ``WetBulbCelsius``) and ``electricity``
  (``electricity/electricity.csv[.gz]``, TS2Vec's preprocessed file with the UCI client names;
  univariate target ``MT_001``, the column TS2Vec's ``datautils.py`` keeps;
  ``electricity-mt320`` reads it with Informer's target name ``MT_320``); these are split
  60 / 20 / 20 % by rows. Absent files show as ``missing`` in ``contrastkit datasets``.
* classification (:class:`ClassificationData`): ``ucr-<name>`` for every UCR folder present
  (``UCR/<Name>/<Name>_{TRAIN,TEST}.tsv.gz``, alias ``<name>``) and ``uea-<name>`` for every UEA
  folder present (``UEA/<Name>/<Name>_{TRAIN,TEST}.ts`` or ``.arff``).

Preprocessing follows TS2Vec's ``datautils.py`` (spec ``ts2vec_infots.md`` A3):

* forecasting: z-score per column fitted on the **train slice only**; seven calendar covariates
  (minute, hour, day of week, day of month, day of year, month, ISO week), each z-scored on the train
  slice, are prepended as input channels (``n_covariates = 7``); targets are the remaining
  channels. ``univariate=True`` keeps only the target column; ``electricity`` multivariate is
  treated as one instance per client (TS2Vec), every other set as one multichannel instance;
* UCR: labels re-indexed through ``np.unique``; values z-normalised with the global train mean and
  std **only** for the datasets TS2Vec lists as not already normalised
  (:data:`UCR_UNNORMALISED`), otherwise as distributed; NaN (missing / variable length) kept as
  NaN — the encoder masks those timestamps;
* UEA: per-channel standardisation fitted on train (NaN ignored); variable lengths NaN-padded at
  the end.

Example:
    >>> from contrastkit import datasets
    >>> d = datasets.load("etth1")                    # doctest: +SKIP
    >>> d.data.shape, d.train_slice                   # doctest: +SKIP
    ((1, 17420, 8), slice(0, 8640, None))
"""

from __future__ import annotations

import functools
import gzip
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .registry import DatasetSpec, register

__all__ = ["ForecastData", "ClassificationData", "load_forecast_csv", "load_ucr", "load_uea",
           "read_ts_file", "time_features", "forecast_splits", "UCR_UNNORMALISED",
           "FORECAST_SETS", "TS_DIR"]

#: folder of these sets under the data root
TS_DIR = Path("timeseries")

#: UCR datasets TS2Vec z-normalises with the global train mean/std (``datautils.load_UCR``): the
#: others are distributed already z-normalised per series and are used as they are
UCR_UNNORMALISED = frozenset({
    "AllGestureWiimoteX", "AllGestureWiimoteY", "AllGestureWiimoteZ", "BME", "Chinatown", "Crop",
    "EOGHorizontalSignal", "EOGVerticalSignal", "Fungi", "GestureMidAirD1", "GestureMidAirD2",
    "GestureMidAirD3", "GesturePebbleZ1", "GesturePebbleZ2", "GunPointAgeSpan",
    "GunPointMaleVersusFemale", "GunPointOldVersusYoung", "HouseTwenty", "InsectEPGRegularTrain",
    "InsectEPGSmallTrain", "MelbournePedestrian", "PickupGestureWiimoteZ", "PigAirwayPressure",
    "PigArtPressure", "PigCVP", "PLAID", "PowerCons", "Rock", "SemgHandGenderCh2",
    "SemgHandMovementCh2", "SemgHandSubjectCh2", "ShakeGestureWiimoteZ", "SmoothSubspace", "UMD"})


@dataclass
class ForecastData:
    """A forecasting series, normalised, with its split.

    Attributes:
        name: dataset id.
        data: float32 ``[N, T, n_covariates + F]``: ``N`` instances (1, or one per client for
            multivariate electricity), covariates first, then the ``F`` target channels.
        n_covariates: number of leading calendar-covariate channels (inputs, never targets).
        train_slice, valid_slice, test_slice: time slices of the split.
        pred_lens: the horizons of the protocol.
        columns: names of the target channels.
        mean, std: ``[F]`` train statistics of the targets (to undo the scaling).
        univariate: whether only the target column was kept.
    """

    name: str
    data: np.ndarray
    n_covariates: int
    train_slice: slice
    valid_slice: slice
    test_slice: slice
    pred_lens: tuple[int, ...]
    columns: tuple[str, ...]
    mean: np.ndarray = field(repr=False)
    std: np.ndarray = field(repr=False)
    univariate: bool = False

    @property
    def targets(self) -> np.ndarray:
        """The target channels ``[N, T, F]`` (normalised)."""
        return self.data[..., self.n_covariates:]

    @property
    def train_data(self) -> np.ndarray:
        """What TS2Vec trains on: all channels of the train slice ``[N, T_train, C]``."""
        return self.data[:, self.train_slice]

    def __repr__(self) -> str:
        return (f"ForecastData({self.name!r}, data={self.data.shape}, covariates="
                f"{self.n_covariates}, train/valid/test={_len(self.train_slice, self.data)}/"
                f"{_len(self.valid_slice, self.data)}/{_len(self.test_slice, self.data)}, "
                f"univariate={self.univariate})")


def _len(s: slice, data: np.ndarray) -> int:
    return len(range(*s.indices(data.shape[1])))


@dataclass
class ClassificationData:
    """A classification archive dataset (UCR / UEA).

    Attributes:
        name: dataset id.
        x_train, x_test: float32 ``[N, T, C]`` (NaN = missing / padding).
        y_train, y_test: int64 ``[N]`` labels in ``0..K-1``.
        classes: the original label values, ``classes[k]`` is label ``k``.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        return (f"ClassificationData({self.name!r}, train={self.x_train.shape}, "
                f"test={self.x_test.shape}, classes={self.num_classes})")


# ------------------------------------------------------------------------------ forecasting
@dataclass(frozen=True)
class _ForecastSet:
    id: str
    files: tuple[str, ...]  # candidate paths under timeseries/
    target: str
    split: str  # "etth", "ettm" or "ratio"
    pred_lens: tuple[int, ...]
    per_instance: bool = False  # multivariate: one instance per column (electricity)
    description: str = ""


_ETTH_LENS = (24, 48, 168, 336, 720)
_ETTM_LENS = (24, 48, 96, 288, 672)

_ECL_FILES = ("electricity/electricity.csv.gz", "electricity/electricity.csv",
              "electricity/ECL.csv.gz", "electricity/ECL.csv")

#: forecasting sets: id -> files, target, split rule, horizons
FORECAST_SETS: dict[str, _ForecastSet] = {s.id: s for s in [
    _ForecastSet("etth1", ("ETT/ETTh1.csv", "ETT/ETTh1.csv.gz"), "OT", "etth", _ETTH_LENS,
                 description="ETTh1: electricity transformer, hourly, 7 variables (target OT)"),
    _ForecastSet("etth2", ("ETT/ETTh2.csv", "ETT/ETTh2.csv.gz"), "OT", "etth", _ETTH_LENS,
                 description="ETTh2: electricity transformer, hourly, 7 variables (target OT)"),
    _ForecastSet("ettm1", ("ETT/ETTm1.csv.gz", "ETT/ETTm1.csv"), "OT", "ettm", _ETTM_LENS,
                 description="ETTm1: electricity transformer, 15 min, 7 variables (target OT)"),
    _ForecastSet("ettm2", ("ETT/ETTm2.csv.gz", "ETT/ETTm2.csv"), "OT", "ettm", _ETTM_LENS,
                 description="ETTm2: electricity transformer, 15 min, 7 variables (target OT)"),
    _ForecastSet("weather", ("weather/weather.csv.gz", "weather/weather.csv"), "OT", "ratio",
                 _ETTH_LENS, description="Jena weather 2020, 10 min, 21 variables (target OT)"),
    _ForecastSet("wth", ("WTH/WTH.csv.gz", "WTH/WTH.csv"), "WetBulbCelsius", "ratio", _ETTH_LENS,
                 description="Informer WTH: US weather, hourly, 12 variables "
                             "(target WetBulbCelsius); not shipped"),
    _ForecastSet("electricity", _ECL_FILES, "MT_001", "ratio", _ETTH_LENS, per_instance=True,
                 description="Electricity (ECL): 321 clients, hourly (univariate target MT_001, "
                             "as TS2Vec and AutoTCL); not shipped"),
    _ForecastSet("electricity-mt320", _ECL_FILES, "MT_320", "ratio", _ETTH_LENS,
                 per_instance=True,
                 description="Electricity (ECL) with Informer's univariate target MT_320; "
                             "not shipped"),
]}


def forecast_splits(n_rows: int, rule: str) -> tuple[slice, slice, slice]:
    """Train / valid / test slices: ``etth`` 12/4/4 months of hours, ``ettm`` the same x4,
    ``ratio`` 60/20/20 % of the rows (TS2Vec ``load_forecast_csv``)."""
    if rule in ("etth", "ettm"):
        m = 30 * 24 * (4 if rule == "ettm" else 1)
        return slice(0, 12 * m), slice(12 * m, 16 * m), slice(16 * m, 20 * m)
    if rule == "ratio":
        a, b = int(n_rows * 0.6), int(n_rows * 0.8)
        return slice(0, a), slice(a, b), slice(b, n_rows)
    raise ValueError(f"rule: expected 'etth', 'ettm' or 'ratio', got {rule!r}")


def time_features(dates: list) -> np.ndarray:
    """TS2Vec's seven calendar covariates ``[T, 7]`` of a list of :class:`datetime.datetime`:
    minute, hour, day of week (Monday = 0), day of month, day of year, month, ISO week of year
    (float, unscaled)."""
    return np.array([[d.minute, d.hour, d.weekday(), d.day, d.timetuple().tm_yday, d.month,
                      d.isocalendar()[1]] for d in dates], dtype=np.float64)


def read_csv_columns(path: str | Path) -> tuple[list, list[str], np.ndarray]:
    """Read a forecasting CSV with a leading ``date`` column (``.gz`` works; no pandas needed).

    Returns:
        ``(dates [T] datetime, column names [F], values [T, F] float64)`` (empty fields and
        ``nan`` -> NaN, i.e. missing).

    Raises:
        ValueError: naming the file, line and column: no ``date`` header, a repeated column
            name, a row of the wrong length, a bad date, a field that is not a number or is
            infinite.
    """
    import csv
    import datetime as dt
    import gzip
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as fh:
        rows = csv.reader(fh)
        header = next(rows, [])
        if not header or header[0].strip().lower() != "date":
            raise ValueError(f"{path}: expected a header whose first column is 'date', got "
                             f"{header[:1] or 'an empty file'}")
        names = [h.strip() for h in header]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"{path}: expected distinct column names in the header, got "
                             f"{', '.join(map(repr, twice))} more than once")
        dates, vals = [], []
        for line, r in enumerate(rows, start=2):
            if not r:
                continue
            if len(r) != len(header):
                raise ValueError(f"{path}, line {line}: expected {len(header)} fields as in the "
                                 f"header, got {len(r)}")
            try:
                dates.append(dt.datetime.fromisoformat(r[0].strip()))
            except ValueError:
                raise ValueError(f"{path}, line {line}: date: expected an ISO date-time "
                                 f"(e.g. 2016-07-01 00:00:00), got {r[0]!r}") from None
            try:
                row = [float(v) if v.strip() else np.nan for v in r[1:]]
            except ValueError:  # name the first field that is not a number
                name, v = next((n, v) for n, v in zip(header[1:], r[1:])
                               if v.strip() and not _is_float(v))
                raise ValueError(f"{path}, line {line}: column {name.strip()!r}: expected a "
                                 f"number (or an empty field for missing), got {v!r}") from None
            for name, x, v in zip(header[1:], row, r[1:]):
                if x in (np.inf, -np.inf):
                    raise ValueError(f"{path}, line {line}: column {name.strip()!r}: expected a "
                                     f"finite number (or an empty field for missing), got {v!r}")
            vals.append(row)
    if not dates:
        raise ValueError(f"{path}: expected at least one data row after the header, got none")
    return dates, [h.strip() for h in header[1:]], np.asarray(vals, dtype=np.float64)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _zscore_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std (population, like ``StandardScaler``; constant columns -> 1)."""
    mean = np.nanmean(x, axis=0)
    std = np.nanstd(x, axis=0)
    return mean, np.where(std > 0, std, 1.0)


def load_forecast_csv(path: str | Path, *, name: str = "custom", target: str = "OT",
                      split: str = "ratio", pred_lens: tuple[int, ...] = _ETTH_LENS,
                      univariate: bool = False, per_instance: bool = False,
                      covariates: bool = True) -> ForecastData:
    """Read a forecasting CSV (``date`` column + float columns) the TS2Vec way.

    Args:
        path: the CSV (``.gz`` works).
        name: dataset id stored in the result.
        target: the univariate target column.
        split: ``"etth"``, ``"ettm"`` or ``"ratio"`` (see :func:`forecast_splits`).
        pred_lens: horizons of the protocol.
        univariate: keep only ``target``.
        per_instance: multivariate only: one instance per column (TS2Vec's electricity).
        covariates: prepend the seven calendar covariates.

    Returns:
        The normalised :class:`ForecastData` (statistics from the train slice only).
    """
    dates, columns, values = read_csv_columns(path)
    if univariate:
        if target not in columns:
            raise ValueError(f"target: expected a column of {path} ({columns[:10]}...), "
                             f"got {target!r}")
        j = columns.index(target)
        columns, values = [target], values[:, j:j + 1]
        if bool(np.isnan(values).all()):
            raise ValueError(f"target: column {target!r} of {path} has no values (every field "
                             f"empty)")
    train, valid, test = forecast_splits(len(dates), split)
    if test.stop > len(dates):
        raise ValueError(f"{path}: expected at least {test.stop} rows for the {split!r} split, "
                         f"got {len(dates)}")
    mean, std = _zscore_fit(values[train])
    values = (values - mean) / std
    data = values.T[:, :, None] if (per_instance and not univariate) else values[None]
    n_cov = 0
    if covariates:
        cov = time_features(dates)
        cmean, cstd = _zscore_fit(cov[train])
        cov = np.repeat(((cov - cmean) / cstd)[None], data.shape[0], axis=0)
        data = np.concatenate([cov, data], axis=-1)
        n_cov = cov.shape[-1]
    return ForecastData(name=name, data=data.astype(np.float32), n_covariates=n_cov,
                        train_slice=train, valid_slice=valid, test_slice=test,
                        pred_lens=tuple(pred_lens), columns=tuple(columns),
                        mean=mean.astype(np.float32), std=std.astype(np.float32),
                        univariate=univariate)


def _find(root: Path, files: tuple[str, ...]) -> Path | None:
    for f in files:
        p = Path(root) / TS_DIR / f
        if p.is_file():
            return p
    return None


@functools.lru_cache(maxsize=8)
def _forecast_cached(path: str, set_id: str, univariate: bool) -> ForecastData:
    s = FORECAST_SETS[set_id]
    if set_id.startswith("electricity"):
        _check_ecl_numbering(path)
    return load_forecast_csv(path, name=set_id, target=s.target, split=s.split,
                             pred_lens=s.pred_lens, univariate=univariate,
                             per_instance=s.per_instance)


def _check_ecl_numbering(path: str) -> None:
    """Warn on Informer's renumbered ``ECL.csv`` (columns from ``MT_000``): its ``MT_001`` is not
    the client TS2Vec's file calls ``MT_001``."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as fh:
        header = fh.readline().strip().split(",")
    if "MT_000" in header:
        warnings.warn(f"{path}: columns numbered from MT_000 (Informer's ECL.csv); the published "
                      f"TS2Vec/AutoTCL electricity numbers use TS2Vec's electricity.csv, whose "
                      f"client names differ", RuntimeWarning, stacklevel=3)


def load_forecast(name: str, root: str | Path | None = None, *,
                  univariate: bool = True) -> ForecastData:
    """Load a registered forecasting set (``etth1`` ...) from the data root (cached per process;
    the returned arrays are copies you may modify)."""
    from .root import data_root
    key = name.lower()
    if key not in FORECAST_SETS:
        raise ValueError(f"name: expected one of {sorted(FORECAST_SETS)}, got {name!r}")
    p = _find(data_root(root), FORECAST_SETS[key].files)
    if p is None:
        raise FileNotFoundError(f"{key}: none of {FORECAST_SETS[key].files} under "
                                f"{data_root(root) / TS_DIR}")
    d = _forecast_cached(str(p), key, bool(univariate))
    return replace(d, data=d.data.copy())


def _forecast_locator(s: _ForecastSet):
    def locate(root: Path) -> tuple[str, str | None]:
        p = _find(root, s.files)
        return ("found", str(p)) if p is not None else ("missing", None)
    return locate


def _forecast_loader(s: _ForecastSet):
    def loader(root: Path, *, download: bool = False, normalize_features: bool = True):
        # the registry's generic load gives the univariate protocol (the published headline);
        # call load_forecast(..., univariate=False) for the multivariate one
        return load_forecast(s.id, root, univariate=True)
    return loader


# ------------------------------------------------------------------------------ UCR / UEA
def _read_ucr_tsv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(values [N, T] float64, labels [N])`` of a UCR ``.tsv[.gz]``: one case per line, the
    label first, tab-separated; empty fields (and ``NaN``) are missing values.

    Raises:
        ValueError: naming the file and line: a field that is not a number, an infinite value,
            a missing label, a line with a different number of fields, or no data at all.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    rows: list[list[float]] = []
    width, first = 0, 0
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if "#" in line:
                line = line[:line.index("#")]
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            if not rows:
                width, first = len(fields), lineno
            elif len(fields) != width:
                raise ValueError(f"{path}, line {lineno}: expected {width} tab-separated fields "
                                 f"as on line {first}, got {len(fields)}")
            try:
                row = [float(v) if v.strip() else np.nan for v in fields]
            except ValueError:
                col, v = next((k, v) for k, v in enumerate(fields, 1)
                              if v.strip() and not _is_float(v))
                raise ValueError(f"{path}, line {lineno}: field {col}: expected a number (or an "
                                 f"empty field for missing), got {v.strip()[:40]!r}") from None
            if row[0] != row[0]:
                raise ValueError(f"{path}, line {lineno}: field 1: expected the class label, "
                                 f"got {fields[0].strip()!r}")
            if any(x in (np.inf, -np.inf) for x in row):
                col = next(k for k, x in enumerate(row, 1) if x in (np.inf, -np.inf))
                raise ValueError(f"{path}, line {lineno}: field {col}: expected a finite number "
                                 f"(or an empty field for missing), got {fields[col - 1]!r}")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: expected one case per line (label, values...), got no data")
    arr = np.asarray(rows, dtype=np.float64)
    return arr[:, 1:], arr[:, 0]


def _relabel(y_train: np.ndarray, y_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
    classes = np.unique(y_train)
    unseen = np.setdiff1d(np.unique(y_test), classes)
    if len(unseen):
        raise ValueError(f"y_test: labels {unseen.tolist()} do not occur in the training split")
    return (np.searchsorted(classes, y_train).astype(np.int64),
            np.searchsorted(classes, y_test).astype(np.int64),
            tuple(c.item() if hasattr(c, "item") else c for c in classes))


def load_ucr(folder: str | Path, name: str | None = None) -> ClassificationData:
    """Read a UCR 2018 dataset folder ``<Name>/<Name>_{TRAIN,TEST}.tsv[.gz]`` (TS2Vec
    ``load_UCR``): ``[N, T, 1]`` float32, labels via ``np.unique``, global train z-score only for
    :data:`UCR_UNNORMALISED`; empty fields (variable length / missing) become NaN."""
    folder = Path(folder)
    ds = name or folder.name
    parts = []
    for split in ("TRAIN", "TEST"):
        p = next((folder / f"{ds}_{split}{ext}" for ext in (".tsv.gz", ".tsv")
                  if (folder / f"{ds}_{split}{ext}").is_file()), None)
        if p is None:
            raise FileNotFoundError(f"{folder}: expected {ds}_{split}.tsv.gz or .tsv")
        parts.append(_read_ucr_tsv(p))
    (xtr, ytr), (xte, yte) = parts
    if xtr.shape[1] != xte.shape[1]:  # pad the shorter split with NaN
        t = max(xtr.shape[1], xte.shape[1])
        xtr = np.pad(xtr, ((0, 0), (0, t - xtr.shape[1])), constant_values=np.nan)
        xte = np.pad(xte, ((0, 0), (0, t - xte.shape[1])), constant_values=np.nan)
    ytr, yte, classes = _relabel(ytr, yte)
    if ds in UCR_UNNORMALISED:
        mean, std = np.nanmean(xtr), np.nanstd(xtr)
        xtr, xte = (xtr - mean) / std, (xte - mean) / std
    return ClassificationData(ds, xtr[..., None].astype(np.float32), ytr,
                              xte[..., None].astype(np.float32), yte, classes)


def read_ts_file(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an sktime/aeon ``.ts`` file: ``(x [N, T_max, C] float64 NaN-padded, labels [N] str)``.

    Header lines start with ``@``; after ``@data`` one case per line, channels separated by ``:``,
    values by ``,``, the class label last. ``?`` and empty values are NaN.

    Raises:
        ValueError: naming the file and line: a value that is not a number (or is infinite), a
            case without channels or label, a case with a different number of channels than
            the first, or no cases at all.
    """
    cases, labels = [], []
    in_data = False
    first = 0
    opener = open
    if str(path).endswith(".gz"):
        import gzip
        opener = gzip.open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if line.lower().startswith("@data"):
                    in_data = True
                continue
            fields = line.split(":")
            if len(fields) < 2:
                raise ValueError(f"{path}, line {lineno}: expected channels separated by ':' "
                                 f"and the class label last, got {line[:80]!r}")
            chans = []
            for k, f in enumerate(fields[:-1], 1):
                try:
                    vals = np.array([float(v) if v not in ("?", "") else np.nan
                                     for v in f.split(",")])
                except ValueError:
                    v = next(v for v in f.split(",") if v not in ("?", "") and not _is_float(v))
                    raise ValueError(f"{path}, line {lineno}: channel {k}: expected numbers "
                                     f"('?' or empty for missing), got {v.strip()[:40]!r}"
                                     ) from None
                if np.isinf(vals).any():
                    raise ValueError(f"{path}, line {lineno}: channel {k}: expected finite "
                                     f"numbers ('?' or empty for missing), got an infinite value")
                chans.append(vals)
            if cases and len(chans) != len(cases[0]):
                raise ValueError(f"{path}, line {lineno}: expected {len(cases[0])} channels as "
                                 f"in the first case (line {first}), got {len(chans)}")
            if not cases:
                first = lineno
            labels.append(fields[-1].strip())
            cases.append(chans)
    if not cases:
        raise ValueError(f"{path}: expected '@data' followed by cases, got none")
    c = len(cases[0])
    t = max(len(v) for ch in cases for v in ch)
    x = np.full((len(cases), t, c), np.nan)
    for i, ch in enumerate(cases):
        for j, v in enumerate(ch):
            x[i, :len(v), j] = v
    return x, np.asarray(labels)


def _read_arff(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import arff
    data, _ = arff.loadarff(path)
    x = np.stack([np.array(r[0].tolist(), dtype=np.float64) for r in data])  # [N, C, T]
    y = np.array([r[1].decode() if isinstance(r[1], bytes) else str(r[1]) for r in data])
    return x.transpose(0, 2, 1), y


def load_uea(folder: str | Path, name: str | None = None) -> ClassificationData:
    """Read a UEA dataset folder (``.ts`` preferred, else ``.arff``) the TS2Vec way: per-channel
    standardisation fitted on train (NaN ignored), NaN padding for variable lengths."""
    folder = Path(folder)
    ds = name or folder.name
    parts, files = [], []
    for split in ("TRAIN", "TEST"):
        ts, ar = folder / f"{ds}_{split}.ts", folder / f"{ds}_{split}.arff"
        if ts.is_file():
            parts.append(read_ts_file(ts))
            files.append(ts)
        elif ar.is_file():
            parts.append(_read_arff(ar))
            files.append(ar)
        else:
            raise FileNotFoundError(f"{folder}: expected {ds}_{split}.ts or .arff")
    (xtr, ytr), (xte, yte) = parts
    if xte.shape[2] != xtr.shape[2]:  # would broadcast (1 channel) or fail deep in the scaling
        raise ValueError(f"{files[1]}: expected {xtr.shape[2]} channels per case as in the "
                         f"training split {files[0].name}, got {xte.shape[2]}")
    t = max(xtr.shape[1], xte.shape[1])
    xtr = np.pad(xtr, ((0, 0), (0, t - xtr.shape[1]), (0, 0)), constant_values=np.nan)
    xte = np.pad(xte, ((0, 0), (0, t - xte.shape[1]), (0, 0)), constant_values=np.nan)
    flat = xtr.reshape(-1, xtr.shape[-1])
    mean, std = _zscore_fit(flat)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    ytr, yte, classes = _relabel(ytr, yte)
    return ClassificationData(ds, xtr.astype(np.float32), ytr, xte.astype(np.float32), yte,
                              classes)


# ------------------------------------------------------------------------------ registration
def _archive_spec(archive: str, folder_name: str, reader) -> DatasetSpec:
    rel = TS_DIR / archive / folder_name
    sid = f"{archive.lower()}-{_slug(folder_name)}"

    def locate(root: Path) -> tuple[str, str | None]:
        d = Path(root) / rel
        if not d.is_dir():
            return "missing", None
        names = {p.name for p in d.iterdir()}
        have = [any(f"{folder_name}_{s}{e}" in names for e in (".tsv.gz", ".tsv", ".ts", ".arff"))
                for s in ("TRAIN", "TEST")]
        return ("found" if all(have) else "incomplete" if any(have) else "missing"), str(d)

    def loader(root: Path, *, download: bool = False, normalize_features: bool = True):
        d = Path(root) / rel
        if not d.is_dir():
            raise FileNotFoundError(f"{sid}: folder {d} is missing")
        return reader(d, folder_name)

    return DatasetSpec(id=sid, domain="timeseries",
                       description=f"{archive} classification: {folder_name}",
                       loader=loader, locate=locate, aliases=(_slug(folder_name),),
                       kind="classification")


def _slug(name: str) -> str:
    return "-".join(name.strip().lower().replace("_", " ").replace("-", " ").split())


#: the archive datasets the benchmarks use (the shared data's 61 UCR and 3 UEA sets); they are
#: registered even when absent (status "missing"), and any other archive folder found is added
KNOWN_ARCHIVE_SETS: dict[str, tuple[str, ...]] = {
    "UCR": (
        "ACSF1", "ArrowHead", "BME", "Beef", "BirdChicken", "CBF", "Car", "Coffee", "CricketX",
        "CricketY", "DiatomSizeReduction", "DistalPhalanxOutlineAgeGroup",
        "DistalPhalanxOutlineCorrect", "DodgerLoopDay", "DodgerLoopGame", "DodgerLoopWeekend",
        "ECGFiveDays", "Earthquakes", "FaceAll", "FacesUCR", "FiftyWords", "Fish", "GestureMidAirD1",
        "GestureMidAirD2", "GestureMidAirD3", "GesturePebbleZ2", "GunPoint", "GunPointAgeSpan",
        "GunPointOldVersusYoung", "Ham", "Herring", "InsectEPGRegularTrain", "InsectEPGSmallTrain",
        "ItalyPowerDemand", "Lightning7", "Meat", "MedicalImages", "MiddlePhalanxOutlineAgeGroup",
        "MiddlePhalanxOutlineCorrect", "MiddlePhalanxTW", "OSULeaf", "OliveOil",
        "PhalangesOutlinesCorrect", "Plane", "PowerCons", "ProximalPhalanxOutlineAgeGroup",
        "ProximalPhalanxTW", "Rock", "ShakeGestureWiimoteZ", "SmoothSubspace",
        "SonyAIBORobotSurface1", "SonyAIBORobotSurface2", "SwedishLeaf", "SyntheticControl",
        "ToeSegmentation1", "Trace", "TwoLeadECG", "UMD", "WordSynonyms", "Worms", "WormsTwoClass",
    ),
    "UEA": ("BasicMotions", "ERing", "JapaneseVowels"),
}


def _register_all() -> None:
    for s in FORECAST_SETS.values():
        register(DatasetSpec(id=s.id, domain="timeseries", description=s.description,
                             loader=_forecast_loader(s), locate=_forecast_locator(s),
                             kind="forecast"),
                 replace=True)
    try:
        from .root import data_root
        root: Path | None = Path(data_root(None))
    except Exception:  # noqa: BLE001 - no data root: only the known archive sets
        root = None
    from .registry import registered
    taken = {a for sp in registered() for a in (sp.id, *sp.aliases)}
    for archive, reader in (("UCR", load_ucr), ("UEA", load_uea)):
        folders = set(KNOWN_ARCHIVE_SETS[archive])
        base = None if root is None else root / TS_DIR / archive
        if base is not None and base.is_dir():
            folders |= {p.name for p in base.iterdir() if p.is_dir()}
        for name in sorted(folders):
            spec = _archive_spec(archive, name, reader)
            if spec.aliases[0] in taken:  # an alias clash (e.g. with a graph set): id only
                spec = replace(spec, aliases=())
            register(spec, replace=True)


_register_all()
