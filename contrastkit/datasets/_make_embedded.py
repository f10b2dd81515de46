"""Build ``embedded/cora.npz`` from the Planetoid Cora raw files.

Usage::

    python -m contrastkit.datasets._make_embedded [--root DATA_ROOT] [--out PATH]

The file stores exactly what PyG ``Planetoid(name="Cora")`` produces from the raw files,
before any feature normalisation: the sparse feature matrix as ``x_indices`` (2 x nnz,
row/column) and ``x_values``, ``edge_index``, ``y`` and the public-split masks. Integer
arrays are stored in the smallest lossless dtype and widened again on loading.
The PyG processing happens in a temporary cache folder; the data root is only read.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from .graph import EMBEDDED_DIR, EMBEDDED_FORMAT, graph_source, read_embedded, read_raw
from .root import CACHE_ENV, data_root


def _small_int(values: np.ndarray) -> np.ndarray:
    """Cast a non-negative integer array to the smallest unsigned dtype holding it."""
    top = int(values.max()) if values.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return values.astype(dtype)
    return values.astype(np.int64)


def build(root: str | os.PathLike | None = None, out: str | os.PathLike | None = None) -> Path:
    """Read Cora from ``root`` with PyG and write the embedded ``.npz``; verify it.

    Args:
        root: Data root holding ``graph/planetoid/Cora/raw`` (resolved like ``load``).
        out: Output file; default ``embedded/cora.npz`` inside the package.

    Returns:
        The written file.

    Raises:
        FileNotFoundError: If the raw Cora files are not under ``root``.
        RuntimeError: If the written file does not read back identical.
    """
    src = graph_source("cora")
    path = Path(out) if out is not None else EMBEDDED_DIR / "cora.npz"
    with tempfile.TemporaryDirectory(prefix="contrastkit-embed-") as tmp:
        old = os.environ.get(CACHE_ENV)
        os.environ[CACHE_ENV] = tmp
        try:
            data = read_raw(src, data_root(root), download=False)
        finally:
            if old is None:
                del os.environ[CACHE_ENV]
            else:
                os.environ[CACHE_ENV] = old
    x = data.x.numpy()
    rows, cols = np.nonzero(x)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        format=np.int64(EMBEDDED_FORMAT),
        num_nodes=np.int64(x.shape[0]),
        num_features=np.int64(x.shape[1]),
        x_indices=_small_int(np.stack([rows, cols])),
        x_values=x[rows, cols].astype(np.float32),
        edge_index=_small_int(data.edge_index.numpy()),
        y=_small_int(data.y.numpy()),
        train_mask=data.train_mask.numpy(),
        val_mask=data.val_mask.numpy(),
        test_mask=data.test_mask.numpy(),
    )
    back = read_embedded(src) if out is None else None
    if back is not None:
        for key in ("x", "edge_index", "y", "train_mask", "val_mask", "test_mask"):
            a, b = data[key], back[key]
            if a.dtype != b.dtype or not torch.equal(a, b):
                raise RuntimeError(f"embedded {key} differs from PyG's after writing {path}")
    return path


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=None, help="data root (default: as load())")
    parser.add_argument("--out", default=None, help="output .npz (default: package file)")
    args = parser.parse_args(argv)
    path = build(args.root, args.out)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
