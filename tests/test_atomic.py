"""contrastkit.core.atomic: the atomic-write helper behind checkpoints, configs and run files."""

from __future__ import annotations

import os

import pytest
import torch

from contrastkit.core.atomic import atomic_write


def _fsync_counter(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def test_text_and_binary_writes_replace_the_target_and_fsync(tmp_path, monkeypatch):
    calls = _fsync_counter(monkeypatch)
    path = tmp_path / "sub" / "out.txt"
    with atomic_write(path, "w") as fh:
        fh.write("first\n")
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write("second\n")
    assert path.read_text() == "second\n"
    with atomic_write(tmp_path / "t.pt") as fh:
        torch.save(torch.arange(3), fh)
    assert torch.equal(torch.load(tmp_path / "t.pt", weights_only=True), torch.arange(3))
    assert len(calls) >= 3  # the data of every write is fsync-ed (plus the folder, best effort)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out.txt", "sub", "t.pt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "keep.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(path, "w") as fh:
            fh.write("half of the new conte")
            raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_concurrent_writers_get_distinct_temporary_files(tmp_path):
    path = tmp_path / "c.txt"
    with atomic_write(path, "w") as a, atomic_write(path, "w") as b:
        assert a.name != b.name
        a.write("a")
        b.write("b")
    assert path.read_text() == "a"  # the block that finishes last (a, the outer one) wins
    assert [p.name for p in tmp_path.iterdir()] == ["c.txt"]


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="path: expected a str or os.PathLike, got int"):
        with atomic_write(3):
            pass
    with pytest.raises(ValueError, match="mode: expected 'wb' or 'w', got 'a'"):
        with atomic_write("x.txt", "a"):
            pass
    with pytest.raises(ValueError, match="encoding: expected None for binary mode"):
        with atomic_write("x.bin", "wb", encoding="utf-8"):
            pass


def test_permissions_are_those_of_a_plain_open_or_of_the_old_file(tmp_path):
    """A temporary file is created 0o600; the written file must not inherit that (configs and
    embeddings were unreadable by the group): a new file gets 0o666 less the umask, like
    ``open(path, "w")``, and a replaced file keeps its mode."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    with atomic_write(tmp_path / "new.txt", "w") as fh:
        fh.write("y")
    assert (os.stat(tmp_path / "new.txt").st_mode & 0o777) == (os.stat(plain).st_mode & 0o777)
    os.chmod(plain, 0o640)
    with atomic_write(plain, "w") as fh:
        fh.write("z")
    assert os.stat(plain).st_mode & 0o777 == 0o640 and plain.read_text() == "z"
