"""The ``contrastkit`` command line: train, re-evaluate, list datasets and methods.

Commands::

    contrastkit train METHOD [--dataset ID] [--config FILE.yaml] [--set key=value ...]
                             [--seed N] [--seeds N] [--out DIR] [--device cpu|cuda|auto]
                             [--no-progress] [--debug]
    contrastkit eval DIR [--device cpu|cuda|auto] [--no-progress] [--debug]
    contrastkit datasets [--root DIR]
    contrastkit methods

A training run writes into its folder ``DIR``:

* ``config.yaml``: the full config plus a ``run:`` section (method, seed(s), device, versions),
  written before training starts; ``contrastkit train METHOD --config DIR/config.yaml`` reruns it
  (command-line flags override the saved values);
* ``embeddings.pt``: the evaluation embeddings of the first seed (a tensor, ``torch.save``);
* ``metrics.json``: the test metrics (one seed: the metrics and ``seed``; several seeds: the
  aggregate from :func:`contrastkit.core.metrics.aggregate_seeds`) and ``time_total_s``.

The first seed runs in ``DIR`` itself, every further seed ``s`` in ``DIR/seed-<s>/``.

User errors (unknown method, dataset or config key, malformed ``--set``, bad YAML, ...) are printed
as one ``error: ...`` line on stderr with exit code 2; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import difflib
import json
import math
import platform
import re
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from . import __version__
from .core.atomic import atomic_write
from .core.config import (RUN_SECTION, build_config, config_from_dict, load_yaml,
                          parse_overrides, save_config)
from .registry import (MethodSpec, RunContext, RunResult, get_method, list_methods,
                       unavailable_methods)

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2
_MAX_SEED = 2**32 - 1024  # the Trainer's bound: it derives per-purpose seeds above the run's
_MAX_SEEDS = 1000  # seeds per run (a typo such as --seeds 10000000000 must not build a huge list)
_USER_ERRORS = (ValueError, TypeError, FileNotFoundError, NotADirectoryError, PermissionError)


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, (FileNotFoundError, PermissionError, NotADirectoryError)) and \
            getattr(exc, "filename", None) and exc.filename not in text:
        text = f"{text}: {exc.filename}"
    return text or type(exc).__name__


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain left-aligned text table."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _seed_everything(seed: int) -> None:
    from .core.seed import seed_everything
    seed_everything(seed, deterministic=False)


def _resolve_device(requested: Any, where: str = "--device") -> str:
    if not isinstance(requested, str) or requested.strip().lower() not in ("cpu", "cuda", "auto"):
        raise ValueError(f"{where}: expected one of ['cpu', 'cuda', 'auto'], got {requested!r}")
    requested = requested.strip().lower()
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{where}: 'cuda' requested but CUDA is not available on this machine "
                         f"(use --device cpu or --device auto)")
    return requested


def _check_seed(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where}: expected an int, got {value!r} ({type(value).__name__})")
    if not 0 <= value <= _MAX_SEED:
        raise ValueError(f"{where}: expected an int in [0, 2**32 - 1024], got {value}")
    return value


def _to_float(value: Any, where: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(f"{where}: expected a number, got a tensor of shape "
                            f"{tuple(value.shape)}")
        return float(value.item())
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{where}: expected a number, got {value!r} ({type(value).__name__})")
    return float(value)


def _check_metrics(metrics: Any, where: str) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise TypeError(f"{where}: expected a dict of metric name -> number, "
                        f"got {type(metrics).__name__}")
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str):
            raise TypeError(f"{where}: metric names must be strings, got {name!r}")
        out[name] = _to_float(value, f"{where}[{name!r}]")
    return out


def _check_embeddings(emb: Any, where: str) -> torch.Tensor:
    if not isinstance(emb, torch.Tensor):
        raise TypeError(f"{where}: expected a torch.Tensor, got {type(emb).__name__}")
    if emb.dim() != 2:
        raise ValueError(f"{where}: expected a 2-D [N, D] tensor, got shape {tuple(emb.shape)}")
    return emb


def _strict_json(value: Any) -> Any:
    """``value`` with NaN and infinite floats as ``None`` (JSON has no NaN: ``null``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    return value


def _nan_for_null(value: Any) -> Any:
    """Inverse of :func:`_strict_json` for metrics read back: ``None`` -> NaN."""
    if value is None:
        return float("nan")
    if isinstance(value, dict):
        return {k: _nan_for_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_for_null(v) for v in value]
    return value


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` atomically (:func:`~contrastkit.core.atomic.atomic_write`) as strict JSON:
    an undefined metric (NaN) is written as ``null``."""
    text = json.dumps(_strict_json(data), indent=2, allow_nan=False) + "\n"
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def _write_embeddings(path: Path, emb: torch.Tensor) -> None:
    """Save ``emb`` (detached, on the CPU, contiguous) with :func:`torch.save`, atomically."""
    with atomic_write(path, "wb") as fh:
        torch.save(emb.detach().cpu().contiguous(), fh)


def _aggregate(per_seed: list[dict[str, float]], seeds: list[int]) -> dict[str, Any]:
    from .core.metrics import aggregate_seeds

    return dict(aggregate_seeds(per_seed, seeds))


def _print_metrics(metrics: Mapping[str, Any], title: str) -> None:
    """Summary table: one row per metric (mean +- std when the run has several seeds)."""
    skip = {"seed", "seeds", "per_seed", "time_total_s"}
    rows = []
    for name, value in metrics.items():
        if name in skip or name.endswith("_std") or not isinstance(value, (int, float)) \
                or isinstance(value, bool):
            continue
        std = metrics.get(f"{name}_std")
        text = _format_value(float(value))
        if isinstance(std, (int, float)) and not isinstance(std, bool):
            text += f" +- {_format_value(float(std))}"
        rows.append((name, text))
    if "time_total_s" in metrics:
        rows.append(("time_total_s", f"{float(metrics['time_total_s']):.1f}"))
    print(title)
    print(_table(("metric", "value"), rows) if rows else "(no metrics)")


# ---------------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------------
def _dataset_registry() -> Any:
    """The ``contrastkit.datasets`` registry module(s), or None when not importable."""
    try:
        import contrastkit.datasets as ds
    except Exception:  # noqa: BLE001 - the dataset package must not be a hard dependency
        return None
    return ds


def _registry_function(name: str) -> Any:
    ds = _dataset_registry()
    if ds is None:
        return None
    fn = getattr(ds, name, None)
    if fn is None:
        try:
            from contrastkit.datasets import registry as ds_registry
        except Exception:  # noqa: BLE001
            return None
        fn = getattr(ds_registry, name, None)
    return fn if callable(fn) else None


def _compatible_ids(spec: MethodSpec) -> list[str] | None:
    """Ids of the registered datasets ``spec`` takes (its ``accepts``; when it declares none,
    those of its default dataset's domain), or ``None`` without a dataset registry."""
    compatible, get_spec = _registry_function("compatible"), _registry_function("get_spec")
    if compatible is None or get_spec is None:
        return None
    accepts = tuple(spec.accepts)
    if not accepts:
        try:
            accepts = (get_spec(spec.default_dataset).domain,)
        except (ValueError, TypeError):
            return None
    return [s.id for s in compatible(accepts)]


def _canonical_dataset(name: Any, spec: MethodSpec, where: str) -> str:
    """Canonical dataset id for ``name``: via the dataset registry, else the method's presets.

    A registered dataset of another kind than the method takes (``train mclrec --dataset
    cora``) is refused here, before the run folder exists.
    """
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"{where}: expected a dataset id (non-empty string), got {name!r}")
    text = name.strip()
    canonical_name = _registry_function("canonical_name")
    known = _compatible_ids(spec) or []
    if canonical_name is not None:
        try:
            found = str(canonical_name(text))
        except (ValueError, KeyError, TypeError):
            found = None
        if found is not None:
            dataset_spec = _registry_function("get_spec")(found)
            if spec.accepts and not dataset_spec.fits(spec.accepts):
                raise ValueError(
                    f"{where}: method '{spec.name}' takes {' or '.join(spec.accepts)} datasets, "
                    f"got '{found}' (a {dataset_spec.tag} dataset); datasets it takes: "
                    f"{', '.join(known)}")
            return found
    # datasets the method itself knows (presets, default), e.g. when the registry is absent
    own = {k.lower(): k for k in (*spec.presets, spec.default_dataset)}
    norm = "-".join(text.lower().replace("_", " ").replace("-", " ").split())
    for candidate in (text.lower(), norm):
        if candidate in own:
            return own[candidate]
    known = sorted(set(known) | set(own.values()))
    close = difflib.get_close_matches(text.lower(), known, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ValueError(f"{where}: unknown dataset '{text}' for method '{spec.name}'{hint} "
                     f"(known datasets: {', '.join(known)})")


def _preset(spec: MethodSpec, dataset: str) -> dict[str, Any]:
    if dataset in spec.presets:
        return spec.presets[dataset]
    for key, value in spec.presets.items():
        if key.lower() == dataset.lower():
            return value
    return {}


# ---------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------
def _resolve_seeds(seed: int | None, n_seeds: int | None, run_info: Mapping[str, Any],
                   cfg_file: str) -> list[int]:
    """Seeds from ``--seed``/``--seeds``, else from a config file's run section, else ``[0]``."""
    if n_seeds is not None:
        if not 1 <= n_seeds <= _MAX_SEEDS:
            raise ValueError(f"--seeds: expected a number of seeds in [1, {_MAX_SEEDS}], got "
                             f"{n_seeds}")
        base = _check_seed(seed if seed is not None else 0, "--seed")
        _check_seed(base + n_seeds - 1, "--seed + --seeds - 1")
        return [base + i for i in range(n_seeds)]
    if seed is not None:
        return [_check_seed(seed, "--seed")]
    if "seeds" in run_info:
        value = run_info["seeds"]
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= _MAX_SEEDS:
                raise ValueError(f"{cfg_file}: run.seeds: expected a number of seeds in "
                                 f"[1, {_MAX_SEEDS}], got {value}")
            base = _check_seed(run_info.get("seed", 0), f"{cfg_file}: run.seed")
            _check_seed(base + value - 1, f"{cfg_file}: run.seed + run.seeds - 1")
            return [base + i for i in range(value)]
        if not isinstance(value, list) or not value:
            raise TypeError(f"{cfg_file}: run.seeds: expected a non-empty list of ints, "
                            f"got {value!r}")
        seeds = [_check_seed(s, f"{cfg_file}: run.seeds[{i}]") for i, s in enumerate(value)]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{cfg_file}: run.seeds: expected distinct seeds, got {seeds}")
        return seeds
    if "seed" in run_info:
        return [_check_seed(run_info["seed"], f"{cfg_file}: run.seed")]
    return [0]


def _default_out_dir(method: str, dataset: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{method}-{dataset}")
    out = Path("runs") / f"{safe}-{stamp}"
    n = 2
    while out.exists():
        out = Path("runs") / f"{safe}-{stamp}-{n}"
        n += 1
    return out


def _run_info(spec: MethodSpec, seeds: list[int], device: str, argv: Sequence[str]
              ) -> dict[str, Any]:
    info: dict[str, Any] = {"method": spec.name.lower()}
    if len(seeds) == 1:
        info["seed"] = seeds[0]
    else:
        info["seeds"] = list(seeds)
    info.update({
        "device": device,
        "contrastkit_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "cuda_device": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["contrastkit", *argv]),
    })
    return info


def _cmd_train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    yaml_layer: dict[str, Any] = {}
    run_info: dict[str, Any] = {}
    if getattr(args, "resume", False):
        if not args.out:
            raise ValueError("--resume: expected --out DIR, the run folder to continue")
        saved = Path(args.out) / "config.yaml"
        if args.config is None and saved.is_file():
            args.config = str(saved)  # continue what the run did; flags still override
    cfg_file = str(args.config) if args.config else ""
    if args.config:
        yaml_layer = load_yaml(args.config)
        run_info = yaml_layer.pop(RUN_SECTION, None) or {}
        if not isinstance(run_info, dict):
            raise ValueError(f"{cfg_file}: '{RUN_SECTION}' section: expected a mapping, "
                             f"got {type(run_info).__name__}")

    method = args.method or run_info.get("method")
    if not method:
        raise ValueError("METHOD: expected a method name (e.g. 'contrastkit train grace'), "
                         "or a --config file with run.method")
    saved_method = run_info.get("method")
    if args.method and saved_method and str(saved_method).lower() != args.method.lower():
        _warn(f"{cfg_file} was saved for method '{saved_method}'; training '{args.method}'")
    spec = get_method(str(method))

    overrides = parse_overrides(args.set)
    if getattr(args, "epochs", None) is not None:
        overrides["epochs"] = args.epochs
    if args.dataset is not None:
        dataset_in, where = args.dataset, "--dataset"
    elif "dataset" in overrides:
        dataset_in, where = overrides["dataset"], "--set dataset"
    elif "dataset" in yaml_layer:
        dataset_in, where = yaml_layer["dataset"], f"{cfg_file}: dataset"
    else:
        dataset_in, where = spec.default_dataset, f"default dataset of {spec.name}"
    dataset = _canonical_dataset(dataset_in, spec, where)

    cfg = build_config(spec.config_cls, _preset(spec, dataset), yaml_layer, overrides,
                       {"dataset": dataset})
    seeds = _resolve_seeds(args.seed, args.seeds, run_info, cfg_file)
    if args.device is not None:
        device = _resolve_device(args.device)
    elif "device" in run_info:
        device = _resolve_device(run_info["device"], f"{cfg_file}: run.device")
    else:
        device = _resolve_device("auto")
    progress = not args.no_progress

    out = Path(args.out) if args.out else _default_out_dir(spec.name.lower(), dataset)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: expected a folder, got an existing file {out}")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _train_seeds(spec, cfg, seeds, device, progress, out, dataset, argv,
                            resume=bool(getattr(args, "resume", False)))
    except Exception:
        if created and _nothing_trained(out):
            # bad input that the method itself refused (a config value, the data): leave no
            # run folder behind that looks like a run
            shutil.rmtree(out, ignore_errors=True)
        raise


#: metric names that describe what a run cost rather than how good it is (timings, memory):
#: ``time_per_epoch_s``, ``train_time_s``, ``eval_time_s``, ``finetune_time_s@10%``,
#: ``peak_mem_bytes``, their ``_std`` ...
_COST_METRIC = re.compile(r"(?:^|_)time(?:_|$)|^peak_mem")


def _cost_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric cost entries (timings, memory) of ``metrics``."""
    return {k: float(v) for k, v in metrics.items()
            if _COST_METRIC.search(k) and isinstance(v, (int, float)) and not isinstance(v, bool)}


def _seed_metrics(earlier: Mapping[str, Any], seeds: list[int], i: int) -> Mapping[str, Any]:
    """Seed ``i``'s entry of an earlier ``metrics.json`` of the same seeds (else empty)."""
    if len(seeds) == 1:
        return earlier if earlier.get("seed", seeds[0]) == seeds[0] else {}
    per_seed = earlier.get("per_seed")
    if earlier.get("seeds") != list(seeds) or not isinstance(per_seed, list) \
            or len(per_seed) != len(seeds) or not isinstance(per_seed[i], Mapping):
        return {}
    return per_seed[i]


def _checkpoint_marks(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Identity of every ``checkpoint.pt`` of one seed's folder (``seed-*`` folders of further
    seeds excluded): a checkpoint is rewritten (a new file, atomically) whenever an epoch was
    trained, so equal marks before and after a resume mean that nothing was trained."""
    marks = {}
    for path in sorted(folder.rglob("checkpoint.pt")):
        rel = path.relative_to(folder)
        if rel.parts[0].startswith("seed-") and len(rel.parts) > 1:
            continue
        st = path.stat()
        marks[str(rel)] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return marks


def _nothing_trained(out: Path) -> bool:
    """Whether ``out`` holds only what a run writes before its first epoch (``config.yaml``,
    empty ``log.jsonl`` files, empty seed folders)."""
    for path in out.rglob("*"):
        if path.is_dir():
            continue
        if path.name == "config.yaml" and path.parent == out:
            continue
        if path.name == "log.jsonl" and path.stat().st_size == 0:
            continue
        return False
    return True


def _train_seeds(spec: MethodSpec, cfg: Any, seeds: list[int], device: str, progress: bool,
                 out: Path, dataset: str, argv: Sequence[str], *, resume: bool) -> int:
    """Train and evaluate every seed into ``out``; write ``embeddings.pt`` and
    ``metrics.json``."""
    save_config(cfg, out / "config.yaml", extra=_run_info(spec, seeds, device, argv))
    print(f"{spec.name} on {dataset}, seed{'s' if len(seeds) > 1 else ''} "
          f"{', '.join(map(str, seeds))}, device {device} -> {out}")

    t0 = time.perf_counter()
    earlier = _read_old_metrics(out / "metrics.json") if resume else {}
    per_seed: list[dict[str, float]] = []
    untrained = 0  # seeds whose resume trained nothing (their checkpoints did not change)
    for i, seed in enumerate(seeds):
        seed_dir = out if i == 0 else out / f"seed-{seed}"
        seed_dir.mkdir(parents=True, exist_ok=True)
        if len(seeds) > 1:
            print(f"[seed {seed}: {i + 1}/{len(seeds)}] {seed_dir}")
        ctx = RunContext(out_dir=seed_dir, device=device, seed=seed, progress=progress,
                         resume=resume)
        before = _checkpoint_marks(seed_dir) if resume else {}
        _seed_everything(seed)
        result = spec.run(copy.deepcopy(cfg), ctx)
        where = f"{spec.name}.run() result"
        if not isinstance(result, RunResult) and not (
                hasattr(result, "metrics") and hasattr(result, "embeddings")):
            raise TypeError(f"{where}: expected a RunResult, got {type(result).__name__}")
        metrics = _check_metrics(result.metrics, f"{where}.metrics")
        if before and _checkpoint_marks(seed_dir) == before:
            # resumed with nothing left to train: the metrics come from the earlier training,
            # so do its costs (timings, memory), not those of this call's restore
            kept = _cost_metrics(_seed_metrics(earlier, seeds, i))
            if kept:
                metrics = {**metrics, **kept}
                untrained += 1
        if i == 0:
            emb = _check_embeddings(result.embeddings, f"{where}.embeddings")
            _write_embeddings(out / "embeddings.pt", emb)
        per_seed.append(metrics)
    elapsed = time.perf_counter() - t0

    if len(seeds) == 1:
        summary: dict[str, Any] = {**per_seed[0], "seed": seeds[0]}
    else:
        summary = _aggregate(per_seed, seeds)
    summary["time_total_s"] = round(elapsed, 3)
    if untrained == len(seeds) and isinstance(earlier.get("time_total_s"), (int, float)):
        summary["time_total_s"] = earlier["time_total_s"]  # the run that did the training
    _write_json(out / "metrics.json", summary)
    _print_metrics(summary, f"\n{spec.name} on {dataset} ({len(seeds)} seed"
                            f"{'s' if len(seeds) > 1 else ''}): {out / 'metrics.json'}")
    return 0


# ---------------------------------------------------------------------------------------------
# eval
# ---------------------------------------------------------------------------------------------
def _read_old_metrics(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _warn(f"ignoring unreadable {path} ({exc})")
        return {}
    return _nan_for_null(data) if isinstance(data, dict) else {}


def _updated_per_seed(old: Mapping[str, Any], seeds: list[int], metrics: dict[str, float]
                      ) -> list[dict[str, float]] | None:
    """The old per-seed metrics with the first seed's entry replaced, or None if unusable."""
    per_seed = old.get("per_seed")
    if isinstance(per_seed, Mapping):  # keyed by seed
        try:
            per_seed = [dict(per_seed.get(str(s), per_seed.get(s))) for s in seeds]
        except TypeError:
            return None
    if not isinstance(per_seed, list) or len(per_seed) != len(seeds) or \
            not all(isinstance(m, Mapping) for m in per_seed):
        return None
    updated = [dict(m) for m in per_seed]
    updated[0] = {**updated[0], **metrics}  # keep what evaluate() does not recompute (costs)
    return updated


def _cmd_eval(args: argparse.Namespace) -> int:
    run_dir = Path(args.dir)
    if not run_dir.is_dir():
        raise ValueError(f"DIR: expected a run folder, got {run_dir} "
                         f"({'a file' if run_dir.exists() else 'does not exist'})")
    cfg_path, emb_path = run_dir / "config.yaml", run_dir / "embeddings.pt"
    missing = [p.name for p in (cfg_path, emb_path) if not p.is_file()]
    if missing:
        raise ValueError(f"DIR: {run_dir} is not a complete run folder "
                         f"(missing {' and '.join(missing)})")
    data = load_yaml(cfg_path)
    run_info = data.pop(RUN_SECTION, None) or {}
    if not isinstance(run_info, dict) or not run_info.get("method"):
        raise ValueError(f"{cfg_path}: expected a '{RUN_SECTION}:' section with the method name")
    spec = get_method(str(run_info["method"]))
    cfg = config_from_dict(spec.config_cls, data)
    seeds = _resolve_seeds(None, None, run_info, str(cfg_path))
    device = _resolve_device(args.device)
    try:
        emb = torch.load(emb_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign file
        raise ValueError(f"{emb_path}: cannot read the embeddings ({type(exc).__name__}: "
                         f"{_one_line(exc)})") from exc
    emb = _check_embeddings(emb, str(emb_path))

    ctx = RunContext(out_dir=run_dir, device=device, seed=seeds[0], progress=not args.no_progress)
    _seed_everything(seeds[0])
    t0 = time.perf_counter()
    metrics = _check_metrics(spec.evaluate(cfg, emb, ctx), f"{spec.name}.evaluate() result")
    elapsed = time.perf_counter() - t0

    metrics_path = run_dir / "metrics.json"
    old = _read_old_metrics(metrics_path)
    per_seed = _updated_per_seed(old, seeds, metrics) if len(seeds) > 1 else None
    if per_seed is not None:
        summary: dict[str, Any] = _aggregate(per_seed, seeds)
    else:
        if len(seeds) > 1:
            _warn(f"{metrics_path} has no per-seed metrics to update; writing the metrics of "
                  f"seed {seeds[0]} only")
        kept = {k: v for k, v in old.items() if k not in ("per_seed", "seeds") and
                not k.endswith("_std")} if len(seeds) == 1 else {}
        summary = {**kept, **metrics, "seed": seeds[0]}
    if "time_total_s" in old:
        summary["time_total_s"] = old["time_total_s"]
    _write_json(metrics_path, summary)
    _print_metrics(metrics, f"{spec.name} on {getattr(cfg, 'dataset', '?')}, seed {seeds[0]} "
                            f"(re-evaluated in {elapsed:.1f}s): {metrics_path}")
    return 0


# ---------------------------------------------------------------------------------------------
# datasets, methods
# ---------------------------------------------------------------------------------------------
def _cmd_datasets(args: argparse.Namespace) -> int:
    available = _registry_function("available")
    if available is None:
        raise ValueError("datasets: the dataset registry (contrastkit.datasets.available) is not "
                         "available in this installation")
    infos = available(args.root)
    rows = []
    for info in infos:
        aliases = getattr(info, "aliases", ()) or ()
        rows.append((info.id, ", ".join(aliases) if aliases else "-", info.domain, info.status,
                     getattr(info, "description", "") or ""))
    print(_table(("id", "aliases", "domain", "status", "description"), rows)
          if rows else "(no datasets registered)")
    counts: dict[str, int] = {}
    for info in infos:
        counts[info.status] = counts.get(info.status, 0) + 1
    if counts:
        print(f"\n{len(infos)} datasets: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return 0


def _cmd_methods(args: argparse.Namespace) -> int:
    rows = []
    for name in list_methods():
        spec = get_method(name)
        names = list(spec.presets)
        presets = ", ".join(names[:6]) + (f" (+{len(names) - 6} more)" if len(names) > 6 else "")
        presets = presets or "-"
        rows.append((name, spec.default_dataset, presets, spec.description))
    print(_table(("method", "default dataset", "presets", "description"), rows)
          if rows else "(no methods available)")
    for name, error in unavailable_methods().items():
        print(f"unavailable: {name} ({error})", file=sys.stderr)
    return 0


def _cmd_forecast(args: argparse.Namespace) -> int:
    from .seqcl.forecast import forecast_csv
    res = forecast_csv(args.csv, args.target, args.horizon, overrides=parse_overrides(args.set),
                       seed=args.seed, device=args.device, progress=not args.no_progress,
                       png=args.plot)
    print(_table(("metric", "value"), [(k, f"{v:.4f}") for k, v in res.metrics.items()]))
    print(f"forecast of {args.target} for the {args.horizon} steps after the last row:")
    print(" ".join(f"{v:.4g}" for v in res.future))
    if args.plot:
        print(f"plot: {args.plot}")
    return 0


# ---------------------------------------------------------------------------------------------
# parser and entry point
# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``contrastkit`` command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")

    parser = argparse.ArgumentParser(
        prog="contrastkit", parents=[common],
        description="Contrastive representation learning: train and evaluate methods.")
    parser.add_argument("--version", action="version", version=f"contrastkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = sub.add_parser(
        "train", parents=[common], help="train a method and evaluate it",
        description="Train METHOD on a dataset. Config layers, later ones win: the dataset "
                    "preset < --config FILE < --set key=value.")
    train.add_argument("method", nargs="?", metavar="METHOD",
                       help="method name (see `contrastkit methods`); optional with a --config "
                            "file saved by a previous run")
    train.add_argument("--dataset", metavar="ID", help="dataset id or alias "
                       "(default: the method's default dataset)")
    train.add_argument("--config", metavar="FILE.yaml",
                       help="YAML config (e.g. a previous run's DIR/config.yaml)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value (repeatable; dotted keys for nested fields)")
    train.add_argument("--epochs", type=int, metavar="N",
                       help="shorthand for --set epochs=N (wins over --set)")
    train.add_argument("--seed", type=int, metavar="N",
                       help="random seed (default 0); with --seeds, the first seed")
    train.add_argument("--seeds", type=int, metavar="N",
                       help="run N seeds: seed, seed+1, ..., seed+N-1; metrics are aggregated")
    train.add_argument("--out", metavar="DIR",
                       help="run folder (default runs/<method>-<dataset>-<YYYYmmdd-HHMMSS>)")
    train.add_argument("--device", choices=("cpu", "cuda", "auto"),
                       help="device (default: the config file's run.device, else auto: cuda "
                            "when available)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.add_argument("--resume", action="store_true",
                       help="continue each seed from its checkpoint.pt in --out when present "
                            "(exact resume: same result as an uninterrupted run)")

    ev = sub.add_parser("eval", parents=[common], help="re-evaluate a run's saved embeddings",
                        description="Re-evaluate DIR/embeddings.pt with the method's evaluation "
                                    "and rewrite DIR/metrics.json.")
    ev.add_argument("dir", metavar="DIR", help="run folder written by `contrastkit train`")
    ev.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                    help="device (default auto)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bars")

    ds = sub.add_parser("datasets", parents=[common], help="list datasets and whether they are "
                        "present")
    ds.add_argument("--root", metavar="DIR", help="data root (default: $CONTRASTKIT_DATA, "
                    "../shared/data or ~/.cache/contrastkit)")

    sub.add_parser("methods", parents=[common], help="list methods")

    fc = sub.add_parser("forecast", parents=[common], help="forecast a column of your CSV with "
                        "TS2Vec", description="Train TS2Vec on CSV (first column `date`, 60/20/20 "
                        "split by rows, train-only scaling), report test mse/mae beside the "
                        "last-value forecaster, forecast H steps after the last row.")
    fc.add_argument("--csv", required=True, metavar="FILE", help="CSV with a leading date column")
    fc.add_argument("--target", required=True, metavar="COL", help="column to forecast")
    fc.add_argument("--horizon", required=True, type=int, metavar="H", help="steps ahead")
    fc.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="TS2Vec config override (repeatable), e.g. --set iters=100")
    fc.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default 0)")
    fc.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    fc.add_argument("--plot", metavar="FILE.png", help="save history, truth and forecast here")
    fc.add_argument("--no-progress", action="store_true", help="no progress bar")

    pl = sub.add_parser("plot", parents=[common], help="plot a run's training curves "
                        "(needs the 'plot' extra)")
    pl.add_argument("dir", metavar="DIR", help="run folder written by `contrastkit train`")
    pl.add_argument("--out", metavar="FILE.png", help="output image (default DIR/training.png)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``contrastkit`` command line.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 2 on a user error (printed as one ``error: ...`` line on
        stderr, with the traceback only under ``--debug``), 130 when interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    try:
        if args.command == "train":
            return _cmd_train(args, argv)
        if args.command == "eval":
            return _cmd_eval(args)
        if args.command == "datasets":
            return _cmd_datasets(args)
        if args.command == "methods":
            return _cmd_methods(args)
        if args.command == "forecast":
            return _cmd_forecast(args)
        if args.command == "plot":
            from .plotting import plot_run
            print(plot_run(args.dir, args.out))
            return 0
        raise ValueError(f"COMMAND: unknown command {args.command!r}")
    except (*_USER_ERRORS, ImportError) as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
