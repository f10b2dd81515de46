"""Shared by the benchmark scripts: one ``contrastkit train`` run in its own subprocess,
appending a result row to a JSON list that several invocations may write at once, and pasting
a generated table into the README between ``<!-- NAME -->`` / ``<!-- end NAME -->`` markers."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


def train_in_subprocess(method: str, dataset: str, seed: int, sets: list[str], device: str,
                        timeout: float,
                        post: Callable[[Path, dict[str, Any]], dict[str, Any]] | None = None,
                        env: dict[str, str] | None = None) -> dict[str, Any]:
    """``contrastkit train METHOD --dataset DATASET --seed SEED --set ...`` in a subprocess.

    Returns the run's ``metrics.json`` plus ``wall_s``, or ``{"error", "wall_s"}`` when it fails
    or times out (recorded, not fatal). ``post(run_dir, metrics)`` may replace the metrics while
    the run folder still exists (e.g. to score the saved embeddings). ``env``: variables added
    to the subprocess's environment.
    """
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "contrastkit", "train", method, "--dataset", dataset,
               "--seed", str(seed), "--out", tmp, "--no-progress", "--device", device]
        for kv in sets:
            cmd += ["--set", kv]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  env=None if env is None else {**os.environ, **env})
        except subprocess.TimeoutExpired:
            return {"error": f"timeout after {timeout:.0f} s", "wall_s": timeout}
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"error": f"exit {proc.returncode}: {' | '.join(tail)}", "wall_s": wall}
        metrics = json.loads((Path(tmp) / "metrics.json").read_text())
        if post is not None:
            metrics = post(Path(tmp), metrics)
    metrics["wall_s"] = wall
    return metrics


def child_result(cmd: list[str], timeout: float) -> dict[str, Any]:
    """Run one benchmark child process and return the JSON of its ``RESULT {...}`` stdout line,
    or ``{"status": "timeout (... s)"}`` / ``{"status": "error: <last stderr line>"}``."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout ({timeout:.0f} s)"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = proc.stderr.strip().splitlines()[-1:] or [""]
    return {"status": f"error: {tail[0][:200]}"}


def append_result(path: Path, row: dict[str, Any]) -> list[dict[str, Any]]:
    """Add ``row`` to the JSON on disk and return its rows: re-read under a lock file and
    replaced atomically, so several invocations running at once keep each other's results."""
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = json.loads(path.read_text()) if path.exists() else []
        rows.append(row)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(rows, indent=1))
        os.replace(tmp, path)
    return rows


def paste_between_markers(path: Path, name: str, body: str) -> None:
    """Replace the text between ``<!-- name -->`` and ``<!-- end name -->`` in ``path`` with
    ``body`` (markers kept); ``ValueError`` when the pair is not there exactly once."""
    text = path.read_text()
    start, end = f"<!-- {name} -->\n", f"<!-- end {name} -->"
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"{path}: expected one '{start.strip()}' ... '{end}' pair")
    head, rest = text.split(start)
    tail = rest.split(end)[1]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(head + start + body.rstrip("\n") + "\n" + end + tail)
    os.replace(tmp, path)
