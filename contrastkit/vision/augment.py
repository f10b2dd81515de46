r"""Batched image augmentations in plain torch, on whatever device the batch lives on.

SimCLR-style views are usually made per image on the CPU (PIL + torchvision transforms) by
loader workers. Here a whole batch ``x [B, C, H, W]`` (uint8 or float in ``[0, 1]``) is augmented
at once with tensor ops, so with the dataset kept on the GPU the input pipeline costs a few
kernels per step. Every random parameter is drawn *per sample* from an explicit
:class:`torch.Generator` (``generator=None``: the global generator of the device the draws are
made on, which the trainer's checkpoints capture, so resumed runs continue the same stream).
No function modifies its input.

Operations (each a function, combined by :class:`ViewAugment`):

* :func:`random_resized_crop` — crop of area fraction ``a ~ U(scale)`` and aspect ratio
  ``r = exp(U(log ratio))`` (width ``sqrt(a r)``, height ``sqrt(a / r)`` of the image, clamped to
  the image: torchvision instead retries 10 times, then falls back to a centre crop), resized to
  ``size`` with bilinear sampling. Crop, resize and the horizontal flip are one affine map
  ``theta = [[w s, 0, c_x], [0, h, c_y]]`` (``s = -1`` when flipped) applied through
  :func:`torch.nn.functional.affine_grid` / :func:`~torch.nn.functional.grid_sample`.
* :func:`color_jitter` — brightness ``x b``, contrast ``c x + (1 - c) mean(gray(x))``,
  saturation ``s x + (1 - s) gray(x)``, hue shift in HSV; factors ``U(1 - f, 1 + f)``, hue
  ``U(-h, h)``; applied with probability ``p`` per image, in this fixed order (torchvision
  permutes the four per image). On grayscale input (``C = 1``) only brightness and contrast apply.
* :func:`random_grayscale` — ITU-R 601 luma ``0.299 R + 0.587 G + 0.114 B``, kept 3 channels;
  skipped when ``C = 1``.
* :func:`gaussian_blur` — separable Gaussian, ``sigma ~ U(sigma_range)`` per image, kernel size
  about 10 % of the image (odd), reflect padding, one grouped convolution for the batch.
* :func:`solarize` — ``x -> 1 - x`` where ``x >= threshold``.
* :func:`normalize` — ``(x - mean) / std`` per channel.

Example:
    >>> aug = ViewAugment(size=28, crop_scale=(0.2, 1.0), blur_p=0.0)
    >>> g = torch.Generator().manual_seed(0)
    >>> v1, v2 = aug(x, generator=g), aug(x, generator=g)   # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.checks import check_positive, check_probability, check_tensor

__all__ = ["to_float", "random_resized_crop", "color_jitter", "random_grayscale",
           "gaussian_blur", "solarize", "normalize", "rgb_to_hsv", "hsv_to_rgb", "rgb_to_gray",
           "ViewAugment", "MultiCrop", "simclr_augment"]

_LUMA = (0.299, 0.587, 0.114)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _check_images(x: Tensor, name: str = "x") -> None:
    check_tensor(name, x, ndim=4)
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{name}: expected 1 or 3 channels in [B, C, H, W], got shape "
                         f"{tuple(x.shape)}")


def to_float(x: Tensor) -> Tensor:
    """uint8 ``[0, 255]`` -> float32 ``[0, 1]``; a float tensor is copied (never aliased)."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise TypeError(f"x: expected uint8 or floating-point images, got dtype {x.dtype}")
    return x.float().clone() if x.dtype == torch.float32 else x.float()


def _rand(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """``[n]`` uniform draws on ``device`` (from ``generator``'s device, then moved)."""
    gdev = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, device=gdev).to(device)


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator | None,
             device: torch.device) -> Tensor:
    return lo + (hi - lo) * _rand(n, generator, device)


def _coin(n: int, p: float, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """``[n]`` booleans, True with probability ``p`` (draws are made even for p in {0, 1})."""
    return _rand(n, generator, device) < p


def _pair(name: str, value: Sequence[float], lo: float | None = None) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name}: expected a (min, max) pair, got {value!r}")
    a, b = float(value[0]), float(value[1])
    if not (a <= b) or (lo is not None and a < lo):
        raise ValueError(f"{name}: expected min <= max{f' and min >= {lo}' if lo is not None else ''}"
                         f", got {value!r}")
    return a, b


def rgb_to_gray(x: Tensor) -> Tensor:
    """Luma ``[B, 1, H, W]`` of ``[B, 3, H, W]`` (a ``C = 1`` input is returned as is)."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def rgb_to_hsv(x: Tensor) -> Tensor:
    """RGB ``[B, 3, H, W]`` in ``[0, 1]`` -> HSV with hue in ``[0, 1)`` (colorsys convention)."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    d = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, torch.remainder(h / 6.0, 1.0), torch.zeros_like(h))
    return torch.stack([h, s, maxc], 1)


def hsv_to_rgb(x: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_hsv`."""
    h, s, v = x.unbind(1)
    h6 = torch.remainder(h, 1.0) * 6.0
    i = torch.floor(h6)
    f = h6 - i
    i = i.long() % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = torch.stack([torch.stack(c, 0) for c in (
        (v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q))], 0)  # [3, 6, B, H, W]
    idx = i.unsqueeze(0).unsqueeze(0).expand(3, 1, *i.shape)
    return table.gather(1, idx).squeeze(1).transpose(0, 1).contiguous()


# ---------------------------------------------------------------------------------------------
# operations
# ---------------------------------------------------------------------------------------------
def random_resized_crop(x: Tensor, size: int | tuple[int, int], *,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip_p: float = 0.0,
                        generator: torch.Generator | None = None,
                        mode: str = "bilinear") -> Tensor:
    """Per-sample random resized crop (and horizontal flip) of ``x [B, C, H, W]``.

    Args:
        x: images, uint8 or float in ``[0, 1]``.
        size: output side (or ``(H', W')``).
        scale: range of the crop's area fraction.
        ratio: range of the crop's aspect ratio (width / height), sampled log-uniformly.
        hflip_p: probability of a horizontal flip (folded into the same sampling).
        generator: source of the random parameters (``None``: global).
        mode: ``"bilinear"`` or ``"nearest"``.

    Returns:
        float ``[B, C, H', W']`` in ``[0, 1]``.
    """
    _check_images(x)
    lo, hi = _pair("scale", scale, 0.0)
    if hi > 1.0 or lo <= 0.0:
        raise ValueError(f"scale: expected 0 < min <= max <= 1, got {scale!r}")
    rlo, rhi = _pair("ratio", ratio)
    if rlo <= 0:
        raise ValueError(f"ratio: expected positive values, got {ratio!r}")
    check_probability("hflip_p", hflip_p)
    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    xf = to_float(x)
    b, dev = x.shape[0], x.device
    area = _uniform(b, lo, hi, generator, dev)
    logr = _uniform(b, math.log(rlo), math.log(rhi), generator, dev)
    r = torch.exp(logr)
    w = torch.sqrt(area * r).clamp(max=1.0)      # half-width in normalised [-1, 1] units
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (2 * _rand(b, generator, dev) - 1) * (1 - w)
    cy = (2 * _rand(b, generator, dev) - 1) * (1 - h)
    sign = torch.where(_coin(b, hflip_p, generator, dev), -1.0, 1.0).to(xf.dtype)
    theta = torch.zeros(b, 2, 3, dtype=xf.dtype, device=dev)
    theta[:, 0, 0] = w * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [b, x.shape[1], out_h, out_w], align_corners=False)
    return F.grid_sample(xf, grid, mode=mode, padding_mode="border", align_corners=False)


def color_jitter(x: Tensor, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.4, hue: float = 0.1, *, p: float = 0.8,
                 generator: torch.Generator | None = None) -> Tensor:
    """Per-sample colour jitter of float images ``x [B, C, H, W]`` in ``[0, 1]``.

    An image is jittered with probability ``p``; its factors are ``U(1 - f, 1 + f)`` for
    brightness / contrast / saturation and ``U(-hue, hue)`` for the hue shift (fixed order
    brightness, contrast, saturation, hue). For ``C = 1`` saturation and hue are skipped.

    Returns:
        float ``[B, C, H, W]`` clamped to ``[0, 1]``.
    """
    _check_images(x)
    for name, v in (("brightness", brightness), ("contrast", contrast),
                    ("saturation", saturation)):
        check_positive(name, v, allow_zero=True)
    if not 0 <= hue <= 0.5:
        raise ValueError(f"hue: expected a value in [0, 0.5], got {hue}")
    check_probability("p", p)
    x = to_float(x)
    b, dev, shape = x.shape[0], x.device, (-1, 1, 1, 1)
    on = _coin(b, p, generator, dev)
    fb = torch.where(on, _uniform(b, max(0.0, 1 - brightness), 1 + brightness, generator, dev), 1.0)
    fc = torch.where(on, _uniform(b, max(0.0, 1 - contrast), 1 + contrast, generator, dev), 1.0)
    fs = torch.where(on, _uniform(b, max(0.0, 1 - saturation), 1 + saturation, generator, dev), 1.0)
    fh = torch.where(on, _uniform(b, -hue, hue, generator, dev), 0.0)
    x = (x * fb.view(shape)).clamp(0, 1)
    mean = rgb_to_gray(x).mean(dim=(1, 2, 3), keepdim=True)
    x = (fc.view(shape) * x + (1 - fc.view(shape)) * mean).clamp(0, 1)
    if x.shape[1] == 3:
        gray = rgb_to_gray(x)
        x = (fs.view(shape) * x + (1 - fs.view(shape)) * gray).clamp(0, 1)
        if hue > 0:
            hsv = rgb_to_hsv(x)
            hsv = torch.cat([torch.remainder(hsv[:, :1] + fh.view(shape), 1.0), hsv[:, 1:]], 1)
            x = torch.where(on.view(shape), hsv_to_rgb(hsv).clamp(0, 1), x)
    return x


def random_grayscale(x: Tensor, p: float = 0.2, *,
                     generator: torch.Generator | None = None) -> Tensor:
    """Replace an RGB image by its luma (3 equal channels) with probability ``p``; ``C = 1``: copy."""
    _check_images(x)
    check_probability("p", p)
    x = to_float(x)
    on = _coin(x.shape[0], p, generator, x.device)
    if x.shape[1] == 1:
        return x
    return torch.where(on.view(-1, 1, 1, 1), rgb_to_gray(x).expand_as(x), x)


def _kernel_size(side: int) -> int:
    k = max(3, int(round(0.1 * side)))
    return k if k % 2 == 1 else k + 1


def gaussian_blur(x: Tensor, sigma: tuple[float, float] = (0.1, 2.0), *, p: float = 0.5,
                  kernel_size: int | None = None,
                  generator: torch.Generator | None = None) -> Tensor:
    """Per-sample Gaussian blur with probability ``p`` (``sigma ~ U(sigma)``, odd kernel)."""
    _check_images(x)
    slo, shi = _pair("sigma", sigma, 0.0)
    if slo <= 0:
        raise ValueError(f"sigma: expected positive values, got {sigma!r}")
    check_probability("p", p)
    x = to_float(x)
    b, c, hgt, wid = x.shape
    dev = x.device
    k = _kernel_size(min(hgt, wid)) if kernel_size is None else int(kernel_size)
    if k < 1 or k % 2 == 0:
        raise ValueError(f"kernel_size: expected a positive odd int, got {kernel_size}")
    on = _coin(b, p, generator, dev)
    s = _uniform(b, slo, shi, generator, dev)
    if k == 1 or not bool(on.any()):
        return x
    pos = torch.arange(k, device=dev, dtype=x.dtype) - k // 2
    ker = torch.exp(-pos.view(1, -1) ** 2 / (2 * s.view(-1, 1).to(x.dtype) ** 2))
    ker = ker / ker.sum(1, keepdim=True)
    delta = torch.zeros_like(ker)
    delta[:, k // 2] = 1.0
    ker = torch.where(on.view(-1, 1), ker, delta)                       # [B, k]
    weight = ker.repeat_interleave(c, 0)                                # [B*C, k]
    pad = k // 2
    y = x.reshape(1, b * c, hgt, wid)
    y = F.pad(y, (pad, pad, 0, 0), mode="reflect" if wid > pad else "replicate")
    y = F.conv2d(y, weight.view(b * c, 1, 1, k), groups=b * c)
    y = F.pad(y, (0, 0, pad, pad), mode="reflect" if hgt > pad else "replicate")
    y = F.conv2d(y, weight.view(b * c, 1, k, 1), groups=b * c)
    return y.view(b, c, hgt, wid)


def solarize(x: Tensor, threshold: float = 0.5, *, p: float = 0.0,
             generator: torch.Generator | None = None) -> Tensor:
    """``x -> 1 - x`` for pixels ``>= threshold``, per image with probability ``p``."""
    _check_images(x)
    check_probability("p", p)
    check_probability("threshold", threshold)
    x = to_float(x)
    on = _coin(x.shape[0], p, generator, x.device).view(-1, 1, 1, 1)
    return torch.where(on & (x >= threshold), 1.0 - x, x)


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(x - mean) / std`` per channel (lengths must equal ``C``)."""
    _check_images(x)
    if len(mean) != x.shape[1] or len(std) != x.shape[1]:
        raise ValueError(f"mean/std: expected {x.shape[1]} values each, got {len(mean)} and "
                         f"{len(std)}")
    if any(s <= 0 for s in std):
        raise ValueError(f"std: expected positive values, got {tuple(std)}")
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (to_float(x) - m) / s


# ---------------------------------------------------------------------------------------------
# pipelines
# ---------------------------------------------------------------------------------------------
@dataclass
class ViewAugment:
    """One stochastic view: crop + flip, colour jitter, grayscale, blur, solarize, normalise.

    Probabilities of 0 switch an operation off. For ``C = 1`` input the colour operations
    (saturation, hue, grayscale) are skipped automatically; brightness and contrast still apply.
    Defaults are the SimCLR CIFAR recipe of the spec (crop 0.08-1, flip 0.5, jitter
    (0.4, 0.4, 0.4, 0.1) with p 0.8, grayscale 0.2, no blur at 32x32, no solarize).

    Attributes:
        size: output side.
        crop_scale, crop_ratio: :func:`random_resized_crop` ranges.
        hflip_p: horizontal flip probability.
        brightness, contrast, saturation, hue, jitter_p: :func:`color_jitter`.
        gray_p: :func:`random_grayscale` probability.
        blur_p, blur_sigma: :func:`gaussian_blur`.
        solarize_p, solarize_threshold: :func:`solarize`.
        mean, std: per-channel normalisation after augmenting (empty: none).
    """

    size: int = 32
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5
    mean: tuple[float, ...] = field(default_factory=tuple)
    std: tuple[float, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size: expected a positive int, got {self.size!r}")
        self.crop_scale = _pair("crop_scale", self.crop_scale, 0.0)
        self.crop_ratio = _pair("crop_ratio", self.crop_ratio)
        self.blur_sigma = _pair("blur_sigma", self.blur_sigma, 0.0)
        for name in ("hflip_p", "jitter_p", "gray_p", "blur_p", "solarize_p"):
            check_probability(name, getattr(self, name))
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean/std: expected the same length, got {self.mean} and {self.std}")

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment ``x [B, C, H, W]`` (uint8 or float in ``[0, 1]``) -> float ``[B, C, size, size]``."""
        _check_images(x)
        v = random_resized_crop(x, self.size, scale=self.crop_scale, ratio=self.crop_ratio,
                                hflip_p=self.hflip_p, generator=generator)
        if self.jitter_p > 0:
            v = color_jitter(v, self.brightness, self.contrast, self.saturation, self.hue,
                             p=self.jitter_p, generator=generator)
        if self.gray_p > 0 and v.shape[1] == 3:
            v = random_grayscale(v, self.gray_p, generator=generator)
        if self.blur_p > 0:
            v = gaussian_blur(v, self.blur_sigma, p=self.blur_p, generator=generator)
        if self.solarize_p > 0:
            v = solarize(v, self.solarize_threshold, p=self.solarize_p, generator=generator)
        if self.mean:
            v = normalize(v, self.mean, self.std)
        return v

    def clean(self, x: Tensor) -> Tensor:
        """The evaluation view: float, resized to ``size`` if needed, normalised."""
        _check_images(x)
        v = to_float(x)
        if v.shape[-1] != self.size or v.shape[-2] != self.size:
            v = F.interpolate(v, size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=True)
        return normalize(v, self.mean, self.std) if self.mean else v


@dataclass
class MultiCrop:
    """SwAV multi-crop: ``num_global`` views from ``global_aug`` + ``num_local`` from ``local_aug``.

    ``local_aug`` is usually ``global_aug`` with a smaller ``size`` and ``crop_scale`` (SwAV:
    2 x 224 at scale 0.14-1 + 6 x 96 at 0.05-0.14; CIFAR: 2 x 32 + 4 x 16 or 6 x 18).
    """

    global_aug: ViewAugment
    local_aug: ViewAugment | None = None
    num_global: int = 2
    num_local: int = 0

    def __post_init__(self) -> None:
        if self.num_global < 1 or self.num_local < 0:
            raise ValueError(f"num_global/num_local: expected >= 1 and >= 0, got "
                             f"{self.num_global} and {self.num_local}")
        if self.num_local > 0 and self.local_aug is None:
            raise ValueError("local_aug: expected a ViewAugment when num_local > 0")

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> list[Tensor]:
        views = [self.global_aug(x, generator) for _ in range(self.num_global)]
        if self.num_local:
            assert self.local_aug is not None
            views += [self.local_aug(x, generator) for _ in range(self.num_local)]
        return views


def simclr_augment(size: int, channels: int = 3, *, crop_min: float = 0.08,
                   strength: float = 1.0, blur_p: float = 0.0, solarize_p: float = 0.0,
                   gray_p: float = 0.2, mean: Sequence[float] = (),
                   std: Sequence[float] = ()) -> ViewAugment:
    """SimCLR view for ``size x size`` images; jitter ``(0.4, 0.4, 0.4, 0.1) * strength``.

    For ``channels = 1`` the colour-only operations are off (saturation, hue, grayscale).
    """
    s = float(strength)
    colour = channels == 3
    return ViewAugment(size=size, crop_scale=(crop_min, 1.0), brightness=0.4 * s,
                       contrast=0.4 * s, saturation=0.4 * s if colour else 0.0,
                       hue=min(0.5, 0.1 * s) if colour else 0.0,
                       gray_p=gray_p if colour else 0.0, blur_p=blur_p, solarize_p=solarize_p,
                       mean=tuple(mean), std=tuple(std))
