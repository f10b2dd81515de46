"""COMET on your own medical time series: a list of per-patient arrays ``[trials, time, channels]``.

Each patient contributes one array of its recordings (trials) and one label. COMET cuts the trials
into windows, pre-trains on them with patient / trial / sample / observation contrast, fine-tunes
with 100 % / 10 % / 1 % of the training labels, and evaluates on held-out *patients*.

    python examples/medical_timeseries.py                  # synthetic patients (about 1 min)
    python examples/medical_timeseries.py --data DIR       # COMET layout: DIR/Feature/feature_XX.npy
                                                           # + DIR/Label/label.npy ([P, 2])

In your own code::

    from contrastkit.datasets.medical import from_arrays, patient_kfold
    from contrastkit.seqcl.comet import COMETConfig, run_fold
    data = from_arrays(list_of_arrays, labels)              # arrays [n_trials, T, C]
    train_rows, test_rows = patient_kfold(data.labels, 5)[0]
    result = run_fold(COMETConfig(window=128, epochs=20), data, train_rows, test_rows, seed=0)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from contrastkit.datasets.medical import from_arrays, patient_kfold
from contrastkit.seqcl.comet import COMETConfig, run_fold


def synthetic_patients(n_per_class: int = 10, trials: int = 2, T: int = 512, C: int = 4,
                       seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    """Two classes that differ in their dominant rhythm (8 Hz vs 12 Hz at 64 Hz), with a
    patient-specific amplitude and phase and white noise."""
    rng = np.random.default_rng(seed)
    arrays, labels = [], []
    t = np.arange(T) / 64.0
    for label, freq in ((0, 8.0), (1, 12.0)):
        for _ in range(n_per_class):
            amp = rng.uniform(0.5, 1.5, size=C)
            recs = []
            for _ in range(trials):
                phase = rng.uniform(0, 2 * np.pi, size=C)
                sig = amp * np.sin(2 * np.pi * freq * t[:, None] + phase)
                recs.append(sig + rng.normal(0, 1.0, size=(T, C)))
            arrays.append(np.stack(recs).astype(np.float32))
            labels.append(label)
    return arrays, labels


def read_comet_layout(folder: Path) -> tuple[list[np.ndarray], list[int]]:
    lab = np.load(folder / "Label" / "label.npy")
    files = sorted((folder / "Feature").glob("feature_*.npy"))
    return [np.load(f) for f in files], lab[:, 0].astype(int).tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="folder in COMET's layout")
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)

    arrays, labels = (read_comet_layout(args.data) if args.data is not None
                      else synthetic_patients())
    data = from_arrays(arrays, labels)
    print(data)
    config = COMETConfig(window=args.window, output_dims=32, hidden_dims=16, depth=3,
                         epochs=args.epochs, batch_size=64, lr=1e-3, swa_start_epoch=1,
                         finetune_epochs=(5, 20, 50), finetune_lr=1e-3, finetune_batch_size=64,
                         n_folds=args.folds)
    train_rows, test_rows = patient_kfold(data.labels, args.folds, seed=0)[args.fold]
    result = run_fold(config, data, train_rows, test_rows, seed=args.seed)
    for part, metrics in result.items():
        if isinstance(metrics, dict):
            print(f"{part:>8}: " + json.dumps({k: round(v, 3) for k, v in metrics.items()
                                                if k in ("acc", "macro_f1", "auroc", "auprc")}))


if __name__ == "__main__":
    main()
