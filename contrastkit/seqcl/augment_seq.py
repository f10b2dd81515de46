r"""Item-sequence augmentations of CL4SRec / MCLRec: crop, mask, reorder (batched, pure).

Every operator takes a batch of **left-aligned** sequences ``seq [B, L]`` (items at positions
``0..n-1``, 0 after) with lengths ``n [B]`` and an explicit :class:`torch.Generator`, and returns
new tensors ``(seq', n')``; the input is never modified (the reference code's ``seq[:]`` on a
tensor view changed the history used by the recommendation loss, DuoRec issue #8).

For a sequence of real length ``n`` (spec ``sasrec_cl4srec.md`` Section 2.4):

* :func:`crop`: keep a random contiguous block of ``max(1, floor(keep * n))`` items, moved to the
  left (``keep`` is the fraction **kept**: CL4SRec ``eta = 0.6``; MCLRec's ``crop_ratio = 0.5``
  means ``keep = 0.5``);
* :func:`mask`: ``floor(ratio * n)`` distinct positions set to ``token`` (CL4SRec: the ``[mask]``
  id ``num_items + 1``; MCLRec: 0, the padding id); length unchanged;
* :func:`reorder`: shuffle a random contiguous block of ``floor(ratio * n)`` items; same multiset.

:class:`TwoViewAugment` draws, per sequence with ``n > 1``, two **different** operators uniformly
without replacement and applies one to each view; sequences with ``n <= 1`` are used unchanged
(spec pitfall 4). The clamp of the crop length to 1 is ours: the reference would produce an empty
sequence when ``floor(keep * n) = 0``, which its gather at ``n - 1`` cannot read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.checks import check_probability, check_tensor

__all__ = ["crop", "mask", "reorder", "TwoViewAugment", "OPERATORS"]

OPERATORS = ("crop", "mask", "reorder")


def _check(seq: Tensor, lengths: Tensor, generator: torch.Generator | None) -> None:
    check_tensor("seq", seq, ndim=2, integer=True)
    check_tensor("lengths", lengths, ndim=1, integer=True)
    if lengths.numel() != seq.size(0):
        raise ValueError(f"lengths: expected {seq.size(0)} entries (one per sequence), "
                         f"got {lengths.numel()}")
    if lengths.numel() and (int(lengths.min()) < 0 or int(lengths.max()) > seq.size(1)):
        raise ValueError(f"lengths: expected values in [0, {seq.size(1)}], got "
                         f"[{int(lengths.min())}, {int(lengths.max())}]")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, "
                        f"got {type(generator).__name__}")


def _rand(shape, generator, device) -> Tensor:
    return torch.rand(shape, generator=generator, device=generator.device if generator is not None
                      else device).to(device)


def crop(seq: Tensor, lengths: Tensor, keep: float, generator: torch.Generator | None = None
         ) -> tuple[Tensor, Tensor]:
    """Keep a random contiguous block of ``max(1, floor(keep * n))`` items, left-aligned.

    Args:
        seq: ``[B, L]`` left-aligned item ids (0 = padding).
        lengths: ``[B]`` real lengths.
        keep: fraction kept, in ``(0, 1]``.
        generator: source of randomness.

    Returns:
        ``(seq' [B, L], n' [B])``; sequences of length 0 stay empty.
    """
    _check(seq, lengths, generator)
    check_probability("keep", keep)
    if keep <= 0:
        raise ValueError(f"keep: expected a fraction in (0, 1], got {keep}")
    B, L = seq.shape
    n = lengths.long()
    m = torch.clamp(torch.floor(n.double() * keep + 1e-9).long(), min=1)
    m = torch.minimum(m, n)
    start = torch.floor(_rand(B, generator, seq.device).double() * (n - m + 1).double()).long()
    start = torch.minimum(start, n - m).clamp(min=0)
    pos = torch.arange(L, device=seq.device)
    idx = (start[:, None] + pos[None, :]).clamp(max=L - 1)
    keep_mask = pos[None, :] < m[:, None]
    out = torch.where(keep_mask, seq.gather(1, idx), torch.zeros_like(seq))
    return out, m.to(lengths.dtype)


def mask(seq: Tensor, lengths: Tensor, ratio: float, token: int,
         generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Set ``floor(ratio * n)`` distinct random positions of each sequence to ``token``.

    Returns:
        ``(seq' [B, L], n)`` (lengths unchanged, returned as a new tensor).
    """
    _check(seq, lengths, generator)
    check_probability("ratio", ratio)
    if isinstance(token, bool) or not isinstance(token, int) or token < 0:
        raise ValueError(f"token: expected a non-negative int item id, got {token!r}")
    B, L = seq.shape
    n = lengths.long()
    k = torch.floor(n.double() * ratio + 1e-9).long()
    pos = torch.arange(L, device=seq.device)
    keys = _rand((B, L), generator, seq.device)
    keys = torch.where(pos[None, :] < n[:, None], keys, torch.full_like(keys, 2.0))
    order = keys.argsort(1).argsort(1)  # rank of each position among the real ones
    chosen = order < k[:, None]
    return torch.where(chosen, torch.full_like(seq, token), seq), lengths.clone()


def reorder(seq: Tensor, lengths: Tensor, ratio: float, generator: torch.Generator | None = None
            ) -> tuple[Tensor, Tensor]:
    """Shuffle a random contiguous block of ``floor(ratio * n)`` items of each sequence.

    Returns:
        ``(seq' [B, L], n)``: the same items (as a multiset), those outside the block in place.
    """
    _check(seq, lengths, generator)
    check_probability("ratio", ratio)
    B, L = seq.shape
    n = lengths.long()
    m = torch.floor(n.double() * ratio + 1e-9).long()
    start = torch.floor(_rand(B, generator, seq.device).double() * (n - m + 1).double()).long()
    start = torch.minimum(start, (n - m).clamp(min=0))
    pos = torch.arange(L, device=seq.device, dtype=torch.float64)
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < (start + m)[:, None])
    u = _rand((B, L), generator, seq.device).double()
    # outside the block the key is the position itself; inside, a uniform key strictly between
    # the neighbours' keys, so sorting shuffles the block and nothing else
    keys = torch.where(inside, start[:, None].double() - 0.5 + u * m[:, None].double(),
                       pos[None, :].expand(B, L))
    perm = keys.argsort(1)
    return seq.gather(1, perm), lengths.clone()


@dataclass
class TwoViewAugment:
    """Two views per sequence with two different operators (CL4SRec / MCLRec data augmentation).

    Args:
        crop_keep: fraction kept by crop (CL4SRec 0.6, MCLRec 0.5).
        mask_ratio: fraction masked (CL4SRec 0.3, MCLRec 0.5).
        reorder_ratio: fraction reordered (CL4SRec 0.6, MCLRec 0.8).
        mask_token: the id written by mask (CL4SRec ``num_items + 1``, MCLRec 0).

    Calling it with ``(seq, lengths, generator)`` returns ``{"aug1", "aug1_len", "aug2",
    "aug2_len", "ops"}`` where ``ops [B, 2]`` are the operator indices into :data:`OPERATORS`
    (``-1`` for sequences of length <= 1, left unchanged).
    """

    crop_keep: float = 0.6
    mask_ratio: float = 0.3
    reorder_ratio: float = 0.6
    mask_token: int = 0

    def __post_init__(self) -> None:
        check_probability("crop_keep", self.crop_keep)
        if self.crop_keep <= 0:
            raise ValueError(f"crop_keep: expected a fraction in (0, 1], got {self.crop_keep}")
        check_probability("mask_ratio", self.mask_ratio)
        check_probability("reorder_ratio", self.reorder_ratio)

    def __call__(self, seq: Tensor, lengths: Tensor, generator: torch.Generator | None = None
                 ) -> dict[str, Tensor]:
        _check(seq, lengths, generator)
        B = seq.size(0)
        ops = _rand((B, 3), generator, seq.device).argsort(1)[:, :2]
        results = [crop(seq, lengths, self.crop_keep, generator),
                   mask(seq, lengths, self.mask_ratio, self.mask_token, generator),
                   reorder(seq, lengths, self.reorder_ratio, generator)]
        short = lengths <= 1
        out: dict[str, Tensor] = {}
        for v in range(2):
            s, n = seq.clone(), lengths.clone()
            for k, (rs, rn) in enumerate(results):
                use = (ops[:, v] == k) & ~short
                s = torch.where(use[:, None], rs, s)
                n = torch.where(use, rn, n)
            width = max(int(n.max()) if n.numel() else 1, 1)
            out[f"aug{v + 1}"] = s[:, :width].contiguous()
            out[f"aug{v + 1}_len"] = n
        out["ops"] = torch.where(short[:, None], torch.full_like(ops, -1), ops)
        return out
