"""Graph clustering and contrastive training at scale: time per epoch and peak memory vs N.

Variants (each run in its own subprocess under an address-space limit, so running out of
memory is recorded, not fatal):

* ``dense``: SCGC*'s loss as the reference code computes it: the dense ``N x N`` cosine matrix
  and a dense ``A_r``, plain autograd;
* ``blockwise``: the same exact loss through the engine (``positive_mass`` over weighted pairs,
  row blocks, never ``N x N``);
* ``pamc``: PamC's meta-node loss (``O(nnz(A_r) d + K^2 d)``);
* ``grace_minibatch``: GRACE trained on sampled subgraphs (2,048 seeds, fanout 10 x 10);
* ``dense_loss``, ``blockwise_loss``, ``pamc_loss``: the three losses alone (forward + backward)
  on random embeddings ``[N, 10]``, 40 random clusters: what each loss itself costs, without the
  encoder's activations (which dominate the memory of a training step).

The three clustering losses share everything else (the MLP encoder ``F -> 500 -> 500 -> 2000 ->
10``, the DEC term, one full-batch step per epoch, order ``r = 1``, ``τ = 0.5``), so their
differences are the loss. Graphs: a stochastic block model with Cora's average degree (3.9),
128-d features and 40 blocks, at N = 10k, 20k, 50k and 169,343 (ogbn-arxiv's size), and
Coauthor-Physics (34,493 nodes, 8,415 features). Results go to
``benchmarks/results/graph_scale.{json,md,png}`` (log-log plot: time and memory vs N).

Examples::

    python benchmarks/graph_scale.py                        # everything (CPU: about an hour)
    python benchmarks/graph_scale.py --sizes 10000 20000 --variants pamc blockwise
    python benchmarks/graph_scale.py --device cuda --mem-limit-gb 0
    python benchmarks/graph_scale.py --table-only
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "graph_scale"
VARIANTS = ("dense", "blockwise", "pamc", "grace_minibatch", "dense_loss", "blockwise_loss",
            "pamc_loss")
SIZES = (10_000, 20_000, 50_000, 169_343)
#: floor of peaks over the data (a run can peak while loading the data: ~0 over it)
MEM_FLOOR = 2**20


def sbm_graph(num_nodes: int, num_blocks: int = 40, avg_degree: float = 3.9,
              intra: float = 0.8, channels: int = 128, seed: int = 0):
    """A stochastic block model sampled edge by edge in ``O(E)`` (no ``N x N`` probabilities).

    Each of the ``N * avg_degree / 2`` undirected edges starts at a uniform node and ends, with
    probability ``intra``, at a uniform node of the same block, else at a uniform node.
    Features: the block's Gaussian mean plus unit noise.
    """
    import torch
    from torch_geometric.data import Data
    from torch_geometric.utils import coalesce, remove_self_loops, to_undirected

    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, num_blocks, (num_nodes,), generator=g)
    order = torch.argsort(y)
    counts = torch.bincount(y, minlength=num_blocks)
    starts = torch.cumsum(counts, 0) - counts
    e = int(num_nodes * avg_degree / 2)
    src = torch.randint(0, num_nodes, (e,), generator=g)
    same = torch.rand(e, generator=g) < intra
    b = y[src]
    pick = (torch.rand(e, generator=g) * counts[b]).long()
    dst = torch.where(same, order[starts[b] + pick], torch.randint(0, num_nodes, (e,),
                                                                   generator=g))
    ei = remove_self_loops(to_undirected(torch.stack([src, dst]), num_nodes=num_nodes))[0]
    means = torch.randn(num_blocks, channels, generator=g)
    x = means[y] + torch.randn(num_nodes, channels, generator=g)
    data = Data(x=x, edge_index=coalesce(ei, num_nodes=num_nodes), y=y)
    data.num_classes = num_blocks
    return data


def _child(variant: str, graph: str, epochs: int, threads: int, mem_limit_gb: float,
           device: str) -> None:
    if mem_limit_gb > 0:
        lim = int(mem_limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    import torch

    torch.set_num_threads(threads)
    if graph == "physics":
        from contrastkit.datasets import load
        data = load("physics", normalize_features=False)
    else:
        data = sbm_graph(int(graph))
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out: dict = {"num_nodes": data.num_nodes, "num_edges": int(data.edge_index.size(1))}
    try:
        times = _train(variant, data, epochs, device)
        out.update(status="ok", time_per_epoch_s=min(times), epochs=len(times))
    except (MemoryError, RuntimeError) as e:
        if "memory" not in str(e).lower() and not isinstance(e, MemoryError):
            raise
        out.update(status="oom", error=str(e).splitlines()[0][:200])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out.update(peak_rss_bytes=peak, peak_over_data_bytes=peak - base_rss)
    if device == "cuda":
        out["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
    print("RESULT " + json.dumps(out), flush=True)


def _train(variant: str, data, epochs: int, device: str) -> list[float]:
    """Seconds per epoch of ``epochs`` epochs (model set-up is not timed)."""
    import torch

    from contrastkit.core.trainer import Trainer

    if variant.endswith("_loss"):
        return _loss_only(variant[:-5], data, epochs, device)
    if variant == "grace_minibatch":
        from contrastkit.graphcl.grace import GRACE, GRACEConfig
        from contrastkit.graphcl.sampling import NeighborBatches
        cfg = GRACEConfig(batch_size=2048, num_neighbors=(10, 10))
        method = GRACE(cfg, data.num_features)
        loader = NeighborBatches(data, cfg.batch_size, cfg.num_neighbors)
    else:
        from contrastkit.graphcl.pamc import NodeBatches, PamC, PamCConfig
        cfg = PamCConfig(loss="pamc" if variant == "pamc" else "scgc", order=1, scale=0.5,
                         alpha=1.0, beta=1.0, pretrain_epochs=0, kmeans_restarts=1,
                         track_epochs=False)
        cls = _dense_scgc_class() if variant == "dense" else PamC
        method = cls(cfg, data)
        loader = NodeBatches(data.num_nodes)
    times: list[float] = []

    class Timer:
        def __call__(self, m):  # evaluator: called after each epoch
            times.append(time.perf_counter() - self.t0)
            self.t0 = time.perf_counter()
            return {}

    timer = Timer()
    trainer = Trainer(epochs, device=device, seed=0, progress=False, evaluator=timer,
                      eval_every=1)
    orig = method.on_epoch_start

    def start(epoch: int) -> None:  # time from the start of each epoch's work
        orig(epoch)
        if device == "cuda":
            torch.cuda.synchronize()
        timer.t0 = time.perf_counter()

    method.on_epoch_start = start
    trainer.fit(method, loader)
    return times


def _loss_only(variant: str, data, repeats: int, device: str) -> list[float]:
    """Seconds per forward + backward of the loss alone on random embeddings ``[N, 10]``."""
    import torch

    from contrastkit.core.pairs import Pairs
    from contrastkit.graphcl.pamc import influence_adjacency, pamc_loss, scgc_loss

    n = data.num_nodes
    index, weight = influence_adjacency(data.edge_index, n, 1)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, 10, generator=g).to(device).requires_grad_(True)
    labels = torch.randint(0, 40, (n,), generator=g).to(device)
    pairs = Pairs(index.to(device), weight.to(device))
    times = []
    for _ in range(repeats):
        z.grad = None
        t0 = time.perf_counter()
        if variant == "pamc":
            loss = pamc_loss(z, pairs, labels, 40, 0.5)
        elif variant == "blockwise":
            loss = scgc_loss(z, pairs, 0.5)
        else:
            a = torch.zeros(n, n, device=device)
            a[index[0], index[1]] = weight.to(device)
            zn = torch.nn.functional.normalize(z, dim=1)
            e = torch.exp(0.5 * (zn @ zn.t()) * (1 - torch.eye(n, device=device)))
            loss = -torch.log((a * e).sum(1) / e.sum(1) + 1e-8).mean()
        loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def _dense_scgc_class():
    import torch

    from contrastkit.graphcl.pamc import PamC

    class _DenseSCGC(PamC):
        """SCGC* as the reference code computes it: dense cosine matrix and dense ``A_r``."""

        def contrast(self, z, pairs, anchors, labels):
            n = z.size(0)
            a = torch.zeros(n, n, device=z.device)
            a[self.pair_index[0], self.pair_index[1]] = self.pair_weight
            zn = torch.nn.functional.normalize(z, dim=1)
            cos = (zn @ zn.t()) * (1 - torch.eye(n, device=z.device))
            e = torch.exp(self.config.scale * cos)
            return -torch.log((a * e).sum(1) / e.sum(1) + 1e-8).mean()

    return _DenseSCGC


def _run(variant: str, graph: str, args: argparse.Namespace) -> dict:
    epochs = args.epochs if graph == "physics" or int(graph) < 50_000 else 1
    cmd = [sys.executable, __file__, "--child", variant, graph, "--epochs", str(epochs),
           "--threads", str(args.threads), "--mem-limit-gb", str(args.mem_limit_gb),
           "--device", args.device]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return dict(variant=variant, graph=graph, status="timeout", wall_s=args.timeout)
    wall = time.perf_counter() - t0
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(variant=variant, graph=graph, wall_s=wall, device=args.device,
                        **json.loads(line[7:]))
    status = "oom" if proc.returncode in (-9, 137) or "MemoryError" in proc.stderr else "error"
    return dict(variant=variant, graph=graph, status=status, returncode=proc.returncode,
                wall_s=wall, device=args.device,
                error=proc.stderr.strip().splitlines()[-1][:200] if proc.stderr.strip() else "")


def _gib(b) -> str:
    return "—" if b is None else f"{b / 2**30:.2f} GiB"


def table(results: list[dict]) -> str:
    graphs = sorted({r["graph"] for r in results},
                    key=lambda g: (g == "physics", int(g) if g.isdigit() else 0))
    lines = ["| Graph | N | Variant | Status | Time / epoch | Peak RSS | Peak over data | "
             "PamC vs this exact loss (time, memory) |", "|---|---|---|---|---|---|---|---|"]
    for g in graphs:
        rows = [r for r in results if r["graph"] == g]
        for v in VARIANTS:
            r = next((r for r in rows if r["variant"] == v), None)
            if r is None:
                continue
            ref = "pamc_loss" if v.endswith("_loss") else "pamc"
            pamc = next((x for x in rows if x["variant"] == ref and x["status"] == "ok"), None)
            ratio = "—"
            if v in ("dense", "blockwise", "dense_loss", "blockwise_loss") and pamc is not None:
                ratio = ("exact out of memory" if r["status"] == "oom" else
                         f"{r['time_per_epoch_s'] / pamc['time_per_epoch_s']:.1f}x faster, "
                         + _memory_ratio(r["peak_over_data_bytes"], pamc["peak_over_data_bytes"])
                         if r["status"] == "ok" else r["status"])
            tpe = f"{r['time_per_epoch_s']:.2f} s" if r.get("status") == "ok" else "—"
            name = "Coauthor-Physics" if g == "physics" else f"SBM {int(g):,}"
            lines.append(f"| {name} | {r.get('num_nodes', '—')} | {v} | {r['status']} | {tpe} | "
                         f"{_gib(r.get('peak_rss_bytes'))} | {_gib(r.get('peak_over_data_bytes'))}"
                         f" | {ratio} |")
    return "\n".join(lines) + "\n"


def _memory_ratio(exact: float, pamc: float) -> str:
    """``"4.8x smaller"`` (PamC needs less than the exact loss) or ``"1.6x larger"``; peaks over
    the data are floored at 1 MiB (a run can peak while loading the data: ~0 over it)."""
    if exact <= MEM_FLOOR < pamc:
        return "larger (exact: within the data's own peak)"
    exact, pamc = max(exact, MEM_FLOOR), max(pamc, MEM_FLOOR)
    return f"{exact / pamc:.1f}x smaller" if exact >= pamc else f"{pamc / exact:.1f}x larger"


def plot(results: list[dict], path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for v in VARIANTS:
        rows = sorted((r for r in results if r["variant"] == v and r["graph"].isdigit()
                       and r["status"] == "ok"), key=lambda r: int(r["graph"]))
        if not rows:
            continue
        n = [int(r["graph"]) for r in rows]
        axes[0].plot(n, [r["time_per_epoch_s"] for r in rows], "o-", label=v)
        # a run whose peak came while loading the data has ~0 over it: drawn at the 1 MiB floor
        mem = [max(r["peak_over_data_bytes"], MEM_FLOOR) / 2**30 for r in rows]
        line, = axes[1].plot(n, mem, "o-", label=v)
        low = [(x, m) for x, m, r in zip(n, mem, rows) if r["peak_over_data_bytes"] <= MEM_FLOOR]
        if low:
            axes[1].plot(*zip(*low), "v", color=line.get_color(), markersize=10)
    for ax, title in zip(axes, ("time per epoch (s)",
                                "peak memory over data (GiB; ▼ = at most 1 MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("nodes N (SBM)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", nargs=2, metavar=("VARIANT", "GRAPH"))
    p.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    p.add_argument("--physics", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--variants", nargs="*", default=list(VARIANTS[:4]), choices=VARIANTS)
    p.add_argument("--epochs", type=int, default=2,
                   help="epochs per run below 50k nodes (1 above); the fastest is reported")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mem-limit-gb", type=float, default=16.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--table-only", action="store_true")
    args = p.parse_args(argv)
    if args.child:
        _child(args.child[0], args.child[1], args.epochs, args.threads, args.mem_limit_gb,
               args.device)
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{NAME}.json"
    results = json.loads(path.read_text()) if path.exists() else []
    if not args.table_only:
        graphs = [str(n) for n in args.sizes] + (["physics"] if args.physics else [])
        for g in graphs:
            for v in args.variants:
                res = _run(v, g, args)
                res["mem_limit_gb"], res["threads"] = args.mem_limit_gb, args.threads
                results = [r for r in results if not (r["variant"] == v and r["graph"] == g
                                                       and r.get("device", "cpu") == args.device)]
                results.append(res)
                print(json.dumps(res), flush=True)
                path.write_text(json.dumps(results, indent=1))
    cpu = [r for r in results if r.get("device", "cpu") == args.device]
    md = table(cpu)
    (RESULTS / f"{NAME}.md").write_text(md)
    plot(cpu, RESULTS / f"{NAME}.png")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
