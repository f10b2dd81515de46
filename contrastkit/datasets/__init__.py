"""Real benchmark datasets: one registry, one ``load``, one ``available``.

Graph datasets (PyTorch Geometric) are registered by :mod:`.graph`; other domains
(sequence, time series) register theirs the same way with :func:`register`.

Example:
    >>> from contrastkit import datasets
    >>> data = datasets.load("cora")          # works offline: Cora is embedded
    >>> data.num_nodes, data.num_classes
    (2708, 7)
    >>> [s.id for s in datasets.available() if s.status == "found"]  # doctest: +SKIP
"""

from . import graph as _graph  # noqa: F401  (registers the graph datasets)
from . import medical as _medical  # noqa: F401  (registers the medical time series)
from . import timeseries as _timeseries  # noqa: F401  (registers ETT, UCR, UEA, ...)
from . import hetero as _hetero  # noqa: F401  (registers the heterogeneous graph datasets)
from . import sdcn as _sdcn  # noqa: F401  (registers SDCN-format clustering graphs, dblp-apa)
from . import sequence as _sequence  # noqa: F401  (registers beauty, sports, toys, yelp, ...)
from . import images as _images  # noqa: F401  (registers fashion-mnist, cifar10/100, stl10)
from .registry import (STATUSES, DatasetSpec, DatasetStatus, available, canonical_name,
                       compatible, get_spec, load, load_for, register, registered)
from .root import CACHE_ENV, DATA_ENV, cache_root, data_root, default_root, download_root

__all__ = [
    "load", "load_for", "available", "data_root", "cache_root", "default_root", "download_root",
    "DatasetStatus", "DatasetSpec", "STATUSES", "register", "registered", "get_spec",
    "canonical_name", "compatible", "DATA_ENV", "CACHE_ENV",
]
