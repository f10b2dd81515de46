"""How AutoTCL's classification setting was chosen: encoder-loss variants on four UCR sets,
scored by a train-only criterion (no test labels used for the choice).

AutoTCL's classification script and hyperparameters were never released (spec autotcl.md 3.1).
Every variant uses the TS2Vec backbone and TS2Vec's budget (batch 8, AdamW 1e-3, 200 steps,
window 3000), AutoTCL's default augmenter, seed 42:

* ``code_cosine``: the code's global loss (cosine similarity, temperature 1), no Delta_v;
* ``cosine_dv``: the same with the paper's latent timestamp mask on the view (Delta_v);
* ``dot_dv``: dot-product global loss (InfoTS's) with Delta_v — the setting we adopted
  (:data:`contrastkit.seqcl.autotcl.CLASSIFICATION`);
* ``hier_dv``: TS2Vec's hierarchical loss between ``f(x)`` and ``f(v)`` with Delta_v.

Selection criterion: leave-one-out 1-NN accuracy (cosine) on the **training** representations,
averaged over the datasets. The test accuracy (TS2Vec's SVM protocol) and the standard deviation
of the max-pooled training representations (the norm runaway of the cosine loss) are reported
beside it, not used. Results: ``results/autotcl_classification_variants.{json,md}``.

    OMP_NUM_THREADS=1 python benchmarks/autotcl_classification_variants.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"
VARIANTS = {
    "code_cosine": dict(global_similarity="cosine", view_timestamp_mask=False),
    "cosine_dv": dict(global_similarity="cosine", view_timestamp_mask=True),
    "dot_dv": dict(global_similarity="dot", view_timestamp_mask=True),
    "hier_dv": dict(encoder_objective="hierarchical", view_timestamp_mask=True),
}
DATASETS = ("SonyAIBORobotSurface1", "TwoLeadECG", "Beef", "MedicalImages")


def loo_1nn(z: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out 1-nearest-neighbour accuracy (cosine) of ``z [N, D]`` with labels ``y``."""
    z = z / np.linalg.norm(z, axis=1, keepdims=True).clip(1e-12)
    d = -(z @ z.T)
    np.fill_diagonal(d, np.inf)
    return float((y[d.argmin(1)] == y).mean())


def run_variant(dataset: str, variant: str, seed: int = 42) -> dict:
    """Train one variant on ``dataset`` and score both criteria."""
    from contrastkit.datasets import load
    from contrastkit.seqcl import autotcl as A
    from contrastkit.seqcl import ts2vec as T
    data = load(dataset)
    cfg = A.AutoTCLConfig.classification(dataset, **VARIANTS[variant])
    t0 = time.perf_counter()
    model, _ = A.fit(cfg, data.x_train, seed=seed)
    ztr = model.embed(torch.from_numpy(data.x_train)).numpy()
    zte = model.embed(torch.from_numpy(data.x_test)).numpy()
    met = T.eval_classification(ztr, data.y_train, zte, data.y_test, seed=seed, tiny_c=1e8)
    return {"dataset": dataset, "variant": variant, "train_loo1nn": loo_1nn(
        ztr, np.asarray(data.y_train)), "acc": met["acc"], "std": float(ztr.std()),
        "secs": time.perf_counter() - t0}


def render(rows: list[dict]) -> str:
    """Markdown: one row per variant, per-dataset criterion / test accuracy, and the means."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    head = ("| variant | " + " | ".join(f"{d} train LOO 1-NN / test acc / std" for d in datasets)
            + " | mean train LOO 1-NN (criterion) | mean test acc |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for v in VARIANTS:
        got = {r["dataset"]: r for r in rows if r["variant"] == v}
        if not got:
            continue
        cells = [f"{got[d]['train_loo1nn']:.3f} / {got[d]['acc']:.3f} / {got[d]['std']:.2g}"
                 if d in got else "-" for d in datasets]
        done = [got[d] for d in datasets if d in got]
        lines.append(f"| {v} | " + " | ".join(cells)
                     + f" | {np.mean([r['train_loo1nn'] for r in done]):.3f}"
                     + f" | {np.mean([r['acc'] for r in done]):.3f} |")
    return ("AutoTCL classification variants (TS2Vec backbone and budget, seed 42, one CPU "
            "thread); chosen by the mean train-only LOO 1-NN accuracy.\n\n" + "\n".join(lines)
            + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    torch.set_num_threads(1)
    path = RESULTS / "autotcl_classification_variants.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    for ds in args.datasets:
        for v in args.variants:
            row = run_variant(ds, v, args.seed)
            rows = [r for r in rows if (r["dataset"], r["variant"]) != (ds, v)] + [row]
            print(json.dumps(row), flush=True)
            RESULTS.mkdir(exist_ok=True)
            path.write_text(json.dumps(rows, indent=2))
            (RESULTS / "autotcl_classification_variants.md").write_text(render(rows))
    print(render(rows))


if __name__ == "__main__":
    main()
