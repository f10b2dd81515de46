"""Fashion-MNIST kNN benchmark of the vision frames (issue #9 protocol).

Protocol: weighted kNN, ``k = 200``, ``t = 0.1``, cosine on ℓ2-normalised features, on the full
10,000-image test split; memory bank = the whole 60,000-image train split (``--bank train``,
default) or the training subset (``--bank subset``). Rows:

* ``raw_pixels`` — the flattened ``[0, 1]`` pixels as features;
* ``random_init`` — the untrained backbone (seeded init, eval-mode BN) on the clean views;
* then every method on the same schedule (``--epochs``, ``--subset``, ``--batch-size``, SGD
  ``lr 0.06 x batch / 128``, cosine, wd 5e-4 unless ``--set`` says otherwise), each trained in its
  own subprocess through ``contrastkit train`` (:mod:`benchmarks._runner`).

Results go to ``benchmarks/results/<name>.{json,md}`` (``--name``, default
``vision_fashion_mnist``); methods already in the JSON are skipped unless ``--force``, so the
script resumes after an interruption.

CPU run used for the table (one thread per job)::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/vision_fashion_mnist.py \\
        --backbone small_cnn --epochs 5 --subset 10000 --device cpu

GPU (ResNet-18, bf16, channels-last, GPU augmentations)::

    python benchmarks/vision_fashion_mnist.py --backbone resnet18 --epochs 200 --subset 0 \\
        --device cuda --set amp=bf16 channels_last=true deterministic=false \\
        --methods raw_pixels random_init simclr_dcl --name vision_fashion_mnist_resnet18
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _runner import train_in_subprocess  # noqa: E402

RESULTS = Path(__file__).parent / "results"

#: benchmark row -> (registry method, --set overrides specific to the row)
METHODS: dict[str, tuple[str, list[str]]] = {
    "simclr_infonce": ("simclr", ["loss=infonce"]),
    "simclr_infonce_t0.1": ("simclr", ["loss=infonce", "temperature=0.1"]),
    "simclr_dcl": ("simclr", ["loss=dcl"]),
    "simclr_dclw": ("simclr", ["loss=dclw"]),
    "simclr_hard_infonce": ("simclr", ["loss=hard_infonce", "hard_keep_fraction=0.25"]),
    "simclr_mv_infonce": ("simclr", ["loss=mv_infonce", "num_views=3"]),
    "simclr_mv_dhel": ("simclr", ["loss=mv_dhel", "num_views=3"]),
    "simclr_mv_pwe": ("simclr", ["loss=infonce", "num_views=3"]),
    "simclr_mv_avg": ("simclr", ["loss=mv_avg", "num_views=3"]),
    "simclr_mv_pvc": ("simclr", ["loss=mv_pvc", "num_views=3"]),
    "simclr_cacr": ("simclr", ["loss=cacr"]),
    "simclr_amcl": ("simclr", ["loss=amcl"]),
    "simclr_amcl_warm": ("simclr", ["loss=amcl", "amcl_warmup_epochs=2"]),
    "simclr_swav": ("simclr", ["loss=swav"]),
    "moco": ("moco", ["plugin=none"]),
    "moco_mochi": ("moco", ["plugin=mochi"]),
    "moco_ft": ("moco", ["plugin=feature_transformation"]),
}
BASELINES = ("raw_pixels", "random_init")
DEFAULT_ROWS = (*BASELINES, "simclr_infonce", "simclr_dcl", "simclr_dclw", "simclr_hard_infonce",
                "simclr_mv_infonce", "simclr_mv_dhel", "simclr_mv_pwe", "simclr_mv_avg",
                "simclr_mv_pvc", "simclr_cacr", "simclr_amcl",
                "simclr_swav", "moco", "moco_mochi", "moco_ft")


def _bank(data: Any, bank: str, subset: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from contrastkit.vision.frame import take_subset
    if bank == "subset":
        idx = take_subset(data.train_images.shape[0], subset, seed)
        return data.train_images[idx], data.train_labels[idx]
    return data.train_images, data.train_labels


def baseline(row: str, args: argparse.Namespace) -> dict[str, Any]:
    """``raw_pixels`` or ``random_init`` under the kNN protocol (in this process)."""
    from contrastkit.datasets import load
    from contrastkit.vision.augment import normalize, to_float
    from contrastkit.vision.backbones import build_backbone
    from contrastkit.vision.knn import extract_features, knn_accuracy

    t0 = time.perf_counter()
    data = load("fashion-mnist")
    bank_x, bank_y = _bank(data, args.bank, args.subset, 0)
    dev = torch.device(args.device if args.device != "auto" else
                       ("cuda" if torch.cuda.is_available() else "cpu"))
    if row == "raw_pixels":
        def fn(x: torch.Tensor) -> torch.Tensor:
            return to_float(x).flatten(1)
    else:
        torch.manual_seed(args.seed)
        net = build_backbone(args.backbone, data.in_channels).to(dev).eval()

        @torch.no_grad()
        def fn(x: torch.Tensor) -> torch.Tensor:
            return net(normalize(to_float(x), data.mean, data.std))
    with torch.no_grad():
        bank_f = extract_features(fn, bank_x, batch_size=1024, device=dev)
        test_f = extract_features(fn, data.test_images, batch_size=1024, device=dev)
    out = knn_accuracy(bank_f, bank_y.to(dev), test_f, data.test_labels.to(dev), num_classes=10)
    out.update(epochs=0, wall_s=time.perf_counter() - t0, train_time_s=0.0,
               bank_size=int(bank_y.numel()))
    return out


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{100 * v:.2f}" if pct else f"{v:.1f}"
    return str(v)


def markdown(doc: dict[str, Any]) -> str:
    s = doc["schedule"]
    train = "all 60,000" if not s["subset"] else f"a fixed {s['subset']:,}-image subset of the"
    lines = [
        "# Fashion-MNIST, weighted kNN (k = 200, t = 0.1, cosine on normalised features)",
        "",
        f"Backbone `{s['backbone']}`; {s['epochs']} epochs on "
        f"{train} train images; batch {s['batch_size']}; memory bank: "
        f"{'the whole train split (60,000)' if s['bank'] == 'train' else 'the training subset'};"
        f" test: the full 10,000-image test split. Device {s['device']}, "
        f"{s.get('threads', '?')} thread(s). Extra settings: {' '.join(s['sets']) or 'none'}.",
        "",
        "| row | kNN top-1 (%) | kNN top-5 (%) | epochs | train time (s) | s / epoch | wall (s) |"
        " final loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row, r in doc["results"].items():
        if "error" in r:
            lines.append(f"| {row} | error: {r['error'][:80]} | | | | | {_fmt(r.get('wall_s'))} | |")
            continue
        lines.append(f"| {row} | {_fmt(r.get('knn_top1'), True)} | {_fmt(r.get('knn_top5'), True)}"
                     f" | {int(r.get('epochs', 0))} | {_fmt(r.get('train_time_s'))}"
                     f" | {_fmt(r.get('time_per_epoch_s'))} | {_fmt(r.get('wall_s'))}"
                     f" | {_fmt(r.get('final_loss'))} |")
    if doc.get("notes"):
        lines += [""] + [f"Note: {n}" for n in doc["notes"]]
    raw = doc["results"].get("raw_pixels", {}).get("knn_top1")
    if raw is not None:
        lines += ["", f"Raw pixels: {100 * raw:.2f} %; a method must reach "
                      f"{100 * raw + 5:.2f} % to be 5 points above."]
    lines += ["", "Commands (OMP_NUM_THREADS=1 MKL_NUM_THREADS=1; rows of several invocations "
                  "with the same schedule are merged):", ""]
    lines += [f"    {c}" for c in doc.get("commands", [doc.get("command")]) if c]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="small_cnn", choices=("small_cnn", "resnet18"))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--subset", type=int, default=10000, help="training images (0: all 60k)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--bank", default="train", choices=("train", "subset"))
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_ROWS),
                   help=f"rows to run: {', '.join((*BASELINES, *METHODS))}")
    p.add_argument("--set", nargs="*", default=[], dest="sets",
                   help="extra key=value settings for every method")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per method")
    p.add_argument("--name", default="vision_fashion_mnist")
    p.add_argument("--force", action="store_true", help="rerun rows already in the JSON")
    p.add_argument("--note", default=None, help="a line of context stored with the table")
    p.add_argument("--merge", nargs="*", default=[], metavar="JSON",
                   help="copy the rows of these result files (same schedule) into this table")
    args = p.parse_args(argv)
    unknown = [m for m in args.methods if m not in METHODS and m not in BASELINES]
    if unknown:
        p.error(f"--methods: unknown rows {unknown}; known: {[*BASELINES, *METHODS]}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    path_json, path_md = RESULTS / f"{args.name}.json", RESULTS / f"{args.name}.md"
    schedule = {"backbone": args.backbone, "epochs": args.epochs, "subset": args.subset,
                "batch_size": args.batch_size, "bank": args.bank, "device": args.device,
                "seed": args.seed, "sets": list(args.sets), "knn_k": 200, "knn_t": 0.1,
                "threads": os.environ.get("OMP_NUM_THREADS", str(torch.get_num_threads())),
                "torch": torch.__version__, "python": platform.python_version()}
    doc: dict[str, Any] = {"schedule": schedule, "results": {}}
    if path_json.exists():
        old = json.loads(path_json.read_text())
        if {k: v for k, v in old.get("schedule", {}).items() if k != "threads"} != \
                {k: v for k, v in schedule.items() if k != "threads"} and not args.force:
            print(f"warning: {path_json} was made with another schedule "
                  f"({old.get('schedule')}); rows are kept only if --force is not given and the "
                  f"schedule matches, so starting a fresh table", file=sys.stderr)
        else:
            doc["results"] = old.get("results", {})
            doc["commands"] = [c for c in old.get("commands", [old.get("command")]) if c]
            doc["notes"] = old.get("notes", [])
    command = "python benchmarks/vision_fashion_mnist.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    doc["commands"] = [c for c in doc.get("commands", [doc.get("command")]) if c]
    if command not in doc["commands"]:
        doc["commands"].append(command)
    doc["command"] = command
    if args.note:
        doc["notes"] = [*doc.get("notes", []), args.note]

    for other in args.merge:
        extra = json.loads(Path(other).read_text())
        if {k: v for k, v in extra["schedule"].items() if k != "threads"} != \
                {k: v for k, v in schedule.items() if k != "threads"}:
            p.error(f"--merge: {other} has another schedule ({extra['schedule']})")
        for row, res in extra["results"].items():
            if row not in doc["results"] or "error" in doc["results"][row]:
                doc["results"][row] = res
        for c in extra.get("commands", [extra.get("command")]):
            if c and c not in doc["commands"]:
                doc["commands"].append(c)
    if args.merge:
        path_json.write_text(json.dumps(doc, indent=2) + "\n")
        path_md.write_text(markdown(doc))

    common = [f"backbone={args.backbone}", f"subset={args.subset}", f"batch_size={args.batch_size}",
              f"knn_bank={args.bank}", *args.sets]
    for row in args.methods:
        done = doc["results"].get(row)
        if done is not None and "error" not in done and not args.force:
            print(f"{row}: already done ({100 * done['knn_top1']:.2f} %), skipped")
            continue
        print(f"{row}: running ...", flush=True)
        if row in BASELINES:
            res = baseline(row, args)
        else:
            method, sets = METHODS[row]
            res = train_in_subprocess(method, "fashion-mnist", args.seed,
                                      [*common, *sets, f"epochs={args.epochs}"], args.device,
                                      args.timeout)
            res["sets"] = [*common, *sets]
        doc["results"][row] = res
        tmp = path_json.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, path_json)
        path_md.write_text(markdown(doc))
        msg = res.get("error") or f"kNN top-1 {100 * res['knn_top1']:.2f} %"
        print(f"{row}: {msg} (wall {res.get('wall_s', 0):.0f} s)", flush=True)
    path_json.write_text(json.dumps(doc, indent=2) + "\n")
    path_md.write_text(markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
