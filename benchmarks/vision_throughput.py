r"""Images/s of one SimCLR training step: our on-device augmentation vs a torchvision DataLoader.

One *image* is two 32x32 views; a step is a batch of ``B`` images (``2B`` views) through
ResNet-18 (CIFAR stem) + the projection head, forward + backward with the SimCLR + DCL loss
(:class:`contrastkit.vision.simclr.SimCLR`, ``loss="dcl"``) and an SGD step. Rows (variants),
each measured in its own subprocess so that one crash or out-of-memory does not end the run:

* ``ours`` — the uint8 dataset ``[N, 3, 32, 32]`` is one tensor on the device; per step:
  index a shuffled batch (:class:`~contrastkit.vision.frame.ImageBatches`), two views with the
  batched augmentation on the device (:func:`~contrastkit.vision.augment.simclr_augment`: crop
  0.08-1, flip, jitter (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale 0.2, normalise), then the model step
  (``SimCLR.training_step``, exactly what the trainer runs).
* ``torchvision_dataloader`` — the same model step fed by a :class:`torch.utils.data.DataLoader`
  over PIL images with torchvision's per-image CPU transforms (RandomResizedCrop(32),
  RandomHorizontalFlip, ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8, RandomGrayscale(0.2), ToTensor,
  Normalize), two views per image, ``--workers`` processes, ``pin_memory`` on CUDA. Recorded as
  ``skipped: torchvision not installed`` when torchvision is missing.
* ``backbone_only`` — the model step on one pre-made pair of views (no augmentation, no data
  loading): the ceiling.
* ``augment_only_ours`` / ``augment_only_torchvision`` — the two input pipelines alone (index +
  two views on the device; DataLoader batches copied to the device), no model.

Timing: ``--warmup`` steps (workers starting, ``torch.compile``, cuDNN autotuning), then
``--steps`` steps (``--augment-steps`` for the two augment-only rows) between two
``torch.cuda.synchronize()`` calls; images/s = ``B * steps / seconds``, views/s = twice that,
epoch = the projected seconds for 50,000 images (CIFAR-10's train split, two views each).
Target of the issue: an epoch under 3 s *including augmentation* on one GPU (H100 reference:
backbone alone about 76,000 views/s, a 15-worker CPU pipeline about 6,600 images/s, i.e. 7.6 s
per epoch). Data: ``--data fake`` (default) is synthetic CIFAR-like uint8 images (smooth random
colour fields plus noise; the cost of the operations here hardly depends on pixel values);
``--data cifar10`` reads the local CIFAR-10 through the registry.

GPU (the issue's measurement; results in ``benchmarks/results/vision_throughput.{json,md}``)::

    python benchmarks/vision_throughput.py --device cuda --batch-size 512 --amp bf16 \\
        --channels-last --compile --workers 15 --warmup 10 --steps 50

CPU (no GPU lent; one thread; ``benchmarks/results/vision_throughput_cpu.{json,md}``; run with
an interpreter that has torchvision, otherwise its two rows are recorded as skipped)::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/vision_throughput.py --device cpu \\
        --batch-size 64 --warmup 2 --steps 5 --workers 1 --amp none --num-images 10000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS: tuple[str, ...] = ("ours", "torchvision_dataloader", "backbone_only",
                             "augment_only_ours", "augment_only_torchvision")
PIPELINE = {"ours": "on-device batched augment + model step",
            "torchvision_dataloader": "DataLoader, torchvision CPU transforms + model step",
            "backbone_only": "model step on pre-made views (ceiling)",
            "augment_only_ours": "on-device batched augment only",
            "augment_only_torchvision": "DataLoader, torchvision CPU transforms only"}
EPOCH_IMAGES = 50_000
TARGET_EPOCH_S = 3.0
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
REFERENCE = ("the issue's H100 numbers (not measured here): backbone alone about 76,000 views/s "
             "forward + backward (bf16, channels_last, compile), a 15-worker CPU augmentation "
             "pipeline about 6,600 images/s (7.6 s per 50,000-image epoch)")


@dataclass
class BenchConfig:
    """One benchmark setting (shared by every variant of a run).

    Attributes:
        device: ``cpu`` or ``cuda``.
        batch_size: images per step (``2 x`` views).
        warmup, steps: untimed and timed steps.
        augment_steps: timed steps of the ``augment_only_*`` rows (cheap; more steps make the
            batches the DataLoader prefetched during warm-up negligible).
        amp: ``none`` or ``bf16`` (autocast, on CPU too when asked).
        channels_last, compile: the frame's speed switches (backbone only).
        backbone: ``resnet18`` (CIFAR stem) or ``small_cnn`` (tests).
        workers: DataLoader worker processes of the torchvision pipeline.
        num_images: dataset size ``N``.
        data: ``fake`` (synthetic CIFAR-like uint8) or ``cifar10`` (local copy).
        threads: ``torch.set_num_threads`` in the measuring process.
        seed: seed of the data and the model.
    """

    device: str = "cpu"
    batch_size: int = 512
    warmup: int = 5
    steps: int = 20
    augment_steps: int = 50
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    backbone: str = "resnet18"
    workers: int = 4
    num_images: int = EPOCH_IMAGES
    data: str = "fake"
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        choices = {"device": ("cpu", "cuda"), "amp": ("none", "bf16"),
                   "backbone": ("resnet18", "small_cnn"), "data": ("fake", "cifar10")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: expected one of {allowed}, got {getattr(self, name)!r}")
        minima = {"batch_size": 2, "warmup": 0, "steps": 1, "augment_steps": 1, "workers": 0,
                  "threads": 1, "num_images": 2, "seed": 0}
        for name, lo in minima.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")
        if self.num_images < self.batch_size:
            raise ValueError(f"num_images: expected >= batch_size ({self.batch_size}), got "
                             f"{self.num_images}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device: 'cuda' requested but torch.cuda.is_available() is False")


# ---------------------------------------------------------------------------------------------
# pieces
# ---------------------------------------------------------------------------------------------
def _import_torchvision() -> Any | None:
    """The torchvision module, or ``None`` when it is not installed (tests patch this)."""
    try:
        import torchvision
        import torchvision.transforms  # noqa: F401
    except ImportError:
        return None
    return torchvision


def make_images(cfg: BenchConfig) -> tuple[Tensor, tuple[float, ...], tuple[float, ...]]:
    """uint8 ``[N, 3, 32, 32]`` (CPU) and the per-channel mean / std used to normalise."""
    if cfg.data == "cifar10":
        from contrastkit.datasets import load
        d = load("cifar10")
        return d.train_images[:cfg.num_images].contiguous(), tuple(d.mean), tuple(d.std)
    g = torch.Generator().manual_seed(cfg.seed)
    n = cfg.num_images
    low = torch.rand(n, 3, 4, 4, generator=g)                 # smooth colour fields
    x = torch.nn.functional.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False)
    x = x + 0.08 * torch.randn(n, 3, 32, 32, generator=g)     # texture
    return (x.clamp(0, 1) * 255).round().to(torch.uint8), CIFAR_MEAN, CIFAR_STD


def build_model(cfg: BenchConfig, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """SimCLR (DCL) with the frame's switches, on ``cfg.device``, in train mode."""
    from contrastkit.vision.simclr import SimCLR, SimCLRConfig
    sc = SimCLRConfig(dataset="cifar10", backbone=cfg.backbone, batch_size=cfg.batch_size,
                      loss="dcl", amp=cfg.amp, channels_last=cfg.channels_last,
                      compile=cfg.compile, deterministic=False, gather=False, epochs=1)
    method = SimCLR(sc, 3, 32, mean, std, backbone=cfg.backbone).to(cfg.device).train()
    method._maybe_compile()
    return method


class PILPairs(torch.utils.data.Dataset):
    """PIL images from a uint8 ``[N, H, W, 3]`` array (as torchvision's CIFAR10), two views each."""

    def __init__(self, images_hwc: Any, transform: Callable[[Any], Tensor]) -> None:
        self.images, self.transform = images_hwc, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        from PIL import Image
        img = Image.fromarray(self.images[i])
        return self.transform(img), self.transform(img)


def torchvision_loader(tv: Any, images: Tensor, cfg: BenchConfig, mean: tuple[float, ...],
                       std: tuple[float, ...]) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless ``(view1, view2)`` batches on ``cfg.device`` from the torchvision pipeline."""
    T = tv.transforms
    transform = T.Compose([T.RandomResizedCrop(32), T.RandomHorizontalFlip(),
                           T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                           T.RandomGrayscale(p=0.2), T.ToTensor(), T.Normalize(mean, std)])
    ds = PILPairs(images.permute(0, 2, 3, 1).contiguous().numpy(), transform)
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=True,
                                         drop_last=True, num_workers=cfg.workers,
                                         pin_memory=cfg.device == "cuda",
                                         persistent_workers=cfg.workers > 0)
    while True:
        for v1, v2 in loader:
            yield (v1.to(cfg.device, non_blocking=True), v2.to(cfg.device, non_blocking=True))


def device_batches(images: Tensor, cfg: BenchConfig) -> Iterator[Tensor]:
    """Endless shuffled uint8 batches of the on-device dataset (the trainer's loader)."""
    from contrastkit.vision.frame import ImageBatches
    batches = ImageBatches(images.to(cfg.device), cfg.batch_size)
    while True:
        for x, _ in batches:
            yield x


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _autocast(cfg: BenchConfig) -> Any:
    return torch.autocast(device_type=cfg.device, dtype=torch.bfloat16,
                          enabled=cfg.amp == "bf16")


# ---------------------------------------------------------------------------------------------
# measurement (one variant, in this process)
# ---------------------------------------------------------------------------------------------
def measure(variant: str, cfg: BenchConfig) -> dict[str, Any]:
    """Time ``variant`` under ``cfg`` in this process.

    Returns:
        ``{"variant", "status": "ok", "images_per_s", "views_per_s", "step_ms", "epoch_s",
        "warmup_s", "measured_s", ...}``, or ``{"variant", "status": "skipped", "reason"}``
        for the torchvision rows without torchvision.

    Raises:
        ValueError: unknown ``variant``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
    tv = _import_torchvision() if "torchvision" in variant else None
    if "torchvision" in variant and tv is None:
        return dict(variant=variant, status="skipped", reason="torchvision not installed")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if cfg.device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    images, mean, std = make_images(cfg)
    method = optimizer = None
    if not variant.startswith("augment_only"):
        method = build_model(cfg, mean, std)
        optimizer = method.configure_optimizer()
    out: dict[str, Any] = {}

    def train(batch: Any) -> None:
        assert method is not None and optimizer is not None
        optimizer.zero_grad(set_to_none=True)
        with _autocast(cfg):
            loss = method.training_step(batch)
        loss.backward()
        optimizer.step()
        out["loss"] = loss.detach()

    if variant == "ours":
        batches = device_batches(images, cfg)

        def step() -> None:
            train(next(batches))
    elif variant == "augment_only_ours":
        batches = device_batches(images, cfg)
        from contrastkit.vision.augment import simclr_augment
        aug = simclr_augment(32, 3, mean=mean, std=std)

        def step() -> None:
            x = next(batches)
            with _autocast(cfg):
                out["views"] = (aug(x), aug(x))
    elif variant == "backbone_only":
        assert method is not None
        x = images[:cfg.batch_size].to(cfg.device)
        views = [method.augment(x), method.augment(x)]
        method.views = lambda batch: list(batch)     # pre-made views: skip the augmentation

        def step() -> None:
            train(views)
    else:  # the torchvision pipelines
        loader = torchvision_loader(tv, images, cfg, mean, std)
        if variant == "torchvision_dataloader":
            assert method is not None
            method.views = lambda batch: list(batch)  # the loader made the views

            def step() -> None:
                train(next(loader))
        else:
            def step() -> None:
                out["views"] = next(loader)
    steps = cfg.augment_steps if variant.startswith("augment_only") else cfg.steps
    if cfg.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(cfg.warmup):
        step()
    _sync(cfg.device)
    t1 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(cfg.device)
    t2 = time.perf_counter()
    secs = t2 - t1
    ips = cfg.batch_size * steps / secs
    res: dict[str, Any] = dict(variant=variant, status="ok", images_per_s=ips,
                               views_per_s=2 * ips, step_ms=1e3 * secs / steps,
                               epoch_s=EPOCH_IMAGES / ips, warmup_s=t1 - t0, measured_s=secs,
                               steps=steps,
                               threads=torch.get_num_threads())
    if "loss" in out:
        res["final_loss"] = float(out["loss"])
    if cfg.device == "cuda":
        res["peak_cuda_bytes"] = int(torch.cuda.max_memory_allocated())
    return res


# ---------------------------------------------------------------------------------------------
# driver: one subprocess per variant, JSON + Markdown
# ---------------------------------------------------------------------------------------------
def run_variant(variant: str, cfg: BenchConfig, timeout: float) -> dict[str, Any]:
    """:func:`measure` in a fresh interpreter; a crash / OOM / timeout becomes a status row."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", variant,
           "--config-json", json.dumps(dataclasses.asdict(cfg))]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(variant=variant, status="timeout", wall_s=timeout)
    wall = time.perf_counter() - t0
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]), wall_s=wall)
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    err = " | ".join(tail)[-400:]
    status = "oom" if proc.returncode in (-9, 137) or "out of memory" in err.lower() else "error"
    return dict(variant=variant, status=status, returncode=proc.returncode, error=err, wall_s=wall)


def environment(cfg: BenchConfig) -> dict[str, Any]:
    """Machine and library description recorded with the results."""
    tv = _import_torchvision()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return dict(device=cfg.device,
                device_name=torch.cuda.get_device_name() if cfg.device == "cuda" else cpu,
                cpu=cpu, cpu_count=os.cpu_count(), python=platform.python_version(),
                torch=torch.__version__, torchvision=getattr(tv, "__version__", None),
                threads=cfg.threads, omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
                executable=sys.executable,
                load_average=[round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg")
                else None)


def _num(v: float | None, digits: int = 0) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def markdown(doc: dict[str, Any]) -> str:
    """The results table with its header (settings, CPU caveat, target, reference)."""
    c, env = doc["config"], doc["env"]
    title = "# Vision training-step throughput: on-device augmentation vs torchvision DataLoader"
    head = [title, ""]
    if c["device"] == "cpu":
        head += [f"**CPU run, no GPU lent; batch {c['batch_size']}.** The target (< "
                 f"{TARGET_EPOCH_S:g} s per 50,000-image epoch, two views, augmentation included) "
                 f"applies to the GPU run (`--device cuda`, batch 512, bf16, channels_last, "
                 f"compile); these CPU numbers only compare the pipelines on this machine.", ""]
    data = ("synthetic CIFAR-like uint8 32×32×3 (`--data fake`)" if c["data"] == "fake"
            else "CIFAR-10 train split")
    head += [f"Device `{env['device_name']}` ({c['device']}); torch {env['torch']}, torchvision "
             f"{env['torchvision'] or 'not installed'}; {c['threads']} thread(s) "
             f"(OMP_NUM_THREADS={env['omp_num_threads']}), {env['cpu_count']} CPU(s), load "
             f"average {env['load_average']}. Backbone `{c['backbone']}` + projection head, "
             f"SimCLR + DCL, SGD; batch {c['batch_size']} images (= {2 * c['batch_size']} views); "
             f"amp {c['amp']}, channels_last {c['channels_last']}, compile {c['compile']}; data "
             f"{data}, {c['num_images']:,} images; DataLoader workers {c['workers']}; "
             f"{c['warmup']} warm-up + {c['steps']} timed steps ({c['augment_steps']} for the "
             f"augment-only rows).", "",
             "| variant | pipeline | images/s | views/s | ms / step | 50k-image epoch (s) | "
             "status |", "|---|---|---|---|---|---|---|"]
    rows = []
    for r in doc["results"]:
        v = r["variant"]
        if r["status"] != "ok":
            why = r.get("reason") or r.get("error") or ""
            rows.append(f"| {v} | {PIPELINE[v]} | — | — | — | — | {r['status']}"
                        f"{': ' + why[:120] if why else ''} |")
            continue
        status = "ok"
        if v == "ours" and c["device"] == "cuda":
            status = "target met" if r["epoch_s"] < TARGET_EPOCH_S else "target missed"
        rows.append(f"| {v} | {PIPELINE[v]} | {_num(r['images_per_s'])} | "
                    f"{_num(r['views_per_s'])} | {_num(r['step_ms'], 1)} | "
                    f"{_num(r['epoch_s'], 1)} | {status} |")
    ips = {r["variant"]: r["images_per_s"] for r in doc["results"] if r["status"] == "ok"}
    notes = [""]
    if "ours" in ips and "torchvision_dataloader" in ips:
        notes.append(f"Training step, ours / torchvision DataLoader: "
                     f"{ips['ours'] / ips['torchvision_dataloader']:.2f}×.")
    if "augment_only_ours" in ips and "augment_only_torchvision" in ips:
        notes.append(f"Augmentation alone, ours / torchvision DataLoader: "
                     f"{ips['augment_only_ours'] / ips['augment_only_torchvision']:.2f}×.")
    if "ours" in ips and "backbone_only" in ips:
        notes.append(f"Ours reaches {100 * ips['ours'] / ips['backbone_only']:.0f} % of the "
                     f"backbone-only ceiling.")
    notes += [f"Epoch = 50,000 images × 2 views projected from images/s; target < "
              f"{TARGET_EPOCH_S:g} s on one GPU. Reference: {REFERENCE}.", ""]
    notes += [f"Note: {n}" for n in doc.get("notes", [])]
    notes += ["", "Command:", "", f"    {doc['command']}", ""]
    return "\n".join(head + rows + notes)


def _command(argv: list[str]) -> str:
    """The shell command of this run (thread variables, interpreter; ``--note`` texts left out,
    they are printed under the table)."""
    shown, skip = [], False
    for a in argv:
        if a.startswith("--note="):
            continue
        if skip or a == "--note":
            skip = a == "--note"
            continue
        shown.append(a)
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
                   if k in os.environ)
    cmd = shlex.join([sys.executable, f"benchmarks/{Path(__file__).name}", *shown])
    return f"{env} {cmd}" if env else cmd


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--augment-steps", type=int, default=50, help="timed steps, augment_only rows")
    p.add_argument("--amp", default=None, help="none | bf16 (default: bf16 on cuda, none on cpu)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--workers", type=int, default=min(15, os.cpu_count() or 1))
    p.add_argument("--num-images", type=int, default=EPOCH_IMAGES)
    p.add_argument("--data", default="fake", help="fake (synthetic) | cifar10")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", nargs="*", default=list(VARIANTS))
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--name", default=None,
                   help="results stem (default vision_throughput, vision_throughput_cpu on cpu)")
    p.add_argument("--note", action="append", default=[], help="note added to the Markdown")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--config-json", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        cfg = BenchConfig(**json.loads(args.config_json))
        print("RESULT " + json.dumps(measure(args.child, cfg)), flush=True)
        return 0
    for v in args.variants:
        if v not in VARIANTS:
            raise ValueError(f"variants: expected names from {VARIANTS}, got {v!r}")
    amp = args.amp if args.amp is not None else ("bf16" if args.device == "cuda" else "none")
    cfg = BenchConfig(device=args.device, batch_size=args.batch_size, warmup=args.warmup,
                      steps=args.steps, augment_steps=args.augment_steps, amp=amp,
                      channels_last=args.channels_last, compile=args.compile,
                      backbone=args.backbone, workers=args.workers, num_images=args.num_images,
                      data=args.data, threads=args.threads, seed=args.seed)
    name = args.name or ("vision_throughput" if cfg.device == "cuda" else "vision_throughput_cpu")
    results = []
    for v in args.variants:
        r = run_variant(v, cfg, args.timeout)
        print(json.dumps({k: r.get(k) for k in ("variant", "status", "images_per_s",
                                                 "views_per_s", "epoch_s", "reason", "error")}),
              flush=True)
        results.append(r)
    command = _command(list(sys.argv[1:] if argv is None else argv))
    doc = dict(config=dataclasses.asdict(cfg), env=environment(cfg), results=results,
               command=command, notes=args.note, target_epoch_s=TARGET_EPOCH_S,
               reference=REFERENCE)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=2))
    md = markdown(doc)
    (RESULTS / f"{name}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
