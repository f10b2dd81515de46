"""Time and peak memory of the exact InfoNCE loss + backward: naive vs dense engine vs blockwise.

Every (variant, N) runs in its own subprocess, so one variant running out of memory cannot take
the others down and peak RSS is measured per variant. An address-space limit (``--mem-limit-gb``)
turns a would-be OOM into a recorded ``"oom"`` instead of swapping the machine to death.

Variants (same inputs, same loss: InfoNCE of ``u [N, d]`` against ``w [N, d]``, cosine, tau=0.5,
aligned positives, mean over anchors):

* ``naive``     — the textbook formula in plain PyTorch: ``exp(S/tau)``, row sums, log ratio
  (what GRACE's official code does); autograd keeps every ``N x N`` intermediate.
* ``dense``     — the engine forced dense (``block_size=N``), plain autograd.
* ``blockwise`` — the engine in row blocks with recompute-in-backward (``block_size=None``).

Usage::

    python benchmarks/loss_memory.py                      # N = 5000, 10000, 20000, d = 128
    python benchmarks/loss_memory.py --sizes 2000 4000 --repeats 1

Writes ``benchmarks/results/loss_memory.json`` and ``.md`` (and prints the table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("naive", "dense", "blockwise")


def _child(variant: str, n: int, d: int, repeats: int, mem_limit_gb: float, threads: int) -> None:
    if mem_limit_gb > 0:
        lim = int(mem_limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    import torch
    import torch.nn.functional as F

    from contrastkit.core import contrastive_loss

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    u = torch.randn(n, d, generator=g, requires_grad=True)
    w = torch.randn(n, d, generator=g, requires_grad=True)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def naive() -> torch.Tensor:
        s = torch.exp(F.normalize(u, dim=1) @ F.normalize(w, dim=1).t() / 0.5)
        return -torch.log(s.diag() / s.sum(1)).mean()

    def engine(bs):
        return lambda: contrastive_loss(u, w, positives="aligned", temperature=0.5, block_size=bs)

    fn = {"naive": naive, "dense": engine(n), "blockwise": engine(None)}[variant]
    times, value = [], None
    try:
        for _ in range(repeats):
            u.grad = w.grad = None
            t0 = time.perf_counter()
            loss = fn()
            loss.backward()
            times.append(time.perf_counter() - t0)
            value = float(loss)
        grad_norm = float(torch.cat([u.grad.flatten(), w.grad.flatten()]).norm())
        out = dict(status="ok", loss=value, grad_norm=grad_norm, time_s=min(times))
    except (MemoryError, RuntimeError) as e:  # an allocation beyond the limit
        if "memory" not in str(e).lower() and not isinstance(e, MemoryError):
            raise
        out = dict(status="oom", error=str(e).splitlines()[0][:200])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out.update(peak_rss_bytes=peak, peak_rss_over_inputs_bytes=peak - base_rss)
    print("RESULT " + json.dumps(out))


def _run(variant: str, n: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, str(n), "--dim", str(args.dim),
           "--repeats", str(args.repeats), "--mem-limit-gb", str(args.mem_limit_gb),
           "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(variant=variant, n=n, **json.loads(line[7:]))
    status = "oom" if proc.returncode in (-9, 137) or "MemoryError" in proc.stderr else "error"
    return dict(variant=variant, n=n, status=status, returncode=proc.returncode,
                error=proc.stderr.strip().splitlines()[-1][:200] if proc.stderr.strip() else "")


def _fmt_bytes(b: float | None) -> str:
    return "—" if b is None else f"{b / 2**30:.2f} GiB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000])
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--mem-limit-gb", type=float, default=20.0,
                   help="address-space limit per subprocess; beyond it a variant is 'oom' (0: none)")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "loss_memory")
    p.add_argument("--child", nargs=2, metavar=("VARIANT", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.child[0], int(args.child[1]), args.dim, args.repeats, args.mem_limit_gb,
               args.threads)
        return 0

    rows = []
    for n in args.sizes:
        for v in args.variants:
            r = _run(v, n, args)
            rows.append(r)
            print(json.dumps(r), flush=True)
    by = {(r["variant"], r["n"]): r for r in rows}
    lines = ["| N | variant | status | time (s) | peak RSS | peak RSS over inputs | loss | "
             "blockwise peak / dense peak |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = ""
        if r["variant"] == "blockwise" and r.get("status") == "ok":
            dense = by.get(("dense", r["n"]))
            if dense and dense.get("status") == "ok":
                ratio = f"{r['peak_rss_bytes'] / dense['peak_rss_bytes']:.3f}"
            elif dense:
                ratio = f"dense: {dense.get('status')}"
        lines.append(
            f"| {r['n']} | {r['variant']} | {r.get('status')} | "
            f"{r['time_s']:.2f} |" if r.get("status") == "ok" else
            f"| {r['n']} | {r['variant']} | {r.get('status')} | — |")
        if r.get("status") == "ok":
            lines[-1] += (f" {_fmt_bytes(r['peak_rss_bytes'])} | "
                          f"{_fmt_bytes(r['peak_rss_over_inputs_bytes'])} | {r['loss']:.6f} | {ratio} |")
        else:
            lines[-1] += f" {_fmt_bytes(r.get('peak_rss_bytes'))} | — | — | {ratio} |"
    meta = dict(dim=args.dim, repeats=args.repeats, threads=args.threads,
                mem_limit_gb=args.mem_limit_gb, machine=platform.platform(),
                processor=platform.processor(), cpus=os.cpu_count(),
                command="python benchmarks/loss_memory.py " + " ".join(argv or sys.argv[1:]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(dict(meta=meta, results=rows), indent=2))
    md = ["# Exact InfoNCE loss + backward on CPU: time and peak memory", "",
          f"d = {args.dim}, float32, {args.threads} threads, each variant in its own subprocess "
          f"(address-space limit {args.mem_limit_gb} GiB). Command: `{meta['command']}`", "",
          *lines, ""]
    args.out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
