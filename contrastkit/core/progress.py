"""Progress bars: a live tqdm bar on a terminal or in a notebook, sparse lines in a log.

tqdm redraws its bar with carriage returns up to ten times a second. On a terminal that is one
line; in a file (``contrastkit train ... 2> log``, ``nohup``, a CI console) every redraw stays,
so a 200-epoch run left ~400 redraws on one line. When the bar's stream is not a terminal (and
tqdm did not pick its notebook widget), :func:`progress_bar` redraws at most every
:data:`LOG_INTERVAL_S` seconds (the first and last states are always written), also when tqdm's
monitor thread would force a refresh (its ``maxinterval``, 10 s by default), and writes each
redraw as its own line (no carriage returns), so ``tail -f`` and CI consoles show one state per line.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable

#: seconds between redraws when the bar writes to a file or pipe rather than a terminal
LOG_INTERVAL_S = 30.0


def writes_to_log(file: Any = None) -> bool:
    """Whether a bar on ``file`` (default: ``sys.stderr``, tqdm's) lands in a log, not a terminal.

    Args:
        file: the stream the bar writes to; ``None`` for ``sys.stderr``.

    Returns:
        ``True`` when the stream is not a TTY and tqdm would not draw a notebook widget.
    """
    from tqdm.auto import tqdm
    from tqdm.notebook import tqdm as notebook_tqdm
    if issubclass(tqdm, notebook_tqdm):
        return False
    stream = sys.stderr if file is None else file
    isatty = getattr(stream, "isatty", None)
    try:
        return not (callable(isatty) and isatty())
    except ValueError:  # a closed stream
        return True


class _LineStream:
    """A stream wrapper that turns tqdm's ``\\r``-prefixed redraws into one line each."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").rstrip()
        if line:
            self._stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        flush = getattr(self._stream, "flush", None)
        if callable(flush):
            flush()

    def isatty(self) -> bool:
        return False


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
    """A ``tqdm.auto`` bar; in a log, one line at most every :data:`LOG_INTERVAL_S` seconds.

    Args:
        iterable: what to iterate over (``None``: update the bar by hand, ``total=`` given).
        **kwargs: passed to tqdm; an explicit ``mininterval`` wins.

    Returns:
        The tqdm bar.
    """
    from tqdm.auto import tqdm
    if writes_to_log(kwargs.get("file")):
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
        kwargs.setdefault("maxinterval", max(float(kwargs["mininterval"]), LOG_INTERVAL_S))
        kwargs["file"] = _LineStream(sys.stderr if kwargs.get("file") is None else kwargs["file"])
        kwargs.pop("dynamic_ncols", None)  # no terminal width to follow
    return tqdm(iterable, **kwargs)
