"""TS2Vec / AutoTCL classification on the shared UCR (61) and UEA (3) datasets against the
TS2Vec paper's per-dataset accuracies (specs ts2vec_infots.md A5, ts2vec_ucr_reference.md,
autotcl.md section 5).

Protocol (TS2Vec ``tasks/classification.py``): train the encoder on the train split (labels
unused), max-pool the SWA encoder's full-series output over time, RBF-SVM (``gamma='scale'``,
5-fold grid over ``C``; one ``C = inf`` fit on tiny training sets, AutoTCL: ``C = 1e8``), test
accuracy. TS2Vec runs at the official configuration (repr 320, hidden 64, depth 10, batch 8,
AdamW lr 1e-3, max_train_length 3000, 200 iterations for <= 100,000 training values else 600),
seed 42 (the official scripts' seed).

AutoTCL (``--method autotcl``): the classification setting of the paper (TS2Vec encoder, no
trend disentangler) has no released script or hyperparameters; we use
:data:`contrastkit.seqcl.autotcl.CLASSIFICATION` (TS2Vec's encoder, budget, batch, learning rate
and window; the paper's latent timestamp mask on the view; a dot-product global loss) and
AutoTCL's default augmenter. ``--set KEY=VALUE`` (repeatable) overrides AutoTCL config fields,
e.g. ``--set global_similarity=cosine --set view_timestamp_mask=false --name
ts_classification_autotcl_cosine`` for the code's cosine loss (whose representation norm runs
away).

Each dataset runs in its own single-threaded subprocess with a wall-clock cap (``--timeout``,
default 480 s); a dataset over the cap or failing is recorded as ``skipped`` with the reason.
Results are resumable: ``results/ts_classification_<method>.json`` keeps the finished datasets,
which are skipped unless ``--force`` (``--retry-skipped`` reruns only the skipped ones). The
Markdown table gives accuracy, the reference, the difference, training and evaluation time per
dataset and the means over the datasets done (ours vs reference on the same datasets).

    OMP_NUM_THREADS=1 python benchmarks/ts_classification.py                    # all 64, TS2Vec
    OMP_NUM_THREADS=1 python benchmarks/ts_classification.py --datasets ucr     # the 61 UCR
    OMP_NUM_THREADS=1 python benchmarks/ts_classification.py --method autotcl --datasets uea
    python benchmarks/ts_classification.py --report-only                        # rewrite the MD
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
METHODS = ("ts2vec", "autotcl")

#: TS2Vec paper appendix (128 UCR datasets, B = 8 column), the 61 UCR datasets shared here
#: (spec ts2vec_ucr_reference.md; mean 0.843)
UCR_REFERENCE = {
    "ArrowHead": 0.857, "Beef": 0.767, "BirdChicken": 0.800, "Car": 0.833, "CBF": 1.000,
    "Coffee": 1.000, "CricketX": 0.782, "CricketY": 0.749, "DiatomSizeReduction": 0.984,
    "DistalPhalanxOutlineCorrect": 0.761, "DistalPhalanxOutlineAgeGroup": 0.727,
    "Earthquakes": 0.748, "ECGFiveDays": 1.000, "FaceAll": 0.771, "FacesUCR": 0.924,
    "FiftyWords": 0.771, "Fish": 0.926, "GunPoint": 0.980, "Ham": 0.714, "Herring": 0.641,
    "ItalyPowerDemand": 0.925, "Lightning7": 0.863, "Meat": 0.950, "MedicalImages": 0.789,
    "MiddlePhalanxOutlineCorrect": 0.838, "MiddlePhalanxOutlineAgeGroup": 0.636,
    "MiddlePhalanxTW": 0.584, "OliveOil": 0.900, "OSULeaf": 0.851,
    "PhalangesOutlinesCorrect": 0.809, "Plane": 1.000, "ProximalPhalanxOutlineAgeGroup": 0.834,
    "ProximalPhalanxTW": 0.824, "SonyAIBORobotSurface1": 0.903, "SonyAIBORobotSurface2": 0.871,
    "SwedishLeaf": 0.941, "SyntheticControl": 0.997, "ToeSegmentation1": 0.917, "Trace": 1.000,
    "TwoLeadECG": 0.986, "WordSynonyms": 0.676, "Worms": 0.701, "WormsTwoClass": 0.805,
    "ACSF1": 0.900, "BME": 0.993, "GestureMidAirD1": 0.608, "GestureMidAirD2": 0.469,
    "GestureMidAirD3": 0.292, "GesturePebbleZ2": 0.873, "GunPointAgeSpan": 0.987,
    "GunPointOldVersusYoung": 1.000, "InsectEPGRegularTrain": 1.000, "InsectEPGSmallTrain": 1.000,
    "PowerCons": 0.961, "Rock": 0.700, "ShakeGestureWiimoteZ": 0.940, "SmoothSubspace": 0.980,
    "UMD": 1.000, "DodgerLoopDay": 0.562, "DodgerLoopGame": 0.841, "DodgerLoopWeekend": 0.964,
}
#: TS2Vec paper Table 10 (TS2Vec column) and AutoTCL workshop Table 9 (AutoTCL column)
UEA_REFERENCE = {"BasicMotions": 0.975, "ERing": 0.874, "JapaneseVowels": 0.984}
UEA_REFERENCE_AUTOTCL = {"BasicMotions": 1.000, "ERing": 0.944, "JapaneseVowels": 0.984}
UEA_ORDER = ("BasicMotions", "ERing", "JapaneseVowels")


def reference(method: str, archive: str, name: str) -> float | None:
    """The published accuracy the method is compared with (UCR: TS2Vec's, as AutoTCL reports
    no UCR numbers; UEA: the method's own)."""
    if archive == "UCR":
        return UCR_REFERENCE.get(name)
    table = UEA_REFERENCE_AUTOTCL if method == "autotcl" else UEA_REFERENCE
    return table.get(name)


# ------------------------------------------------------------------------------ dataset list
@functools.lru_cache(maxsize=None)
def _ucr_shape(folder: Path) -> tuple[int, int, int] | None:
    """``(n_train, n_test, length)`` from the UCR files without parsing them (None if absent)."""
    n, t = [], 0
    for split in ("TRAIN", "TEST"):
        p = folder / f"{folder.name}_{split}.tsv.gz"
        if not p.is_file():
            p = folder / f"{folder.name}_{split}.tsv"
            if not p.is_file():
                return None
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rt") as fh:
            lines = [ln for ln in fh if ln.strip()]
        n.append(len(lines))
        t = max(t, max(len(ln.rstrip("\n").split("\t")) - 1 for ln in lines))
    return n[0], n[1], t


def estimated_cost(n_train: int, n_test: int, length: int) -> float:
    """A relative cost (encoder time-steps processed): training ``iters x 2 views x 8 x T x 3``
    (forward + backward) plus one encoding pass over train and test."""
    iters = 200 if n_train * length <= 100_000 else 600
    t = min(length, 3000)
    return iters * 2 * 8 * t * 3 * (1 + t / 2000) + (n_train + n_test) * length


#: estimated cost above which a UCR set runs after the UEA ones in ``--datasets all`` (Worms,
#: WormsTwoClass, Rock, ACSF1: several minutes each even alone on a core)
EXPENSIVE = 30e6


def dataset_list(which: str, root: Path | None = None) -> list[dict[str, Any]]:
    """The datasets to run, cheapest UCR first (so the table fills fast), then the UEA ones
    (for ``all``: before the UCR sets costlier than :data:`EXPENSIVE`).

    Args:
        which: ``all`` (UCR + UEA), ``ucr``, ``uea`` or a comma list of names / ids
            (``Coffee``, ``ucr-coffee``, ``uea-ering``).
        root: the data root (default :func:`contrastkit.datasets.data_root`).

    Returns:
        dicts ``{"name", "archive", "id", "n_train", "n_test", "length"}`` (sizes ``None`` for UEA).
    """
    from contrastkit.datasets import data_root
    from contrastkit.datasets.timeseries import KNOWN_ARCHIVE_SETS, TS_DIR, _slug
    base = Path(data_root(root)) / TS_DIR
    ucr, uea = [], []
    for name in KNOWN_ARCHIVE_SETS["UCR"]:
        shape = _ucr_shape(base / "UCR" / name)
        if shape is not None:
            ucr.append({"name": name, "archive": "UCR", "id": f"ucr-{_slug(name)}",
                        "n_train": shape[0], "n_test": shape[1], "length": shape[2]})
    ucr.sort(key=lambda d: (estimated_cost(d["n_train"], d["n_test"], d["length"]), d["name"]))
    for name in UEA_ORDER:
        if (base / "UEA" / name).is_dir():
            uea.append({"name": name, "archive": "UEA", "id": f"uea-{_slug(name)}",
                        "n_train": None, "n_test": None, "length": None})
    if which == "all":  # the UEA sets (cheap) before the few UCR sets likely over the cap
        cheap = [d for d in ucr if estimated_cost(d["n_train"], d["n_test"], d["length"])
                 <= EXPENSIVE]
        return cheap + uea + ucr[len(cheap):]
    if which == "ucr":
        return ucr
    if which == "uea":
        return uea
    wanted = [w.strip() for w in which.split(",") if w.strip()]
    by_key = {}
    for d in ucr + uea:
        by_key[d["name"].lower()] = by_key[d["id"]] = d
    out = []
    for w in wanted:
        d = by_key.get(w.lower())
        if d is None:
            raise ValueError(f"--datasets: expected 'all', 'ucr', 'uea' or names of the shared "
                             f"UCR/UEA sets, got {w!r}")
        out.append(d)
    return out


# ------------------------------------------------------------------------------ one dataset
def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``--set`` items -> dict (:func:`contrastkit.core.config.parse_overrides`, imported here so
    that the parent process, which only schedules workers, never loads torch)."""
    from contrastkit.core.config import parse_overrides as _parse
    return _parse(items)


def method_config(method: str, dataset_id: str, n_values: int, iters: int | None,
                  overrides: dict[str, Any] | None = None) -> Any:
    """The configuration of ``method`` on a classification set (module docstring)."""
    from contrastkit.seqcl import ts2vec as T
    if method == "ts2vec":
        return T.TS2VecConfig(dataset=dataset_id, iters=iters, **(overrides or {}))
    from contrastkit.seqcl import autotcl as A
    budget = iters if iters is not None else T.default_iters(n_values)
    return A.AutoTCLConfig.classification(dataset_id, **{"iters": budget, **(overrides or {})})


def run_one(method: str, dataset_id: str, seed: int = 42, iters: int | None = None,
            overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``method`` on ``dataset_id``'s train split and score the SVM protocol (this
    process; single thread)."""
    import numpy as np
    import torch
    from contrastkit.datasets import load
    from contrastkit.seqcl import ts2vec as T
    torch.set_num_threads(1)
    data = load(dataset_id)
    n_values = int(np.asarray(data.x_train).size)
    cfg = method_config(method, dataset_id, n_values, iters, overrides)
    if method == "ts2vec":
        fit = T.fit
    else:
        from contrastkit.seqcl import autotcl as A
        fit = A.fit
    t0 = time.perf_counter()
    model, trainer = fit(cfg, data.x_train, seed=seed)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    ztr = model.embed(torch.from_numpy(data.x_train)).numpy()
    zte = model.embed(torch.from_numpy(data.x_test)).numpy()
    metrics = T.eval_classification(ztr, data.y_train, zte, data.y_test,
                                    max_train=cfg.max_svm_train, seed=seed,
                                    tiny_c=float("inf") if method == "ts2vec" else 1e8)
    eval_s = time.perf_counter() - t1
    return {"acc": metrics["acc"], "auprc": metrics["auprc"], "train_time_s": train_s,
            "eval_time_s": eval_s, "iters": int(trainer.stats["steps"]),
            "official_iters": T.default_iters(n_values),
            "final_loss": float(trainer.history[-1]["loss"]),
            "n_train": int(len(data.y_train)), "n_test": int(len(data.y_test)),
            "length": int(data.x_train.shape[1]), "channels": int(data.x_train.shape[2]),
            "classes": int(data.num_classes)}


def run_in_subprocess(method: str, d: dict[str, Any], seed: int, iters: int | None,
                      timeout: float, sets: list[str] | None = None) -> dict[str, Any]:
    """:func:`run_one` in a single-threaded child process with a wall-clock cap; a timeout or
    failure gives ``{"status": "skipped", "reason": ...}``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", d["id"], "--method",
               method, "--seed", str(seed), "--worker-out", str(out)]
        if iters is not None:
            cmd += ["--iters", str(iters)]
        for item in sets or []:
            cmd += ["--set", item]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return {"status": "skipped", "reason": f"over the per-dataset cap of {timeout:.0f} s "
                    "(train + eval, one shared CPU thread)", "wall_s": timeout}
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"status": "skipped", "reason": f"exit {proc.returncode}: {' | '.join(tail)}",
                    "wall_s": wall}
        res = json.loads(out.read_text())
    res.update(status="ok", wall_s=wall)
    return res


# ------------------------------------------------------------------------------ results
def results_paths(method: str, name: str | None = None) -> tuple[Path, Path]:
    stem = name or f"ts_classification_{method}"
    return RESULTS / f"{stem}.json", RESULTS / f"{stem}.md"


def load_results(path: Path) -> dict[str, Any]:
    if path.is_file():
        return json.loads(path.read_text())
    return {"datasets": {}}


def save_results(path: Path, res: dict[str, Any]) -> None:
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(res, indent=2))
    tmp.replace(path)


def summarise(rows: dict[str, dict[str, Any]], archive: str) -> dict[str, Any]:
    """Means of our accuracy and of the reference over the datasets of ``archive`` done with a
    reference (the same datasets on both sides)."""
    done = [r for r in rows.values() if r.get("archive") == archive and r.get("status") == "ok"
            and r.get("reference") is not None]
    if not done:
        return {"count": 0}
    ours = sum(r["acc"] for r in done) / len(done)
    ref = sum(r["reference"] for r in done) / len(done)
    return {"count": len(done), "mean_acc": ours, "mean_reference": ref, "diff": ours - ref,
            # the reference has 3 decimals: compare at that precision
            "wins": sum(round(r["acc"], 3) > r["reference"] for r in done),
            "ties": sum(round(r["acc"], 3) == r["reference"] for r in done),
            "train_time_s": sum(r["train_time_s"] for r in done),
            "eval_time_s": sum(r["eval_time_s"] for r in done)}


def _ours_ts2vec() -> dict[str, Any]:
    p = results_paths("ts2vec")[0]
    return load_results(p)["datasets"] if p.is_file() else {}


def render_markdown(res: dict[str, Any]) -> str:
    """The per-dataset table and the summary lines."""
    method = res["method"]
    label = "TS2Vec" if method == "ts2vec" else "AutoTCL"
    rows = res["datasets"]
    other = _ours_ts2vec() if method == "autotcl" else {}
    ref_label = ("TS2Vec paper (UCR) / AutoTCL paper (UEA)" if method == "autotcl"
                 else "TS2Vec paper")
    head = (f"| Dataset | archive | train / test | length | classes | {label} (ours) | "
            f"reference | diff |" + (" TS2Vec (ours) |" if other else "")
            + " iters | train s | eval s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for key, r in rows.items():
        if r.get("status") != "ok":
            continue
        ref = r.get("reference")
        cells = [r["name"], r["archive"], f"{r['n_train']} / {r['n_test']}", str(r["length"]),
                 str(r["classes"]), f"{r['acc']:.3f}", "-" if ref is None else f"{ref:.3f}",
                 "-" if ref is None else f"{r['acc'] - ref:+.3f}"]
        if other:
            o = other.get(key, {})
            cells.append(f"{o['acc']:.3f}" if o.get("status") == "ok" else "-")
        cells += [str(r["iters"]), f"{r['train_time_s']:.0f}", f"{r['eval_time_s']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    out = [f"{label} classification, seed {res['seed']}, {res['config_note']} "
           f"({res['machine']}); reference: {ref_label}.", ""]
    for archive in ("UCR", "UEA"):
        s = summarise(rows, archive)
        if s["count"]:
            out.append(f"- **{archive}**: {s['count']} datasets done: mean accuracy "
                       f"{s['mean_acc']:.3f} (ours) vs {s['mean_reference']:.3f} (reference, same "
                       f"datasets), diff {s['diff']:+.3f}; ours higher on {s['wins']}, equal on "
                       f"{s['ties']}; train {s['train_time_s'] / 60:.1f} min, eval "
                       f"{s['eval_time_s'] / 60:.1f} min in all.")
    skipped = [r for r in rows.values() if r.get("status") != "ok"]
    if skipped:
        out.append("- skipped: " + "; ".join(f"{r['name']} ({r['reason']})" for r in skipped))
    seen = {r.get("name") for r in rows.values()}
    missing = [n for n in (*UCR_REFERENCE, *UEA_ORDER) if n not in seen]
    if missing:
        out.append(f"- not run yet ({len(missing)}): " + ", ".join(missing))
    return "\n".join(out) + "\n\n" + "\n".join(lines) + "\n"


def write_outputs(res: dict[str, Any], json_path: Path, md_path: Path) -> str:
    for archive in ("UCR", "UEA"):
        res.setdefault("summary", {})[archive] = summarise(res["datasets"], archive)
    save_results(json_path, res)
    md = render_markdown(res)
    md_path.write_text(md)
    return md


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="ts2vec", choices=METHODS)
    ap.add_argument("--datasets", default="all",
                    help="all | ucr | uea | comma list of names (default all: 61 UCR + 3 UEA)")
    ap.add_argument("--seed", type=int, default=42, help="seed (official scripts: 42)")
    ap.add_argument("--iters", type=int, default=None, help="override the official budget")
    ap.add_argument("--timeout", type=float, default=480.0, help="per-dataset cap, seconds")
    ap.add_argument("--force", action="store_true", help="rerun datasets already in the JSON")
    ap.add_argument("--retry-skipped", action="store_true", help="rerun the skipped datasets")
    ap.add_argument("--name", default=None, help="results file stem")
    ap.add_argument("--report-only", action="store_true", help="only rewrite the Markdown")
    ap.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                    help="override a config field (repeatable)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        res = run_one(args.method, args.worker, args.seed, args.iters,
                      parse_overrides(args.set))
        Path(args.worker_out).write_text(json.dumps(res))
        return
    json_path, md_path = results_paths(args.method, args.name)
    res = load_results(json_path)
    note = ("official configuration (repr 320, hidden 64, depth 10, batch 8, lr 1e-3, "
            "200 / 600 iterations)" if args.method == "ts2vec" else
            "our classification setting (no released config): TS2Vec backbone and budget "
            "(batch 8, lr 1e-3, 200 / 600 iterations, window 3000), the paper's timestamp "
            "mask on the view, dot-product global loss, AutoTCL's default augmenter")
    overrides = parse_overrides(args.set)
    if overrides:
        note += ", overridden: " + ", ".join(f"{k}={v}" for k, v in overrides.items())
    if args.iters is not None:
        note += f", iterations overridden to {args.iters}"
    res.update(method=args.method, seed=args.seed, config_note=note,
               machine=f"{platform.processor() or platform.machine()}, CPU, 1 thread (shared)")
    res.setdefault("datasets", {})
    if args.report_only:
        print(write_outputs(res, json_path, md_path))
        return
    todo = dataset_list(args.datasets)
    t_start = time.perf_counter()
    for k, d in enumerate(todo):
        prev = res["datasets"].get(d["id"])
        if prev is not None and not args.force and not (
                args.retry_skipped and prev.get("status") != "ok"):
            continue
        r = run_in_subprocess(args.method, d, args.seed, args.iters, args.timeout, args.set)
        r.update(name=d["name"], archive=d["archive"], id=d["id"],
                 reference=reference(args.method, d["archive"], d["name"]))
        res["datasets"][d["id"]] = r
        write_outputs(res, json_path, md_path)
        msg = (f"acc {r['acc']:.3f} (ref {r['reference']}) train {r['train_time_s']:.0f} s "
               f"eval {r['eval_time_s']:.0f} s" if r["status"] == "ok"
               else f"skipped: {r['reason']}")
        print(f"[{k + 1}/{len(todo)}] {d['name']}: {msg} "
              f"(elapsed {(time.perf_counter() - t_start) / 60:.1f} min)", flush=True)
    print(write_outputs(res, json_path, md_path))


if __name__ == "__main__":
    main()
