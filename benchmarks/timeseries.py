"""TS2Vec / AutoTCL univariate forecasting (ETTh1, ETTh2, ETTm1) against the published numbers
(specs ts2vec_infots.md A6, autotcl.md section 6).

Spec configuration (repr 320, hidden 64, depth 10, AdamW lr 1e-3, batch 8, max_train_length 3000,
SWA encoder, causal sliding encoding with 200 steps of context, ridge with alpha chosen on the
validation split); ``--iters`` overrides the official budget (200 for ETTh1 univariate).
Also reported: the last-value forecaster and ridge on an untrained encoder of the same seed
(``--untrained``). Metrics: MSE / MAE on the normalised test split per horizon and averaged.

``--method autotcl``: AutoTCL at the official per-dataset configuration
(:data:`contrastkit.seqcl.autotcl.PRESETS`, CoST-style backbone; ``--iters`` caps the steps), same
evaluation; the table adds AutoTCL's published numbers (Table 1 averages, Table 10 per horizon for
ETTh1) and our TS2Vec row from ``results/ts2vec_DATASET*.json`` when present.

    OMP_NUM_THREADS=1 python benchmarks/timeseries.py --dataset etth1 --untrained --name ts2vec_etth1_quick
    OMP_NUM_THREADS=1 python benchmarks/timeseries.py --dataset etth2 --name ts2vec_etth2
    OMP_NUM_THREADS=1 python benchmarks/timeseries.py --method autotcl --dataset etth1
    OMP_NUM_THREADS=1 python benchmarks/timeseries.py --method autotcl --dataset etth2 --seed 0 --name autotcl_etth2_seed0
    # another setting (its own row in the seed summary) / the released loop's test printouts
    OMP_NUM_THREADS=1 python benchmarks/timeseries.py --method autotcl --dataset etth1 --seed 44 \
        --set lr=1e-5 --set meta_lr=0.012 --set epochs=100 --name autotcl_etth1_stored_seed44
    OMP_NUM_THREADS=1 python benchmarks/timeseries.py --method autotcl --dataset etth1 --seed 44 \
        --test-printouts 10 --name autotcl_etth1_printouts_seed44
    python benchmarks/timeseries.py --seed-summary     # mean +- std over the saved seeds
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from contrastkit.datasets.timeseries import load_forecast
from contrastkit.seqcl import autotcl as A
from contrastkit.seqcl import ts2vec as T

RESULTS = Path(__file__).parent / "results"
#: TS2Vec paper appendix Table 7 (univariate, normalised MSE / MAE per horizon)
PUBLISHED_ALL = {
    "etth1": {24: (0.039, 0.152), 48: (0.062, 0.191), 168: (0.134, 0.282), 336: (0.154, 0.310),
              720: (0.163, 0.327)},
    "etth2": {24: (0.090, 0.229), 48: (0.124, 0.273), 168: (0.208, 0.360), 336: (0.213, 0.369),
              720: (0.214, 0.374)},
    "ettm1": {24: (0.015, 0.092), 48: (0.027, 0.126), 96: (0.044, 0.161), 288: (0.103, 0.246),
              672: (0.156, 0.307)},
}
#: AutoTCL paper: Table 10 per horizon (ETTh1) and Table 1 averages (univariate MSE / MAE)
PUBLISHED_AUTOTCL = {
    "etth1": {24: (0.037, 0.148), 48: (0.054, 0.176), 168: (0.078, 0.210), 336: (0.093, 0.231),
              720: (0.120, 0.272), None: (0.076, 0.207)},
    "etth2": {None: (0.158, 0.299)},
    "ettm1": {None: (0.046, 0.154)},
}


def _ours_ts2vec(dataset: str) -> dict | None:
    """Our saved TS2Vec metrics for ``dataset`` (``results/ts2vec_DATASET*.json``), if any."""
    import json as _json
    for path in sorted(RESULTS.glob(f"ts2vec_{dataset}*.json")):
        return _json.loads(path.read_text()).get("ts2vec")
    return None


def _forecast_scores(encoder: torch.nn.Module, d, cfg) -> dict[str, float]:
    """Causal sliding encoding of train..test and ridge per horizon (the protocol's metrics)."""
    reps = T.encode_causal(encoder, d.data[:, :d.test_slice.stop], cfg.sliding_padding,
                           cfg.encode_batch_size)
    return T.eval_forecasting(None, d, padding=cfg.sliding_padding, reprs=reps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=None, help="optimiser steps (default: official)")
    ap.add_argument("--seed", type=int, default=42, help="seed (official scripts: 42)")
    ap.add_argument("--untrained", action="store_true", help="also score an untrained encoder")
    ap.add_argument("--name", default=None, help="results file stem (default METHOD_DATASET)")
    ap.add_argument("--dataset", default="etth1", choices=sorted(PUBLISHED_ALL))
    ap.add_argument("--method", default="ts2vec", choices=("ts2vec", "autotcl"))
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="KEY=VALUE",
                    help="--method autotcl: override a field of the official configuration "
                         "(repeatable); recorded in the JSON, and the seed summary keeps such "
                         "runs in their own row")
    ap.add_argument("--test-printouts", type=int, default=0, metavar="N",
                    help="--method autotcl: also score the test split every N epochs, as the "
                         "released training loop prints it (N = 10); a diagnostic of how much "
                         "picking the best printout would gain, saved under its own key")
    ap.add_argument("--seed-summary", action="store_true",
                    help="only tabulate the saved runs: mean +- std over seeds")
    args = ap.parse_args()
    if args.seed_summary:
        print(seed_summary())
        return
    if args.method != "autotcl" and (args.overrides or args.test_printouts):
        ap.error("--set and --test-printouts apply to --method autotcl only")
    if args.method == "autotcl" and (args.overrides or args.test_printouts) and not args.name:
        ap.error("--set / --test-printouts: give --name (the default file holds the official run)")
    if args.method == "autotcl":
        return main_autotcl(args)
    name = args.name or f"ts2vec_{args.dataset}"
    PUBLISHED = PUBLISHED_ALL[args.dataset]
    torch.set_num_threads(1)
    d = load_forecast(args.dataset, univariate=True)
    cfg = T.TS2VecConfig(iters=args.iters)
    t0 = time.perf_counter()
    method, trainer = T.fit(cfg, d.train_data, seed=args.seed)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    metrics = _forecast_scores(method.downstream_encoder(), d, cfg)
    eval_s = time.perf_counter() - t1
    out = {"dataset": args.dataset, "univariate": True, "seed": args.seed,
           "iters": trainer.stats["steps"], "official_iters": T.default_iters(
               int(T.prepare_train_data(d.train_data, 3000).size)),
           "config": {k: getattr(cfg, k) for k in ("output_dims", "hidden_dims", "depth", "lr",
                                                   "batch_size", "max_train_length",
                                                   "sliding_padding")},
           "train_time_s": train_s, "eval_time_s": eval_s, "final_loss":
               trainer.history[-1]["loss"], "ts2vec": metrics,
           "last_value": T.last_value_metrics(d),
           "published": {f"mse@{h}": v[0] for h, v in PUBLISHED.items()}
           | {f"mae@{h}": v[1] for h, v in PUBLISHED.items()}
           | {"mse": sum(v[0] for v in PUBLISHED.values()) / len(PUBLISHED),
              "mae": sum(v[1] for v in PUBLISHED.values()) / len(PUBLISHED)},
           "machine": f"{platform.processor() or platform.machine()}, CPU, 1 thread (shared)"}
    if args.untrained:
        torch.manual_seed(args.seed)
        out["untrained"] = _forecast_scores(T.TS2Vec(cfg, d.data.shape[-1]).encoder, d, cfg)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2))
    rows = ["| H | TS2Vec (ours) MSE / MAE | published MSE / MAE | last value MSE / MAE |"
            + (" untrained MSE / MAE |" if args.untrained else ""), "|---|---|---|---|"
            + ("---|" if args.untrained else "")]
    for h in (*PUBLISHED, None):
        k = "" if h is None else f"@{h}"
        cells = [metrics, out["published"], out["last_value"]]
        if args.untrained:
            cells.append(out["untrained"])
        rows.append(f"| {'avg' if h is None else h} | " + " | ".join(
            f"{c['mse' + k]:.3f} / {c['mae' + k]:.3f}" for c in cells) + " |")
    md = (f"TS2Vec {args.dataset.upper()} univariate, {out['iters']} iterations (official {out['official_iters']}), "
          f"seed {args.seed}; train {train_s:.0f} s, encode + ridge {eval_s:.0f} s "
          f"({out['machine']}).\n\n" + "\n".join(rows) + "\n")
    (RESULTS / f"{name}.md").write_text(md)
    print(md)


def main_autotcl(args: argparse.Namespace) -> None:
    """``--method autotcl``: official configuration (``--iters`` caps it), same protocol."""
    import dataclasses
    name = args.name or f"autotcl_{args.dataset}"
    torch.set_num_threads(1)
    d = load_forecast(args.dataset, univariate=True)
    from contrastkit.core.config import build_config, parse_overrides
    overrides = parse_overrides(args.overrides)
    cfg = build_config(A.AutoTCLConfig, A.AutoTCLConfig.preset(args.dataset, iters=args.iters),
                       overrides)

    def printout(m: A.AutoTCL) -> dict[str, float]:
        return {f"test_{k}": v for k, v in _forecast_scores(m.causal_encoder(), d, cfg).items()}

    t0 = time.perf_counter()
    method, trainer = A.fit(cfg, d.train_data, seed=args.seed,
                            evaluator=printout if args.test_printouts else None,
                            eval_every=args.test_printouts)
    train_s = time.perf_counter() - t0
    printouts = [{"epoch": r["epoch"] + 1, **{k[5:]: v for k, v in r.items()
                                              if k.startswith("test_")}}
                 for r in trainer.history if "test_mse" in r]
    if printouts:  # the time spent scoring them is not training time
        train_s -= sum(r.get("eval_time_s", 0.0) for r in trainer.history)
    t1 = time.perf_counter()
    metrics = _forecast_scores(method.causal_encoder(), d, cfg)
    eval_s = time.perf_counter() - t1
    sections = len(A.prepare_train_data(d.train_data, cfg.max_train_length))
    official = cfg.epochs * (sections // min(cfg.batch_size, sections))
    # the values the run used (``--set lr=1e-5`` parses as text); preset values are not overrides
    preset = dataclasses.asdict(A.AutoTCLConfig.preset(args.dataset, iters=args.iters))
    used = dataclasses.asdict(cfg)
    changed = {k: used[k] for k in sorted(overrides) if used[k] != preset[k]}
    pub = PUBLISHED_AUTOTCL[args.dataset]
    published = {}
    for h, (mse, mae) in pub.items():
        k = "" if h is None else f"@{h}"
        published["mse" + k], published["mae" + k] = mse, mae
    out = {"dataset": args.dataset, "univariate": True, "seed": args.seed, "method": "autotcl",
           "iters": trainer.stats["steps"], "official_iters": official,
           "overrides": changed,
           "config": {k: (list(v) if isinstance(v, tuple) else v)
                      for k, v in dataclasses.asdict(cfg).items()},
           "train_time_s": train_s, "eval_time_s": eval_s,
           "final_loss": trainer.history[-1]["loss"], "autotcl": metrics,
           "test_printouts_selected_on_test": printouts,
           "ts2vec_ours": _ours_ts2vec(args.dataset), "last_value": T.last_value_metrics(d),
           "published": published,
           "published_ts2vec": {f"mse@{h}": v[0] for h, v in PUBLISHED_ALL[args.dataset].items()}
           | {f"mae@{h}": v[1] for h, v in PUBLISHED_ALL[args.dataset].items()},
           "machine": f"{platform.processor() or platform.machine()}, CPU, 1 thread (shared)"}
    if args.untrained:
        torch.manual_seed(args.seed)
        fresh = A.LastStep(A.AutoTCL(cfg, d.data.shape[-1]).encoder)
        out["untrained"] = _forecast_scores(fresh, d, cfg)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2))
    cols = [("AutoTCL (ours)", metrics), ("AutoTCL published", published),
            ("TS2Vec (ours)", out["ts2vec_ours"] or {}), ("last value", out["last_value"])]
    if args.untrained:
        cols.append(("untrained CoST encoder", out["untrained"]))
    rows = ["| H | " + " | ".join(f"{c} MSE / MAE" for c, _ in cols) + " |",
            "|---|" + "---|" * len(cols)]
    for h in (*PUBLISHED_ALL[args.dataset], None):
        k = "" if h is None else f"@{h}"
        rows.append(f"| {'avg' if h is None else h} | " + " | ".join(
            f"{c['mse' + k]:.3f} / {c['mae' + k]:.3f}" if "mse" + k in c else "-"
            for _, c in cols) + " |")
    setting = ("official config" if not changed else "official config with "
               + " ".join(f"{k}={v}" for k, v in changed.items()))
    md = (f"AutoTCL {args.dataset.upper()} univariate (CoST-style backbone, {setting}), "
          f"{out['iters']} iterations (official {official}), seed {args.seed}; train "
          f"{train_s:.0f} s, encode + ridge {eval_s:.0f} s ({out['machine']}).\n\n"
          + "\n".join(rows) + "\n")
    if printouts:
        best = min(printouts, key=lambda r: r["mse"])
        md += ("\nTest-split printouts every " + str(args.test_printouts) + " epochs (the "
               "released loop prints these from epoch 20; picking one uses the test labels, so "
               "this is a diagnostic, not our result): average MSE "
               + ", ".join(f"{r['epoch']}: {r['mse']:.4f}" for r in printouts)
               + f"; final {metrics['mse']:.4f}; best printout {best['mse']:.4f} at epoch "
               f"{best['epoch']}.\n")
        if "valid_mse" in printouts[0]:
            by_valid = min(printouts + [{"epoch": "final", **metrics}],
                           key=lambda r: r["valid_mse"])
            md += ("\nThe same checkpoints on the validation split (average MSE, no test labels): "
                   + ", ".join(f"{r['epoch']}: {r['valid_mse']:.4f}" for r in printouts)
                   + f"; final {metrics['valid_mse']:.4f}. Selected on validation: epoch "
                   f"{by_valid['epoch']}, test {by_valid['mse']:.4f}.\n")
    (RESULTS / f"{name}.md").write_text(md)
    print(md)


def seed_summary(results: Path = RESULTS) -> str:
    """Average MSE / MAE per run of every saved AutoTCL and TS2Vec forecasting result
    (``{method}_{dataset}*.json``) and the mean +- std over seeds per method, setting and dataset;
    writes ``results/timeseries_seeds.{json,md}`` and returns the Markdown."""
    import numpy as np
    runs, reruns = [], []
    for path in sorted(results.glob("*_ett*.json")):
        r = json.loads(path.read_text())
        method = r.get("method", "ts2vec")
        m = r.get(method)
        if not isinstance(m, dict) or "mse" not in m or r.get("iters") != r.get("official_iters"):
            continue  # shortened runs (--iters) are not comparable
        setting = " ".join(f"{k}={v}" for k, v in sorted(r.get("overrides", {}).items()))
        twin = next((q for q in runs if (q["method"], q["setting"], q["dataset"], q["seed"])
                     == (method, setting, r["dataset"], r["seed"])), None)
        if twin is not None:  # one seed counts once: the first file in name order
            if twin["mse"] != m["mse"]:  # a rerun that differs (e.g. another code version)
                reruns.append({"file": path.name, "kept": twin["file"], "seed": r["seed"],
                               "mse": m["mse"], "kept_mse": twin["mse"]})
            continue
        runs.append({"file": path.name, "method": method, "setting": setting,
                     "dataset": r["dataset"],
                     "seed": r["seed"], "mse": m["mse"], "mae": m["mae"],
                     "published_mse": r["published"].get("mse")})
    lines = ["| method | setting | dataset | seeds | avg MSE per seed | mean +- std MSE | "
             "mean MAE | published MSE | mean vs published |", "|---" * 9 + "|"]
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["method"], r["setting"], r["dataset"]), []).append(r)
    summary = []
    for (method, setting, dataset), rs in sorted(groups.items(),
                                                 key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        mse = np.array([r["mse"] for r in rs])
        pub = rs[0]["published_mse"]
        row = {"method": method, "setting": setting or "official", "dataset": dataset,
               "seeds": [r["seed"] for r in rs],
               "mse_mean": float(mse.mean()), "mse_std": float(mse.std(ddof=1)) if len(rs) > 1
               else 0.0, "mae_mean": float(np.mean([r["mae"] for r in rs])),
               "published_mse": pub}
        summary.append(row)
        rel = "-" if pub is None else f"{(row['mse_mean'] / pub - 1) * 100:+.1f} %"
        lines.append(f"| {method} | {setting or 'official'} | {dataset} | "
                     f"{', '.join(str(r['seed']) for r in rs)} | "
                     + ", ".join(f"{r['mse']:.3f}" for r in rs)
                     + f" | {row['mse_mean']:.3f} +- {row['mse_std']:.3f} | "
                     f"{row['mae_mean']:.3f} | {'-' if pub is None else f'{pub:.3f}'} | {rel} |")
    md = ("Univariate forecasting, average over the horizons, every saved run at its full budget "
          "(no `--iters` cap; `benchmarks/results/{method}_{dataset}*.json`), one row per method, "
          "setting (`--set` overrides) and dataset; std over seeds (ddof 1).\n\n"
          + "\n".join(lines) + "\n")
    if reruns:
        md += ("\nSeeds saved twice with different results count once (the first file): "
               + "; ".join(f"{q['file']} (seed {q['seed']}: {q['mse']:.4f}; counted "
                           f"{q['kept']}: {q['kept_mse']:.4f})" for q in reruns) + ".\n")
    (results / "timeseries_seeds.json").write_text(json.dumps(
        {"runs": runs, "summary": summary, "reruns_not_counted": reruns}, indent=2))
    (results / "timeseries_seeds.md").write_text(md)
    return md


if __name__ == "__main__":
    main()
