"""gCooL with POT on your own graph: any PyG ``Data`` with ``x`` and ``edge_index`` (``y`` to score).

    python examples/node_classification.py                 # 3 planted communities, 100 epochs
    python examples/node_classification.py --epochs 20 --seed 1
"""
import argparse

import torch
import torch.nn.functional as F
from torch_geometric.data import Data
from torch_geometric.utils import stochastic_blockmodel_graph

from contrastkit.core.probes import random_split, torch_lr_probe
from contrastkit.core.trainer import Trainer
from contrastkit.graphcl.gcool import GCooL, GCooLConfig


def demo_graph(seed: int) -> Data:
    """Your graph goes here; this one has 3 planted communities of 200 nodes, noisy features."""
    torch.manual_seed(seed)
    y = torch.arange(3).repeat_interleave(200)
    p = torch.full((3, 3), 0.004).fill_diagonal_(0.04)
    return Data(x=torch.randn(600, 32) + 0.5 * F.one_hot(y, 32), y=y,
                edge_index=stochastic_blockmodel_graph([200, 200, 200], p))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=100, help="training epochs (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the graph and the training")
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error(f"--epochs must be a positive integer, got {args.epochs}")

    data = demo_graph(args.seed)
    config = GCooLConfig(dataset="mine", hidden_channels=64, projection_channels=64,
                         epochs=args.epochs, lr=1e-3, num_communities=3, stride=200, pot=True,
                         pot_kappa=0.3)
    method = GCooL(config, in_channels=data.num_features)
    # The loss on the progress bar rises over the first 40 steps although the node term falls:
    # the community terms (DeCA is negative) fade out on gCooL's schedule (weight
    # 1 - step / (0.2 stride)).
    Trainer(config.epochs, seed=args.seed).fit(method, [data])

    method.eval()
    embeddings = method.embed(data)                      # [N, hidden_channels]
    train, val, test = random_split(data.num_nodes, 0.1, 0.1, seed=args.seed)
    print("linear probe:", torch_lr_probe(embeddings, data.y, train, val, test))
    print("community sizes:", torch.bincount(method.communities(data), minlength=3).tolist())


if __name__ == "__main__":
    main()
