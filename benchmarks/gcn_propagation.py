"""GCN aggregation: PyG message passing vs sparse CSR products, at the papers' configurations.

``GCNEncoder(propagation="message")`` calls ``GCNConv.forward``: it gathers one ``[E, C]``
message tensor per layer and scatters it back, and multiplies the dense bag-of-words features.
``propagation="sparse"`` (the default) multiplies by the normalised adjacency as one CSR matrix
and, when the features are at most 5 % non-zeros, by the features as CSR. Same parameters, same
function (float64 test in ``tests/test_graph_encoders.py``).

Each (method, dataset, propagation) trains a few full-batch steps of the official configuration
(gCooL's Coauthor-CS layer is 7,105 wide, Amazon-Computers 2,558; GCA's Computers preset) in
its own subprocess, so peak memory is that run's own. Prints and saves time per step and peak
memory (process RSS on CPU, max allocated on GPU) side by side. On CPU the subprocesses run with
``MALLOC_MMAP_THRESHOLD_`` fixed at 1 MiB: glibc otherwise raises its mmap threshold after the
first large free and keeps later freed tensors in the heap, so the peak RSS of the same run
varied between 1.1 and 4.4 GB (GCA on Computers) with what the allocator kept, not what was live::

    python benchmarks/gcn_propagation.py                 # CPU, all threads
    python benchmarks/gcn_propagation.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from _runner import train_in_subprocess

RESULTS = Path(__file__).resolve().parent / "results"
CASES = ("gcool:cs", "gcool:computers", "gca:computers")
#: large frees go back to the OS at once, so peak RSS measures live memory (module docstring)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), help="METHOD:DATASET ...")
    parser.add_argument("--steps", type=int, default=3, help="training steps per run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--name", default="gcn_propagation")
    args = parser.parse_args(argv)
    rows = []
    for case in args.cases:
        method, dataset = case.split(":")
        for prop in ("message", "sparse"):
            sets = [f"epochs={args.steps}", "eval_every=0", f"propagation={prop}"]
            sets += ["probe_epochs=5"] if method == "gcool" else []
            m = train_in_subprocess(method, dataset, 0, sets, args.device, args.timeout,
                                    env=MALLOC_ENV if args.device == "cpu" else None)
            row = {"method": method, "dataset": dataset, "propagation": prop,
                   "steps": args.steps, "device": args.device,
                   "time_per_step_s": m.get("time_per_epoch_s"),
                   "peak_mem_gib": (m["peak_mem_bytes"] / 2**30 if "peak_mem_bytes" in m
                                    else None),
                   "error": m.get("error")}
            rows.append(row)
            print(json.dumps(row), flush=True)
    RESULTS.mkdir(exist_ok=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(),
            "env": MALLOC_ENV if args.device == "cpu" else {}}
    (RESULTS / f"{args.name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"# GCN aggregation: message passing vs sparse CSR ({args.device}, {meta['threads']} "
             f"threads, torch {meta['torch']}, {args.steps} steps)", "",
             "| Method | Dataset | s/step message | s/step sparse | speed-up | "
             "peak GiB message | peak GiB sparse | memory ratio |", "|---|---|---|---|---|---|---|---|"]
    for case in args.cases:
        method, dataset = case.split(":")
        pair = {r["propagation"]: r for r in rows
                if (r["method"], r["dataset"]) == (method, dataset)}
        a, b = pair["message"], pair["sparse"]
        t, m = "time_per_step_s", "peak_mem_gib"
        lines.append(f"| {method} | {dataset} | {_fmt(a[t], '.2f')} | {_fmt(b[t], '.2f')} | "
                     f"{_fmt(_ratio(a[t], b[t]), '.1f')}x | {_fmt(a[m], '.1f')} | "
                     f"{_fmt(b[m], '.1f')} | {_fmt(_ratio(a[m], b[m]), '.1f')}x |")
    text = "\n".join(lines) + "\n"
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
