"""Node classification: our GRACE / GCA / gCooL (± POT) runs beside the papers' numbers.

Each (method, dataset, seed) is one ``contrastkit train`` in its own subprocess (a run that runs
out of memory or time is recorded, not fatal). Results accumulate in
``benchmarks/results/graph_node_classification.json`` (runs already there are skipped, so the
script can be resumed or extended), and the README table is regenerated from all of them as
``graph_node_classification.md``: mean ± std over seeds of the honest (validation-selected or
cross-validated) Micro-F1, the official protocol's number where it differs (gCooL: max over
classifier epochs on test), the paper's number, and the wall time per run.

Examples::

    # gCooL_c and gCooL_e on the paper's datasets, 5 seeds (needs a GPU for the paper configs)
    python benchmarks/graph_node_classification.py --runs gcool:computers gcool:cs \\
        gcool_e:computers gcool_e:cs --seeds 0 1 2 3 4 --device cuda
    # the CPU-sized runs in the README
    python benchmarks/graph_node_classification.py --runs gcool:cora gcool:citeseer --seeds 0 1 2 3 4
    # only rebuild the table
    python benchmarks/graph_node_classification.py --table-only

A run key is ``NAME:DATASET`` where NAME is a registered method or one of the variants below;
``--set KEY=VALUE`` adds overrides to every run (recorded with the result).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from _runner import append_result, train_in_subprocess

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "graph_node_classification"

#: variant name -> (registered method, overrides)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "grace": ("grace", []),
    "gca": ("gca", []),
    "gcool": ("gcool", []),
    "gcool_e": ("gcool", ["similarity=rbf"]),
    "gcool_paper": ("gcool", ["variant=paper"]),
    "gcool+pot": ("gcool", ["pot=true"]),
}

#: papers' Micro-F1 (%), spec tables (gCooL: Table 2 of Li et al. 2022, official protocol;
#: GRACE: Zhu et al. 2020, CV protocol; GCA: Zhu et al. 2021, accuracy, validation-selected)
PAPER: dict[tuple[str, str], float] = {
    ("gcool", "computers"): 88.85, ("gcool", "photo"): 93.18, ("gcool", "cs"): 93.32,
    ("gcool", "wikics"): 78.74,
    ("gcool_e", "computers"): 88.74, ("gcool_e", "photo"): 92.79, ("gcool_e", "cs"): 93.31,
    ("gcool_e", "wikics"): 78.74,
    ("grace", "cora"): 83.3, ("grace", "citeseer"): 72.1, ("grace", "pubmed"): 86.7,
    ("gca", "computers"): 87.85, ("gca", "photo"): 92.49, ("gca", "cs"): 93.10,
    ("gca", "wikics"): 78.30, ("gca", "physics"): 95.68,
}


def run_one(variant: str, dataset: str, seed: int, extra: list[str], device: str,
            timeout: float) -> dict[str, Any]:
    """Train one seed in a subprocess; return its metrics plus ``wall_s`` (or an ``error``)."""
    method, overrides = VARIANTS.get(variant, (variant, []))
    return train_in_subprocess(method, dataset, seed, overrides + extra, device, timeout)


def _fmt(values: list[float]) -> str:
    if not values:
        return "–"
    return f"{100 * np.mean(values):.2f} ± {100 * np.std(values):.2f}"


def table(results: list[dict[str, Any]]) -> str:
    """Markdown table grouped by (variant, dataset, overrides)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["variant"], r["dataset"], " ".join(r["set"])), []).append(r)
    lines = ["| Method | Dataset | Overrides | Seeds | Micro-F1 (ours, honest) | "
             "Micro-F1 (ours, official protocol) | Paper | Wall time / run | Failed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (variant, dataset, sets), rs in sorted(groups.items()):
        ok = [r for r in rs if "error" not in r["metrics"]]
        honest = [r["metrics"]["micro_f1"] for r in ok]
        official = [r["metrics"]["micro_f1_official"] for r in ok
                    if "micro_f1_official" in r["metrics"]]
        paper = PAPER.get((variant, dataset))
        wall = np.mean([r["metrics"]["wall_s"] for r in rs]) if rs else float("nan")
        lines.append(f"| {variant} | {dataset} | {sets or '–'} | {len(ok)} | {_fmt(honest)} | "
                     f"{_fmt(official) if official else '–'} | "
                     f"{'–' if paper is None else f'{paper:.2f}'} | {wall:.0f} s | "
                     f"{len(rs) - len(ok)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="*", default=["gcool:cora", "gcool:citeseer"],
                   metavar="NAME:DATASET")
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"))
    p.add_argument("--timeout", type=float, default=6 * 3600, help="seconds per run")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS / f"{NAME}.json")
    args = p.parse_args(argv)

    results: list[dict[str, Any]] = (json.loads(args.out.read_text())
                                     if args.out.exists() else [])
    done = {(r["variant"], r["dataset"], r["seed"], tuple(r["set"])) for r in results}
    if not args.table_only:
        for key in args.runs:
            if ":" not in key:
                p.error(f"--runs: expected NAME:DATASET, got {key!r}")
            variant, dataset = key.split(":", 1)
            for seed in args.seeds:
                if (variant, dataset, seed, tuple(args.set)) in done:
                    continue
                m = run_one(variant, dataset, seed, args.set, args.device, args.timeout)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                results = append_result(args.out, {"variant": variant, "dataset": dataset,
                                                   "seed": seed, "set": list(args.set),
                                                   "metrics": m})
                shown = m.get("error") or (f"micro_f1 {m['micro_f1']:.4f}" + (
                    f" (official {m['micro_f1_official']:.4f})"
                    if "micro_f1_official" in m else ""))
                print(f"{variant:>10} {dataset:>10} seed {seed}: {shown}  "
                      f"[{m['wall_s']:.0f} s]", flush=True)
    md = table(results)
    args.out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
