"""COMET vs supervised-from-scratch vs sample-level-only contrastive on ADFSU (README table).

Every variant runs through the same trainer and the same stratified patient-level folds; metrics
are per window on the test patients, mean +- std over folds x seeds. The paired difference
COMET - supervised in ``macro_f1`` is computed per (fold, seed) at each label fraction.

Usage (about an hour on one CPU core with the ADFSU preset; results are written after every run,
so an interrupted benchmark keeps what it finished and ``--resume`` continues it)::

    OMP_NUM_THREADS=1 python benchmarks/medical.py --seeds 0 1 --folds 5
    python benchmarks/medical.py --table-only        # rebuild the Markdown table from the JSON
    python benchmarks/medical.py --quick             # smoke run (1 fold, 1 epoch)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contrastkit.datasets import load  # noqa: E402
from contrastkit.datasets.medical import patient_kfold  # noqa: E402
from contrastkit.seqcl.comet import ADFSU_PRESET, COMETConfig, run_fold  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
METRICS = ("acc", "precision", "recall", "macro_f1", "auroc", "auprc")
VARIANT_NAMES = {"comet": "COMET", "supervised": "Supervised (scratch)",
                 "sample_only": "Sample-level only"}


def _key(variant: str, seed: int, fold: int) -> str:
    return f"{variant}/seed{seed}/fold{fold}"


def summarize(runs: dict[str, dict], fractions: list[str]) -> dict:
    """Mean/std over (fold, seed) per variant and fraction; paired COMET - supervised diffs."""
    out: dict = {"variants": {}, "paired_macro_f1": {}}
    for variant in VARIANT_NAMES:
        mine = {k: v for k, v in runs.items() if k.startswith(variant + "/")}
        if not mine:
            continue
        table = {}
        for frac in fractions + ["linear"]:
            vals = {m: [r[frac][m] for r in mine.values() if frac in r] for m in METRICS}
            if not vals["acc"]:
                continue
            table[frac] = {m: {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)}
                           for m, v in vals.items()}
        out["variants"][variant] = table
    for frac in fractions:
        for other in ("supervised", "sample_only"):
            diffs = []
            for k, r in runs.items():
                if not k.startswith("comet/"):
                    continue
                rest = k.split("/", 1)[1]
                o = runs.get(f"{other}/{rest}")
                if o is not None and frac in r and frac in o:
                    diffs.append(r[frac]["macro_f1"] - o[frac]["macro_f1"])
            if diffs:
                d = np.asarray(diffs)
                out["paired_macro_f1"].setdefault(frac, {})[other] = {
                    "mean_diff": float(d.mean()), "std_diff": float(d.std()), "n": len(d),
                    "wins": int((d > 0).sum()),
                    "beats_by_more_than_one_std": bool(d.mean() > d.std())}
    return out


def markdown(summary: dict, meta: dict) -> str:
    fr = meta["fractions"]
    lines = [f"# COMET on ADFSU (patient-independent, {meta['n_folds']}-fold x seeds "
             f"{meta['seeds']})", "",
             f"Per-window test metrics, mean ± std over folds × seeds (n per cell in the last "
             f"column; std over runs, ddof 0). Config: `{meta['config_overrides']}`. Wall time "
             f"{meta['wall_s']:.0f} s"
             + (f", CPU time {meta['cpu_s']:.0f} s" if meta.get("cpu_s") else "")
             + f" on {meta['threads']} thread(s). Command: `{meta.get('command', '')}`.", "",
             "| method | labels | " + " | ".join(METRICS) + " | n |",
             "|---|---|" + "---|" * len(METRICS) + "---|"]
    for variant, table in summary["variants"].items():
        for frac in fr + ["linear"]:
            if frac not in table:
                continue
            cells = [f"{table[frac][m]['mean']:.3f} ± {table[frac][m]['std']:.3f}"
                     for m in METRICS]
            label = "linear eval (100%)" if frac == "linear" else frac
            lines.append(f"| {VARIANT_NAMES[variant]} | {label} | " + " | ".join(cells)
                         + f" | {table[frac]['acc']['n']} |")
    lines += ["", "Paired macro-F1 difference COMET − baseline per (fold, seed):", "",
              "| labels | vs | mean diff | std of diffs | COMET wins | > 1 std |",
              "|---|---|---|---|---|---|"]
    for frac, d in summary["paired_macro_f1"].items():
        for other, s in d.items():
            lines.append(f"| {frac} | {VARIANT_NAMES[other]} | {s['mean_diff']:+.3f} | "
                         f"{s['std_diff']:.3f} | {s['wins']}/{s['n']} | "
                         f"{'yes' if s['beats_by_more_than_one_std'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--variants", nargs="+", default=["comet", "supervised", "sample_only"])
    ap.add_argument("--set", nargs="*", default=[], help="config overrides k=v (JSON values)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 fold, 1 epoch")
    ap.add_argument("--resume", action="store_true", help="skip runs already in the JSON")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--name", default="medical")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    json_path, md_path = RESULTS / f"{args.name}.json", RESULTS / f"{args.name}.md"
    RESULTS.mkdir(parents=True, exist_ok=True)

    overrides = dict(ADFSU_PRESET)
    if args.quick:
        overrides.update(epochs=1, swa_start_epoch=0, finetune_epochs=(1, 1, 1))
    for kv in args.set:
        k, v = kv.split("=", 1)
        try:
            overrides[k] = json.loads(v)
        except json.JSONDecodeError:
            overrides[k] = v
    base = COMETConfig(n_folds=args.folds, **overrides)
    fractions = [f"{f * 100:g}%" for f in base.label_fractions]

    state = json.loads(json_path.read_text()) if (args.resume or args.table_only) \
        and json_path.exists() else {"runs": {}}
    runs: dict[str, dict] = state["runs"]
    old_meta = state.get("meta", {})
    t_start = time.perf_counter() - (float(old_meta.get("wall_s", 0.0)) if args.resume else 0.0)
    cpu_start = time.process_time() - (float(old_meta.get("cpu_s", 0.0)) if args.resume else 0.0)
    meta = {"seeds": args.seeds, "n_folds": args.folds, "fractions": fractions,
            "config_overrides": overrides, "config": dataclasses.asdict(base),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "command": " ".join(sys.argv)}

    def save() -> None:
        if not args.table_only:
            meta["wall_s"] = time.perf_counter() - t_start
            meta["cpu_s"] = time.process_time() - cpu_start
        summary = summarize(runs, fractions)
        json_path.write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs},
                                        indent=1))
        md_path.write_text(markdown(summary, meta))

    if not args.table_only:
        data = load("adfsu")
        folds = patient_kfold(data.labels, args.folds, seed=base.fold_seed)
        for seed in args.seeds:
            for k in range(1 if args.quick else args.folds):
                for variant in args.variants:
                    key = _key(variant, seed, k)
                    if key in runs:
                        continue
                    cfg = dataclasses.replace(base, variant=variant)
                    t0 = time.perf_counter()
                    res = run_fold(cfg, data, *folds[k], seed=seed)
                    res["time_s"] = time.perf_counter() - t0
                    runs[key] = res
                    f1s = {f: round(res[f]["macro_f1"], 3) for f in fractions}
                    print(f"[{time.perf_counter() - t_start:7.0f}s] {key}: macro_f1 {f1s} "
                          f"({res['time_s']:.0f}s)", flush=True)
                    save()
    else:  # keep how the runs were made
        meta.update({k: v for k, v in old_meta.items() if k not in ("fractions",)})
    save()
    print(md_path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
