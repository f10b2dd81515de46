"""GRACE vs GRACE+POT and GCA vs GCA+POT over paired seeds (POT paper protocol, spec pot.md).

For every (dataset, base) the base method and base+POT are trained with the same seed (same
initialisation, same augmentation stream: POT draws no global random numbers), one after the
other, and evaluated with the POT evaluator (public split for Cora/CiteSeer in the correct
train/val/test order; one random 10/10/80 split per seed otherwise). The table gives mean ± std
of each arm's test Micro-F1 and of the per-seed difference (POT − base), and wall time per run.

Configurations: the POT paper's base configs (:data:`GRACE_POT_PRESETS`, :data:`GCA_POT_PRESETS`)
with the epoch count / NCE subset overridden by ``--plan`` to fit a CPU budget (stated in the
output). Results are rewritten after every run, so an interrupted benchmark keeps what it did.

    OMP_NUM_THREADS=1 python benchmarks/pot.py                      # default plan
    python benchmarks/pot.py --plan cora:grace:200:0 --seeds 0 1 2 3 4
    python benchmarks/pot.py --plan citeseer:grace:200:0 --seeds 2 3 4 --append \
        --out benchmarks/results/pot_citeseer_spec            # add seeds to a saved run
    python benchmarks/pot.py --plan cora:gca:700:0 --append --merge OTHER.json \
        --out benchmarks/results/pot_cora_gca_spec            # join seeds run by two processes
    python benchmarks/pot.py --plan cora:gca:700:0 --seeds 2 --arms base --out OTHER
                                                          # one arm only (split a seed's arms)

    python benchmarks/pot.py --plan cora:grace:200:0 --arms pot --pot-bound certified \
        --merge benchmarks/results/pot_cora_spec.json --out benchmarks/results/pot_cora_certified
                                      # the sound score's POT arms against the saved base arms

``--plan`` items are ``dataset:base:epochs:loss_subset``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from contrastkit.core.trainer import Trainer
from contrastkit.datasets import load
from contrastkit.graphcl.grace import GRACE, GCAPOTConfig, GRACEPOTConfig, evaluate_embeddings
from contrastkit.graphcl.pot import GCA_POT_PRESETS, GRACE_POT_PRESETS, POT_BOUNDS

RESULTS = Path(__file__).parent / "results"
#: default plan for ~1 hour of one (shared, ~40 % available) CPU core: heavily reduced epochs
#: and a 1024-node NCE subset everywhere (the spec's configs take hours on this machine)
DEFAULT_PLAN = ["cora:grace:60:1024", "cora:gca:60:1024", "citeseer:grace:20:1024",
                "citeseer:gca:20:1024", "computers:grace:20:1024", "computers:gca:20:1024"]


def run_one(dataset: str, base: str, pot: bool, seed: int, epochs: int, subset: int,
            data, official: bool = False, pot_bound: str = "official") -> dict:
    presets = GRACE_POT_PRESETS if base == "grace" else GCA_POT_PRESETS
    cls = GRACEPOTConfig if base == "grace" else GCAPOTConfig
    cfg = cls(**dict(presets[dataset], dataset=dataset, pot=pot, epochs=epochs,
                     loss_subset=subset, pot_swap_masks=official, pot_bound=pot_bound))
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    method = GRACE(cfg, data.num_features)
    trainer = Trainer(cfg.epochs, seed=seed, progress=False)
    trainer.fit(method, [data])
    train_s = time.perf_counter() - t0
    method.eval()
    metrics = evaluate_embeddings(cfg, method.embed(data), data, seed)
    return dict(dataset=dataset, base=base, pot=pot, seed=seed, epochs=epochs,
                loss_subset=subset, kappa=cfg.pot_kappa, pot_bound=pot_bound, train_s=train_s,
                wall_s=time.perf_counter() - t0, final_loss=trainer.history[-1]["loss"],
                **metrics)


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{100 * np.mean(values):.2f} ± {100 * np.std(values):.2f}"


def _bound(r: dict) -> str:
    """The POT arm's score (runs saved before ``--pot-bound`` existed used the official one)."""
    return r.get("pot_bound", "official")


def summarise(runs: list[dict]) -> tuple[list[dict], str]:
    """One row per (dataset, base, POT score): its POT arms paired by seed with the base arms."""
    rows, groups, bases = [], {}, {}
    for r in runs:
        if r["pot"]:
            groups.setdefault((r["dataset"], r["base"], _bound(r)), []).append(r)
        else:
            bases.setdefault((r["dataset"], r["base"]), []).append(r)
    for ds, base in bases:
        if not any(k[:2] == (ds, base) for k in groups):
            groups[(ds, base, "official")] = []
    for (ds, base, bound), pot_runs in groups.items():
        rs = pot_runs + bases.get((ds, base), [])
        by = {(r["seed"], r["pot"]): r for r in rs}
        seeds = sorted({s for s, p in by if (s, True) in by and (s, False) in by})
        row = dict(dataset=ds, base=base, pot_bound=bound, seeds=seeds, epochs=rs[0]["epochs"],
                   loss_subset=rs[0]["loss_subset"], kappa=rs[0]["kappa"])
        for key in ("micro_f1", "macro_f1", "micro_f1_official"):
            b = [by[(s, False)][key] for s in seeds if key in by[(s, False)]]
            p = [by[(s, True)][key] for s in seeds if key in by[(s, True)]]
            d = [pi - bi for pi, bi in zip(p, b)]
            row[key] = dict(base=b, pot=p, diff_mean=float(np.mean(d)) if d else None,
                            diff_std=float(np.std(d)) if d else None)
        row["wall_s_base"] = float(np.mean([by[(s, False)]["wall_s"] for s in seeds])) if seeds else None
        row["wall_s_pot"] = float(np.mean([by[(s, True)]["wall_s"] for s in seeds])) if seeds else None
        rows.append(row)
    lines = ["| dataset | base | epochs | NCE subset | κ | seeds | base Mi-F1 | +POT Mi-F1 | "
             "Δ Mi-F1 (mean ± std) | base Ma-F1 | +POT Ma-F1 | Δ Ma-F1 | Δ Mi-F1 official "
             "masks | wall s/run base / POT |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mi, ma, off = r["micro_f1"], r["macro_f1"], r["micro_f1_official"]
        fmt_d = (lambda m: "-" if m["diff_mean"] is None else
                 f"{100 * m['diff_mean']:+.2f} ± {100 * m['diff_std']:.2f}")
        wall = ("-" if r["wall_s_base"] is None else
                f"{r['wall_s_base']:.0f} / {r['wall_s_pot']:.0f}")
        label = r["base"] + ("" if r["pot_bound"] == "official" else f" ({r['pot_bound']} POT)")
        lines.append(f"| {r['dataset']} | {label} | {r['epochs']} | {r['loss_subset'] or 'all'}"
                     f" | {r['kappa']} | {len(r['seeds'])} | {_ms(mi['base'])} | {_ms(mi['pot'])} | "
                     f"{fmt_d(mi)} | {_ms(ma['base'])} | {_ms(ma['pot'])} | {fmt_d(ma)} | "
                     f"{fmt_d(off)} | {wall} |")
    return rows, "\n".join(lines)


def _key(r: dict) -> tuple:
    return (r["dataset"], r["base"], r["epochs"], r["loss_subset"], r["seed"], r["pot"],
            _bound(r) if r["pot"] else "")


def save(out: Path, runs: list[dict], plan: list[str], total_wall_s: float) -> str:
    """Write ``OUT.json`` (meta, paired summary, runs) and ``OUT.md``; returns the table."""
    rows, table = summarise(runs)
    seeds = sorted({r["seed"] for r in runs})
    meta = dict(total_wall_s=total_wall_s, plan=plan, seeds=seeds, torch=torch.__version__,
                python=platform.python_version(), threads=torch.get_num_threads())
    out.with_suffix(".json").write_text(json.dumps(dict(meta=meta, summary=rows, runs=runs),
                                                   indent=1))
    out.with_suffix(".md").write_text(
        "# POT vs base (paired seeds, POT evaluator, test Micro/Macro-F1 %)\n\n"
        f"Plan `{' '.join(plan)}` (dataset:base:epochs:NCE subset), seeds {seeds}, "
        f"{meta['threads']} thread, total wall {total_wall_s / 60:.1f} min (summed over the "
        f"processes that ran them).\n\n{table}\n")
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plan", nargs="+", default=DEFAULT_PLAN)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--out", default=str(RESULTS / "pot"))
    ap.add_argument("--official", action="store_true",
                    help="also evaluate with the official swapped Planetoid masks")
    ap.add_argument("--append", action="store_true",
                    help="keep the runs already in OUT.json and skip the (dataset, base, epochs, "
                         "subset, seed, arm) combinations they cover")
    ap.add_argument("--merge", nargs="+", default=[], metavar="JSON",
                    help="also keep the runs of these saved results (e.g. seeds run by another "
                         "process) and skip what they cover")
    ap.add_argument("--pot-bound", default="official", choices=POT_BOUNDS,
                    help="score of the POT arms: the official surrogate or the sound certificate "
                         "(saved and summarised separately; base arms are shared)")
    ap.add_argument("--arms", nargs="+", choices=("base", "pot"), default=["base", "pot"],
                    help="run only these arms (to split one seed's two arms over two processes; "
                         "join them with --merge)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sources = [Path(m) for m in args.merge]
    for src in sources:
        if not src.is_file():
            raise SystemExit(f"--merge: no saved results at {src}")
    if args.append and out.with_suffix(".json").exists():
        sources.insert(0, out.with_suffix(".json"))
    runs: list[dict] = []
    previous_wall = 0.0
    for src in sources:
        saved = json.loads(src.read_text())
        keys = {_key(r) for r in runs}
        runs += [r for r in saved["runs"] if _key(r) not in keys]
        previous_wall += saved["meta"].get("total_wall_s", 0.0)
    done = {_key(r) for r in runs}
    t_start = time.perf_counter() - previous_wall
    for item in args.plan:
        ds, base, epochs, subset = item.split(":")
        data = load(ds)
        for seed in args.seeds:
            for pot in (False, True):
                if ("pot" if pot else "base") not in args.arms:
                    continue
                key = (ds, base, int(epochs), int(subset), seed, pot,
                       args.pot_bound if pot else "")
                if key in done:
                    continue
                r = run_one(ds, base, pot, seed, int(epochs), int(subset), data, args.official,
                            args.pot_bound)
                runs.append(r)
                print(f"{ds:9s} {base:5s} pot={pot!s:5s} seed={seed} micro_f1={r['micro_f1']:.4f} "
                      f"macro_f1={r['macro_f1']:.4f} wall={r['wall_s']:.0f}s", flush=True)
                save(out, runs, args.plan, time.perf_counter() - t_start)
    if runs:
        print(save(out, runs, args.plan, time.perf_counter() - t_start))


if __name__ == "__main__":
    main()
