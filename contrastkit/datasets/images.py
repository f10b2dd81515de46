r"""Image datasets for the vision methods: Fashion-MNIST offline, CIFAR / STL-10 via torchvision.

Registered dataset ids (domain ``"image"``):

* ``fashion-mnist`` (aliases ``fashion_mnist``, ``fmnist``): Zalando's 70,000 28x28 grayscale
  images, 10 classes, 60,000 train / 10,000 test. Read from the four raw idx ``.gz`` files with
  pure ``gzip`` + NumPy (no torchvision), looked for in this order:

  1. the ``root=`` argument of :func:`load_fashion_mnist` (a folder holding the four files),
  2. ``<data root>/image/fashion-mnist`` (the data root of :mod:`contrastkit.datasets.root`),
  3. Debian's ``dataset-fashion-mnist`` package: ``/usr/share/datasets/fashion-mnist``
     (``apt-get install dataset-fashion-mnist``; the folder is also found through
     ``dpkg -L dataset-fashion-mnist``).

* ``cifar10``, ``cifar100``, ``stl10``: read with torchvision (``download=False``) from
  ``<data root>/image/<name>`` holding the standard layouts (``cifar-10-batches-py/``,
  ``cifar-100-python/``, ``stl10_binary/``). torchvision is an optional extra
  (``pip install contrastkit[vision]``); without it loading raises an :class:`ImportError` that
  says so. STL-10 pretrains on ``unlabeled`` + ``train`` (``train_unlabeled`` holds both: 105,000
  images) and probes on ``train`` / ``test``.

Every loader returns an :class:`ImageData`: uint8 tensors ``[N, C, H, W]`` (channels first, the
layout the batched augmentations of :mod:`contrastkit.vision.augment` expect) and int64 labels.

Example:
    >>> from contrastkit import datasets
    >>> d = datasets.load("fashion-mnist")                  # doctest: +SKIP
    >>> d.train_images.shape, d.train_images.dtype, d.num_classes   # doctest: +SKIP
    (torch.Size([60000, 1, 28, 28]), torch.uint8, 10)
"""

from __future__ import annotations

import functools
import gzip
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .registry import DatasetSpec, register

__all__ = ["ImageData", "read_idx", "load_fashion_mnist", "find_fashion_mnist",
           "load_torchvision_images", "FASHION_MNIST_FILES", "FASHION_MNIST_CLASSES",
           "DEBIAN_FASHION_MNIST", "IMAGE_DIR"]

#: folder of the image sets under the data root
IMAGE_DIR = Path("image")

#: where Debian's ``dataset-fashion-mnist`` package installs the files
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

#: split -> (images file, labels file)
FASHION_MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
    "Ankle boot")

# idx type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


@dataclass
class ImageData:
    """An image classification dataset held in memory.

    Attributes:
        name: dataset id.
        train_images: uint8 ``[N_train, C, H, W]``.
        train_labels: int64 ``[N_train]`` (``-1`` for unlabeled images, e.g. STL-10 unlabeled).
        test_images: uint8 ``[N_test, C, H, W]``.
        test_labels: int64 ``[N_test]``.
        num_classes: number of classes.
        classes: class names.
        mean, std: per-channel statistics of the train images in ``[0, 1]`` (for normalisation).
        probe_images, probe_labels: labelled images for the kNN memory bank / linear probe when
            the pretraining set is partly unlabeled (STL-10's ``train``); ``None`` otherwise
            (``train_images`` is used).
    """

    name: str
    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    num_classes: int
    classes: tuple[str, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    probe_images: Tensor | None = None
    probe_labels: Tensor | None = None

    @property
    def in_channels(self) -> int:
        """``C``."""
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        """``H`` (images are square)."""
        return int(self.train_images.shape[2])

    def bank(self) -> tuple[Tensor, Tensor]:
        """Labelled images and labels for the kNN memory bank (``probe_*`` or the train split)."""
        if self.probe_images is not None and self.probe_labels is not None:
            return self.probe_images, self.probe_labels
        return self.train_images, self.train_labels

    def __repr__(self) -> str:
        return (f"ImageData(name={self.name!r}, train={tuple(self.train_images.shape)}, "
                f"test={tuple(self.test_images.shape)}, num_classes={self.num_classes})")


def read_idx(path: str | Path) -> np.ndarray:
    """Read one idx file (``.gz`` or plain) into a NumPy array.

    Args:
        path: the file.

    Returns:
        The array with the shape and dtype the header declares.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: malformed header or truncated data (the message names the file).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"idx file {p} does not exist")
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"idx file {p}: expected a header starting with two zero bytes, got "
                         f"{raw[:4]!r}")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"idx file {p}: unknown type code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"idx file {p}: truncated header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[code])
    count = int(np.prod(shape)) if shape else 0
    need = header + count * dtype.itemsize
    if len(raw) != need:
        raise ValueError(f"idx file {p}: expected {need} bytes for shape {shape}, got {len(raw)}")
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _dpkg_folder() -> Path | None:
    """Folder of the Fashion-MNIST files according to ``dpkg -L dataset-fashion-mnist``."""
    if shutil.which("dpkg") is None:
        return None
    try:
        out = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    for line in out.stdout.splitlines():
        if line.strip().endswith(FASHION_MNIST_FILES["train"][0]):
            return Path(line.strip()).parent
    return None


def _complete(folder: Path) -> bool:
    return all((folder / f).is_file() for pair in FASHION_MNIST_FILES.values() for f in pair)


def _fashion_candidates(root: str | Path | None, data_root: Path | None) -> list[Path]:
    cands: list[Path] = []
    if root is not None:
        cands.append(Path(root))
    if data_root is not None:
        cands.append(Path(data_root) / IMAGE_DIR / "fashion-mnist")
    cands.append(DEBIAN_FASHION_MNIST)
    return cands


def find_fashion_mnist(root: str | Path | None = None, data_root: str | Path | None = None
                       ) -> Path | None:
    """Folder holding the four Fashion-MNIST ``.gz`` files, or ``None``.

    Args:
        root: a folder to look in first.
        data_root: a contrastkit data root (``<data_root>/image/fashion-mnist`` is tried next).

    Returns:
        The first complete folder among ``root``, ``<data_root>/image/fashion-mnist``, Debian's
        ``/usr/share/datasets/fashion-mnist`` and the folder ``dpkg -L dataset-fashion-mnist``
        lists; ``None`` when none is complete.
    """
    for folder in _fashion_candidates(root, Path(data_root) if data_root else None):
        if _complete(folder):
            return folder
    folder = _dpkg_folder()
    return folder if folder is not None and _complete(folder) else None


@functools.lru_cache(maxsize=2)
def _read_fashion(folder: str) -> ImageData:
    f = Path(folder)
    parts: dict[str, tuple[Tensor, Tensor]] = {}
    for split, (img_file, lab_file) in FASHION_MNIST_FILES.items():
        images = read_idx(f / img_file)
        labels = read_idx(f / lab_file)
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"Fashion-MNIST {split} files in {f}: expected images [N, 28, 28] "
                             f"and labels [N], got {images.shape} and {labels.shape}")
        parts[split] = (torch.from_numpy(images).unsqueeze(1).contiguous(),
                        torch.from_numpy(labels.astype(np.int64)))
    train = parts["train"][0].float().div_(255.0)
    mean, std = float(train.mean()), float(train.std())
    return ImageData(name="fashion-mnist", train_images=parts["train"][0],
                     train_labels=parts["train"][1], test_images=parts["test"][0],
                     test_labels=parts["test"][1], num_classes=10, classes=FASHION_MNIST_CLASSES,
                     mean=(mean,), std=(std,))


def load_fashion_mnist(root: str | Path | None = None, *, data_root: str | Path | None = None
                       ) -> ImageData:
    """Load Fashion-MNIST from its raw idx ``.gz`` files (pure gzip + NumPy; cached per folder).

    Args:
        root: folder holding the four files (searched first).
        data_root: contrastkit data root (``<data_root>/image/fashion-mnist`` searched next).

    Returns:
        :class:`ImageData` with ``[60000, 1, 28, 28]`` / ``[10000, 1, 28, 28]`` uint8 images.

    Raises:
        FileNotFoundError: no complete copy was found (the message lists where it looked and
            how to install Debian's package).
    """
    folder = find_fashion_mnist(root, data_root)
    if folder is None:
        looked = ", ".join(str(c) for c in _fashion_candidates(
            root, Path(data_root) if data_root else None))
        raise FileNotFoundError(
            f"dataset 'fashion-mnist': the files {sorted(f for p in FASHION_MNIST_FILES.values() for f in p)} "
            f"were not found (looked in {looked}); install them with "
            f"`apt-get install dataset-fashion-mnist` or copy them into one of those folders")
    return _read_fashion(str(folder.resolve()))


# ---------------------------------------------------------------------------------------------
# torchvision sets (optional extra)
# ---------------------------------------------------------------------------------------------
_TV_SETS: dict[str, tuple[str, str]] = {
    # id -> (torchvision class, folder the standard archive unpacks to)
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", "cifar-100-python"),
    "stl10": ("STL10", "stl10_binary"),
}


def _torchvision() -> Any:
    try:
        import torchvision  # noqa: F401
        import torchvision.datasets as tvd
    except ImportError as exc:
        raise ImportError(
            "CIFAR-10/100 and STL-10 are read with torchvision, which is not installed: "
            "`pip install contrastkit[vision]` (or `pip install torchvision`); Fashion-MNIST "
            f"needs no extra ({exc})") from None
    return tvd


def _hwc_to_chw(a: Any) -> Tensor:
    t = torch.as_tensor(np.asarray(a))
    if t.dim() == 3:  # [N, H, W]
        t = t.unsqueeze(-1)
    return t.permute(0, 3, 1, 2).contiguous()


def load_torchvision_images(name: str, folder: str | Path) -> ImageData:
    """CIFAR-10/100 or STL-10 from a local copy through torchvision (``download=False``).

    Args:
        name: ``"cifar10"``, ``"cifar100"`` or ``"stl10"``.
        folder: folder that holds the unpacked archive (e.g. ``.../cifar10`` containing
            ``cifar-10-batches-py/``).

    Returns:
        :class:`ImageData` (uint8 ``[N, 3, H, W]``). For STL-10 ``train_images`` is
        ``unlabeled`` + ``train`` (labels ``-1`` for unlabeled) and ``probe_*`` is ``train``.

    Raises:
        ImportError: torchvision is missing (names the extra to install).
        ValueError: unknown name.
        FileNotFoundError / RuntimeError: the files are missing or corrupt (torchvision checks
            the MD5 sums).
    """
    if name not in _TV_SETS:
        raise ValueError(f"name: expected one of {sorted(_TV_SETS)}, got {name!r}")
    tvd = _torchvision()
    cls_name, sub = _TV_SETS[name]
    folder = Path(folder)
    if not (folder / sub).is_dir():
        raise FileNotFoundError(f"dataset {name!r}: folder {folder / sub} not found (unpack the "
                                f"standard archive into {folder})")
    cls = getattr(tvd, cls_name)
    if name == "stl10":
        unl = cls(str(folder), split="unlabeled", download=False)
        tr = cls(str(folder), split="train", download=False)
        te = cls(str(folder), split="test", download=False)
        probe_x = torch.as_tensor(tr.data)
        probe_y = torch.as_tensor(tr.labels, dtype=torch.int64)
        train_x = torch.cat([torch.as_tensor(unl.data), probe_x])
        train_y = torch.cat([torch.full((len(unl.data),), -1, dtype=torch.int64), probe_y])
        test_x, test_y = torch.as_tensor(te.data), torch.as_tensor(te.labels, dtype=torch.int64)
        classes = tuple(tr.classes)
    else:
        tr = cls(str(folder), train=True, download=False)
        te = cls(str(folder), train=False, download=False)
        train_x, test_x = _hwc_to_chw(tr.data), _hwc_to_chw(te.data)
        train_y = torch.as_tensor(tr.targets, dtype=torch.int64)
        test_y = torch.as_tensor(te.targets, dtype=torch.int64)
        probe_x = probe_y = None
        classes = tuple(tr.classes)
    f = train_x[:50000].float().div_(255.0)
    mean = tuple(float(v) for v in f.mean(dim=(0, 2, 3)))
    std = tuple(float(v) for v in f.std(dim=(0, 2, 3)))
    return ImageData(name=name, train_images=train_x.contiguous(), train_labels=train_y,
                     test_images=test_x.contiguous(), test_labels=test_y,
                     num_classes=len(classes), classes=classes, mean=mean, std=std,
                     probe_images=probe_x, probe_labels=probe_y)


# ---------------------------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------------------------
def _fashion_loader(root: Path, *, download: bool = False, normalize_features: bool = True
                    ) -> ImageData:
    return load_fashion_mnist(data_root=root)


def _fashion_locate(root: Path) -> tuple[str, str | None]:
    folder = find_fashion_mnist(None, root)
    return ("found", str(folder)) if folder is not None else ("missing", None)


def _tv_loader(sid: str):
    def loader(root: Path, *, download: bool = False, normalize_features: bool = True
               ) -> ImageData:
        return load_torchvision_images(sid, Path(root) / IMAGE_DIR / sid)
    return loader


def _tv_locate(sid: str):
    def locate(root: Path) -> tuple[str, str | None]:
        p = Path(root) / IMAGE_DIR / sid / _TV_SETS[sid][1]
        return ("found", str(p)) if p.is_dir() else ("missing", None)
    return locate


register(DatasetSpec(id="fashion-mnist", domain="image",
                     description="Fashion-MNIST, 70k 28x28 grayscale images, 10 classes "
                                 "(raw idx files; Debian dataset-fashion-mnist)",
                     loader=_fashion_loader, locate=_fashion_locate,
                     aliases=("fmnist",)), replace=True)
register(DatasetSpec(id="cifar10", domain="image",
                     description="CIFAR-10, 60k 32x32 colour images, 10 classes (torchvision, "
                                 "local copy)",
                     loader=_tv_loader("cifar10"), locate=_tv_locate("cifar10"),
                     aliases=("cifar-10",)), replace=True)
register(DatasetSpec(id="cifar100", domain="image",
                     description="CIFAR-100, 60k 32x32 colour images, 100 classes (torchvision, "
                                 "local copy)",
                     loader=_tv_loader("cifar100"), locate=_tv_locate("cifar100"),
                     aliases=("cifar-100",)), replace=True)
register(DatasetSpec(id="stl10", domain="image",
                     description="STL-10, 100k unlabeled + 13k labelled 96x96 colour images "
                                 "(torchvision, local copy)",
                     loader=_tv_loader("stl10"), locate=_tv_locate("stl10"),
                     aliases=("stl-10",)), replace=True)
