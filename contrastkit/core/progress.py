"""Progress bars: a live tqdm bar on a terminal or in a notebook, sparse lines in a log.

tqdm redraws its bar with carriage returns up to ten times a second. On a terminal that is one
line; in a file (``contrastkit train ... 2> log``, ``nohup``, a CI console) every redraw stays,
so a 200-epoch run left ~400 redraws on one line. When the bar's stream is not a terminal (and
tqdm did not pick its notebook widget), :func:`progress_bar` redraws at most every
:data:`LOG_INTERVAL_S` seconds (the first and last states are always written).
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


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
    """A ``tqdm.auto`` bar; in a log, redrawn at most every :data:`LOG_INTERVAL_S` seconds.

    Args:
        iterable: what to iterate over (``None``: update the bar by hand, ``total=`` given).
        **kwargs: passed to tqdm; an explicit ``mininterval`` wins.

    Returns:
        The tqdm bar.
    """
    from tqdm.auto import tqdm
    if writes_to_log(kwargs.get("file")):
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
    return tqdm(iterable, **kwargs)
