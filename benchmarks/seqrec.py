"""Sequential recommendation benchmark: SASRec, CL4SRec, MCLRec vs MCLRec's Table 3 (full ranking).

Each (method, dataset) run trains with the spec's protocol (leave-one-out, prefix expansion,
max length 50, validation ``mrr@10`` selection with patience 10, test from the selected state) and
writes ``benchmarks/results/seqrec_runs/<method>-<dataset>-seed<seed>.json`` (its checkpoint and
``log.jsonl`` go to ``--out/<method>-<dataset>-seed<seed>``); the table
(``benchmarks/results/seqrec.json`` + ``.md``) is rebuilt from every run file present: one row
per (dataset, method) with the six metrics averaged over the seeds present, ours vs paper, then
one row per seed, with epochs run vs the spec's budget, time per epoch and evaluation time.

Usage::

    # full protocol (GPU recommended: an MCLRec epoch on Beauty is ~9 SASRec epochs)
    python benchmarks/seqrec.py --methods sasrec cl4srec mclrec --datasets beauty sports --device cuda
    # CPU with a time budget per run (training stops after the first epoch past it)
    OMP_NUM_THREADS=1 python benchmarks/seqrec.py --methods sasrec --datasets beauty --max-minutes 60
    # rebuild the table only
    python benchmarks/seqrec.py --table-only
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
RUNS = RESULTS / "seqrec_runs"
METRICS = ("hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20")

#: MCLRec paper, Table 3 (full ranking; SASRec and CL4SRec as re-run by MCLRec's authors)
PAPER: dict[str, dict[str, dict[str, float]]] = {
    "sports": {
        "sasrec": dict(zip(METRICS, (0.0214, 0.0333, 0.0500, 0.0144, 0.0177, 0.0224))),
        "cl4srec": dict(zip(METRICS, (0.0231, 0.0369, 0.0557, 0.0146, 0.0191, 0.0238))),
        "mclrec": dict(zip(METRICS, (0.0328, 0.0501, 0.0734, 0.0204, 0.0260, 0.0319))),
    },
    "beauty": {
        "sasrec": dict(zip(METRICS, (0.0377, 0.0624, 0.0894, 0.0241, 0.0342, 0.0386))),
        "cl4srec": dict(zip(METRICS, (0.0401, 0.0642, 0.0974, 0.0268, 0.0345, 0.0428))),
        "mclrec": dict(zip(METRICS, (0.0581, 0.0871, 0.1243, 0.0352, 0.0446, 0.0539))),
    },
    "yelp": {
        "sasrec": dict(zip(METRICS, (0.0160, 0.0260, 0.0443, 0.0101, 0.0133, 0.0179))),
        "cl4srec": dict(zip(METRICS, (0.0227, 0.0384, 0.0623, 0.0143, 0.0194, 0.0254))),
        "mclrec": dict(zip(METRICS, (0.0454, 0.0647, 0.0941, 0.0332, 0.0394, 0.0467))),
    },
}
#: epochs of the spec's budget (DuoRec seq.yaml 50; MCLRec scripts 100), early stop patience 10
SPEC_EPOCHS = {"sasrec": 50, "cl4srec": 50, "mclrec": 100}


def run_name(method: str, dataset: str, seed: int) -> str:
    """Name of a run's result file and checkpoint folder: ``<method>-<dataset>-seed<seed>``."""
    return f"{method}-{dataset}-seed{seed}"


def run_one(method: str, dataset: str, args: argparse.Namespace) -> dict:
    from contrastkit.core.config import build_config
    from contrastkit.registry import RunContext, get_method
    spec = get_method(method)
    overrides = {"epochs": args.epochs or SPEC_EPOCHS[method]}
    if args.max_minutes:
        overrides["max_train_time_s"] = 60.0 * args.max_minutes
    if args.max_train_samples:
        overrides["max_train_samples"] = args.max_train_samples
    overrides["checkpoint_every"] = args.checkpoint_every
    cfg = build_config(spec.config_cls, spec.presets.get(dataset, {}), {}, overrides,
                       {"dataset": dataset})
    name = run_name(method, dataset, args.seed)
    out = Path(args.out) / name
    out.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(out_dir=out, device=args.device, seed=args.seed, progress=False,
                     resume=args.resume)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    result = spec.run(cfg, ctx)
    rec = {"method": method, "dataset": dataset, "seed": args.seed, "device": args.device,
           "threads": torch.get_num_threads(), "epochs_budget": cfg.epochs,
           "spec_epochs": SPEC_EPOCHS[method], "max_train_time_s": cfg.max_train_time_s,
           "wall_s": time.perf_counter() - t0, "host": platform.node(),
           "metrics": result.metrics, "config": {k: getattr(cfg, k) for k in
                                                   cfg.__dataclass_fields__}}
    RUNS.mkdir(parents=True, exist_ok=True)
    (RUNS / f"{name}.json").write_text(json.dumps(rec, indent=1, default=str))
    print(json.dumps({k: rec[k] for k in ("method", "dataset", "wall_s")}), flush=True)
    print({k: round(v, 4) for k, v in result.metrics.items()}, flush=True)
    return rec


def _stop_reason(run: dict) -> str:
    """Why a saved run ended: ``patience``, ``epochs`` (the budget) or ``time budget``."""
    m = run["metrics"]
    done, best = int(m.get("epochs_run", 0)), int(m.get("best_epoch", -1)) + 1
    patience = int(run.get("config", {}).get("patience", 10))
    if done - best > patience:
        return "patience"
    if done >= int(run.get("epochs_budget") or run.get("spec_epochs") or 0):
        return "epochs"
    return "time budget"


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def _rel_diff(ours: dict, paper: dict) -> dict:
    """Relative difference ``(ours - paper) / paper`` per metric the paper reports."""
    return {k: (ours[k] - paper[k]) / paper[k] for k in METRICS if k in paper}


def build_table(extra_note: str | None = None) -> dict:
    """Rebuild ``seqrec.json`` / ``seqrec.md`` from every run file: seed means, then each run."""
    runs = [json.loads(p.read_text()) for p in sorted(RUNS.glob("*.json"))] if RUNS.is_dir() else []
    order = {"sasrec": 0, "cl4srec": 1, "mclrec": 2}
    runs.sort(key=lambda r: (r["dataset"], order.get(r["method"], 9), r.get("seed", 0)))
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["dataset"], r["method"]), []).append(r)

    mean_rows, md = [], []
    md.append("Mean over the seeds present (each seed's run below):")
    md.append("")
    md.append("| dataset | method | seeds | " + " | ".join(f"{m} ours / paper" for m in METRICS)
              + " |")
    md.append("|" + "---|" * (len(METRICS) + 3))
    for (dataset, method), group in groups.items():
        paper = PAPER.get(dataset, {}).get(method, {})
        mean = {k: sum(r["metrics"][k] for r in group) / len(group) for k in METRICS}
        mean_rows.append({"dataset": dataset, "method": method,
                          "seeds": [r.get("seed") for r in group], "ours": mean,
                          "paper": paper or None,
                          "rel_diff": _rel_diff(mean, paper)})
        seeds = ", ".join(str(r.get("seed")) for r in group)
        md.append(f"| {dataset} | {method} | {seeds} | "
                  + " | ".join(f"{_fmt(mean[k])} / {_fmt(paper.get(k))}" for k in METRICS) + " |")

    rows = []
    md.append("")
    md.append("| dataset | method | seed | " + " | ".join(METRICS)
              + " | epochs run (best) / spec | stopped by | time/epoch (s) | eval (s) | device |")
    md.append("|" + "---|" * (len(METRICS) + 8))
    for r in runs:
        m, paper = r["metrics"], PAPER.get(r["dataset"], {}).get(r["method"], {})
        row = {"dataset": r["dataset"], "method": r["method"], "seed": r.get("seed"),
               "ours": {k: m.get(k) for k in METRICS}, "paper": paper or None,
               "rel_diff": _rel_diff(m, paper),
               "epochs_run": m.get("epochs_run"), "best_epoch": m.get("best_epoch"),
               "spec_epochs": r.get("spec_epochs"), "time_per_epoch_s": m.get("time_per_epoch_s"),
               "eval_time_s": m.get("eval_time_s"), "device": r.get("device"),
               "threads": r.get("threads"), "max_train_time_s": r.get("max_train_time_s"),
               "stopped_by": _stop_reason(r)}
        rows.append(row)
        md.append(f"| {r['dataset']} | {r['method']} | {r.get('seed')} | "
                  + " | ".join(_fmt(m.get(k)) for k in METRICS)
                  + f" | {int(m.get('epochs_run', 0))} ({int(m.get('best_epoch', -1)) + 1}) / "
                  f"{r.get('spec_epochs')} | {row['stopped_by']} | "
                  f"{m.get('time_per_epoch_s', float('nan')):.1f} | "
                  f"{m.get('eval_time_s', float('nan')):.2f} | {r.get('device')} "
                  f"({r.get('threads')} thr) |")
    note = ("Full ranking over all items, no history filtering, leave-one-out; test from the "
            "best validation mrr@10 epoch. Paper = MCLRec (SIGIR 2023) Table 3. 'patience': "
            "early stopping ended the run (more than `patience` epochs without improvement); "
            "'time budget': a CPU budget stopped it before that, NOT converged, compare with "
            "care (`--resume` goes on).")
    if extra_note:
        note = f"{note} {extra_note}"
    md.append("")
    md.append(note)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "seqrec.json").write_text(json.dumps({"mean_rows": mean_rows, "rows": rows,
                                                      "note": note}, indent=1))
    (RESULTS / "seqrec.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return {"mean_rows": mean_rows, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["sasrec", "cl4srec", "mclrec"])
    ap.add_argument("--datasets", nargs="+", default=["beauty", "sports"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=None, help="default: the spec's (50 / 100)")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="training time budget per run (stops after the epoch that crosses it)")
    ap.add_argument("--max-train-samples", type=int, default=None)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--out", default="/tmp/contrastkit-seqrec-runs")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--resume", action="store_true",
                    help="continue each run from its checkpoint in --out (e.g. with a new "
                         "--max-minutes budget); time/epoch covers all epochs, restored ones "
                         "included; a run that stopped on patience trains nothing more")
    ap.add_argument("--checkpoint-every", type=int, default=1,
                    help="write the run's checkpoint.pt every N epochs (0: at the end only), so "
                         "a stopped CPU run can go on with --resume")
    ap.add_argument("--note", default=None, help="text appended to the table's note")
    args = ap.parse_args()
    if not args.table_only:
        for d in args.datasets:
            for m in args.methods:
                run_one(m, d, args)
    build_table(args.note)


if __name__ == "__main__":
    main()
