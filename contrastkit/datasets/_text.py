"""Reading numeric text files so that a malformed file is an error naming the file and line.

:func:`loadtxt` is :func:`numpy.loadtxt` (same result, same speed on a valid file); when numpy
cannot parse the file, the file is scanned again line by line (only then) to find the first bad
line, and the ``ValueError`` names the file, the line number (1-based, counting every line of
the file) and what was expected. :func:`data_line_numbers` maps data rows back to file lines for
errors found after parsing (an id out of range, say).
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any, Callable, Iterator, Union

import numpy as np

__all__ = ["loadtxt", "data_line_numbers"]

Source = Union[str, Path, Callable[[], IO[Any]]]


def _lines(source: Source) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every line of ``source`` (a path, ``.gz`` included, or a
    callable that opens a binary or text stream)."""
    if callable(source):
        fh = source()
    else:
        p = str(source)
        if p.endswith(".gz"):
            import gzip
            fh = gzip.open(p, "rt", encoding="utf-8", errors="replace")
        else:
            fh = open(p, encoding="utf-8", errors="replace")
    with fh:
        for lineno, line in enumerate(fh, 1):
            if isinstance(line, bytes):
                line = line.decode("utf-8", errors="replace")
            yield lineno, line


def _fields(line: str, delimiter: str | None, comments: str | None) -> list[str] | None:
    """The fields of one line as numpy's reader sees it, or ``None`` for a line it skips."""
    if comments and comments in line:
        line = line[:line.index(comments)]
    if not line.strip():
        return None
    return line.strip("\r\n").split(delimiter) if delimiter is not None else line.split()


def data_line_numbers(source: Source, *, delimiter: str | None = None,
                      comments: str | None = "#") -> list[int]:
    """The file line number of each data row :func:`loadtxt` returns (row ``i`` -> line
    ``out[i]``); comment and blank lines are skipped as numpy skips them."""
    return [n for n, line in _lines(source) if _fields(line, delimiter, comments) is not None]


def _converts(field: str, dtype: np.dtype) -> bool:
    try:
        np.array([field.strip()]).astype(dtype)
    except (ValueError, OverflowError):
        return False
    return True


def _first_bad_line(source: Source, dtype: np.dtype, delimiter: str | None,
                    comments: str | None) -> tuple[int, str] | None:
    first: tuple[int, int] | None = None  # (line, number of fields) of the first data line
    kind = "an integer" if np.issubdtype(dtype, np.integer) else "a number"
    for lineno, line in _lines(source):
        fields = _fields(line, delimiter, comments)
        if fields is None:
            continue
        if first is None:
            first = (lineno, len(fields))
        elif len(fields) != first[1]:
            return lineno, (f"expected {first[1]} fields as on line {first[0]}, got "
                            f"{len(fields)} in {line.strip()[:80]!r}")
        for col, field in enumerate(fields, 1):
            if not _converts(field, dtype):
                return lineno, (f"field {col}: expected {kind}, got {field.strip()[:40]!r} "
                                f"in {line.strip()[:80]!r}")
    return None


def loadtxt(source: Source, *, name: str | None = None, dtype: Any = np.float64,
            ndmin: int = 0, delimiter: str | None = None, comments: str | None = "#"
            ) -> np.ndarray:
    """:func:`numpy.loadtxt` whose parse errors name the file and the line.

    Args:
        source: a path (``.gz`` read as gzip text) or a callable returning an open stream (a
            zip member, e.g. ``lambda: zipfile.open(member)``), called again to locate an error.
        name: what the error calls the file (default: the path).
        dtype, ndmin, delimiter, comments: as for :func:`numpy.loadtxt`.

    Raises:
        ValueError: ``"<file>, line <n>: field <k>: expected a number, got 'x' in '...'"`` or
            ``"<file>, line <n>: expected 2 fields as on line 1, got 3 ..."``.
    """
    label = name or str(source)
    try:
        return np.loadtxt(source() if callable(source) else source, dtype=dtype, ndmin=ndmin,
                          delimiter=delimiter, comments=comments)
    except ValueError as err:
        bad = _first_bad_line(source, np.dtype(dtype), delimiter, comments)
        if bad is not None:
            raise ValueError(f"{label}, line {bad[0]}: {bad[1]}") from None
        raise ValueError(f"{label}: {err}") from None
