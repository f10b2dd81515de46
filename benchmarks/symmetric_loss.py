"""NT-Xent loss + backward on ``[z1; z2]``: the engine's symmetric self-comparison path against
its row-block path, at the sizes of the graph benchmarks.

GRACE, GCA, POT and SimCLR compare the stacked views with themselves (``candidates=None``), so the
logit matrix ``s = n n^T / tau`` is symmetric. The engine walks the upper triangle of square
tiles (``symmetric``, the default); ``rows`` is the row-block path it replaced (every ``[B, 2N]``
row tile formed in full, forward and backward), forced by switching the symmetric check off.
Each (variant, size) runs in its own subprocess; the table gives the best of ``--repeats``
forward + backward times, peak RSS, the loss and the gradient norm (which must agree). The
allocator's settings are inherited: ``MALLOC_MMAP_THRESHOLD_=1048576 python ...`` measures with
glibc returning every large free to the system at once (README, "CPU memory tip").

Sizes (rows per view ``N``, projection width ``d``): the official GRACE/GCA configurations of
Cora (2,708 x 128), CiteSeer (3,327 x 256), Amazon-Computers (13,752 x 128) and Coauthor-CS
(18,333 x 256).

    OMP_NUM_THREADS=1 python benchmarks/symmetric_loss.py --threads 1
    python benchmarks/symmetric_loss.py --sizes 3327:256 --repeats 3

Writes ``benchmarks/results/symmetric_loss.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

from _runner import child_result

VARIANTS = ("rows", "symmetric")
SIZES = ("2708:128", "3327:256", "13752:128", "18333:256")


def _child(variant: str, n: int, d: int, repeats: int, threads: int) -> dict:
    import torch

    import contrastkit.core.engine as engine
    from contrastkit.core.losses import nt_xent

    torch.set_num_threads(threads)
    if variant == "rows":
        engine._Plan.symmetric = lambda self, tau: False
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(n, d, generator=g, requires_grad=True)
    z2 = (z1.detach() + 0.5 * torch.randn(n, d, generator=g)).requires_grad_(True)
    times = []
    for _ in range(repeats):
        z1.grad = z2.grad = None
        t0 = time.perf_counter()
        loss = nt_xent(z1, z2, temperature=0.5)
        loss.backward()
        times.append(time.perf_counter() - t0)
    grad_norm = float(torch.cat([z1.grad.flatten(), z2.grad.flatten()]).norm())
    return dict(status="ok", loss=float(loss), grad_norm=grad_norm, time_s=min(times),
                peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)


def _run(variant: str, n: int, d: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, str(n), str(d),
           "--repeats", str(args.repeats), "--threads", str(args.threads)]
    return dict(variant=variant, n=n, d=d, **child_result(cmd, args.timeout))


def table(rows: list[dict]) -> str:
    """Markdown: one line per size, the two variants side by side."""
    by = {(r["n"], r["d"], r["variant"]): r for r in rows}
    lines = ["| rows per view N | d | rows: s | symmetric: s | speed-up | rows: peak GiB | "
             "symmetric: peak GiB | loss rows / symmetric | grad norm rows / symmetric |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n, d in dict.fromkeys((r["n"], r["d"]) for r in rows):
        a, b = by.get((n, d, "rows"), {}), by.get((n, d, "symmetric"), {})
        if a.get("status") != "ok" or b.get("status") != "ok":
            lines.append(f"| {n} | {d} | {a.get('status', '-')} | {b.get('status', '-')} "
                         f"| - | - | - | - | - |")
            continue
        lines.append(f"| {n} | {d} | {a['time_s']:.3f} | {b['time_s']:.3f} | "
                     f"{a['time_s'] / b['time_s']:.2f}x | {a['peak_rss_gib']:.2f} | "
                     f"{b['peak_rss_gib']:.2f} | {a['loss']:.6f} / {b['loss']:.6f} | "
                     f"{a['grad_norm']:.6f} / {b['grad_norm']:.6f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", default=list(SIZES), help="N:d items")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--out", type=Path,
                   default=Path(__file__).parent / "results" / "symmetric_loss")
    p.add_argument("--child", nargs=3, metavar=("VARIANT", "N", "D"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        out = _child(args.child[0], int(args.child[1]), int(args.child[2]), args.repeats,
                     args.threads)
        print("RESULT " + json.dumps(out))
        return 0
    rows = []
    for item in args.sizes:
        n, d = (int(x) for x in item.split(":"))
        for variant in VARIANTS:
            rows.append(_run(variant, n, d, args))
            print(json.dumps(rows[-1]), flush=True)
    command = "python benchmarks/symmetric_loss.py " + " ".join(argv if argv is not None
                                                                else sys.argv[1:])
    malloc = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    if malloc:
        command = f"MALLOC_MMAP_THRESHOLD_={malloc} " + command
    meta = dict(repeats=args.repeats, threads=args.threads, machine=platform.platform(),
                cpus=os.cpu_count(), command=command, malloc_mmap_threshold=malloc)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(dict(meta=meta, results=rows), indent=1))
    md = (f"# NT-Xent forward + backward: symmetric tiles vs row blocks\n\n"
          f"float32, {args.threads} thread(s), best of {args.repeats}, each variant in its own "
          f"subprocess. Command: `{command}`\n\n{table(rows)}\n")
    args.out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
