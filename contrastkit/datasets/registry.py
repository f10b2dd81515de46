"""Dataset registry: canonical ids, aliases, domains, and the generic ``load``/``available``.

Every dataset is described by a :class:`DatasetSpec` and added with :func:`register`. A spec
names its domain (``"graph"``, later ``"sequence"`` or ``"timeseries"``) and supplies two
callables, so new domains plug in without touching this module:

* ``loader(root, *, download, normalize_features)`` loads the dataset from the data root
  ``root`` (a resolved :class:`~pathlib.Path`). ``download`` is already resolved to a bool.
  Loaders of domains without node/feature matrices may ignore ``normalize_features``.
* ``locate(root)`` reports where the dataset's files are, as ``(status, path)`` with status
  one of :data:`STATUSES` and path a string or ``None``. It must not load the data.

Names are matched case-insensitively; ``_`` and spaces count as ``-``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from .root import data_root, is_default_root

__all__ = ["STATUSES", "DatasetSpec", "DatasetStatus", "register", "registered",
           "canonical_name", "get_spec", "load", "load_for", "available"]

STATUSES: tuple[str, ...] = ("found", "embedded", "incomplete", "missing")
"""Possible values of :attr:`DatasetStatus.status`."""

Loader = Callable[..., Any]
Locator = Callable[..., "tuple[str, str | None]"]


@dataclass(frozen=True)
class DatasetSpec:
    """Description of one registered dataset.

    Attributes:
        id: Canonical id (lower case, e.g. ``"cora"``).
        domain: ``"graph"``, ``"sequence"`` or ``"timeseries"``.
        description: One-line human-readable description.
        loader: ``loader(root, *, download, normalize_features) -> object``.
        locate: ``locate(root) -> (status, path)``.
        aliases: Other accepted names.
        kind: What the data is within its domain, for methods that take only one kind:
            ``"homogeneous"`` / ``"heterogeneous"`` graphs, ``"forecast"`` /
            ``"classification"`` / ``"patients"`` time series (``""``: the domain says it all).
    """

    id: str
    domain: str
    description: str
    loader: Loader = field(repr=False)
    locate: Locator = field(repr=False)
    aliases: tuple[str, ...] = ()
    kind: str = ""

    @property
    def tag(self) -> str:
        """``"domain:kind"`` (``"domain"`` when the kind is empty), e.g. ``"graph:homogeneous"``."""
        return f"{self.domain}:{self.kind}" if self.kind else self.domain

    def fits(self, accepts: tuple[str, ...] | list[str]) -> bool:
        """Whether a method that takes ``accepts`` (``"domain"`` or ``"domain:kind"`` entries;
        empty: anything) can use this dataset."""
        return not accepts or self.domain in accepts or self.tag in accepts


@dataclass(frozen=True)
class DatasetStatus:
    """Where a dataset stands under a data root (one row of ``contrastkit datasets``).

    Attributes:
        id: Canonical id.
        aliases: Other accepted names.
        domain: ``"graph"`` (later also ``"sequence"``, ``"timeseries"``).
        status: ``"found"`` (files present), ``"embedded"`` (shipped inside the package),
            ``"incomplete"`` (some files present, some missing) or ``"missing"``.
        path: Folder (or embedded file) the data comes from, ``None`` when missing.
        description: One-line description.
    """

    id: str
    aliases: tuple[str, ...]
    domain: str
    status: str
    path: str | None
    description: str


_SPECS: dict[str, DatasetSpec] = {}
_KEYS: dict[str, str] = {}


def _key(name: str) -> str:
    """Normalise a dataset name for lookup: lower case, ``_`` and spaces become ``-``."""
    return "-".join(name.strip().lower().replace("_", " ").replace("-", " ").split())


def register(spec: DatasetSpec, *, replace: bool = False) -> DatasetSpec:
    """Add a dataset to the registry.

    Args:
        spec: The dataset description.
        replace: Allow replacing a spec with the same id (its old names are dropped).

    Returns:
        ``spec``, so this can be used in expressions.

    Raises:
        TypeError: If ``spec`` is not a :class:`DatasetSpec` or its callables are not callable.
        ValueError: If the id is not canonical or a name is already taken.
    """
    if not isinstance(spec, DatasetSpec):
        raise TypeError(f"spec: expected a DatasetSpec, got {type(spec).__name__}")
    if not callable(spec.loader) or not callable(spec.locate):
        raise TypeError(f"spec: expected callable loader and locate for {spec.id!r}, got "
                        f"{type(spec.loader).__name__} and {type(spec.locate).__name__}")
    if not isinstance(spec.id, str) or _key(spec.id) != spec.id or not spec.id:
        raise ValueError(f"spec.id: expected a lower-case id with '-' separators, got {spec.id!r}")
    if spec.id in _SPECS:
        if not replace:
            raise ValueError(f"spec.id: dataset {spec.id!r} is already registered "
                             "(pass replace=True to replace it)")
        for k in [k for k, v in _KEYS.items() if v == spec.id]:
            del _KEYS[k]
        del _SPECS[spec.id]
    keys = {_key(n) for n in (spec.id, *spec.aliases)}
    taken = sorted(k for k in keys if k in _KEYS)
    if taken:
        raise ValueError(f"spec.aliases: names {taken} of {spec.id!r} are already used by "
                         f"{sorted({_KEYS[k] for k in taken})}")
    _SPECS[spec.id] = spec
    for k in keys:
        _KEYS[k] = spec.id
    return spec


def registered(domain: str | None = None) -> list[DatasetSpec]:
    """Return the registered specs in registration order, optionally of one domain.

    Args:
        domain: Only return specs of this domain (``None``: all).

    Returns:
        The matching specs.
    """
    return [s for s in _SPECS.values() if domain is None or s.domain == domain]


def _known() -> str:
    """Describe the known ids and aliases for error messages."""
    parts = []
    for spec in _SPECS.values():
        parts.append(f"{spec.id} ({', '.join(spec.aliases)})" if spec.aliases else spec.id)
    return ", ".join(parts)


def get_spec(name: str) -> DatasetSpec:
    """Look up a dataset by id or alias (case-insensitive).

    Args:
        name: Dataset id or alias, e.g. ``"Cora"`` or ``"amazon-computers"``.

    Returns:
        The registered spec.

    Raises:
        TypeError: If ``name`` is not a string.
        ValueError: If no dataset has this name; the message lists the known ids.
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a dataset name (str), got {type(name).__name__}")
    try:
        return _SPECS[_KEYS[_key(name)]]
    except KeyError:
        raise ValueError(f"name: unknown dataset {name!r}; known ids (aliases): {_known()}") \
            from None


def canonical_name(name: str) -> str:
    """Return the canonical id for a dataset id or alias.

    Args:
        name: Dataset id or alias.

    Returns:
        The canonical id.

    Raises:
        TypeError, ValueError: As :func:`get_spec`.
    """
    return get_spec(name).id


def load(name: str, root: str | os.PathLike | None = None, *, download: bool | None = None,
         normalize_features: bool = True) -> Any:
    """Load a registered dataset.

    For graph datasets this returns a :class:`torch_geometric.data.Data` with ``x``
    (float32; row-normalised like PyG ``NormalizeFeatures`` when ``normalize_features``),
    ``edge_index``, ``y``, ``name`` (canonical id), ``num_classes`` (int) and, where PyG
    provides them (Planetoid, WikiCS), the split masks.

    Args:
        name: Dataset id or alias, case-insensitive (see :func:`available`).
        root: Data root (folder holding ``graph/`` ...); ``None`` resolves it as
            :func:`~contrastkit.datasets.root.data_root` does.
        download: ``None``: download missing files only when the data root is the default
            root ``~/.cache/contrastkit``; ``False``: never; ``True``: download missing files
            (into the default root, or into ``<cache>/downloads`` for any other root).
        normalize_features: Row-normalise node features.

    Returns:
        The loaded dataset.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``name`` is unknown (the message lists the known ids).
        FileNotFoundError: If the files are missing or incomplete and may not be downloaded.
    """
    spec = get_spec(name)
    if download is not None and not isinstance(download, bool):
        raise TypeError(f"download: expected a bool or None, got {type(download).__name__}")
    if not isinstance(normalize_features, bool):
        raise TypeError(f"normalize_features: expected a bool, got "
                        f"{type(normalize_features).__name__}")
    path = data_root(root)
    if download is None:
        download = is_default_root(path)
    return spec.loader(path, download=download, normalize_features=normalize_features)


def compatible(accepts: tuple[str, ...] | list[str]) -> list[DatasetSpec]:
    """The registered datasets a method taking ``accepts`` can use (see :meth:`DatasetSpec.fits`).

    Args:
        accepts: ``"domain"`` or ``"domain:kind"`` entries, e.g. ``("graph:homogeneous",)``.

    Returns:
        The matching specs in registration order.
    """
    return [spec for spec in _SPECS.values() if spec.fits(tuple(accepts))]


def load_for(name: str, *, domain: str, what: str, types: type | tuple[type, ...] = (),
             root: str | os.PathLike | None = None, **kwargs: Any) -> Any:
    """Load a dataset for a method that needs one kind of data.

    The domain is checked before any file is read, so ``train mclrec --dataset cora`` fails at
    once with a message naming what the method takes, not deep inside the method.

    Args:
        name: Dataset id or alias.
        domain: The domain the method needs (``"graph"``, ``"sequence"``, ``"timeseries"``,
            ``"image"``).
        what: What the method takes, for the message, e.g. ``"a graph dataset (cora, ...)"``.
        types: Classes the loaded object must be an instance of (``()``: any), for domains
            that hold several kinds of data (forecasting sets and patient recordings are
            both ``"timeseries"``).
        root: Data root, as for :func:`load`.
        **kwargs: Passed to :func:`load` (``download``, ``normalize_features``).

    Returns:
        The loaded dataset.

    Raises:
        ValueError: ``"dataset: expected <what>, got '<name>' (...)"`` when the domain or the
            loaded type does not match, or as :func:`load`.
    """
    spec = get_spec(name)
    if spec.domain != domain:
        raise ValueError(f"dataset: expected {what}, got {name!r} (a {spec.domain} dataset)")
    data = load(spec.id, root, **kwargs)
    if types and not isinstance(data, types):
        raise ValueError(f"dataset: expected {what}, got {name!r} ({type(data).__name__})")
    return data


def available(root: str | os.PathLike | None = None) -> list[DatasetStatus]:
    """Report, for every registered dataset, whether its files are present.

    Args:
        root: Data root; ``None`` resolves it as
            :func:`~contrastkit.datasets.root.data_root` does.

    Returns:
        One :class:`DatasetStatus` per registered dataset, in registration order.

    Raises:
        TypeError, ValueError, FileNotFoundError: If ``root`` is invalid (see ``data_root``).
    """
    path = data_root(root)
    out = []
    for spec in _SPECS.values():
        status, where = spec.locate(path)
        if status not in STATUSES:  # a broken plug-in, not a user error
            raise ValueError(f"status: expected one of {list(STATUSES)} from the locate() of "
                             f"{spec.id!r}, got {status!r}")
        out.append(DatasetStatus(spec.id, tuple(spec.aliases), spec.domain, status, where,
                                 spec.description))
    return out
