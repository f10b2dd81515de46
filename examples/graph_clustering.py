"""Cluster your own graph with PamC: any PyG ``Data`` with ``x`` and ``edge_index``.

Prints the clustering metrics when the graph has labels ``y`` and saves a 2-D map of the
learnt embeddings (t-SNE up to 5,000 nodes, else PCA), coloured by cluster, to a PNG.

    python examples/graph_clustering.py                    # a planted-partition toy graph
    python examples/graph_clustering.py --graph my.pt      # torch.save(Data(...), "my.pt")
    python examples/graph_clustering.py --graph my.pt --clusters 7 --out clusters.png
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.utils import stochastic_blockmodel_graph

from contrastkit.graphcl.pamc import PAMC_PRESETS, PamCConfig, nearest_official, run
from contrastkit.registry import RunContext


def toy_graph() -> Data:
    """4 planted communities of 150 nodes, noisy 32-d features (k-means on them: NMI ~ 55)."""
    torch.manual_seed(0)
    y = torch.arange(4).repeat_interleave(150)
    centers = torch.randn(4, 32)
    p = torch.full((4, 4), 0.003).fill_diagonal_(0.03)
    return Data(x=torch.randn(600, 32) + 0.4 * centers[y], y=y,
                edge_index=stochastic_blockmodel_graph([150] * 4, p))


def load_graph_file(path: str) -> Data:
    """A ``torch.save``'d PyG ``Data``, read with ``weights_only=True`` (PyG's data classes
    allowed, nothing else unpickled)."""
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage

    try:
        with torch.serialization.safe_globals([Data, DataEdgeAttr, DataTensorAttr,
                                               GlobalStorage]):
            obj = torch.load(path, weights_only=True)
    except Exception as err:  # missing, not a torch.save file, or objects other than PyG's
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"--graph: could not read a torch.save'd torch_geometric Data from "
                         f"{path} ({type(err).__name__}: {first})") from None
    if not isinstance(obj, Data) or obj.x is None or obj.edge_index is None:
        raise TypeError(f"--graph: expected a torch.save'd torch_geometric Data with x and "
                        f"edge_index, got {type(obj).__name__} from {path}")
    return obj


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--graph", help="a torch.save'd torch_geometric Data (default: a toy graph)")
    ap.add_argument("--clusters", type=int, help="number of clusters (default: classes in y)")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--out", default="graph_clusters.png")
    args = ap.parse_args()

    try:
        data = toy_graph() if args.graph is None else load_graph_file(args.graph)
    except (TypeError, ValueError) as err:
        ap.error(str(err))
    if args.clusters is None and getattr(data, "y", None) is None:
        ap.error("--clusters is required when the graph has no labels y")
    data.num_classes = args.clusters or int(data.y.max()) + 1
    # hyperparameters of the nearest official dataset in (log N, log F): no labels used
    preset = PAMC_PRESETS[nearest_official(data.num_nodes, data.num_features)]
    config = PamCConfig(dataset="mine", epochs=args.epochs, **preset)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(config, RunContext(out_dir=tmp, device="cpu", seed=0, progress=True),
                     data=data)
    for k, v in result.metrics.items():
        print(f"{k:>28s}: {v:.4f}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    emb = result.embeddings.numpy()
    pred = KMeans(data.num_classes, n_init=10, random_state=0).fit_predict(emb)
    two_d = (TSNE(2, random_state=0, init="pca").fit_transform(emb) if len(emb) <= 5000
             else PCA(2).fit_transform(emb))
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(two_d[:, 0], two_d[:, 1], c=pred, s=4, cmap="tab10")
    ax.set_title(f"k-means on PamC embeddings ({data.num_nodes} nodes, "
                 f"{len(np.unique(pred))} clusters)")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.savefig(args.out, dpi=120, bbox_inches="tight")
    print("saved", args.out)


if __name__ == "__main__":
    main()
