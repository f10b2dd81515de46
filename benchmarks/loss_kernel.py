"""The exact all-pairs GRACE node loss: dense vs blockwise vs the fused Triton kernel.

For each ``N`` the two views' embeddings ``z1, z2 [N, d]`` come from a stochastic block model with
Cora-like degree and 128-d features (:func:`graph_scale.sbm_graph`: the block means plus noise,
two independent noise draws per view; the loss cost does not depend on the values). The loss is
GRACE's (inter- and intra-view negatives, self pair excluded, both directions averaged), timed
forward + backward:

* ``dense``: the official GRACE formula, two ``N x N`` similarity matrices per direction;
* ``blockwise``: the engine's PyTorch path (``backend="blockwise"``, tiles recomputed in
  backward);
* ``fused``: the engine's Triton kernel (``backend="fused"``).

Each (variant, N) runs in its own subprocess, so an out-of-memory (recorded as ``oom``) does not
end the benchmark. Reported: median seconds per forward + backward over ``--repeats`` after one
warm-up (which also compiles the kernel), and on CUDA the peak memory beyond the inputs
(``torch.cuda.max_memory_allocated()`` minus the bytes of ``z1, z2``). ``--dtype``: ``float32``
(IEEE), ``tf32`` (float32 with TF32 matmuls, for all three variants) or ``bfloat16`` (inputs).

``--grace``: also train GRACE end to end (2-layer GCN, 128 hidden / projection, full batch) on the
SBM graph of each size with the fused and the blockwise loss, seconds per epoch; ``--gcool``:
the same for gCooL_c (default configuration, community terms on: the first epochs).

    python benchmarks/loss_kernel.py --device cuda                       # the issue's table
    python benchmarks/loss_kernel.py --device cuda --dtype bfloat16 --name loss_kernel_bf16
    python benchmarks/loss_kernel.py --device cuda --variants --grace --gcool --sizes 169343
    python benchmarks/loss_kernel.py --device cpu --sizes 2000 5000 --variants dense blockwise
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = ("dense", "blockwise", "fused", "grace_fused", "grace_blockwise", "gcool_fused",
            "gcool_blockwise")
SIZES = (19_717, 50_000, 169_343)
TAU = 0.5


def dense_grace_loss(z1, z2, tau: float = TAU):
    """The official GRACE loss: ``exp`` of full similarity matrices (no max subtraction)."""
    import torch
    import torch.nn.functional as F

    h1, h2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)

    def semi(a, b):
        refl = torch.exp(a @ a.t() / tau)
        between = torch.exp(a @ b.t() / tau)
        return -torch.log(between.diagonal() / (refl.sum(1) + between.sum(1) - refl.diagonal()))

    return 0.5 * (semi(h1, h2) + semi(h2, h1)).mean()


def engine_grace_loss(z1, z2, backend: str, tau: float = TAU):
    """The same loss through the engine: stacked views compared with themselves, offset N."""
    from contrastkit.core.losses import nt_xent

    return nt_xent(z1, z2, temperature=tau, backend=backend)


def _inputs(n: int, dim: int, device: str, dtype):
    import torch

    from graph_scale import sbm_graph

    data = sbm_graph(n, channels=dim)
    g = torch.Generator().manual_seed(1)
    z1 = data.x + torch.randn(data.x.shape, generator=g)
    z2 = data.x + torch.randn(data.x.shape, generator=g)
    return data, [z.to(device=device, dtype=dtype).requires_grad_() for z in (z1, z2)]


def _loss_child(variant: str, n: int, dim: int, device: str, dtype_name: str,
                repeats: int) -> dict:
    import torch

    dtype = torch.bfloat16 if dtype_name == "bfloat16" else torch.float32
    torch.backends.cuda.matmul.allow_tf32 = dtype_name == "tf32"
    _, (z1, z2) = _inputs(n, dim, device, dtype)
    input_bytes = sum(z.numel() * z.element_size() for z in (z1, z2))
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()

    def step():
        z1.grad = z2.grad = None
        loss = (dense_grace_loss(z1, z2) if variant == "dense"
                else engine_grace_loss(z1, z2, variant))
        loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
        return float(loss)

    t0 = time.perf_counter()
    loss = step()  # warm-up (kernel compilation)
    warm = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    out = dict(status="ok", loss=loss, time_s=statistics.median(times), times_s=times,
               warmup_s=warm, input_bytes=input_bytes)
    if device == "cuda":
        out["peak_beyond_inputs_bytes"] = torch.cuda.max_memory_allocated() - base
    return out


def _grace_child(variant: str, n: int, dim: int, device: str, dtype_name: str,
                 epochs: int) -> dict:
    import torch

    from contrastkit.core.trainer import Trainer
    from contrastkit.graphcl.gcool import GCooL, GCooLConfig
    from contrastkit.graphcl.grace import GRACE, GRACEConfig

    torch.backends.cuda.matmul.allow_tf32 = dtype_name == "tf32"
    data = _inputs(n, dim, "cpu", torch.float32)[0]
    name, backend = variant.split("_", 1)
    if name == "gcool":
        method = GCooL(GCooLConfig(loss_backend=backend), data.num_features)
    else:
        method = GRACE(GRACEConfig(loss_backend=backend, temperature=TAU), data.num_features)
    times: list[float] = []
    mark = {"t": 0.0}

    def evaluator(m):  # called after every epoch
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - mark["t"])
        return {}

    orig = method.on_epoch_start

    def start(epoch: int) -> None:
        orig(epoch)
        if device == "cuda":
            torch.cuda.synchronize()
        mark["t"] = time.perf_counter()

    method.on_epoch_start = start
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    Trainer(epochs, device=device, seed=0, progress=False, evaluator=evaluator,
            eval_every=1).fit(method, [data])
    out = dict(status="ok", time_s=min(times[1:] or times), epochs=len(times), times_s=times)
    if device == "cuda":
        out["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
    return out


def _child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    variant, n = args.child[0], int(args.child[1])
    try:
        if variant.startswith(("grace_", "gcool_")):
            out = _grace_child(variant, n, args.dim, args.device, args.dtype, args.epochs)
        else:
            out = _loss_child(variant, n, args.dim, args.device, args.dtype, args.repeats)
    except (MemoryError, RuntimeError) as e:  # torch.cuda.OutOfMemoryError is a RuntimeError
        if "memory" not in str(e).lower() and not isinstance(e, MemoryError):
            raise
        out = dict(status="oom", error=str(e).splitlines()[0][:200])
    except ValueError as e:  # e.g. backend='fused' without a GPU / Triton
        out = dict(status="unsupported", error=str(e)[:300])
    print("RESULT " + json.dumps(out), flush=True)


def _run(variant: str, n: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, str(n), "--dim", str(args.dim),
           "--device", args.device, "--dtype", args.dtype, "--repeats", str(args.repeats),
           "--epochs", str(args.epochs), "--threads", str(args.threads)]
    base = dict(variant=variant, num_nodes=n, dim=args.dim, dtype=args.dtype, device=args.device)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return dict(base, status="timeout", wall_s=args.timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(base, wall_s=time.perf_counter() - t0, **json.loads(line[7:]))
    err = proc.stderr.strip().splitlines()[-1][:300] if proc.stderr.strip() else ""
    status = "oom" if proc.returncode in (-9, 137) or "memory" in err.lower() else "error"
    return dict(base, status=status, returncode=proc.returncode, error=err)


def _cell(r: dict | None, key: str) -> str:
    if r is None:
        return "—"
    if r["status"] != "ok":
        return r["status"]
    if key == "time":
        return f"{r['time_s'] * 1e3:.0f} ms" if r["time_s"] < 10 else f"{r['time_s']:.1f} s"
    b = r.get("peak_beyond_inputs_bytes", r.get("peak_cuda_bytes"))
    return "—" if b is None else f"{b / 2**30:.2f} GiB"


def table(results: list[dict]) -> str:
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in results)]
    lines = ["| N | dtype | " + " | ".join(f"{v} time | {v} memory" for v in variants) + " |",
             "|---|---|" + "---|---|" * len(variants)]
    for key in sorted({(r["num_nodes"], r["dtype"], r["device"]) for r in results}):
        rows = [r for r in results if (r["num_nodes"], r["dtype"], r["device"]) == key]
        cells = []
        for v in variants:
            r = next((x for x in rows if x["variant"] == v), None)
            cells += [_cell(r, "time"), _cell(r, "mem")]
        lines.append(f"| {key[0]:,} | {key[1]} ({key[2]}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="*", type=int, default=list(SIZES))
    p.add_argument("--variants", nargs="*", default=["dense", "blockwise", "fused"],
                   choices=VARIANTS)
    p.add_argument("--grace", action="store_true", help="add grace_fused and grace_blockwise")
    p.add_argument("--gcool", action="store_true", help="add gcool_fused and gcool_blockwise")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--dtype", default="float32", choices=("float32", "tf32", "bfloat16"))
    p.add_argument("--device", default="cuda")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--epochs", type=int, default=3, help="GRACE epochs (--grace)")
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--name", default="loss_kernel")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    variants = (list(args.variants) + (["grace_fused", "grace_blockwise"] if args.grace else [])
                + (["gcool_fused", "gcool_blockwise"] if args.gcool else []))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{args.name}.json"
    old = json.loads(path.read_text())["results"] if path.exists() else []
    results = []
    for n in args.sizes:
        for v in variants:
            r = _run(v, n, args)
            print(json.dumps({k: r.get(k) for k in ("variant", "num_nodes", "status", "time_s",
                                                     "peak_beyond_inputs_bytes", "error")}),
                  flush=True)
            results.append(r)
    done = {(r["variant"], r["num_nodes"], r["dtype"], r["device"]) for r in results}
    results = [r for r in old if (r["variant"], r["num_nodes"], r["dtype"], r["device"])
               not in done] + results
    env = dict(python=platform.python_version(), machine=platform.machine())
    try:
        import torch
        env.update(torch=torch.__version__,
                   gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None)
        import triton
        env["triton"] = triton.__version__
    except ImportError:
        pass
    path.write_text(json.dumps(dict(env=env, results=results), indent=2))
    md = (f"# Exact GRACE loss, forward + backward (d = {args.dim})\n\n{table(results)}\n\n"
          f"Environment: {env}\n")
    (RESULTS / f"{args.name}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
