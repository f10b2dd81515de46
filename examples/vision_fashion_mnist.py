"""Short demo: SimCLR + DCL on Fashion-MNIST with batched augmentations and a kNN monitor.

Trains the small CNN (CPU) or ResNet-18 (``--backbone resnet18``, for a GPU) on a subset of
Fashion-MNIST (Debian's ``dataset-fashion-mnist``), printing the weighted-kNN accuracy
(k = 200, t = 0.1) of the random initialisation and after every epoch, then saves a picture of
a few augmented views.

    OMP_NUM_THREADS=1 python examples/vision_fashion_mnist.py --subset 4096 --epochs 2
    python examples/vision_fashion_mnist.py --backbone resnet18 --device cuda --subset 0 \\
        --epochs 20 --amp bf16
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from contrastkit.core.trainer import Trainer
from contrastkit.datasets import load
from contrastkit.vision import ImageBatches, KNNMonitor
from contrastkit.vision.frame import take_subset
from contrastkit.vision.simclr import SimCLR, SimCLRConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--loss", default="dcl")
    p.add_argument("--backbone", default="small_cnn", choices=("small_cnn", "resnet18"))
    p.add_argument("--subset", type=int, default=4096)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    p.add_argument("--out", default="runs/example-vision")
    args = p.parse_args()

    data = load("fashion-mnist")
    train = data.train_images[take_subset(60000, args.subset, 0)]
    bank = take_subset(60000, 10000, 1)  # a 10k bank keeps the demo's kNN quick on a CPU
    dev = torch.device(args.device)
    monitor = KNNMonitor(data.train_images[bank].to(dev), data.train_labels[bank].to(dev),
                         data.test_images.to(dev), data.test_labels.to(dev), num_classes=10)
    cfg = SimCLRConfig(loss=args.loss, epochs=args.epochs, optimizer="adam", lr=1e-3,
                       lr_batch_scaling=False, weight_decay=1e-6, crop_min=0.2, amp=args.amp,
                       channels_last=args.device.startswith("cuda"),
                       deterministic=not args.device.startswith("cuda"))
    torch.manual_seed(0)
    method = SimCLR(cfg, 1, 28, data.mean, data.std, backbone=args.backbone)
    method.to(dev).eval()
    with torch.no_grad():
        print(f"random init: kNN top-1 {monitor(method)['knn_top1']:.4f}")
    trainer = Trainer(args.epochs, device=dev, eval_every=1, evaluator=monitor,
                      amp=False if args.amp == "none" else args.amp,
                      deterministic=cfg.deterministic, progress=False)
    trainer.fit(method, ImageBatches(train.to(dev), cfg.batch_size))
    for h in trainer.history:
        print(f"epoch {h['epoch']}: loss {h['loss']:.4f}, kNN top-1 {h['knn_top1']:.4f}, "
              f"{h['time_s']:.1f} s")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    x = data.train_images[:8].to(dev)
    views = [method.augment(x) for _ in range(3)]
    fig, axes = plt.subplots(4, 8, figsize=(8, 4.4))
    rows = [x.float() / 255] + [v * data.std[0] + data.mean[0] for v in views]
    for r, imgs in enumerate(rows):
        for c in range(8):
            axes[r, c].imshow(imgs[c, 0].clamp(0, 1).cpu(), cmap="gray")
            axes[r, c].axis("off")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    fig.savefig(Path(args.out) / "views.png", dpi=100, bbox_inches="tight")
    print(f"augmented views: {Path(args.out) / 'views.png'}")


if __name__ == "__main__":
    main()
