"""Train a sequential recommender on your own (user, item, timestamp) CSV and recommend items.

    python examples/sequential_recommendation.py --csv my_log.csv --user alice
    python examples/sequential_recommendation.py --method mclrec --epochs 5   # demo: MovieLens-100K

The CSV needs a user, an item and a numeric timestamp column (``--user-col`` etc. take a header
name or a 0-based index). Without ``--csv`` the demo writes MovieLens-100K's ratings (with their
timestamps) from the shared data to a temporary CSV. Training follows the benchmark protocol
(leave-one-out, validation-selected epoch); the printed top-10 uses each user's whole history.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import tempfile
from pathlib import Path

import torch

from contrastkit.datasets.sequence import read_interactions_csv
from contrastkit.registry import RunContext, get_method
from contrastkit.seqcl.mclrec import MCLRec
from contrastkit.seqcl.sasrec import CL4SRec, SASRec, fit_seqrec, recommend

METHODS = {"sasrec": SASRec, "cl4srec": CL4SRec, "mclrec": MCLRec}


def demo_csv() -> Path:
    """MovieLens-100K ratings as a ``user,item,timestamp`` CSV (from the shared data)."""
    from contrastkit.datasets import data_root
    src = Path(data_root(None)) / "sequence" / "ml-100k" / "ml-100k.inter.gz"
    out = Path(tempfile.mkdtemp()) / "ml100k_log.csv"
    with gzip.open(src, "rt") as fin, out.open("w", newline="") as fout:
        w = csv.writer(fout)
        w.writerow(["user", "item", "timestamp"])
        next(fin)
        for line in fin:
            u, i, _, t = line.rstrip("\n").split("\t")
            w.writerow([u, i, t])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--csv", type=Path, help="your (user, item, timestamp) CSV")
    ap.add_argument("--user-col", default="user")
    ap.add_argument("--item-col", default="item")
    ap.add_argument("--time-col", default="timestamp")
    ap.add_argument("--user", help="user to recommend for (default: the first one)")
    ap.add_argument("--method", choices=sorted(METHODS), default="sasrec")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--max-train-samples", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    path = args.csv or demo_csv()

    def col(c: str):
        return int(c) if c.isdigit() else c

    data = read_interactions_csv(path, user_col=col(args.user_col), item_col=col(args.item_col),
                                 time_col=col(args.time_col), min_interactions=3)
    print(f"{path}: {data.num_users} users, {data.num_items} items, "
          f"{data.num_interactions} interactions")
    spec = get_method(args.method)
    config = spec.config_cls(dataset=data.name, epochs=args.epochs,
                             max_train_samples=args.max_train_samples)
    ctx = RunContext(out_dir=None, device=args.device, seed=0, progress=True)
    method, metrics, _ = fit_seqrec(METHODS[args.method], config, data, ctx)
    print({k: round(v, 4) for k, v in metrics.items() if k.startswith(("hr@", "ndcg@", "mrr@"))})

    user = args.user if args.user is not None else data.users[0]
    keys = [str(u) for u in data.users]
    if str(user) not in keys:
        raise SystemExit(f"--user: {user!r} is not in {path} (or has fewer than 3 interactions)")
    history = data.sequences[keys.index(str(user))]
    items, scores = recommend(method, history, k=10, exclude_history=True)
    names = data.item_ids
    print(f"user {user}: last items {[names[i - 1] for i in history[-5:]]}")
    print("top-10 recommendations (not already seen):")
    for rank, (i, s) in enumerate(zip(items, scores), 1):
        print(f"  {rank:2d}. item {names[i - 1]}  (score {s:.3f})")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
