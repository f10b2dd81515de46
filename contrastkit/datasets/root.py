"""Where datasets live: the data root, the default root and the PyG cache root.

The *data root* is the folder that holds ``graph/``, ``sequence/`` and ``timeseries/``.
It is resolved in this order:

1. the ``root`` argument,
2. the environment variable ``CONTRASTKIT_DATA``,
3. ``../shared/data`` relative to the current working directory, when that folder exists,
4. the default root ``~/.cache/contrastkit`` (where datasets are downloaded for users with
   network access).

A data root other than the default root is treated as read-only: nothing is ever written
into it. PyTorch Geometric writes a ``processed/`` folder next to ``raw/``, so graph datasets
are processed inside the *cache root* (``CONTRASTKIT_CACHE``, default
``~/.cache/contrastkit/pyg``), whose ``raw/`` folders hold symbolic links to the real files.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "CONTRASTKIT_DATA"
"""Environment variable naming the data root."""

CACHE_ENV = "CONTRASTKIT_CACHE"
"""Environment variable naming the cache root."""

__all__ = ["DATA_ENV", "CACHE_ENV", "default_root", "cache_root", "data_root",
           "download_root", "is_default_root"]


def _to_path(name: str, value: object) -> Path:
    """Turn a ``str`` or ``os.PathLike`` into an absolute, user-expanded :class:`Path`.

    Args:
        name: Name of the argument (or environment variable) used in error messages.
        value: The value to convert.

    Returns:
        The absolute path (symbolic links resolved).

    Raises:
        TypeError: If ``value`` is neither a string nor a path-like object.
        ValueError: If ``value`` is an empty string.
    """
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a str or os.PathLike path, got {type(value).__name__}")
    text = os.fspath(value)
    if isinstance(text, bytes):
        raise TypeError(f"{name}: expected a str or os.PathLike path, got a bytes path {text!r}")
    if not text.strip():
        raise ValueError(f"{name}: expected a non-empty path, got {text!r}")
    return Path(text).expanduser().resolve()


def default_root() -> Path:
    """Return the default data root, ``~/.cache/contrastkit`` (it may not exist yet).

    Returns:
        The absolute default data root.
    """
    return (Path.home() / ".cache" / "contrastkit").resolve()


def cache_root() -> Path:
    """Return the cache root where PyG datasets are processed.

    ``CONTRASTKIT_CACHE`` when set, else ``~/.cache/contrastkit/pyg``. The folder is not
    created here.

    Returns:
        The absolute cache root.

    Raises:
        TypeError, ValueError: If ``CONTRASTKIT_CACHE`` is set to an empty string.
    """
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return _to_path(f"environment variable {CACHE_ENV}", env)
    return default_root() / "pyg"


def download_root() -> Path:
    """Return the writable data root that downloads go to when the data root is read-only.

    It has the same layout as a data root (``graph/planetoid/Cora/raw`` ...) and lives at
    ``<cache root>/downloads``.

    Returns:
        The absolute download root.
    """
    return cache_root() / "downloads"


def is_default_root(root: str | os.PathLike) -> bool:
    """Return whether ``root`` is the default (writable, download-enabled) data root.

    Args:
        root: A data root.

    Returns:
        ``True`` when ``root`` resolves to :func:`default_root`.
    """
    return _to_path("root", root) == default_root()


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve the data root (the folder holding ``graph/``, ``sequence/``, ``timeseries/``).

    Order: the ``root`` argument, else ``CONTRASTKIT_DATA``, else ``../shared/data``
    relative to the current working directory when it exists, else :func:`default_root`.

    Args:
        root: Explicit data root, or ``None`` to resolve it from the environment.

    Returns:
        The absolute data root. The default root is returned even if it does not exist yet.

    Raises:
        TypeError: If ``root`` is not a str, ``os.PathLike`` or ``None``.
        ValueError: If ``root`` or ``CONTRASTKIT_DATA`` is an empty string.
        FileNotFoundError: If ``root`` or ``CONTRASTKIT_DATA`` names a folder that does not
            exist (other than the default root, which is created on first download).
    """
    if root is not None:
        path, source = _to_path("root", root), "root"
    elif os.environ.get(DATA_ENV) is not None:
        source = f"environment variable {DATA_ENV}"
        path = _to_path(source, os.environ[DATA_ENV])
    else:
        shared = Path.cwd().parent / "shared" / "data"
        return shared.resolve() if shared.is_dir() else default_root()
    if path == default_root():
        return path
    if not path.is_dir():
        what = "a file" if path.exists() else "nothing"
        raise FileNotFoundError(
            f"{source}: expected an existing data folder (holding graph/, sequence/, "
            f"timeseries/), got {str(path)!r}, where there is {what}")
    return path
