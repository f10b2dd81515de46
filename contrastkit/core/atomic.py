"""Atomic file writes: a file is either the old one or the complete new one, never half written.

:func:`atomic_write` opens a uniquely named temporary file in the target's folder; when the
``with`` block ends without an error the data is flushed, ``fsync``-ed and the temporary file is
moved over the target with :func:`os.replace` (atomic on POSIX and Windows within one file
system), then the folder is ``fsync``-ed so the rename itself survives a crash. On an error the
temporary file is removed and an existing target is left untouched. Concurrent writers never share
a temporary file, so the last complete write wins. The new file keeps an existing target's
permissions, and otherwise gets those of a plain ``open(path, "w")`` (``0o666`` less the umask),
not the owner-only ``0o600`` of a temporary file.

Used for checkpoints (:func:`contrastkit.core.checkpoint.save_checkpoint`), saved configs
(:func:`contrastkit.core.config.save_config`) and the CLI's ``embeddings.pt`` / ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_write", "fsync_dir"]


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename inside ``folder`` durable (best effort: not every platform can open a folder).

    Args:
        folder: the folder whose entries changed.
    """
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_file_mode() -> int:
    """The permission bits ``open(path, "w")`` would give a new file: ``0o666`` less the umask
    (read from ``/proc`` where it can be, so the process umask is not touched)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *,
                 encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` atomically when the block succeeds.

    Example::

        with atomic_write(out / "embeddings.pt") as fh:
            torch.save(tensor, fh)

    Args:
        path: the target file; its parent folder is created if needed.
        mode: ``"wb"`` (binary, default) or ``"w"`` (text).
        encoding: text encoding for ``mode="w"`` (default ``"utf-8"``); not allowed with ``"wb"``.

    Yields:
        The open temporary file (in ``path``'s folder, named ``.<name>.<random>.tmp``).

    Raises:
        TypeError: ``path`` is not a str or path-like.
        ValueError: ``mode`` is not ``"wb"`` or ``"w"``, or ``encoding`` is given with ``"wb"``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    if mode not in ("wb", "w"):
        raise ValueError(f"mode: expected 'wb' or 'w', got {mode!r}")
    if mode == "wb" and encoding is not None:
        raise ValueError(f"encoding: expected None for binary mode 'wb', got {encoding!r}")
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        try:
            fh = (os.fdopen(fd, "w", encoding=encoding or "utf-8", newline="") if mode == "w"
                  else os.fdopen(fd, "wb"))
        except BaseException:
            os.close(fd)
            raise
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        except FileNotFoundError:
            os.chmod(tmp, _new_file_mode())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(folder)
