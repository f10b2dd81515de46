"""The medical hierarchy data path: ADFSU files, windows with ids, patient folds, trial batches."""

from __future__ import annotations

import numpy as np
import pytest

from contrastkit.datasets.medical import (PatientDataset, TrialBatches, from_arrays, label_subset,
                                          load_adfsu, make_samples, patient_kfold)

from conftest import require_dataset, skip_without_data


def _toy(n_patients: int = 4, trials: int = 2, T: int = 40, C: int = 3, seed: int = 0
         ) -> PatientDataset:
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(p, 1 + p, size=(trials, T, C)).astype(np.float32)
              for p in range(n_patients)]
    return from_arrays(arrays, [p % 2 for p in range(n_patients)],
                       patient_ids=[10 + p for p in range(n_patients)])


def test_windows_carry_patient_trial_label_ids():
    data = _toy()
    s = make_samples(data, window=10, overlap=0.5)
    per_trial = (40 - 10) // 5 + 1  # 7
    assert len(s) == 4 * 2 * per_trial
    assert s.x.shape == (len(s), 10, 3)
    # ordered patient -> trial -> window; ids follow
    for p in range(4):
        rows = slice(p * 2 * per_trial, (p + 1) * 2 * per_trial)
        assert set(s.patient[rows].tolist()) == {10 + p}
        assert set(s.y[rows].tolist()) == {p % 2}
        assert s.trial[rows].unique().numel() == 2
    assert s.trial.unique().numel() == 8  # trial ids unique across patients
    # per-trial z-scoring: the first window of trial 0 of patient 3 is the normalised raw trial
    raw = data.trials[3][0]
    z = (raw - raw.mean(0)) / (raw.std(0) + 1e-8)
    first = 3 * 2 * per_trial
    np.testing.assert_allclose(s.x[first].numpy(), z[:10], rtol=1e-5, atol=1e-5)
    # windows overlap by half: window 1 starts at step 5
    np.testing.assert_allclose(s.x[first + 1].numpy(), z[5:15], rtol=1e-5, atol=1e-5)


def test_no_overlap_and_subset_of_patients():
    data = _toy()
    s = make_samples(data, [1, 3], window=8, overlap=0.0)
    assert len(s) == 2 * 2 * 5
    assert set(s.patient.tolist()) == {11, 13}


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="trials\\[1\\]"):
        from_arrays([np.zeros((1, 5, 2)), np.zeros((1, 5, 3))], [0, 1])
    with pytest.raises(ValueError, match="labels"):
        from_arrays([np.zeros((1, 5, 2))], [0, 1])
    with pytest.raises(ValueError, match="trials\\[0\\]"):
        from_arrays([np.full((1, 5, 2), np.nan)], [0])
    with pytest.raises(ValueError, match="window"):
        make_samples(_toy(), window=100)
    with pytest.raises(ValueError, match="overlap"):
        make_samples(_toy(), overlap=1.0)
    with pytest.raises(ValueError, match="fraction"):
        label_subset(np.array([0, 1]), 0.0)


def test_label_subset_keeps_both_classes():
    y = np.array([1] * 990 + [0] * 10)
    idx = label_subset(y, 0.01, seed=3)
    assert set(y[idx].tolist()) == {0, 1}
    assert (y[idx] == 1).sum() == 10 and (y[idx] == 0).sum() == 1
    assert len(np.unique(idx)) == len(idx)
    np.testing.assert_array_equal(label_subset(y, 1.0), np.arange(1000))


def test_trial_batches_hold_whole_trials_with_fixed_composition():
    data = _toy(n_patients=6, trials=2, T=40)
    s = make_samples(data, window=10, overlap=0.5)  # 7 windows per trial, 12 trials
    loader = TrialBatches(s, batch_size=14, seed=1)
    loader.set_epoch(0)
    e0 = [b["trial"].tolist() for b in loader]
    loader.set_epoch(1)
    e1 = [b["trial"].tolist() for b in loader]
    assert len(e0) == 6
    for b0, b1 in zip(e0, e1):
        assert sorted(b0) == sorted(b1)            # same composition every epoch
        assert len(set(b0)) == 2                   # two whole trials per batch
        assert all(b0.count(t) == 7 for t in set(b0))
    assert e0 != e1                                # order within batches reshuffled
    everything = sorted(i for b in loader for i in b["x"][:, 0, 0].tolist())
    assert everything == sorted(s.x[:, 0, 0].tolist())


def test_random_batches_never_leave_a_batch_of_one():
    data = _toy(n_patients=1, trials=1, T=40)
    s = make_samples(data, window=10, overlap=0.0)  # 4 windows
    sizes = [len(b["y"]) for b in TrialBatches(s, batch_size=3, mode="random")]
    assert sizes == [4]


def test_patient_kfold_never_puts_a_patient_in_two_splits():
    labels = np.array([1] * 76 + [0] * 12)
    folds = patient_kfold(labels, 5, seed=0)
    seen = []
    for tr, te in folds:
        assert not set(tr) & set(te)
        assert len(set(tr) | set(te)) == 88
        assert set(labels[te]) == {0, 1}  # both classes in every test fold
        seen.extend(te.tolist())
    assert sorted(seen) == list(range(88))  # every patient tested exactly once
    with pytest.raises(ValueError, match="n_splits"):
        patient_kfold(labels, 13)


def test_adfsu_files_and_window_level_leakage():
    root = require_dataset("adfsu")
    data = load_adfsu(root)
    assert data.num_patients == 88 and data.num_channels == 19
    assert np.bincount(data.labels).tolist() == [12, 76]
    assert sum(len(t) for t in data.trials) == 175
    assert [len(t) for t in data.trials].count(1) == 1  # patient 81: eyes closed only
    assert len(data.trials[80]) == 1 and data.patient_ids[80] == 81
    assert data.trials[0].shape == (2, 1024, 19)
    s = make_samples(data)  # 128 steps, 50 % -> 15 windows per trial
    assert len(s) == 175 * 15
    for tr, te in patient_kfold(data.labels, 5, seed=0):
        a = make_samples(data, tr)
        b = make_samples(data, te)
        assert not set(a.patient.tolist()) & set(b.patient.tolist())
        assert not set(a.trial.tolist()) & set(b.trial.tolist())
        assert set(b.y.tolist()) == {0, 1}


def _assert_zip_matches_comet(patients):
    from contrastkit.datasets.medical import ADFSU_DIR, _read_comet, _read_zip
    root = require_dataset("adfsu")
    if not (root / ADFSU_DIR / "EEG_data.zip").is_file():
        skip_without_data(f"no {ADFSU_DIR}/EEG_data.zip under {root}")
    a = _read_comet(root / ADFSU_DIR / "comet")
    b = _read_zip(root / ADFSU_DIR / "EEG_data.zip", patients)
    rows = np.searchsorted(a.patient_ids, b.patient_ids)
    np.testing.assert_array_equal(a.patient_ids[rows], b.patient_ids)
    np.testing.assert_array_equal(a.labels[rows], b.labels)
    for r, y in zip(rows, b.trials):
        np.testing.assert_allclose(a.trials[r], y, atol=2e-6)
    return b


def test_adfsu_text_files_match_comet_layout_sample():
    # ids 1-76 are AD Paciente1-40, 45-80 (41-44 duplicate Paciente40), 77-88 Healthy 1-12:
    # both sides of the skipped duplicates, both sides of the AD/healthy border, id 81 (eyes
    # closed only) and the last one, in an order the reader must keep
    b = _assert_zip_matches_comet([41, 1, 40, 76, 77, 81, 88])
    assert b.labels.tolist() == [1, 1, 1, 1, 0, 0, 0]
    assert b.patient_ids.tolist() == [41, 1, 40, 76, 77, 81, 88]
    assert [len(t) for t in b.trials] == [2, 2, 2, 2, 2, 1, 2]


@pytest.mark.slow
def test_adfsu_text_files_match_comet_layout():
    b = _assert_zip_matches_comet(None)
    assert len(b.trials) == 88


def test_registry_lists_adfsu():
    from contrastkit.datasets import canonical_name, get_spec
    assert canonical_name("ADFSU") == "adfsu"
    assert get_spec("adfsu").domain == "timeseries"


def test_bad_patient_rows_and_labels_are_named():
    rng = np.random.default_rng(0)
    data = from_arrays([rng.standard_normal((1, 300, 2)) for _ in range(4)], [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"patients: expected row indices in \[0, 4\) .* \[99\]"):
        make_samples(data, [99])
    with pytest.raises(TypeError, match="patients: expected a 1-D sequence"):
        make_samples(data, [0.5])
    for labels in ([0.0, 1.0, 0.0], [-1, 0, 1], []):
        with pytest.raises(ValueError, match="labels: expected a non-empty 1-D array"):
            patient_kfold(np.asarray(labels), 2)


def test_text_loader_names_zip_members_and_lines(tmp_path):
    import zipfile

    from contrastkit.datasets.medical import _zip_txt
    zpath = tmp_path / "EEG_data.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("EEG_data/AD/Eyes_open/Paciente1/Fp1.txt", "1.0\n2.0\nbad\n")
        z.writestr("EEG_data/AD/Eyes_open/Paciente1/Fp2.txt", "1.0\n2.0\n3.0\n")
    with zipfile.ZipFile(zpath) as z:
        assert _zip_txt(z, zpath, "EEG_data/AD/Eyes_open/Paciente1/Fp2.txt").tolist() == [1, 2, 3]
        with pytest.raises(ValueError, match=r"EEG_data.zip:EEG_data/AD/Eyes_open/Paciente1/"
                                             r"Fp1.txt, line 3: field 1: expected a number, "
                                             r"got 'bad'"):
            _zip_txt(z, zpath, "EEG_data/AD/Eyes_open/Paciente1/Fp1.txt")
