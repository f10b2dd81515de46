"""Method registry: each method registers a :class:`MethodSpec`; the CLI looks methods up here.

Built-in methods live in modules listed in :data:`_BUILTIN`; a module is imported the first time
one of its methods is asked for, and calls :func:`register` at import time. A module that fails to
import (missing optional dependency, work in progress) only makes its own methods unavailable:
:func:`list_methods` skips them and :func:`get_method` reports the import error.

A minimal method module::

    @dataclass
    class MyConfig:
        dataset: str = "cora"
        lr: float = 1e-3

    register(MethodSpec(name="mine", config_cls=MyConfig, run=run, evaluate=evaluate,
                        description="...", default_dataset="cora",
                        presets={"cora": {"lr": 5e-4}}))
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = [
    "MethodSpec",
    "RunContext",
    "RunResult",
    "get_method",
    "list_methods",
    "register",
    "unavailable_methods",
]


@dataclass
class RunContext:
    """Where and how a method runs.

    Attributes:
        out_dir: the run folder (for multi-seed runs, a per-seed subfolder for all but the first
            seed); the trainer writes ``checkpoint.pt`` and ``log.jsonl`` there.
        device: ``"cpu"`` or ``"cuda"``.
        seed: random seed of this run.
        progress: whether to show progress bars.
        resume: continue from ``out_dir/checkpoint.pt`` when it exists (``train --resume``).
    """

    out_dir: Path
    device: str
    seed: int
    progress: bool = True
    resume: bool = False


@dataclass
class RunResult:
    """What :attr:`MethodSpec.run` returns.

    Attributes:
        metrics: final test metrics (name -> value).
        embeddings: ``[N, D]`` embeddings used for evaluation.
    """

    metrics: dict[str, float]
    embeddings: torch.Tensor


@dataclass
class MethodSpec:
    """Everything the CLI needs to know about a method.

    Attributes:
        name: registry name (looked up case-insensitively).
        config_cls: config dataclass; it has at least a ``dataset: str`` field.
        run: ``run(config, ctx) -> RunResult``: trains (through the shared trainer) and evaluates.
        evaluate: ``evaluate(config, embeddings, ctx) -> metrics``: re-evaluates saved embeddings.
        description: one line shown by ``contrastkit methods``.
        default_dataset: dataset used when none is given.
        presets: canonical dataset id -> config overrides (the paper's hyperparameters).
        accepts: the data the method takes, as ``"domain"`` or ``"domain:kind"`` entries of
            the dataset registry (e.g. ``("graph:homogeneous",)``; empty: not declared). The
            command line refuses another dataset, and lists only these, before any file is
            written.
    """

    name: str
    config_cls: type
    run: Callable[[Any, RunContext], RunResult]
    evaluate: Callable[[Any, torch.Tensor, RunContext], dict[str, float]]
    description: str
    default_dataset: str
    presets: dict[str, dict] = field(default_factory=dict)
    accepts: tuple[str, ...] = ()


#: method name -> module that registers it when imported
_BUILTIN: dict[str, str] = {
    "grace": "contrastkit.graphcl.grace",
    "gca": "contrastkit.graphcl.grace",
    "grace_pot": "contrastkit.graphcl.grace",
    "gca_pot": "contrastkit.graphcl.grace",
    "gcool": "contrastkit.graphcl.gcool",
    "meow": "contrastkit.graphcl.meow",
    "adameow": "contrastkit.graphcl.meow",
    "comet": "contrastkit.seqcl.comet",
    "ts2vec": "contrastkit.seqcl.ts2vec",
    "autotcl": "contrastkit.seqcl.autotcl",
    "sasrec": "contrastkit.seqcl.sasrec",
    "cl4srec": "contrastkit.seqcl.sasrec",
    "mclrec": "contrastkit.seqcl.mclrec",
    "pamc": "contrastkit.graphcl.pamc",
    "scgc": "contrastkit.graphcl.pamc",
    "simclr": "contrastkit.vision.simclr",
    "moco": "contrastkit.vision.moco",
}

_REGISTRY: dict[str, MethodSpec] = {}
_IMPORT_ERRORS: dict[str, str] = {}  # module -> error message


def register(spec: MethodSpec) -> MethodSpec:
    """Add (or replace) a method in the registry.

    Args:
        spec: the method description.

    Returns:
        ``spec``, so that the call can be used as an expression.

    Raises:
        TypeError: ``spec`` is not a :class:`MethodSpec`, ``run``/``evaluate`` are not callable,
            ``config_cls`` is not a dataclass or ``presets`` is not a dict of dicts.
        ValueError: empty name, or ``config_cls`` lacks a ``dataset`` field.
    """
    if not isinstance(spec, MethodSpec):
        raise TypeError(f"spec: expected a MethodSpec, got {type(spec).__name__}")
    if not isinstance(spec.name, str) or not spec.name.strip():
        raise ValueError(f"spec.name: expected a non-empty string, got {spec.name!r}")
    if not (isinstance(spec.config_cls, type) and dataclasses.is_dataclass(spec.config_cls)):
        raise TypeError(f"spec.config_cls ({spec.name}): expected a dataclass type, "
                        f"got {spec.config_cls!r}")
    if "dataset" not in {f.name for f in dataclasses.fields(spec.config_cls)}:
        raise ValueError(f"spec.config_cls ({spec.name}): expected a 'dataset' field in "
                         f"{spec.config_cls.__name__}")
    for attr in ("run", "evaluate"):
        if not callable(getattr(spec, attr)):
            raise TypeError(f"spec.{attr} ({spec.name}): expected a callable, "
                            f"got {type(getattr(spec, attr)).__name__}")
    if not isinstance(spec.presets, dict) or not all(
            isinstance(k, str) and isinstance(v, dict) for k, v in spec.presets.items()):
        raise TypeError(f"spec.presets ({spec.name}): expected a dict of dataset id -> dict")
    if not isinstance(spec.accepts, tuple) or not all(
            isinstance(a, str) and a for a in spec.accepts):
        raise TypeError(f"spec.accepts ({spec.name}): expected a tuple of 'domain' or "
                        f"'domain:kind' strings, got {spec.accepts!r}")
    _REGISTRY[spec.name.strip().lower()] = spec
    return spec


def _import_builtin(module: str) -> None:
    """Import a method module once; remember (do not raise) why it failed."""
    if module in _IMPORT_ERRORS:
        return
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - one broken module must not break the others
        _IMPORT_ERRORS[module] = f"{type(exc).__name__}: {exc}"


def _load_all_builtins() -> None:
    for name, module in _BUILTIN.items():
        if name not in _REGISTRY:
            _import_builtin(module)


def list_methods() -> list[str]:
    """Names of all available methods, sorted (built-ins that fail to import are skipped)."""
    _load_all_builtins()
    return sorted(_REGISTRY)


def unavailable_methods() -> dict[str, str]:
    """Built-in methods whose module could not be imported: name -> error message."""
    _load_all_builtins()
    return {name: _IMPORT_ERRORS[module] for name, module in sorted(_BUILTIN.items())
            if name not in _REGISTRY and module in _IMPORT_ERRORS}


def get_method(name: str) -> MethodSpec:
    """Look a method up by name (case-insensitive), importing its module if needed.

    Args:
        name: method name, e.g. ``"grace"``.

    Returns:
        The registered :class:`MethodSpec`.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: unknown method (the message lists the known ones), or its module failed to
            import (the message gives the import error).
    """
    if not isinstance(name, str):
        raise TypeError(f"method: expected a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    module = _BUILTIN.get(key)
    if module is not None:
        _import_builtin(module)
        if key in _REGISTRY:
            return _REGISTRY[key]
        if module in _IMPORT_ERRORS:
            raise ValueError(f"method '{name}' is unavailable: importing {module} failed "
                             f"({_IMPORT_ERRORS[module]})")
        raise ValueError(f"method '{name}' is unavailable: {module} did not register it")
    known = list_methods()
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    broken = unavailable_methods()
    extra = f"; unavailable (import failed): {', '.join(broken)}" if broken else ""
    raise ValueError(f"unknown method '{name}'{hint} (known methods: "
                     f"{', '.join(known) if known else 'none'}{extra})")
