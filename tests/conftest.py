"""Shared test helpers: where the real data is, and skipping when a dataset is absent.

With ``CONTRASTKIT_REQUIRE_DATA=1`` (set by CI, which has ``../shared/data``) a test that would
skip for missing data fails instead, so a misplaced data root cannot turn the run green.

The PyG cache (``CONTRASTKIT_CACHE``) is pointed at a temporary folder for the test session
when it is not set, so tests never write into ``~/.cache`` of a CI machine; under pytest-xdist
(``-n auto``) each worker gets its own subfolder of it. ``CONTRASTKIT_DATA`` is set to the
repository's ``../shared/data`` when it is unset and that folder exists, so the tests find the
same data whatever the working directory.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

_CACHE_ENV = "CONTRASTKIT_CACHE"
_DATA_ENV = "CONTRASTKIT_DATA"
_REQUIRE_ENV = "CONTRASTKIT_REQUIRE_DATA"
_OWN_CACHE_ENV = "_CONTRASTKIT_TEST_SESSION_CACHE"  # the cache folder this test session made
_session_cache: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Give the session its own PyG cache folder unless ``CONTRASTKIT_CACHE`` is set (each
    pytest-xdist worker a subfolder of it), and the workers their share of the torch threads."""
    global _session_cache
    if getattr(config.option, "maxschedchunk", 0) is None:
        # pytest-xdist's load scheduler hands each worker a quarter of its share up front, so the
        # long tests, which run first (pytest_collection_modifyitems), would all land on one
        # worker; one or two tests at a time keeps the workers evenly loaded
        config.option.maxschedchunk = 1
    if not os.environ.get(_DATA_ENV):
        # ``load(name)`` without ``root=`` finds ``../shared/data`` from the working directory:
        # pin it to the repository's, so a test run from elsewhere loads the same data that
        # ``require_dataset`` found (and does not fall back to the embedded Cora)
        shared = Path(__file__).resolve().parents[1].parent / "shared" / "data"
        if shared.is_dir():
            os.environ[_DATA_ENV] = str(shared)
    if "TRITON_INTERPRET" not in os.environ:  # the fused-kernel tests run Triton's interpreter
        import torch
        if not torch.cuda.is_available():
            os.environ["TRITON_INTERPRET"] = "1"
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # set in a pytest-xdist worker (``-n N``)
    own = os.environ.get(_OWN_CACHE_ENV)
    if worker is not None and own and os.environ.get(_CACHE_ENV) == own:
        # each worker its own subfolder: two workers processing one PyG dataset at once could
        # read each other's half-written ``processed/`` file
        os.environ[_CACHE_ENV] = os.path.join(own, worker)
    elif not os.environ.get(_CACHE_ENV):
        _session_cache = tempfile.mkdtemp(prefix="contrastkit-test-cache-")
        os.environ[_CACHE_ENV] = _session_cache
        os.environ[_OWN_CACHE_ENV] = _session_cache
    if worker is not None:  # the workers share the cores, not one torch thread per core each
        import torch
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session cache folder made by :func:`pytest_configure`."""
    global _session_cache
    if _session_cache is not None:
        if os.environ.get(_CACHE_ENV) == _session_cache:
            del os.environ[_CACHE_ENV]
        os.environ.pop(_OWN_CACHE_ENV, None)
        shutil.rmtree(_session_cache, ignore_errors=True)
        _session_cache = None


def load_benchmark(name: str) -> ModuleType:
    """Import ``benchmarks/NAME.py`` (not a package) as module ``NAME_bench``, registered in
    ``sys.modules`` (dataclasses need it)."""
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    path = folder / f"{name}.py"
    if str(folder) not in sys.path:  # as when run as a script: its helpers (_runner) import
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(f"{name}_bench", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def skip_without_data(reason: str) -> None:
    """Skip the calling test because its data is absent, or fail under
    ``CONTRASTKIT_REQUIRE_DATA=1``."""
    if os.environ.get(_REQUIRE_ENV, "").strip() not in ("", "0"):
        pytest.fail(f"{reason} ({_REQUIRE_ENV} is set: missing data fails the run)")
    pytest.skip(reason)


def assert_grads_match(got, ref, params, rtol: float = 1e-8, atol: float = 1e-11):
    """Gradients of the scalars ``got`` and ``ref`` w.r.t. ``params`` agree; a parameter that
    one side does not reach must get no (or an all-zero) gradient on the other. Returns the
    reference gradients."""
    import torch
    g_got = torch.autograd.grad(got, params, allow_unused=True)
    g_ref = torch.autograd.grad(ref, params, allow_unused=True)
    for a, b in zip(g_got, g_ref):
        if a is None or b is None:
            assert (a is None or not a.any()) and (b is None or not b.any())
        else:
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    return g_ref


def shared_data_root() -> Path | None:
    """Return the shared data root, or ``None`` when it is not there.

    ``CONTRASTKIT_DATA`` when set, else ``../shared/data`` relative to the repository root.

    Returns:
        The folder holding ``graph/``, ``sequence/``, ``timeseries/``, or ``None``.
    """
    env = os.environ.get(_DATA_ENV)
    root = (Path(env).expanduser() if env
            else Path(__file__).resolve().parents[1].parent / "shared" / "data")
    return root if root.is_dir() else None


def require_dataset(name: str) -> Path:
    """Skip the calling test unless dataset ``name``'s files are in the shared data root.

    An embedded copy (Cora) does not count: this asks for the real files.

    Args:
        name: Dataset id or alias.

    Returns:
        The shared data root.
    """
    root = shared_data_root()
    if root is None:
        skip_without_data(f"dataset {name!r}: no shared data root (set {_DATA_ENV} or provide "
                    f"{Path(__file__).parents[1].parent / 'shared' / 'data'})")
    from contrastkit.datasets import available, canonical_name

    cid = canonical_name(name)
    status = next(s for s in available(root) if s.id == cid)
    if status.status != "found":
        skip_without_data(f"dataset {cid!r} is {status.status} under {root}")
    return root


@pytest.fixture
def shared_root() -> Path:
    """The shared data root; skips the test when there is none."""
    root = shared_data_root()
    if root is None:
        skip_without_data(f"no shared data root (set {_DATA_ENV})")
    return root


@pytest.fixture(scope="module")
def cora_pyg(tmp_path_factory):
    """Cora as PyG's ``Planetoid`` reads it, from a copy of the shared raw files (skips if absent)."""
    root = shared_data_root()
    raw = None if root is None else root / "graph" / "planetoid" / "Cora" / "raw"
    if raw is None or not raw.is_dir():
        skip_without_data(f"Cora raw files not found (looked for {raw}; set {_DATA_ENV})")
    from torch_geometric.datasets import Planetoid

    copy_root = tmp_path_factory.mktemp("planetoid")
    shutil.copytree(raw, copy_root / "Cora" / "raw")
    return Planetoid(root=str(copy_root), name="Cora")[0]


@pytest.fixture
def restore_global_state():
    """Trainer runs switch on deterministic mode and reseed: give other tests their state back.

    Also runs the test with one torch thread (tiny tensors are faster so on shared cores).
    """
    import torch

    from contrastkit.core.seed import get_rng_state, set_rng_state

    det = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    rng = get_rng_state()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det, warn_only=warn_only)
    set_rng_state(rng)


# "learn", "learns", "learning" as a word of the test name (not "sklearn" or "learnable").
_LEARNING_NAME = re.compile(r"(?<![a-z])learn(s|ing)?(?![a-z])")
# Other tests of 20-40 s on one thread (``--durations``), not named after learning.
_OTHER_LONG = ("test_etth1_univariate_heldout", "test_multivariate_etth1_forecast",
               "test_cli_train_eval_roundtrip", "test_resume_continues_exactly")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the long real-data learning tests and the examples first (stable order otherwise), so
    that pytest-xdist, fed one or two tests at a time (pytest_configure), spreads them over the
    workers instead of leaving one or two to the end."""
    def heavy(item: pytest.Item) -> bool:
        name = item.name.lower()
        return (_LEARNING_NAME.search(name) is not None or name.startswith(_OTHER_LONG)
                or item.nodeid.startswith("tests/test_examples.py"))
    items.sort(key=lambda item: not heavy(item))
