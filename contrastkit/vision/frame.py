"""What the vision frames (SimCLR, MoCo-v2) share: config, data on the device, schedule, run.

* :class:`VisionConfig` — the fields every image method has (backbone, optimisation, the
  augmentation recipe, kNN protocol, speed switches); the frames subclass it.
* :class:`ImageBatches` — a re-iterable of ``(uint8 images [B, C, H, W], indices [B])`` that
  keeps the dataset as one tensor (on the GPU when training there) and shuffles with the global
  torch generator, so the trainer's checkpoints resume the exact data order.
* :class:`VisionMethod` — a :class:`~contrastkit.core.method.ContrastiveMethod` base with the
  backbone, a projection head, batched augmentations, per-step cosine learning rate with warm-up,
  channels-last / compile / SyncBN switches and ``embed`` (clean view -> backbone feature).
* :func:`run_vision` — the registry's ``run``: load, subset, train with the shared
  :class:`~contrastkit.core.trainer.Trainer` (kNN monitor as the evaluator), final kNN.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..core import distributed as dist_utils
from ..core.checks import check_choice, check_config_numbers, check_ints, check_positive, check_probability
from ..core.method import ContrastiveMethod
from ..core.trainer import Trainer
from ..core.similarity import l2_normalize
from ..registry import MethodSpec, RunContext, RunResult, register
from .augment import simclr_augment
from .backbones import build_backbone, convert_sync_batchnorm, to_channels_last
from .knn import KNNMonitor, knn_accuracy

__all__ = ["VisionConfig", "ImageBatches", "VisionMethod", "ProjectionHead", "run_vision",
           "evaluate_vision", "load_images", "take_subset", "resolve_backbone"]


@dataclass
class VisionConfig:
    """Fields shared by the vision frames (names follow the spec's tables).

    Attributes:
        dataset: dataset id (``fashion-mnist``, ``cifar10``, ``cifar100``, ``stl10``).
        backbone: ``resnet18`` (CIFAR stem), ``small_cnn``, or ``auto`` (ResNet-18 on CUDA, the
            small CNN on CPU; the resolved name is recorded as ``backbone_resnet18`` 0/1).
        small_cnn_width: width ``w`` of the small CNN (output ``4w``).
        epochs: training epochs.
        batch_size: images per step (per process under ``torchrun``).
        optimizer: ``sgd`` (momentum 0.9) or ``adam``.
        lr: base learning rate; multiplied by ``batch_size / 128`` when ``lr_batch_scaling``
            (lightly's rule: SGD 0.06 x batch / 128).
        lr_batch_scaling: scale ``lr`` linearly with the batch size.
        weight_decay: weight decay.
        schedule: ``cosine`` (per step, to 0) or ``constant``.
        warmup_epochs: linear warm-up epochs (may be fractional).
        proj_hidden, proj_dim: projection head ``Linear-BN-ReLU-Linear`` sizes.
        crop_min: minimum area fraction of the random resized crop.
        hflip_p: horizontal flip probability.
        jitter_strength, jitter_p: colour jitter ``(0.4, 0.4, 0.4, 0.1) x strength`` with
            probability ``jitter_p`` (brightness and contrast only on grayscale data).
        gray_p: random grayscale probability (colour data only).
        blur_p: Gaussian blur probability (0 at 32x32, as lightly).
        solarize_p: solarisation probability.
        normalize: normalise views with the dataset's per-channel mean / std.
        subset: train on this many training images (0: all), drawn with ``subset_seed``.
        subset_seed: seed of the subset draw (fixed, so every method sees the same images).
        knn_k, knn_t: kNN protocol (200, 0.1) on ℓ2-normalised backbone features.
        knn_bank: memory bank ``train`` (the whole train split) or ``subset`` (the training
            subset); the test split is always complete.
        eval_every: kNN every this many epochs (0: only at the end). The maximum over
            evaluations is reported as ``knn_top1_max_over_epochs`` (selected on test labels,
            lightly's protocol), beside the final ``knn_top1``.
        checkpoint_every: checkpoint every this many epochs (0: at the end).
        amp: ``none``, ``bf16`` or ``fp16`` autocast (CUDA only; losses run in float32).
        channels_last: channels-last memory format for the backbone and the views.
        compile: ``torch.compile`` the backbone (the state dict is unaffected).
        sync_bn: SyncBatchNorm under ``torchrun``.
        gather: gather negatives from every process (gradient-carrying all-gather).
        deterministic: deterministic algorithms (off for speed on GPU).
        data_on_device: keep the uint8 dataset on the training device (GPU augmentation).
        eval_batch_size: images per forward pass when embedding for kNN.
    """

    dataset: str = "fashion-mnist"
    backbone: Literal["auto", "resnet18", "small_cnn"] = "auto"
    small_cnn_width: int = 32
    epochs: int = 200
    batch_size: int = 256
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.06
    lr_batch_scaling: bool = True
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    proj_hidden: int = 512
    proj_dim: int = 128
    crop_min: float = 0.08
    hflip_p: float = 0.5
    jitter_strength: float = 1.0
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.0
    solarize_p: float = 0.0
    normalize: bool = True
    subset: int = 0
    subset_seed: int = 0
    knn_k: int = 200
    knn_t: float = 0.1
    knn_bank: Literal["train", "subset"] = "train"
    eval_every: int = 0
    checkpoint_every: int = 0
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False
    gather: bool = True
    deterministic: bool = True
    data_on_device: bool = True
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        check_config_numbers(self)
        check_choice("backbone", self.backbone, ("auto", "resnet18", "small_cnn"))
        check_choice("optimizer", self.optimizer, ("sgd", "adam"))
        check_choice("schedule", self.schedule, ("cosine", "constant"))
        check_choice("knn_bank", self.knn_bank, ("train", "subset"))
        check_choice("amp", self.amp, ("none", "bf16", "fp16"))
        check_ints(self, ("small_cnn_width", "epochs", "batch_size", "proj_hidden", "proj_dim",
                          "knn_k", "eval_batch_size"))
        check_ints(self, ("subset", "subset_seed", "eval_every", "checkpoint_every"), minimum=0)
        if self.batch_size < 2:
            raise ValueError(f"batch_size: expected >= 2 (negatives come from the batch), "
                             f"got {self.batch_size}")
        check_positive("lr", self.lr)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_positive("warmup_epochs", self.warmup_epochs, allow_zero=True)
        check_positive("knn_t", self.knn_t)
        check_positive("jitter_strength", self.jitter_strength, allow_zero=True)
        if not 0 < self.crop_min <= 1:
            raise ValueError(f"crop_min: expected a value in (0, 1], got {self.crop_min}")
        for name in ("hflip_p", "jitter_p", "gray_p", "blur_p", "solarize_p"):
            check_probability(name, getattr(self, name))


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
class ImageBatches:
    """Shuffled mini-batches ``(images [B, C, H, W], indices [B])`` of an in-memory image tensor.

    Args:
        images: uint8 ``[N, C, H, W]`` (on any device; batches are sliced there).
        batch_size: images per batch.
        shuffle: reshuffle every epoch with the global torch generator (CPU), which the trainer
            checkpoints.
        drop_last: drop the last incomplete batch (contrastive losses prefer equal batches).
        ids: dataset indices returned with each batch (default ``arange(N)``); MoCo's queue
            keeps them to exclude the query's own image.

    Under ``torchrun`` each process takes every ``world_size``-th batch of one permutation per
    epoch; the trainer seeds processes differently (``seed + rank``), so that permutation comes
    from a private generator seeded with the epoch (set through :meth:`set_epoch`).
    """

    def __init__(self, images: Tensor, batch_size: int, *, shuffle: bool = True,
                 drop_last: bool = True, ids: Tensor | None = None) -> None:
        if images.dim() != 4:
            raise ValueError(f"images: expected [N, C, H, W], got shape {tuple(images.shape)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        n = images.shape[0]
        if drop_last and n < batch_size:
            raise ValueError(f"batch_size: {batch_size} is larger than the {n} training images "
                             f"(drop_last would leave no batch)")
        self.images, self.batch_size = images, batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.ids = torch.arange(n) if ids is None else ids
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer; used for the distributed permutation."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = self.images.shape[0]
        per = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        world = dist_utils.get_world_size()
        return per // world if world > 1 else per

    def __iter__(self):
        n = self.images.shape[0]
        world, rank = dist_utils.get_world_size(), dist_utils.get_rank()
        if self.shuffle and world > 1:
            g = torch.Generator().manual_seed(10007 * self.epoch + 17)
            order = torch.randperm(n, generator=g)
        elif self.shuffle:
            order = torch.randperm(n)
        else:
            order = torch.arange(n)
        steps = len(self)
        for s in range(steps):
            b = s * world + rank
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            dev_idx = idx.to(self.images.device)
            yield self.images[dev_idx], self.ids[idx]


def load_images(name: str) -> Any:
    """Load an image dataset through the registry (:mod:`contrastkit.datasets.images`)."""
    from ..datasets import load_for
    return load_for(name, domain="image",
                    what="an image dataset (fashion-mnist, cifar10, cifar100, stl10)")


def take_subset(n_total: int, size: int, seed: int) -> Tensor:
    """Sorted random indices ``[size]`` of ``range(n_total)`` (all when ``size`` is 0 or >= N)."""
    if size <= 0 or size >= n_total:
        return torch.arange(n_total)
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n_total, generator=g)[:size].sort().values


def resolve_backbone(name: str, device: torch.device | str) -> str:
    """``auto`` -> ``resnet18`` on CUDA, ``small_cnn`` otherwise."""
    if name != "auto":
        return name
    return "resnet18" if torch.device(device).type == "cuda" else "small_cnn"


# ---------------------------------------------------------------------------------------------
# method base
# ---------------------------------------------------------------------------------------------
class ProjectionHead(nn.Module):
    """``Linear(in, hidden) - BN - ReLU - Linear(hidden, out)`` (SimCLR / MoCo-v2 MLP head)."""

    def __init__(self, in_dim: int, hidden: int, out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden),
                                 nn.ReLU(inplace=True), nn.Linear(hidden, out))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class VisionMethod(ContrastiveMethod):
    """Base of the image frames: backbone, head, augmentations, schedule, ``embed``.

    Args:
        config: a :class:`VisionConfig` subclass.
        in_channels: image channels (1 or 3).
        image_size: input side.
        mean, std: per-channel dataset statistics (used when ``config.normalize``).
        backbone: resolved backbone name (``resnet18`` / ``small_cnn``).
    """

    def __init__(self, config: VisionConfig, in_channels: int, image_size: int,
                 mean: tuple[float, ...] = (), std: tuple[float, ...] = (),
                 backbone: str = "small_cnn") -> None:
        super().__init__(config)
        c = config
        kwargs = {"width": c.small_cnn_width} if backbone == "small_cnn" else {}
        self.backbone_name = backbone
        self.encoder = build_backbone(backbone, in_channels, **kwargs)
        self.feature_dim = int(self.encoder.out_dim)
        norm = dict(mean=tuple(mean), std=tuple(std)) if c.normalize and mean else {}
        self.augment = simclr_augment(image_size, in_channels, crop_min=c.crop_min,
                                      strength=c.jitter_strength, blur_p=c.blur_p,
                                      solarize_p=c.solarize_p, gray_p=c.gray_p, **norm)
        self.augment.hflip_p = c.hflip_p
        self.augment.jitter_p = c.jitter_p
        self.image_size = image_size
        if c.channels_last:
            to_channels_last(self.encoder)
        self._trainer: Any = None
        self._steps_per_epoch = 1
        self._epoch = 0
        self._step = 0

    # ---- speed switches ------------------------------------------------------------------
    def _maybe_compile(self) -> None:
        if self.config.compile and "_compiled" not in self.__dict__:
            self.__dict__["_compiled"] = torch.compile(self.encoder)

    def backbone_forward(self, x: Tensor) -> Tensor:
        """Backbone features ``[B, F]`` (channels-last / compiled when configured)."""
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        fn = self.__dict__.get("_compiled", self.encoder)
        return fn(x)

    def encode_views(self, views: list[Tensor]) -> list[Tensor]:
        """Backbone features of each view; views of equal size share one forward pass."""
        out: list[Tensor | None] = [None] * len(views)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, v in enumerate(views):
            groups.setdefault(tuple(v.shape[1:]), []).append(i)
        for idx in groups.values():
            feats = self.backbone_forward(torch.cat([views[i] for i in idx], 0))
            for i, f in zip(idx, feats.split([views[i].shape[0] for i in idx], 0)):
                out[i] = f
        return out  # type: ignore[return-value]

    @torch.no_grad()
    def embed(self, batch: Any) -> Tensor:
        """Backbone features ``[B, F]`` of the clean (resized, normalised) images."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.backbone_forward(self.augment.clean(x)).float()

    # ---- optimisation --------------------------------------------------------------------
    def base_lr(self) -> float:
        c = self.config
        return c.lr * (c.batch_size * dist_utils.get_world_size() / 128.0
                       if c.lr_batch_scaling else 1.0)

    def configure_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = [p for p in self.parameters() if p.requires_grad]
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.base_lr(), weight_decay=c.weight_decay)
        return torch.optim.SGD(params, lr=self.base_lr(), momentum=0.9,
                               weight_decay=c.weight_decay)

    def on_fit_start(self, trainer: Any) -> None:
        self._trainer = trainer
        try:
            self._steps_per_epoch = max(1, len(trainer.loader))
        except TypeError:
            self._steps_per_epoch = 1
        if self.config.sync_bn and dist_utils.is_distributed():
            self.encoder = convert_sync_batchnorm(self.encoder)
        self._maybe_compile()

    def on_epoch_start(self, epoch: int) -> None:
        self._epoch = epoch
        self._step = 0

    def lr_at(self, epoch: int, step: int) -> float:
        """Learning rate at ``step`` of ``epoch``: linear warm-up, then cosine to 0 (or constant)."""
        c = self.config
        t = epoch + step / self._steps_per_epoch
        base = self.base_lr()
        if c.warmup_epochs > 0 and t < c.warmup_epochs:
            return base * (t + 1.0 / self._steps_per_epoch) / c.warmup_epochs
        if c.schedule == "constant":
            return base
        span = max(c.epochs - c.warmup_epochs, 1e-12)
        return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (t - c.warmup_epochs) / span)))

    def scheduler_step(self) -> None:
        """Set this step's learning rate on the trainer's optimizer (call once per step)."""
        opt = getattr(self._trainer, "optimizer", None)
        if opt is not None:
            lr = self.lr_at(self._epoch, self._step)
            for group in opt.param_groups:
                group["lr"] = lr
        self._step += 1


# ---------------------------------------------------------------------------------------------
# run / evaluate
# ---------------------------------------------------------------------------------------------
def _amp_arg(amp: str) -> bool | str:
    return False if amp == "none" else amp


def run_vision(method_cls: type[VisionMethod], config: VisionConfig, ctx: RunContext,
               **method_kwargs: Any) -> RunResult:
    """Train ``method_cls`` on ``config.dataset`` and report weighted-kNN accuracy.

    Returns:
        :class:`RunResult` whose metrics hold ``knn_top1``, ``knn_top5`` (final epoch),
        ``knn_top1_max_over_epochs`` (when evaluated during training), ``time_per_epoch_s``,
        ``train_time_s``, ``peak_mem_bytes``, ``train_size``, ``bank_size`` and
        ``backbone_resnet18``; the embeddings are ``[bank; test]`` backbone features.
    """
    data = load_images(config.dataset)
    device = torch.device(ctx.device if ctx.device != "auto" else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    backbone = resolve_backbone(config.backbone, device)
    if config.backbone == "auto":
        warnings.warn(f"backbone 'auto' resolved to {backbone!r} on {device.type}", UserWarning,
                      stacklevel=2)
    train_idx = take_subset(data.train_images.shape[0], config.subset, config.subset_seed)
    train_images = data.train_images[train_idx]
    if config.knn_bank == "subset":
        bank_images, bank_labels = train_images, data.train_labels[train_idx]
    else:
        bank_images, bank_labels = data.bank()
    test_images, test_labels = data.test_images, data.test_labels
    if config.data_on_device and device.type == "cuda":
        train_images = train_images.to(device)
        bank_images, test_images = bank_images.to(device), test_images.to(device)
    torch.manual_seed(ctx.seed)
    method = method_cls(config, data.in_channels, data.image_size, data.mean, data.std,
                        backbone=backbone, **method_kwargs)
    monitor = KNNMonitor(bank_images, bank_labels, test_images, test_labels, k=config.knn_k,
                         temperature=config.knn_t, batch_size=config.eval_batch_size,
                         num_classes=data.num_classes)
    trainer = Trainer(config.epochs, device=device, seed=ctx.seed, progress=ctx.progress,
                      out_dir=ctx.out_dir, checkpoint_every=config.checkpoint_every,
                      eval_every=config.eval_every, amp=_amp_arg(config.amp),
                      deterministic=config.deterministic,
                      evaluator=(lambda m: {k: v for k, v in monitor(m).items()
                                            if k != "knn_time_s"})
                      if config.eval_every else None)
    loader = ImageBatches(train_images, config.batch_size, ids=train_idx)
    resume = ctx.resume and (Path(ctx.out_dir) / "checkpoint.pt").exists()
    t0 = time.perf_counter()
    trainer.fit(method, loader, resume=resume)
    train_time = time.perf_counter() - t0
    method.eval()
    t1 = time.perf_counter()
    with torch.no_grad(), _eval_autocast(config, trainer.device):
        bank_f, test_f = monitor.features(method)
    metrics = knn_accuracy(bank_f, bank_labels.to(bank_f.device), test_f,
                           test_labels.to(bank_f.device), num_classes=data.num_classes,
                           k=config.knn_k, temperature=config.knn_t)
    metrics.update(_geometry(test_f, test_labels))
    metrics["eval_time_s"] = time.perf_counter() - t1
    evals = [h["knn_top1"] for h in trainer.history if "knn_top1" in h]
    if evals:
        metrics["knn_top1_max_over_epochs"] = float(max(evals + [metrics["knn_top1"]]))
    metrics["time_per_epoch_s"] = float(trainer.stats.get("time_per_epoch_s", float("nan")))
    metrics["train_time_s"] = float(train_time)
    metrics["peak_mem_bytes"] = float(trainer.stats.get("peak_mem_bytes", float("nan")))
    metrics["train_size"] = float(train_images.shape[0])
    metrics["bank_size"] = float(int((bank_labels >= 0).sum()))
    metrics["epochs"] = float(len(trainer.history))
    metrics["backbone_resnet18"] = float(backbone == "resnet18")
    if trainer.history:
        metrics["final_loss"] = float(trainer.history[-1]["loss"])
    emb = torch.cat([bank_f, test_f], 0).cpu()
    return RunResult(metrics=metrics, embeddings=emb)


def _geometry(features: Tensor, labels: Tensor) -> dict[str, float]:
    """``uniformity`` (Wang & Isola, t = 2) and ``tolerance`` (mean cosine of same-class pairs,
    Wang & Liu 2021) of the normalised test features: the hardness / temperature diagnostics."""
    from ..core.metrics import uniformity
    f = l2_normalize(features.float(), dim=1)
    out = {"uniformity": float(uniformity(f))}
    try:
        from ..core.losses.hardness import tolerance
    except ImportError:
        return out
    out["tolerance"] = float(tolerance(f, labels.to(f.device).long()))
    return out


def _eval_autocast(config: VisionConfig, device: torch.device) -> Any:
    if config.amp == "none" or device.type != "cuda":
        return torch.autocast(device_type=device.type, enabled=False)
    dtype = torch.bfloat16 if config.amp == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def evaluate_vision(config: VisionConfig, embeddings: Tensor, ctx: RunContext
                    ) -> dict[str, float]:
    """Re-evaluate saved ``[bank; test]`` embeddings with the config's kNN protocol."""
    data = load_images(config.dataset)
    if config.knn_bank == "subset":
        idx = take_subset(data.train_images.shape[0], config.subset, config.subset_seed)
        bank_labels = data.train_labels[idx]
    else:
        bank_labels = data.bank()[1]
    n_bank, n_test = bank_labels.shape[0], data.test_labels.shape[0]
    if embeddings.shape[0] != n_bank + n_test:
        raise ValueError(f"embeddings: expected {n_bank + n_test} rows ([bank; test]) for "
                         f"dataset {config.dataset!r}, got {embeddings.shape[0]}")
    return knn_accuracy(embeddings[:n_bank], bank_labels, embeddings[n_bank:], data.test_labels,
                        num_classes=data.num_classes, k=config.knn_k, temperature=config.knn_t)


def config_dict(config: Any) -> dict[str, Any]:
    """Plain dict of a config dataclass (for logs)."""
    return dataclasses.asdict(config)


#: per-dataset presets of both frames: lightly's CIFAR recipe; Fashion-MNIST with a milder crop
PRESETS: dict[str, dict[str, Any]] = {
    "fashion-mnist": dict(crop_min=0.2, epochs=200, batch_size=256),
    "cifar10": dict(crop_min=0.08, epochs=200, batch_size=256),
    "cifar100": dict(crop_min=0.08, epochs=200, batch_size=256),
    "stl10": dict(crop_min=0.08, epochs=200, batch_size=256, blur_p=0.5),
}


def register_frame(name: str, method_cls: type[VisionMethod], config_cls: type,
                   description: str) -> tuple[Any, Any]:
    """Register a vision frame with the method registry; returns its ``(run, evaluate)``.

    ``run`` trains ``method_cls`` on ``config.dataset`` with the shared trainer and scores the
    backbone by weighted kNN; ``evaluate`` re-scores saved ``[bank; test]`` embeddings
    (``contrastkit eval DIR``).
    """
    def run(config: VisionConfig, ctx: RunContext) -> RunResult:
        return run_vision(method_cls, config, ctx)

    def evaluate(config: VisionConfig, embeddings: Tensor, ctx: RunContext) -> dict[str, float]:
        return evaluate_vision(config, embeddings, ctx)

    run.__doc__ = f"Train {name} on ``config.dataset``; weighted kNN on the backbone."
    evaluate.__doc__ = "Re-evaluate saved ``[bank; test]`` embeddings (``contrastkit eval DIR``)."
    register(MethodSpec(name=name, config_cls=config_cls, run=run, evaluate=evaluate,
                        description=description, default_dataset="fashion-mnist",
                        presets={k: dict(v) for k, v in PRESETS.items()}, accepts=("image",)))
    return run, evaluate
