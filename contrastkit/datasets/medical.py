r"""Medical time series with a patient -> trial -> sample -> observation hierarchy.

Registered dataset: ``adfsu`` (domain ``"timeseries"``) — the ADFSU Alzheimer's resting-state EEG
(``timeseries/medical/ADFSU_AD_EEG/``, see that folder's README): 88 patients (76 AD = label 1,
12 healthy = label 0), one or two 8-s trials each (eyes closed, eyes open; patient 81 has only
eyes closed), 1,024 steps at 128 Hz, 19 channels. Read from COMET's layout
(``comet/Feature/feature_XX.npy`` ``[n_trials, T, C]`` + ``comet/Label/label.npy`` ``[P, 2]``), or,
when that is absent, from the original text files in ``EEG_data.zip``.

The hierarchy as data:

* :class:`PatientDataset` — per-patient arrays ``[n_trials, T, C]`` with a label and a patient id
  (:func:`from_arrays` builds one from a user's own list of arrays);
* :func:`make_samples` -> :class:`SampleSet` — trials z-scored per channel, cut into windows of
  ``window`` steps with ``overlap`` (default 128 steps = 1 s, 50 %), each window carrying
  ``(label, patient id, trial id)``; observations are the time steps of a window;
* :func:`patient_kfold` — stratified patient-level k-fold: all of a patient's windows are in one
  split;
* :class:`TrialBatches` — COMET's trial-aware batching (whole trials per batch, fixed composition,
  order within a batch reshuffled every epoch), so same-trial / same-patient positives exist.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from ._text import loadtxt
from .registry import DatasetSpec, register

__all__ = ["PatientDataset", "SampleSet", "from_arrays", "load_adfsu", "make_samples",
           "patient_kfold", "label_subset", "TrialBatches", "ADFSU_CHANNELS", "ADFSU_DIR"]

#: folder of the ADFSU set under the data root
ADFSU_DIR = Path("timeseries") / "medical" / "ADFSU_AD_EEG"
#: channel order of the COMET-layout arrays (10-20 system; F1/F2 of the text files are copies of
#: Fp1/Fp2 and are dropped)
ADFSU_CHANNELS = ("Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T3", "C3", "Cz", "C4", "T4", "T5",
                  "P3", "Pz", "P4", "T6", "O1", "O2")


@dataclass
class PatientDataset:
    """Patients with their trials.

    Attributes:
        trials: one float32 array ``[n_trials_p, T, C]`` per patient (``T`` may differ between
            patients, ``C`` may not).
        labels: ``[P]`` integer class per patient.
        patient_ids: ``[P]`` integer ids (unique).
        name: dataset name.
        sampling_rate: Hz (informational).
        channels: channel names (informational).
    """

    trials: list[np.ndarray]
    labels: np.ndarray
    patient_ids: np.ndarray
    name: str = "custom"
    sampling_rate: float | None = None
    channels: tuple[str, ...] = field(default_factory=tuple)

    @property
    def num_patients(self) -> int:
        return len(self.trials)

    @property
    def num_channels(self) -> int:
        return int(self.trials[0].shape[-1])

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1

    def __repr__(self) -> str:
        counts = np.bincount(self.labels, minlength=self.num_classes).tolist()
        return (f"PatientDataset({self.name!r}, patients={self.num_patients}, "
                f"trials={sum(len(t) for t in self.trials)}, channels={self.num_channels}, "
                f"patients_per_class={counts})")


def from_arrays(trials: Sequence[np.ndarray | Tensor], labels: Sequence[int] | np.ndarray, *,
                patient_ids: Sequence[int] | None = None, name: str = "custom",
                sampling_rate: float | None = None) -> PatientDataset:
    """Build a :class:`PatientDataset` from per-patient arrays ``[n_trials, T, C]`` and labels.

    A 2-D array ``[T, C]`` counts as one trial. Raises ``ValueError``/``TypeError`` naming the
    argument on inconsistent shapes, non-finite values or bad labels.
    """
    if not isinstance(trials, (list, tuple)) or len(trials) == 0:
        raise TypeError(f"trials: expected a non-empty list of per-patient arrays "
                        f"[n_trials, T, C], got {type(trials).__name__}")
    arrays = []
    for i, t in enumerate(trials):
        arr = t.detach().cpu().numpy() if isinstance(t, Tensor) else np.asarray(t)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or 0 in arr.shape:
            raise ValueError(f"trials[{i}]: expected an array [n_trials, T, C] (or [T, C]), got "
                             f"shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"trials[{i}]: expected numbers, got dtype {arr.dtype}")
        if not np.isfinite(arr).all():
            raise ValueError(f"trials[{i}]: expected finite values, got NaN/inf")
        if arrays and arr.shape[-1] != arrays[0].shape[-1]:
            raise ValueError(f"trials[{i}]: expected {arrays[0].shape[-1]} channels like "
                             f"trials[0], got shape {arr.shape}")
        arrays.append(arr.astype(np.float32, copy=False))
    y = np.asarray(labels)
    if y.shape != (len(arrays),) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError(f"labels: expected {len(arrays)} non-negative integer labels (one per "
                         f"patient), got shape {y.shape} dtype {y.dtype}")
    pid = np.arange(1, len(arrays) + 1) if patient_ids is None else np.asarray(patient_ids)
    if pid.shape != y.shape or len(np.unique(pid)) != len(pid):
        raise ValueError(f"patient_ids: expected {len(arrays)} unique ids, got {pid.tolist()[:10]}")
    return PatientDataset(arrays, y.astype(np.int64), pid.astype(np.int64), name=name,
                          sampling_rate=sampling_rate)


# ---------------------------------------------------------------------------------- ADFSU files
def _comet_dir(root: Path) -> Path:
    return Path(root) / ADFSU_DIR / "comet"


def _locate(root: Path) -> tuple[str, str | None]:
    comet = _comet_dir(root)
    if (comet / "Label" / "label.npy").is_file() and (comet / "Feature").is_dir():
        n = len(list((comet / "Feature").glob("feature_*.npy")))
        return ("found" if n == 88 else "incomplete"), str(comet)
    zip_path = Path(root) / ADFSU_DIR / "EEG_data.zip"
    if zip_path.is_file():
        return "found", str(zip_path)
    return "missing", None


def _read_comet(comet: Path) -> PatientDataset:
    lab = np.load(comet / "Label" / "label.npy")
    files = sorted((comet / "Feature").glob("feature_*.npy"))  # zero-padded: sorted == id order
    if lab.ndim != 2 or lab.shape[1] != 2 or len(files) != lab.shape[0]:
        raise ValueError(f"{comet}: expected label.npy [P, 2] with one row per feature file, got "
                         f"{lab.shape} and {len(files)} files")
    trials = []
    for j, f in enumerate(files):
        if int(f.stem.split("_")[1]) != int(lab[j, 1]):  # COMET pairs file j with row j
            raise ValueError(f"{f}: patient id does not match label.npy row {j} ({lab[j, 1]})")
        trials.append(np.load(f).astype(np.float32, copy=False))
    return PatientDataset(trials, lab[:, 0].astype(np.int64), lab[:, 1].astype(np.int64),
                          name="adfsu", sampling_rate=128.0, channels=ADFSU_CHANNELS)


def _read_zip(zip_path: Path, patients: list[int] | None = None) -> PatientDataset:
    """The original text files: persons ordered like ``comet/patients.csv`` (AD Paciente1..80
    without the duplicates 41-44 of Paciente40, then Healthy Paciente1..12), ids 1..88 in that
    order. ``patients`` reads only those ids (in the order given)."""
    persons = [("AD", 1, i) for i in range(1, 81) if i not in (41, 42, 43, 44)]
    persons += [("Healthy", 0, i) for i in range(1, 13)]
    ids = list(range(1, len(persons) + 1)) if patients is None else list(patients)
    bad = [p for p in ids if isinstance(p, bool) or not isinstance(p, (int, np.integer))
           or not 1 <= p <= len(persons)]
    if bad:
        raise ValueError(f"patients: expected ids in 1..{len(persons)}, got {bad[:5]}")
    trials, labels = [], []
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        for pid in ids:
            group, label, i = persons[pid - 1]
            recs = []
            for cond in ("Eyes_closed", "Eyes_open"):
                base = f"EEG_data/{group}/{cond}/Paciente{i}/"
                if f"{base}Fp1.txt" not in names:
                    continue
                recs.append(np.stack([_zip_txt(z, zip_path, f"{base}{ch}.txt")
                                      for ch in ADFSU_CHANNELS], axis=1))
            trials.append(np.stack(recs).astype(np.float32))
            labels.append(label)
    return PatientDataset(trials, np.asarray(labels, np.int64), np.asarray(ids, np.int64),
                          name="adfsu", sampling_rate=128.0, channels=ADFSU_CHANNELS)


def _zip_txt(z: zipfile.ZipFile, zip_path: Any, member: str) -> np.ndarray:
    """One numeric text member of a zip; a parse error names the archive, member and line."""
    return loadtxt(lambda: z.open(member), name=f"{zip_path}:{member}")


def load_adfsu(root: str | Path | None = None) -> PatientDataset:
    """Load ADFSU (COMET layout if present, else the text files in ``EEG_data.zip``)."""
    from .root import data_root
    path = data_root(root)
    status, where = _locate(path)
    if status != "found" or where is None:
        raise FileNotFoundError(f"dataset 'adfsu': files {status} under {path / ADFSU_DIR} "
                                f"(expected comet/Feature/*.npy + comet/Label/label.npy or "
                                f"EEG_data.zip)")
    return _read_zip(Path(where)) if where.endswith(".zip") else _read_comet(Path(where))


def _loader(root: Path, *, download: bool = False, normalize_features: bool = True
            ) -> PatientDataset:
    return load_adfsu(root)


register(DatasetSpec(id="adfsu", domain="timeseries",
                     description="ADFSU Alzheimer's EEG: 88 patients (76 AD, 12 healthy), "
                                 "patient -> trial (EC/EO, 8 s) hierarchy, 19 ch, 128 Hz",
                     loader=_loader, locate=_locate, aliases=("adfsu-ad-eeg",),
                     kind="patients"))


# ---------------------------------------------------------------------------------- samples
@dataclass
class SampleSet:
    """Windows cut from trials, with their hierarchy ids.

    Attributes:
        x: ``[N, W, C]`` float32 windows (observations = the ``W`` time steps).
        y: ``[N]`` labels (the patient's).
        patient: ``[N]`` patient ids.
        trial: ``[N]`` trial ids, unique across patients (``patient_id * 1000 + trial index``).
    """

    x: Tensor
    y: Tensor
    patient: Tensor
    trial: Tensor

    def __len__(self) -> int:
        return int(self.x.size(0))

    def subset(self, index: np.ndarray | Tensor) -> "SampleSet":
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return SampleSet(self.x[idx], self.y[idx], self.patient[idx], self.trial[idx])


def make_samples(data: PatientDataset, patients: Sequence[int] | np.ndarray | None = None, *,
                 window: int = 128, overlap: float = 0.5, normalize: str = "trial") -> SampleSet:
    """Cut the trials of ``patients`` (row indices into ``data``; default all) into windows.

    Args:
        data: the patients.
        patients: row indices of the patients to use.
        window: samples per window (``S_TIMESTAMPS``).
        overlap: fraction of overlap between consecutive windows in ``[0, 1)``.
        normalize: ``"trial"`` (z-score each trial per channel, COMET) or ``"none"``.

    Returns:
        The :class:`SampleSet`, ordered patient -> trial -> window.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise ValueError(f"window: expected an int >= 2, got {window!r}")
    if not 0.0 <= float(overlap) < 1.0:
        raise ValueError(f"overlap: expected a float in [0, 1), got {overlap!r}")
    if normalize not in ("trial", "none"):
        raise ValueError(f"normalize: expected 'trial' or 'none', got {normalize!r}")
    stride = max(1, int(round(window * (1 - overlap))))
    rows = np.arange(data.num_patients) if patients is None else np.asarray(patients)
    if rows.ndim != 1 or not (rows.size == 0 or np.issubdtype(rows.dtype, np.integer)):
        raise TypeError(f"patients: expected a 1-D sequence of patient row indices (ints), got "
                        f"shape {rows.shape} dtype {rows.dtype}")
    bad = rows[(rows < 0) | (rows >= data.num_patients)]
    if bad.size:
        raise ValueError(f"patients: expected row indices in [0, {data.num_patients}) (rows of the "
                         f"dataset, not patient ids), got {bad[:5].tolist()}")
    xs, ys, ps, ts = [], [], [], []
    for r in rows:
        pid = int(data.patient_ids[r])
        for k, trial in enumerate(data.trials[r]):
            t = trial.astype(np.float32)
            if normalize == "trial":
                t = (t - t.mean(0, keepdims=True)) / (t.std(0, keepdims=True) + 1e-8)
            if t.shape[0] < window:
                raise ValueError(f"window: {window} is longer than trial {k} of patient {pid} "
                                 f"({t.shape[0]} steps)")
            starts = np.arange(0, t.shape[0] - window + 1, stride)
            xs.append(np.stack([t[s:s + window] for s in starts]))
            ys.append(np.full(len(starts), data.labels[r]))
            ps.append(np.full(len(starts), pid))
            ts.append(np.full(len(starts), pid * 1000 + k))
    if not xs:
        raise ValueError("patients: expected at least one patient, got none")
    return SampleSet(torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)),
                     torch.from_numpy(np.concatenate(ps)), torch.from_numpy(np.concatenate(ts)))


def patient_kfold(labels: np.ndarray, n_splits: int = 5, seed: int = 0
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold over *patients*: ``[(train_rows, test_rows)]`` of patient row indices.

    Every patient is in exactly one test fold, each fold keeps the class ratio (both classes in
    every test fold when each class has ``>= n_splits`` patients).
    """
    from sklearn.model_selection import StratifiedKFold
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0 or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError(f"labels: expected a non-empty 1-D array of non-negative integer class "
                         f"labels (one per patient), got shape {y.shape} dtype {y.dtype}"
                         + (f" minimum {y.min()}" if y.size and np.issubdtype(y.dtype, np.number)
                            else ""))
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)):
        raise TypeError(f"n_splits: expected an int, got {n_splits!r}")
    counts = np.bincount(y)
    if n_splits < 2 or counts[counts > 0].min() < n_splits:
        raise ValueError(f"n_splits: expected 2 <= n_splits <= the smallest class's patient "
                         f"count ({counts[counts > 0].min()}), got {n_splits}")
    skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in skf.split(np.zeros(len(y)), y)]


def label_subset(y: Tensor | np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Indices of a per-class random ``fraction`` of samples (at least one per class), sorted."""
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction: expected a float in (0, 1], got {fraction!r}")
    y = np.asarray(y)
    if fraction == 1.0:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = max(1, int(round(fraction * len(idx))))
        out.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(out))


class TrialBatches:
    """COMET's trial-aware batches (``utils.trial_shuffle_feature_label`` + ``MyBatchSampler``).

    Once (fixed ``seed``): shuffle samples within each trial, shuffle the order of trials, cut the
    concatenation into consecutive chunks of ``batch_size``. Every epoch only the order *within* a
    batch is reshuffled (seeded by ``seed`` and the epoch, which the trainer sets). Iterating yields
    dicts ``{"x", "y", "patient", "trial"}``. ``mode="random"`` gives plain shuffled batches.
    """

    def __init__(self, samples: SampleSet, batch_size: int = 256, *, seed: int = 42,
                 mode: str = "trial", drop_last: bool = False) -> None:
        if mode not in ("trial", "random"):
            raise ValueError(f"mode: expected 'trial' or 'random', got {mode!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        self.samples, self.batch_size, self.seed, self.mode = samples, batch_size, seed, mode
        self.drop_last = drop_last
        self.epoch = 0
        rng = np.random.default_rng(seed)
        if mode == "trial":
            tid = samples.trial.numpy()
            trials = np.unique(tid)
            groups = [rng.permutation(np.flatnonzero(tid == t)) for t in trials]
            order = np.concatenate([groups[i] for i in rng.permutation(len(groups))])
        else:
            order = rng.permutation(len(samples))
        self.order = order
        n = len(order)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        self.batches = [order[i:i + batch_size] for i in range(0, stop, batch_size)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = self.batches
        if self.mode == "random":
            perm = rng.permutation(len(self.samples))
            batches = [perm[i:i + self.batch_size] for i in range(0, len(perm), self.batch_size)]
            if len(batches) > 1 and len(batches[-1]) < 2:  # no batch of one (BatchNorm)
                batches = batches[:-2] + [np.concatenate(batches[-2:])]
        s = self.samples
        for b in batches:
            idx = torch.from_numpy(rng.permutation(b) if self.mode == "trial" else b)
            yield {"x": s.x[idx], "y": s.y[idx], "patient": s.patient[idx], "trial": s.trial[idx]}
