"""GRACE on Cora from Python: load, declare, train with the shared Trainer, probe.

    python examples/grace_cora.py [--epochs 200] [--seed 0]

Cora comes from the data root (``$CONTRASTKIT_DATA`` or ``../shared/data``) or, without one,
from the copy embedded in the package, so this runs offline.
"""

from __future__ import annotations

import argparse

import torch

from contrastkit.core.trainer import Trainer
from contrastkit.datasets import load
from contrastkit.graphcl.grace import GRACE, GRACE_PRESETS, GRACEConfig, evaluate_embeddings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/example-grace-cora")
    args = p.parse_args()

    data = load("cora")
    config = GRACEConfig(**dict(GRACE_PRESETS["cora"], epochs=args.epochs))
    torch.manual_seed(args.seed)
    method = GRACE(config, data.num_features)
    trainer = Trainer(config.epochs, seed=args.seed, out_dir=args.out)
    trainer.fit(method, [data])
    method.eval()
    metrics = evaluate_embeddings(config, method.embed(data), data, seed=args.seed)
    print({k: round(v, 4) for k, v in metrics.items()})
    print(f"time per epoch: {trainer.stats['time_per_epoch_s']:.3f} s")


if __name__ == "__main__":
    main()
