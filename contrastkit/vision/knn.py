r"""Weighted kNN monitor on the features' device (the lightly / InstDisc CIFAR protocol).

Features are ℓ2-normalised; for a query ``q`` with its ``k`` most similar bank entries
``N_k(q)`` (cosine ``s_j = q^T x_j``) the class scores are

.. math::

    \text{score}_c(q) = \sum_{j \in N_k(q)} e^{s_j / t}\, [y_j = c]

and the prediction is ``argmax_c``; defaults ``k = 200``, ``t = 0.1``. Queries are processed
``chunk_size`` at a time against the whole bank, so memory is ``O(chunk_size * N_bank)`` and
everything stays on the device of the bank (GPU during training). Ties between classes go to
the lowest class index, as in :func:`contrastkit.core.probes.knn_probe` (the CPU reference).
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import Tensor

from ..core.checks import check_finite, check_ids, check_int, check_positive, check_tensor
from ..core.probes import knn_scores
from ..core.similarity import l2_normalize

__all__ = ["knn_predict", "knn_accuracy", "extract_features", "KNNMonitor"]


def knn_predict(query: Tensor, bank: Tensor, bank_labels: Tensor, num_classes: int, *,
                k: int = 200, temperature: float = 0.1, chunk_size: int = 1024,
                normalize: bool = True) -> Tensor:
    """Class scores ``[Q, num_classes]`` of a weighted kNN vote.

    Args:
        query: ``[Q, D]`` query features.
        bank: ``[N, D]`` memory-bank features (same device as ``query``).
        bank_labels: ``[N]`` int labels in ``[0, num_classes)``.
        num_classes: number of classes.
        k: neighbours (capped at ``N``).
        temperature: ``t`` of the weights ``exp(s / t)``.
        chunk_size: queries per block.
        normalize: ℓ2-normalise ``query`` and ``bank`` first.

    Returns:
        float32 scores ``[Q, num_classes]`` (a row whose weights would overflow or underflow
        at a tiny ``temperature`` is rescaled by ``exp(-s_max / t)``; see
        :func:`~contrastkit.core.probes.knn_scores`).

    Raises:
        ValueError / TypeError: shapes, dtypes, non-finite features, labels outside
            ``[0, num_classes)``, ``k < 1``, ``temperature <= 0`` or a bad ``chunk_size``.
    """
    check_tensor("query", query, ndim=2, floating=True)
    check_tensor("bank", bank, ndim=2, floating=True)
    check_tensor("bank_labels", bank_labels, ndim=1, integer=True)
    if bank.shape[0] == 0:
        raise ValueError("bank: expected at least one row, got shape (0, ...)")
    num_classes = check_int("num_classes", num_classes, minimum=1)
    check_finite("query", query)
    check_finite("bank", bank)
    if query.shape[1] != bank.shape[1]:
        raise ValueError(f"query and bank: expected the same feature dimension, got "
                         f"{query.shape[1]} and {bank.shape[1]}")
    if bank_labels.numel() != bank.shape[0]:
        raise ValueError(f"bank_labels: expected {bank.shape[0]} labels (one per bank row), "
                         f"got {bank_labels.numel()}")
    k = check_int("k", k, minimum=1)
    check_positive("temperature", temperature)
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    check_ids("bank_labels", bank_labels, num_classes, what="values")
    return _knn_vote(query, bank, bank_labels, num_classes, k, temperature, chunk_size, normalize)


def _knn_vote(query: Tensor, bank: Tensor, bank_labels: Tensor, num_classes: int, k: int,
              temperature: float, chunk_size: int, normalize: bool) -> Tensor:
    """:func:`knn_predict` on checked inputs."""
    bank = bank.float()
    query = query.float().to(bank.device)
    labels = bank_labels.to(bank.device).long()
    if normalize:
        bank = l2_normalize(bank, dim=1)
        query = l2_normalize(query, dim=1)
    return knn_scores(query, bank, labels, num_classes, k=k, temperature=temperature,
                      chunk_size=chunk_size)


def knn_accuracy(train_features: Tensor, train_labels: Tensor, test_features: Tensor,
                 test_labels: Tensor, *, num_classes: int | None = None, k: int = 200,
                 temperature: float = 0.1, chunk_size: int = 1024) -> dict[str, float]:
    """``{"knn_top1", "knn_top5"}`` (fractions) of :func:`knn_predict` on a labelled test set.

    ``knn_top5`` is reported when there are more than 5 classes. Bank rows with a negative
    label (unlabeled images) are dropped.

    Raises:
        ValueError / TypeError: features not 2-D float ``[N, D]`` with one label per row, no
            labelled bank row, an empty test set, test labels outside ``[0, num_classes)``,
            ``k < 1``, ``temperature <= 0`` (and the checks of :func:`knn_predict`).
    """
    check_tensor("train_features", train_features, ndim=2, floating=True)
    check_tensor("train_labels", train_labels, ndim=1, integer=True)
    check_tensor("test_features", test_features, ndim=2, floating=True)
    check_tensor("test_labels", test_labels, ndim=1, integer=True)
    for name, feats, labels, fname in (
            ("train_labels", train_features, train_labels, "train_features"),
            ("test_labels", test_features, test_labels, "test_features")):
        if labels.numel() != feats.shape[0]:
            raise ValueError(f"{name}: expected {feats.shape[0]} labels (one per row of "
                             f"{fname}), got {labels.numel()}")
    if test_labels.numel() == 0:
        raise ValueError("test_labels: expected at least one test example, got none")
    k = check_int("k", k, minimum=1)
    check_positive("temperature", temperature)
    if num_classes is not None:
        check_int("num_classes", num_classes, minimum=1)
    keep = train_labels >= 0
    if not bool(keep.all()):
        train_features, train_labels = train_features[keep], train_labels[keep]
    if train_labels.numel() == 0:
        raise ValueError("train_labels: expected at least one labelled (>= 0) bank row, got none")
    n_cls = int(max(int(train_labels.max()), int(test_labels.max())) + 1) if num_classes is None \
        else int(num_classes)
    check_ids("test_labels", test_labels, n_cls, what="class indices")
    # under this function's own names (knn_predict would call them bank / query / bank_labels)
    check_ids("train_labels", train_labels, n_cls, what="class indices")
    check_finite("train_features", train_features)
    check_finite("test_features", test_features)
    if test_features.shape[1] != train_features.shape[1]:
        raise ValueError(f"test_features and train_features: expected the same feature "
                         f"dimension, got {test_features.shape[1]} and {train_features.shape[1]}")
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    # every input is checked above under this function's names: vote without checking again
    scores = _knn_vote(test_features, train_features, train_labels, n_cls, k,
                       temperature, chunk_size, True)
    target = test_labels.to(scores.device).long()
    out = {"knn_top1": float((scores.argmax(1) == target).float().mean())}
    if n_cls > 5:
        top5 = scores.topk(5, dim=1).indices
        out["knn_top5"] = float((top5 == target[:, None]).any(1).float().mean())
    return out


@torch.no_grad()
def extract_features(fn: Callable[[Tensor], Tensor], images: Tensor, *, batch_size: int = 1024,
                     device: torch.device | str | None = None) -> Tensor:
    """``fn`` applied to ``images`` in batches (no grad), concatenated as float32 ``[N, D]``.

    Args:
        fn: maps an image batch (moved to ``device``) to features ``[B, D]``.
        images: ``[N, C, H, W]`` (uint8 or float), on any device.
        batch_size: images per call.
        device: where ``fn`` runs (default: the images' device). The result stays there.
    """
    dev = torch.device(device) if device is not None else images.device
    outs = []
    for start in range(0, images.shape[0], batch_size):
        outs.append(fn(images[start:start + batch_size].to(dev, non_blocking=True)).float())
    return torch.cat(outs, 0)


class KNNMonitor:
    """Trainer evaluator: embeds a labelled bank and a test set, returns weighted-kNN accuracy.

    Args:
        bank_images, bank_labels: memory bank (e.g. the train split), uint8 ``[N, C, H, W]``.
        test_images, test_labels: evaluation set.
        k, temperature: kNN protocol (200, 0.1).
        batch_size: images per forward pass.
        num_classes: number of classes (default: from the labels).

    Calling it with a method (anything with ``embed(images) -> [B, D]``) returns
    ``{"knn_top1", "knn_top5", "knn_time_s"}``; the features are computed on the method's device.
    """

    def __init__(self, bank_images: Tensor, bank_labels: Tensor, test_images: Tensor,
                 test_labels: Tensor, *, k: int = 200, temperature: float = 0.1,
                 batch_size: int = 1024, num_classes: int | None = None) -> None:
        check_tensor("bank_images", bank_images, ndim=4)
        check_tensor("test_images", test_images, ndim=4)
        self.bank_images, self.bank_labels = bank_images, bank_labels
        self.test_images, self.test_labels = test_images, test_labels
        self.k, self.temperature, self.batch_size = k, temperature, batch_size
        self.num_classes = num_classes

    def features(self, method: torch.nn.Module) -> tuple[Tensor, Tensor]:
        """``(bank_features, test_features)`` of ``method.embed`` on the method's device."""
        dev = next(method.parameters()).device
        bank = extract_features(method.embed, self.bank_images, batch_size=self.batch_size,
                                device=dev)
        test = extract_features(method.embed, self.test_images, batch_size=self.batch_size,
                                device=dev)
        return bank, test

    def __call__(self, method: torch.nn.Module) -> dict[str, float]:
        t0 = time.perf_counter()
        bank, test = self.features(method)
        out = knn_accuracy(bank, self.bank_labels.to(bank.device), test,
                           self.test_labels.to(bank.device), num_classes=self.num_classes,
                           k=self.k, temperature=self.temperature)
        out["knn_time_s"] = time.perf_counter() - t0
        return out
