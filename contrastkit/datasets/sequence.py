r"""Sequential-recommendation datasets and the leave-one-out protocol of SASRec / CL4SRec / MCLRec.

Registered dataset ids (domain ``"sequence"``, case-insensitive), read from
``<data root>/sequence/``:

==========  ==================================  =====================================
id          file                                 notes
==========  ==================================  =====================================
beauty      ``Beauty.txt``                       Amazon Beauty 5-core (22,363 users)
sports      ``Sports_and_Outdoors.txt``          Amazon Sports 5-core (35,598 users)
toys        ``Toys_and_Games.txt``               Amazon Toys 5-core (19,412 users)
yelp        ``Yelp.txt``                         for users who have the file
ml-100k     ``ml-100k/ml-100k.txt``              MovieLens-100K (stand-in for ML-1M)
taobao      ``Taobao.txt``                       repeats allowed, 2 unused item ids
==========  ==================================  =====================================

Any other ``NAME.txt`` in that folder, in the same format, is registered as ``name`` (when the
name is free). :func:`read_sequence_file` reads such a file anywhere and :func:`read_interactions_csv`
reads a user's own CSV of ``(user, item, timestamp)`` rows (ids of any kind are re-indexed,
items from 1, in order of first appearance).

File format: one user per line, ``user_id item_id item_id ...``, items in chronological order,
item ids positive integers (0 is free for padding).

Protocol (spec ``sasrec_cl4srec.md`` Section 3, RecBole ``TO_LS,full``): per user the last item is
the test target, the second-to-last the validation target, every earlier item a training target
of the prefix before it (prefix expansion, histories truncated to the last ``max_len = 50``
items, stored **left-aligned**: items at positions ``0..n-1``, zero padding after, the
representation read at ``n - 1``). Embedding tables are sized by the maximum item id
(``num_items + 1`` rows including padding, plus one ``[mask]`` row for CL4SRec).

Users too short for the protocol are a documented skip: a user with fewer than 3 items cannot
have a validation and a test target that both follow a non-empty history, and is dropped from
every split (counted in ``SequenceSplits.skipped_users``; a user with 3 items is evaluated but has
no training target). Empty sequences and non-positive item ids
raise ``ValueError``.

Example:
    >>> from contrastkit import datasets
    >>> data = datasets.load("beauty")                  # doctest: +SKIP
    >>> splits = data.split(max_len=50)                # doctest: +SKIP
    >>> splits.num_train, splits.valid.targets.shape   # doctest: +SKIP
    (131413, torch.Size([22363]))
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import Tensor

from .registry import DatasetSpec, register

__all__ = ["SequenceData", "SequenceSplits", "EvalSet", "PrefixBatches", "read_sequence_file",
           "read_interactions_csv", "from_sequences", "leave_one_out", "SEQUENCE_SETS", "SEQ_DIR"]

#: folder of these sets under the data root
SEQ_DIR = Path("sequence")

#: canonical id -> (file relative to ``sequence/``, description, aliases)
SEQUENCE_SETS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "beauty": ("Beauty.txt", "Amazon Beauty 5-core sequences (22,363 users, 12,101 items)",
               ("amazon-beauty",)),
    "sports": ("Sports_and_Outdoors.txt",
               "Amazon Sports and Outdoors 5-core sequences (35,598 users, 18,357 items)",
               ("amazon-sports", "sports-and-outdoors", "amazon-sports-and-outdoors")),
    "toys": ("Toys_and_Games.txt", "Amazon Toys and Games 5-core sequences (19,412 users)",
             ("amazon-toys", "toys-and-games", "amazon-toys-and-games")),
    "yelp": ("Yelp.txt", "Yelp sequences (MCLRec/ICLRec format; file not shipped here)", ()),
    "ml-100k": ("ml-100k/ml-100k.txt", "MovieLens-100K time-ordered sequences (943 users)",
                ("ml100k", "movielens-100k")),
    "taobao": ("Taobao.txt", "Taobao sequences shipped with MCLRec (47,703 users, repeats)", ()),
}


@dataclass
class SequenceData:
    """Time-ordered item sequences, one per user.

    Attributes:
        name: dataset id.
        sequences: per user, the item ids (positive ints) in chronological order.
        users: the original user ids, aligned with ``sequences``.
        num_items: the maximum item id (embedding tables have ``num_items + 1`` rows, row 0 is
            padding).
        item_ids: for CSV data, the original item id of each internal id (index ``i - 1``).
    """

    name: str
    sequences: list[list[int]]
    users: list
    num_items: int
    item_ids: list | None = None

    def __post_init__(self) -> None:
        if len(self.sequences) == 0:
            raise ValueError(f"sequences: expected at least one user sequence for {self.name!r}, "
                             f"got none")
        if len(self.users) != len(self.sequences):
            raise ValueError(f"users: expected {len(self.sequences)} ids (one per sequence), "
                             f"got {len(self.users)}")
        for k, s in enumerate(self.sequences):
            if len(s) == 0:
                raise ValueError(f"sequences: user {self.users[k]!r} has an empty sequence")
            lo, hi = min(s), max(s)
            if lo < 1 or hi > self.num_items:
                raise ValueError(f"sequences: item ids must lie in [1, num_items={self.num_items}]"
                                 f" (0 is padding), user {self.users[k]!r} has ids in "
                                 f"[{lo}, {hi}]")

    @property
    def num_users(self) -> int:
        return len(self.sequences)

    @property
    def num_interactions(self) -> int:
        return sum(len(s) for s in self.sequences)

    def split(self, max_len: int = 50) -> "SequenceSplits":
        """The leave-one-out splits (see :func:`leave_one_out`)."""
        return leave_one_out(self, max_len=max_len)


def from_sequences(sequences: Sequence[Sequence[int]], *, num_items: int | None = None,
                   name: str = "custom", users: Sequence | None = None) -> SequenceData:
    """Build :class:`SequenceData` from lists of item ids (checked: non-empty, ids in range).

    Args:
        sequences: per user, positive item ids in time order.
        num_items: the item-id range ``[1, num_items]``; ``None`` uses the largest id seen.
        name: dataset name.
        users: user ids (default ``1..len(sequences)``).

    Raises:
        ValueError: no sequences, an empty sequence, or an id outside ``[1, num_items]``.
        TypeError: an id that is not an int.
    """
    seqs = []
    for k, s in enumerate(sequences):
        s = list(s)
        for x in s:
            if isinstance(x, bool) or not isinstance(x, int):
                try:
                    if int(x) != x:
                        raise ValueError
                except (TypeError, ValueError):
                    raise TypeError(f"sequences: expected integer item ids, user index {k} has "
                                    f"{x!r} ({type(x).__name__})") from None
        seqs.append([int(x) for x in s])
    if not seqs:
        raise ValueError("sequences: expected at least one user sequence, got none")
    if num_items is None:
        nonempty = [max(s) for s in seqs if s]
        num_items = max(nonempty) if nonempty else 0
    elif isinstance(num_items, bool) or not isinstance(num_items, int) or num_items < 1:
        raise ValueError(f"num_items: expected a positive int, got {num_items!r}")
    return SequenceData(name, seqs, list(users) if users is not None
                        else list(range(1, len(seqs) + 1)), int(num_items))


def read_sequence_file(path: str | Path, name: str | None = None) -> SequenceData:
    """Read a ``user item item ...`` text file (one user per line, items oldest first).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a malformed line (non-integer ids), a user with no items, an item id < 1,
            or an empty file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path: sequence file {p} does not exist")
    seqs: list[list[int]] = []
    users: list[int] = []
    with p.open() as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                ids = [int(x) for x in parts]
            except ValueError:
                raise ValueError(f"path: {p} line {lineno}: expected integer ids "
                                 f"'user item item ...', got {line.strip()[:80]!r}") from None
            if len(ids) < 2:
                raise ValueError(f"path: {p} line {lineno}: user {ids[0]} has an empty sequence")
            users.append(ids[0])
            seqs.append(ids[1:])
    if not seqs:
        raise ValueError(f"path: {p} holds no sequences")
    return from_sequences(seqs, name=name or p.stem.lower(), users=users)


def read_interactions_csv(path: str | Path, *, user_col: str | int = 0, item_col: str | int = 1,
                          time_col: str | int = 2, name: str | None = None,
                          delimiter: str = ",", min_interactions: int = 1) -> SequenceData:
    """Read a CSV of ``(user, item, timestamp)`` rows into time-ordered sequences.

    A header row is detected when the timestamp field of the first row is not a number; columns
    may then be given by name. Items get internal ids ``1..num_items`` in order of first appearance
    (``SequenceData.item_ids`` maps them back); ties in time keep file order.

    Args:
        path: the CSV file.
        user_col, item_col, time_col: column index or header name.
        name: dataset name (default: the file stem).
        delimiter: field separator.
        min_interactions: drop users with fewer interactions (a documented skip; the protocol needs
            at least 3 for a training target).

    Raises:
        FileNotFoundError: no such file. ValueError: no rows, a non-numeric timestamp, unknown
        column names, or every user dropped.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path: CSV file {p} does not exist")
    with p.open(newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        numbered = [(reader.line_num, r) for r in reader if r and any(x.strip() for x in r)]
    lines = [n for n, _ in numbered]  # file line of each row (blank lines skipped)
    rows = [r for _, r in numbered]
    if not rows:
        raise ValueError(f"path: {p} has no rows")

    def _is_num(x: str) -> bool:
        try:
            float(x)
            return True
        except ValueError:
            return False

    header = None
    cols = [user_col, item_col, time_col]
    if any(isinstance(c, str) for c in cols) or not _is_num(rows[0][time_col if isinstance(
            time_col, int) else 0]):
        header, rows, lines = [h.strip() for h in rows[0]], rows[1:], lines[1:]
    idx = []
    for arg, c in zip(("user_col", "item_col", "time_col"), cols):
        if isinstance(c, str):
            if header is None or c not in header:
                raise ValueError(f"{arg}: column {c!r} not in the header {header}")
            idx.append(header.index(c))
        else:
            idx.append(int(c))
    per_user: dict[str, list[tuple[float, int, str]]] = {}
    for k, r in enumerate(rows):
        if max(idx) >= len(r):
            raise ValueError(f"path: {p} line {lines[k]}: expected at least "
                             f"{max(idx) + 1} columns, got {len(r)}")
        u, it, t = r[idx[0]].strip(), r[idx[1]].strip(), r[idx[2]].strip()
        try:
            tv = float(t)
        except ValueError:
            raise ValueError(f"path: {p} line {lines[k]}: timestamp must be "
                             f"numeric, got {t!r}") from None
        if not math.isfinite(tv):  # a NaN would make the time order undefined
            raise ValueError(f"path: {p} line {lines[k]}: timestamp must be a finite number, "
                             f"got {t!r}")
        per_user.setdefault(u, []).append((tv, k, it))
    item_index: dict[str, int] = {}
    seqs, users = [], []
    for u, events in per_user.items():
        if len(events) < min_interactions:
            continue
        events.sort()
        s = []
        for _, _, it in events:
            if it not in item_index:
                item_index[it] = len(item_index) + 1
            s.append(item_index[it])
        seqs.append(s)
        users.append(u)
    if not seqs:
        raise ValueError(f"path: no user in {p} has at least min_interactions="
                         f"{min_interactions} rows")
    data = SequenceData(name or p.stem.lower(), seqs, users, len(item_index))
    data.item_ids = list(item_index)
    return data


# ---------------------------------------------------------------------------------- splits
@dataclass
class EvalSet:
    """Evaluation inputs: left-aligned histories ``[U, L]``, lengths ``[U]``, targets ``[U]``.

    ``users`` are the row indices into ``SequenceData.sequences``.
    """

    histories: Tensor
    lengths: Tensor
    targets: Tensor
    users: Tensor

    def __len__(self) -> int:
        return int(self.targets.numel())


@dataclass
class SequenceSplits:
    """Leave-one-out splits with training prefixes stored compactly.

    Attributes:
        items: ``[T]`` all users' sequences concatenated (int64).
        train_end: ``[P]`` for each training prefix, the index into ``items`` of its target; its
            history is ``items[max(start, end - max_len):end]``.
        train_start: ``[P]`` the index of the first item of the prefix's user.
        valid, test: :class:`EvalSet`.
        num_items: maximum item id.
        max_len: history truncation.
        skipped_users: users dropped because they have fewer than 3 items.
    """

    items: Tensor
    train_start: Tensor
    train_end: Tensor
    valid: EvalSet
    test: EvalSet
    num_items: int
    max_len: int
    skipped_users: int = 0
    extras: dict = field(default_factory=dict)

    @property
    def num_train(self) -> int:
        return int(self.train_end.numel())

    def train_batch(self, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Histories ``[B, L]`` (left-aligned, trimmed to the longest in the batch), lengths
        ``[B]`` and targets ``[B]`` of the training prefixes ``index``."""
        end, start = self.train_end[index], self.train_start[index]
        return gather_histories(self.items, start, end, self.max_len) + (self.items[end],)


def gather_histories(items: Tensor, start: Tensor, end: Tensor, max_len: int,
                     trim: bool = True) -> tuple[Tensor, Tensor]:
    """Left-aligned histories ``items[max(start, end - max_len):end]`` as ``[B, L]`` plus lengths.

    With ``trim`` the width ``L`` is the longest history in the batch (trailing all-padding
    columns carry no information under a causal encoder); otherwise ``max_len``.
    """
    n = torch.minimum(end - start, torch.full_like(end, max_len))
    width = int(n.max()) if (trim and n.numel()) else max_len
    pos = torch.arange(width, device=items.device)
    idx = (end - n)[:, None] + pos[None, :]
    valid = pos[None, :] < n[:, None]
    hist = torch.where(valid, items[idx.clamp(max=items.numel() - 1)], torch.zeros_like(idx))
    return hist, n


def leave_one_out(data: SequenceData, max_len: int = 50) -> SequenceSplits:
    """Time-ordered leave-one-out with prefix expansion (spec Section 3).

    Users with fewer than 3 items are skipped (no validation target with a non-empty history);
    the count is kept in ``skipped_users``.

    Raises:
        TypeError / ValueError: ``data`` is not :class:`SequenceData`, ``max_len < 1``, or no user
            has 3 or more items.
    """
    if not isinstance(data, SequenceData):
        raise TypeError(f"data: expected a SequenceData, got {type(data).__name__}")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len: expected a positive int, got {max_len!r}")
    kept = [k for k, s in enumerate(data.sequences) if len(s) >= 3]
    if not kept:
        raise ValueError(f"data: no user of {data.name!r} has the 3 interactions the leave-one-out "
                         f"protocol needs (one training, one validation, one test target)")
    lens = torch.tensor([len(data.sequences[k]) for k in kept], dtype=torch.long)
    items = torch.tensor([x for k in kept for x in data.sequences[k]], dtype=torch.long)
    offsets = torch.cumsum(lens, 0) - lens  # start of each user
    # training targets: positions 1 .. n-3 of each user (0-based)
    n_train = lens - 3  # training targets at 0-based positions 1 .. n-3
    first = torch.repeat_interleave(offsets, n_train)
    rank = torch.arange(int(n_train.sum())) - torch.repeat_interleave(
        torch.cumsum(n_train, 0) - n_train, n_train)
    train_end = first + 1 + rank
    train_start = first

    def _eval(shift: int) -> EvalSet:
        end = offsets + lens - shift
        hist, n = gather_histories(items, offsets, end, max_len, trim=False)
        return EvalSet(hist, n, items[end], torch.tensor(kept, dtype=torch.long))

    return SequenceSplits(items, train_start, train_end, _eval(2), _eval(1), data.num_items,
                          max_len, skipped_users=data.num_users - len(kept))


class PrefixBatches:
    """Re-iterable shuffled mini-batches of training prefixes (a loader for the Trainer).

    Each batch is a dict with ``seq [B, L]`` (left-aligned), ``len [B]``, ``target [B]`` and, when
    ``augment`` is given, the views returned by ``augment(seq, len, generator)`` (merged into the
    dict). Shuffling and augmentation draw from :attr:`generator` (which the Trainer saves and
    restores for exact resume).

    Args:
        splits: the leave-one-out splits.
        batch_size: prefixes per batch.
        augment: optional ``callable(seq, lengths, generator) -> dict`` of extra tensors.
        shuffle: shuffle every epoch.
        seed: seed of the generator.
        limit: use only the first ``limit`` prefixes of a fixed random order (quick runs, tests).
    """

    def __init__(self, splits: SequenceSplits, batch_size: int = 256, *, augment=None,
                 shuffle: bool = True, seed: int = 0, limit: int | None = None) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        self.splits, self.batch_size = splits, batch_size
        self.augment, self.shuffle = augment, shuffle
        self.generator = torch.Generator().manual_seed(int(seed))
        n = splits.num_train
        if limit is not None:
            pick = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) + 1))
            self.index = pick[:min(int(limit), n)].sort().values
        else:
            self.index = None
        self.size = n if self.index is None else int(self.index.numel())

    def __len__(self) -> int:
        return (self.size + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[dict]:
        order = (torch.randperm(self.size, generator=self.generator) if self.shuffle
                 else torch.arange(self.size))
        if self.index is not None:
            order = self.index[order]
        for i in range(0, self.size, self.batch_size):
            idx = order[i:i + self.batch_size]
            seq, n, target = self.splits.train_batch(idx)
            batch = {"seq": seq, "len": n, "target": target}
            if self.augment is not None:
                batch.update(self.augment(seq, n, self.generator))
            yield batch


# ---------------------------------------------------------------------------------- registry
def _loader(sid: str, rel: str):
    def loader(root: Path, *, download: bool = False, normalize_features: bool = True
               ) -> SequenceData:
        p = Path(root) / SEQ_DIR / rel
        if not p.is_file():
            raise FileNotFoundError(f"dataset {sid!r}: file {p} is missing")
        return _read_cached(str(p), sid)
    return loader


@functools.lru_cache(maxsize=8)
def _read_cached_inner(path: str, sid: str, mtime: float) -> SequenceData:
    return read_sequence_file(path, name=sid)


def _read_cached(path: str, sid: str) -> SequenceData:
    import copy
    return copy.deepcopy(_read_cached_inner(path, sid, Path(path).stat().st_mtime))


def _locator(rel: str):
    def locate(root: Path) -> tuple[str, str | None]:
        p = Path(root) / SEQ_DIR / rel
        return ("found", str(p)) if p.is_file() else ("missing", None)
    return locate


def _slug(name: str) -> str:
    return "-".join(name.strip().lower().replace("_", " ").replace("-", " ").split())


def _register_all() -> None:
    from .registry import registered
    known_files = set()
    for sid, (rel, desc, aliases) in SEQUENCE_SETS.items():
        register(DatasetSpec(id=sid, domain="sequence", description=desc, loader=_loader(sid, rel),
                             locate=_locator(rel), aliases=aliases), replace=True)
        known_files.add(rel)
    try:
        from .root import data_root
        base = Path(data_root(None)) / SEQ_DIR
    except Exception:  # noqa: BLE001 - no data root: only the known sets
        return
    if not base.is_dir():
        return
    taken = {a for sp in registered() for a in (sp.id, *sp.aliases)}
    for p in sorted(base.glob("*.txt")):
        if p.name in known_files:
            continue
        sid = _slug(p.stem)
        if not sid or sid in taken:
            continue
        register(DatasetSpec(id=sid, domain="sequence", description=f"sequences from {p.name}",
                             loader=_loader(sid, p.name), locate=_locator(p.name)), replace=True)


_register_all()
