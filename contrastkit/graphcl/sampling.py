"""Mini-batches of graphs that do not fit full batch: seed nodes with sampled neighbourhoods.

:class:`NeighborBatches` yields, for each batch of seed nodes, the subgraph of their sampled
``k``-hop neighbourhood as a :class:`~torch_geometric.data.Data` in PyG's ``NeighborLoader``
convention: the seeds come first, ``batch.batch_size`` says how many, ``batch.n_id`` maps local
rows to global node ids. A ``k``-layer GCN on the batch gives exact-for-the-sample embeddings
for the seeds, and a method computes its loss on ``z[:batch.batch_size]``.

PyG's ``NeighborLoader`` needs ``pyg-lib`` or ``torch-sparse`` (no wheels for every platform);
when neither is installed this module samples in pure torch: per hop, up to ``fanout``
in-neighbours of each frontier node, drawn uniformly *with* replacement and de-duplicated (so a
node keeps at most ``fanout`` distinct neighbours; ``-1`` keeps all). ``backend="pyg"`` forces
PyG's loader (sampling without replacement).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data


def _pyg_sampler_available() -> bool:
    try:
        import pyg_lib  # noqa: F401
        return True
    except ImportError:
        pass
    try:
        import torch_sparse  # noqa: F401
        return True
    except ImportError:
        return False


class NeighborBatches:
    """Re-iterable mini-batches of seed nodes with sampled neighbourhoods.

    Args:
        data: the full graph (``x``, ``edge_index``; other node attributes of size ``N`` are
            sliced too).
        batch_size: seed nodes per batch.
        num_neighbors: fanout per hop, e.g. ``(10, 10)`` for a 2-layer GCN (``-1``: all).
        shuffle: shuffle the seeds each epoch (global torch generator, so exact resume holds).
        backend: ``"auto"`` (PyG's loader when available, else pure torch), ``"torch"``,
            ``"pyg"``.
    """

    def __init__(self, data: Data, batch_size: int, num_neighbors: Sequence[int] = (10, 10),
                 shuffle: bool = True, backend: str = "auto") -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        fan = list(num_neighbors)
        if not fan or any(isinstance(f, bool) or not isinstance(f, int) or (f < 1 and f != -1)
                          for f in fan):
            raise ValueError(f"num_neighbors: expected a non-empty list of positive ints or -1, "
                             f"got {num_neighbors!r}")
        if backend not in ("auto", "torch", "pyg"):
            raise ValueError(f"backend: expected 'auto', 'torch' or 'pyg', got {backend!r}")
        if backend == "pyg" and not _pyg_sampler_available():
            raise ValueError("backend: 'pyg' needs pyg-lib or torch-sparse installed; use "
                             "'torch' (pure-torch sampler) instead")
        self.data, self.batch_size, self.num_neighbors, self.shuffle = data, batch_size, fan, shuffle
        self.backend = ("pyg" if _pyg_sampler_available() else "torch") if backend == "auto" \
            else backend
        n = data.num_nodes
        src, dst = data.edge_index
        order = torch.argsort(dst, stable=True)  # in-neighbours of each node, grouped
        self._nbr = src[order]
        self._ptr = torch.zeros(n + 1, dtype=torch.long)
        self._ptr[1:] = torch.cumsum(torch.bincount(dst, minlength=n), 0)

    def __len__(self) -> int:
        return -(-self.data.num_nodes // self.batch_size)

    def __iter__(self) -> Iterator[Data]:
        n = self.data.num_nodes
        seeds_all = torch.randperm(n) if self.shuffle else torch.arange(n)
        if self.backend == "pyg":
            from torch_geometric.loader import NeighborLoader
            loader = NeighborLoader(self.data, num_neighbors=self.num_neighbors,
                                    input_nodes=seeds_all, batch_size=self.batch_size,
                                    shuffle=False)
            yield from loader
            return
        for seeds in seeds_all.split(self.batch_size):
            yield self.sample(seeds)

    def sample(self, seeds: Tensor) -> Data:
        """The sampled subgraph of ``seeds [B]`` (seeds first, ``batch_size = B``)."""
        n = self.data.num_nodes
        local = torch.full((n,), -1, dtype=torch.long)
        local[seeds] = torch.arange(seeds.numel())
        nodes = [seeds]
        count = seeds.numel()
        frontier = seeds
        edges_src, edges_dst = [], []
        for fanout in self.num_neighbors:
            start, deg = self._ptr[frontier], self._ptr[frontier + 1] - self._ptr[frontier]
            if fanout == -1:
                owner = torch.repeat_interleave(torch.arange(frontier.numel()), deg)
                offset = torch.arange(owner.numel()) - torch.repeat_interleave(
                    torch.cumsum(deg, 0) - deg, deg)
            else:
                k = torch.clamp(deg, max=fanout)
                owner = torch.repeat_interleave(torch.arange(frontier.numel()), k)
                # all neighbours when deg <= fanout, else fanout uniform draws (then de-duplicated)
                take_all = (deg <= fanout)[owner]
                pos_in = torch.arange(owner.numel()) - torch.repeat_interleave(
                    torch.cumsum(k, 0) - k, k)
                draw = (torch.rand(owner.numel()) * deg[owner]).long()
                offset = torch.where(take_all, pos_in, draw)
            nbr = self._nbr[start[owner] + offset]
            dst = frontier[owner]
            pair = torch.unique(torch.stack([nbr, dst]), dim=1)
            nbr, dst = pair[0], pair[1]
            new = torch.unique(nbr[local[nbr] < 0])
            local[new] = torch.arange(count, count + new.numel())
            count += new.numel()
            nodes.append(new)
            edges_src.append(nbr)
            edges_dst.append(dst)
            frontier = new
            if frontier.numel() == 0:
                break
        n_id = torch.cat(nodes)
        edge_index = torch.stack([local[torch.cat(edges_src)], local[torch.cat(edges_dst)]])
        batch = Data(edge_index=edge_index, num_nodes=n_id.numel())
        for key, value in self.data.items():
            if key == "edge_index" or not isinstance(value, Tensor):
                continue
            if value.dim() >= 1 and value.size(0) == n:
                batch[key] = value[n_id]
        batch.n_id, batch.batch_size = n_id, int(seeds.numel())
        return batch
