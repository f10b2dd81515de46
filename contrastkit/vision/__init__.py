"""Vision: image contrastive frames (SimCLR, MoCo-v2), batched GPU augmentations, ResNet-18, kNN.

* :mod:`.augment` — batched per-sample augmentations in plain torch (crop, flip, colour jitter,
  grayscale, blur, solarize, multi-crop), grayscale-aware, driven by an explicit generator.
* :mod:`.backbones` — ResNet-18 (CIFAR stem, any input channels) and a small CNN for CPU runs.
* :mod:`.knn` — weighted kNN monitor (k = 200, t = 0.1) on the features' device.
* :mod:`.simclr` — SimCLR frame with the losses of :mod:`contrastkit.core.losses`
  (InfoNCE, DCL, DCLW, hard InfoNCE, MV-InfoNCE, MV-DHEL, CACR, AMCL, SwAV).
* :mod:`.moco` — MoCo-v2 frame with an id-keeping queue and the MoCHi / Feature Transformation
  plug-ins.

The frames register ``simclr`` and ``moco`` in :mod:`contrastkit.registry`, so
``contrastkit train simclr --dataset fashion-mnist --set loss=dcl`` works from the CLI.
"""

from .augment import (MultiCrop, ViewAugment, color_jitter, gaussian_blur, normalize,
                      random_grayscale, random_resized_crop, simclr_augment, solarize)
from .backbones import ResNet18, SmallCNN, build_backbone
from .frame import ImageBatches, VisionConfig
from .knn import KNNMonitor, extract_features, knn_accuracy, knn_predict

__all__ = ["MultiCrop", "ViewAugment", "color_jitter", "gaussian_blur", "normalize",
           "random_grayscale", "random_resized_crop", "simclr_augment", "solarize",
           "ResNet18", "SmallCNN", "build_backbone", "ImageBatches", "VisionConfig",
           "KNNMonitor", "extract_features", "knn_accuracy", "knn_predict"]
