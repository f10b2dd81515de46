r"""SASRec and CL4SRec: next-item recommendation with a causal Transformer (+ sequence contrast).

SASRec (Kang and McAuley, ICDM 2018) in the RecBole form that CL4SRec, DuoRec and MCLRec use
(spec ``../shared/specs/sequence/sasrec_cl4srec.md`` Sections 2.2 and 3): left-aligned history
``s_u`` (last ``N = 50`` items), ``e_t = LayerNorm(M[i_t] + P[t])``, dropout, ``L`` post-LN
Transformer blocks with a causal + key-padding mask (masked scores ``-10000``) and a GELU
feed-forward, ``h_u = x[n - 1]``, and the full-softmax next-item loss

.. math::

    \mathcal L_{rec} = -\log \frac{\exp(h_u \cdot m_g)}{\sum_{i \in I} \exp(h_u \cdot m_i)}

(logits over the rows ``0..|I|`` of ``M``; the ``[mask]`` row is excluded, as in RecBole).

CL4SRec (Xie et al., ICDE 2022; the DuoRec/RecBole-DA code) adds NT-Xent between two augmented
views (crop / mask / reorder, two different operators per sequence,
:mod:`contrastkit.seqcl.augment_seq`) encoded by the same network:

.. math::

    \mathcal L = \mathcal L_{rec} + \lambda\, \mathrm{NTXent}(z^1, z^2), \quad
    S_{ab} = z_a \cdot z_b / \tau \ (\tau = 1,\ \lambda = 0.1)

over the ``2B`` view vectors, self excluded, the partner view the positive
(:func:`contrastkit.core.losses.nt_xent`, i.e. the engine with ``positives=B``).

Not implemented: the original TensorFlow SASRec (pre-LN, BCE with one sampled negative, right
padding) — the registered ``sasrec`` is the RecBole variant whose numbers CL-for-rec papers quote.

Evaluation (spec Section 5.2, :mod:`contrastkit.core.ranking`): full ranking over all items
(padding ``-inf``, history **not** filtered), ``hr@5/10/20``, ``ndcg@5/10/20``, ``mrr@10``;
after every epoch the validation ``mrr@10`` selects the state (patience ``patience``, early stop),
and the test metrics come from the selected state. The selected state lives in the module's
``extra_state`` so checkpoints and resume keep it.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.checks import check_choice, check_config_numbers, check_ints, check_positive, check_probability
from ..core.losses import nt_xent
from ..core.method import ContrastiveMethod
from ..core.ranking import ranking_metrics, rank_users
from ..core.trainer import Trainer
from ..registry import MethodSpec, RunContext, RunResult, register
from .augment_seq import TwoViewAugment

__all__ = ["SeqRecConfig", "SASRecConfig", "CL4SRecConfig", "SASRecEncoder", "SASRec", "CL4SRec",
           "evaluate_ranking", "fit_seqrec", "recommend", "user_embeddings", "run", "evaluate",
           "MASK_TOKENS"]

MASK_TOKENS = ("mask", "padding")


@dataclass
class SeqRecConfig:
    """Hyperparameters shared by SASRec, CL4SRec and MCLRec (RecBole defaults, spec Section 4).

    Attributes:
        dataset: dataset id (``beauty``, ``sports``, ``toys``, ``yelp``, ``ml-100k``, ``taobao``, or
            any registered sequence set).
        epochs: maximum epochs (early stopping may end sooner).
        batch_size: training prefixes per batch.
        lr, weight_decay: Adam.
        hidden_size, num_layers, num_heads, inner_size: the Transformer (64 / 2 / 2 / 256).
        hidden_dropout, attn_dropout: dropout rates (0.5 / 0.5).
        layer_norm_eps: LayerNorm epsilon (1e-12, RecBole).
        max_len: history truncation ``N``.
        cl_weight: ``lambda`` of the contrastive term (0 = plain SASRec).
        temperature, similarity: NT-Xent ``tau`` and ``"dot"`` / ``"cosine"``.
        crop_keep: fraction **kept** by crop (CL4SRec ``eta = 0.6``).
        mask_ratio, reorder_ratio: CL4SRec ``gamma = 0.3``, ``beta = 0.6``.
        mask_token: ``"mask"`` (a ``[mask]`` row ``num_items + 1``, CL4SRec) or ``"padding"``
            (id 0, MCLRec's code).
        patience: early stopping on validation ``mrr@10``: training stops once more than
            ``patience`` epochs in a row brought no improvement (RecBole's ``stopping_step``
            rule in the RecBole version MCLRec's code vendors, strict ``>`` for an
            improvement: 10 stops on the 11th epoch without one).
        eval_batch_size: users per chunk in full-ranking evaluation.
        length_groups: the encoder runs each batch in this many groups of similar history length,
            each trimmed to its own longest history: the same result as one padded pass (each
            sequence is encoded independently), fewer wasted positions; 1 = one pass.
        max_train_samples: train on a fixed random subset of this many prefixes (None: all).
        max_train_time_s: stop after the first epoch that ends past this many seconds of
            training (a CPU budget; None: no limit). Selection and test work as usual.
        checkpoint_every: write ``checkpoint.pt`` every this many epochs (0: at the end).
    """

    dataset: str = "beauty"
    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    inner_size: int = 256
    hidden_dropout: float = 0.5
    attn_dropout: float = 0.5
    layer_norm_eps: float = 1e-12
    max_len: int = 50
    cl_weight: float = 0.0
    temperature: float = 1.0
    similarity: str = "dot"
    crop_keep: float = 0.6
    mask_ratio: float = 0.3
    reorder_ratio: float = 0.6
    mask_token: str = "mask"
    patience: int = 10
    eval_batch_size: int = 1024
    length_groups: int = 8
    max_train_samples: int | None = None
    max_train_time_s: float | None = None
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        check_config_numbers(self)
        check_ints(self, ("epochs", "batch_size", "hidden_size", "num_layers", "num_heads",
                          "inner_size", "max_len", "patience", "eval_batch_size", "length_groups"))
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size: expected a multiple of num_heads={self.num_heads}, "
                             f"got {self.hidden_size}")
        check_positive("lr", self.lr)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_positive("layer_norm_eps", self.layer_norm_eps)
        check_positive("cl_weight", self.cl_weight, allow_zero=True)
        check_positive("temperature", self.temperature)
        check_choice("similarity", self.similarity, ("dot", "cosine"))
        for name in ("hidden_dropout", "attn_dropout", "crop_keep", "mask_ratio",
                     "reorder_ratio"):
            check_probability(name, getattr(self, name))
        if self.crop_keep <= 0:
            raise ValueError(f"crop_keep: expected a fraction in (0, 1], got {self.crop_keep}")
        check_choice("mask_token", self.mask_token, MASK_TOKENS)
        if self.max_train_samples is not None and (
                isinstance(self.max_train_samples, bool)
                or not isinstance(self.max_train_samples, int) or self.max_train_samples < 1):
            raise ValueError(f"max_train_samples: expected a positive int or None, "
                             f"got {self.max_train_samples!r}")
        if self.max_train_time_s is not None:
            check_positive("max_train_time_s", self.max_train_time_s)
        if isinstance(self.checkpoint_every, bool) or not isinstance(self.checkpoint_every, int) \
                or self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every: expected an int >= 0, "
                             f"got {self.checkpoint_every!r}")


@dataclass
class SASRecConfig(SeqRecConfig):
    """SASRec (RecBole variant): next-item CE only."""

    cl_weight: float = 0.0


@dataclass
class CL4SRecConfig(SeqRecConfig):
    """CL4SRec: SASRec + ``lambda = 0.1`` NT-Xent (dot, ``tau = 1``) between two augmented views."""

    cl_weight: float = 0.1


# ------------------------------------------------------------------------------------ encoder
def _dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout with a ``torch.rand`` mask (same distribution as ``F.dropout``; about
    2.5x faster on CPU, where ``bernoulli_`` dominated the encoder's forward time)."""
    if not training or p <= 0:
        return x
    if p >= 1:
        return torch.zeros_like(x)
    keep = torch.rand(x.shape, device=x.device) >= p
    return x * keep * (1.0 / (1.0 - p))


class _Block(nn.Module):
    """One post-LN Transformer block (RecBole ``TransformerLayer``)."""

    def __init__(self, d: int, heads: int, inner: int, p_hidden: float, p_attn: float,
                 eps: float) -> None:
        super().__init__()
        self.heads, self.p_attn, self.p_hidden = heads, p_attn, p_hidden
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
        self.ff1, self.ff2 = nn.Linear(d, inner), nn.Linear(inner, d)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        B, L, D = x.shape
        H = self.heads

        def split(t: Tensor) -> Tensor:
            return t.view(B, L, H, D // H).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = torch.softmax(q @ k.transpose(-1, -2) * (1.0 / math.sqrt(D // H)) + bias, dim=-1)
        ctx = _dropout(att, self.p_attn, self.training) @ v
        out = self.o(ctx.transpose(1, 2).reshape(B, L, D))
        a = self.ln1(x + _dropout(out, self.p_hidden, self.training))
        return self.ln2(a + _dropout(self.ff2(F.gelu(self.ff1(a))), self.p_hidden, self.training))


class SASRecEncoder(nn.Module):
    """The RecBole SASRec encoder: ``[B, L]`` left-aligned item ids + lengths -> ``h [B, D]``.

    Args:
        num_items: maximum item id ``|I|``; the item table has ``|I| + 2`` rows (0 padding,
            ``|I| + 1`` the ``[mask]`` token).
        hidden_size, num_layers, num_heads, inner_size, hidden_dropout, attn_dropout,
        layer_norm_eps, max_len: see :class:`SeqRecConfig`.
        length_groups: encode a batch in this many groups of similar length, each trimmed to its
            longest history (exact; fewer padded positions on CPU). 1: one dense pass.
    """

    def __init__(self, num_items: int, *, hidden_size: int = 64, num_layers: int = 2,
                 num_heads: int = 2, inner_size: int = 256, hidden_dropout: float = 0.5,
                 attn_dropout: float = 0.5, layer_norm_eps: float = 1e-12, max_len: int = 50,
                 length_groups: int = 1) -> None:
        super().__init__()
        if isinstance(num_items, bool) or not isinstance(num_items, int) or num_items < 1:
            raise ValueError(f"num_items: expected a positive int, got {num_items!r}")
        self.num_items, self.max_len, self.length_groups = num_items, max_len, length_groups
        self.item_embedding = nn.Embedding(num_items + 2, hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(max_len, hidden_size)
        self.ln = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.hidden_dropout = hidden_dropout
        self.blocks = nn.ModuleList(_Block(hidden_size, num_heads, inner_size, hidden_dropout,
                                           attn_dropout, layer_norm_eps)
                                    for _ in range(num_layers))
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        # RecBole: N(0, 0.02) for Linear/Embedding weights, LayerNorm (1, 0), biases 0
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @property
    def mask_id(self) -> int:
        return self.num_items + 1

    def item_matrix(self) -> Tensor:
        """Scoring rows ``[|I| + 1, D]`` (padding row 0 included, ``[mask]`` excluded)."""
        return self.item_embedding.weight[: self.num_items + 1]

    def forward(self, seq: Tensor, lengths: Tensor) -> Tensor:
        """``h [B, D]``: the output at position ``n - 1`` of each left-aligned sequence."""
        if seq.dim() != 2 or lengths.dim() != 1 or lengths.numel() != seq.size(0):
            raise ValueError(f"seq, lengths: expected [B, L] and [B], got {tuple(seq.shape)} and "
                             f"{tuple(lengths.shape)}")
        L = seq.size(1)
        if L > self.max_len:
            raise ValueError(f"seq: expected at most max_len={self.max_len} columns, got {L}")
        if seq.numel() and (int(seq.min()) < 0 or int(seq.max()) > self.num_items + 1):
            raise ValueError(f"seq: item ids must lie in [0, {self.num_items + 1}], got "
                             f"[{int(seq.min())}, {int(seq.max())}]")
        if lengths.numel() and int(lengths.min()) < 1:
            raise ValueError(f"lengths: every sequence needs at least one item, got a length "
                             f"{int(lengths.min())}")
        G = self.length_groups
        if G > 1 and seq.size(0) >= 2 * G and L > 8:
            # exact: each sequence is encoded independently; groups of similar length are
            # trimmed to their own longest history (left-aligned, causal: trailing padding
            # never influences position n - 1)
            order = lengths.argsort()
            h = seq.new_empty((seq.size(0), self.item_embedding.embedding_dim),
                              dtype=self.item_embedding.weight.dtype)
            for idx in order.tensor_split(G):
                n = lengths[idx]
                h[idx] = self._encode(seq[idx, : int(n.max())], n)
            return h
        return self._encode(seq, lengths)

    def _encode(self, seq: Tensor, lengths: Tensor) -> Tensor:
        L = seq.size(1)
        pos = torch.arange(L, device=seq.device)
        x = _dropout(self.ln(self.item_embedding(seq) + self.position_embedding(pos)[None]),
                     self.hidden_dropout, self.training)
        causal = torch.ones(L, L, dtype=torch.bool, device=seq.device).tril()
        allowed = causal[None, None] & (seq > 0)[:, None, None, :]
        bias = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill(
            ~allowed, -10000.0)
        for blk in self.blocks:
            x = blk(x, bias)
        return x[torch.arange(seq.size(0), device=seq.device), lengths.long() - 1]


# ------------------------------------------------------------------------------------ method
class SASRec(ContrastiveMethod):
    """SASRec with full-softmax CE; the base of CL4SRec and MCLRec.

    Batches are dicts ``{"seq", "len", "target"}`` (plus ``aug1``/``aug2`` views for CL4SRec) from
    :class:`~contrastkit.datasets.sequence.PrefixBatches`. :meth:`attach_validation` gives it the
    validation set; after each epoch it validates and keeps the best state (by ``mrr@10``) and sets
    ``stop_training`` after more than ``patience`` epochs without a strict improvement (the rule
    of the RecBole version MCLRec's code vendors).
    """

    name = "sasrec"

    def __init__(self, config: SeqRecConfig, num_items: int) -> None:
        super().__init__(config)
        self.encoder = SASRecEncoder(
            num_items, hidden_size=config.hidden_size, num_layers=config.num_layers,
            num_heads=config.num_heads, inner_size=config.inner_size,
            hidden_dropout=config.hidden_dropout, attn_dropout=config.attn_dropout,
            layer_norm_eps=config.layer_norm_eps, max_len=config.max_len,
            length_groups=config.length_groups)
        self.num_items = num_items
        self.stop_training = False
        self._valid = None
        self.last_valid: dict[str, float] = {}
        self.best = {"score": -1.0, "epoch": -1, "bad": 0, "state": None, "history": []}

    # -- augmentation used by the loader
    def mask_token_id(self) -> int:
        return self.encoder.mask_id if self.config.mask_token == "mask" else 0

    def make_augment(self) -> TwoViewAugment | None:
        if self.config.cl_weight <= 0:
            return None
        return TwoViewAugment(crop_keep=self.config.crop_keep, mask_ratio=self.config.mask_ratio,
                              reorder_ratio=self.config.reorder_ratio,
                              mask_token=self.mask_token_id())

    # -- losses
    def rec_loss(self, h: Tensor, target: Tensor) -> Tensor:
        """Full-softmax next-item CE over the item rows ``0..|I|``."""
        return F.cross_entropy(h @ self.encoder.item_matrix().t(), target)

    def cl_loss(self, z1: Tensor, z2: Tensor) -> Tensor:
        """CL4SRec's NT-Xent over ``[z1; z2]`` (engine, positives at offset ``B``)."""
        return nt_xent(z1, z2, temperature=self.config.temperature,
                       similarity=self.config.similarity)

    def training_step(self, batch: dict) -> Tensor:
        h = self.encoder(batch["seq"], batch["len"])
        loss = self.rec_loss(h, batch["target"])
        if self.config.cl_weight > 0:
            if "aug1" not in batch:
                raise ValueError("batch: CL4SRec needs the augmented views 'aug1'/'aug2' "
                                 "(build the loader with augment=method.make_augment())")
            z1 = self.encoder(batch["aug1"], batch["aug1_len"])
            z2 = self.encoder(batch["aug2"], batch["aug2_len"])
            loss = loss + self.config.cl_weight * self.cl_loss(z1, z2)
        return loss

    @torch.no_grad()
    def embed(self, batch: Any) -> Tensor:
        seq, n = batch
        return self.encoder(seq, n)

    # -- model selection
    def attach_validation(self, valid: Any) -> None:
        """Validation :class:`~contrastkit.datasets.sequence.EvalSet` used after every epoch."""
        self._valid = valid

    def on_fit_start(self, trainer: Any) -> None:
        self._t_start = time.perf_counter()

    def on_epoch_end(self, epoch: int) -> None:
        budget = self.config.max_train_time_s
        if budget is not None and time.perf_counter() - getattr(self, "_t_start", 0.0) > budget:
            self.stop_training = True
        if self._valid is None:
            return
        was = self.training
        self.eval()
        t0 = time.perf_counter()
        m = evaluate_ranking(self.encoder, self._valid, chunk_size=self.config.eval_batch_size)
        self.train(was)
        self.last_valid = {f"valid_{k}": v for k, v in m.items()}
        self.last_valid["valid_eval_time_s"] = time.perf_counter() - t0
        score = m["mrr@10"]
        self.best["history"].append(score)
        if score > self.best["score"]:
            self.best.update(score=score, epoch=epoch, bad=0,
                             state={k: v.detach().clone()
                                    for k, v in self.encoder.state_dict().items()})
        else:
            self.best["bad"] += 1
            if self._patience_exhausted():
                self.stop_training = True

    def _patience_exhausted(self) -> bool:
        """More than ``patience`` epochs without a strict improvement (RecBole's rule)."""
        return self.best["bad"] > self.config.patience

    def restore_best(self) -> int:
        """Load the best-validation encoder state; returns its epoch (-1 if none)."""
        if self.best["state"] is not None:
            self.encoder.load_state_dict(self.best["state"])
        return int(self.best["epoch"])

    def get_extra_state(self) -> dict:
        return {"best_score": float(self.best["score"]), "best_epoch": int(self.best["epoch"]),
                "bad": int(self.best["bad"]), "history": list(self.best["history"]),
                "best_state": self.best["state"] or {}}

    def set_extra_state(self, state: dict) -> None:
        self.best = {"score": float(state["best_score"]), "epoch": int(state["best_epoch"]),
                     "bad": int(state["bad"]), "history": list(state["history"]),
                     "state": dict(state["best_state"]) or None}
        # a run that had stopped on patience stays stopped when resumed (a time-budget stop
        # does not: resuming it with a new budget is what --resume is for)
        self.stop_training = self._patience_exhausted()


class CL4SRec(SASRec):
    """CL4SRec: SASRec + ``lambda`` NT-Xent between two crop/mask/reorder views."""

    name = "cl4srec"


# ------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate_ranking(encoder: SASRecEncoder, evalset: Any, *, chunk_size: int = 1024,
                     ks=(5, 10, 20)) -> dict[str, float]:
    """Full-ranking ``hr@k``, ``ndcg@k``, ``mrr@10`` of ``encoder`` on an ``EvalSet``."""
    was = encoder.training
    encoder.eval()
    dev = encoder.item_embedding.weight.device
    hist, lens = evalset.histories, evalset.lengths

    def user_repr(idx: Tensor) -> Tensor:
        n = lens[idx]
        width = int(n.max())
        return encoder(hist[idx, :width].to(dev), n.to(dev))

    # users in order of history length: each chunk is trimmed to its own longest history
    order = lens.argsort(stable=True)
    ranks = rank_users(user_repr, encoder.item_matrix(), order, evalset.targets[order],
                       chunk_size=chunk_size)
    encoder.train(was)
    return ranking_metrics(ranks, ks=ks)


def _load_data(config: SeqRecConfig):
    from ..datasets import load_for
    from ..datasets.sequence import SequenceData
    return load_for(config.dataset, domain="sequence", types=SequenceData,
                    what="a sequential-recommendation dataset (beauty, sports, toys, yelp, "
                         "ml-100k, taobao)")


def fit_seqrec(method_cls: type[SASRec], config: SeqRecConfig, data: Any, ctx: RunContext,
               splits: Any = None) -> tuple[SASRec, dict[str, float], Any]:
    """Train ``method_cls`` on ``data`` (:class:`~contrastkit.datasets.sequence.SequenceData`) with
    the shared Trainer, select on validation ``mrr@10``, and score the test split.

    Returns:
        ``(method with the selected state, metrics, splits)``; metrics are the test ``hr@k``,
        ``ndcg@k``, ``mrr@10`` plus ``valid_*`` of the selected epoch, ``best_epoch``,
        ``epochs_run``, ``time_per_epoch_s``, ``eval_time_s`` (one full-ranking test pass).
    """
    from ..datasets.sequence import PrefixBatches
    splits = data.split(max_len=config.max_len) if splits is None else splits
    if splits.num_train == 0:
        raise ValueError(f"data: {data.name!r} has no training prefix (every user has fewer than "
                         f"4 interactions)")
    torch.manual_seed(ctx.seed)
    method = method_cls(config, data.num_items)
    method.attach_validation(splits.valid)
    loader = PrefixBatches(splits, config.batch_size, augment=method.make_augment(),
                           seed=ctx.seed, limit=config.max_train_samples)
    out_dir = ctx.out_dir
    trainer = Trainer(config.epochs, device=ctx.device, seed=ctx.seed, progress=ctx.progress,
                      out_dir=out_dir, checkpoint_every=config.checkpoint_every, eval_every=1,
                      evaluator=lambda m: dict(m.last_valid))
    resume = bool(ctx.resume) and out_dir is not None and (Path(out_dir) / "checkpoint.pt").exists()
    trainer.fit(method, loader, resume=resume)
    best_epoch = method.restore_best()
    method.eval()
    t0 = time.perf_counter()
    test = evaluate_ranking(method.encoder, splits.test, chunk_size=config.eval_batch_size)
    eval_time = time.perf_counter() - t0
    valid = evaluate_ranking(method.encoder, splits.valid, chunk_size=config.eval_batch_size)
    metrics = dict(test)
    metrics.update({f"valid_{k}": v for k, v in valid.items()})
    metrics.update(best_epoch=float(best_epoch), epochs_run=float(len(trainer.history)),
                   time_per_epoch_s=_mean_epoch_time(trainer.history),
                   eval_time_s=float(eval_time),
                   peak_mem_bytes=float(trainer.stats.get("peak_mem_bytes", float("nan"))),
                   num_train_prefixes=float(loader.size))
    return method, metrics, splits


def _mean_epoch_time(history: list[dict]) -> float:
    """Mean training time per epoch over the whole history (epochs restored on resume count)."""
    times = [float(r["time_s"]) for r in history if "time_s" in r]
    return sum(times) / len(times) if times else float("nan")


@torch.no_grad()
def user_embeddings(method: SASRec, evalset: Any, chunk_size: int = 1024) -> Tensor:
    """``[U, D]`` representations of the histories of ``evalset`` (eval mode, on CPU)."""
    method.eval()
    dev = method.encoder.item_embedding.weight.device
    out = []
    for i in range(0, len(evalset), chunk_size):
        n = evalset.lengths[i:i + chunk_size]
        out.append(method.encoder(evalset.histories[i:i + chunk_size, :int(n.max())].to(dev),
                                  n.to(dev)).cpu())
    return torch.cat(out)


@torch.no_grad()
def recommend(method: SASRec, history: list[int] | Tensor, k: int = 10, *,
              exclude_history: bool = False) -> tuple[list[int], list[float]]:
    """Top-``k`` next items for one user's time-ordered ``history`` (internal item ids).

    The last ``max_len`` items are encoded and every item is scored (``h . m_i``); padding never
    appears; ``exclude_history`` removes items already in the history (the benchmark protocol
    does not).

    Returns:
        ``(item ids, scores)``, best first.

    Raises:
        ValueError: an empty history, an id outside ``[1, num_items]`` or a bad ``k``.
    """
    hist = torch.as_tensor(history, dtype=torch.long).flatten()
    enc = method.encoder
    if hist.numel() == 0:
        raise ValueError("history: expected at least one item, got an empty sequence")
    if int(hist.min()) < 1 or int(hist.max()) > enc.num_items:
        raise ValueError(f"history: item ids must lie in [1, {enc.num_items}], got "
                         f"[{int(hist.min())}, {int(hist.max())}]")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= enc.num_items:
        raise ValueError(f"k: expected an int in [1, {enc.num_items}], got {k!r}")
    method.eval()
    dev = enc.item_embedding.weight.device
    hist = hist[-enc.max_len:]
    h = enc(hist[None].to(dev), torch.tensor([hist.numel()], device=dev))
    scores = (h @ enc.item_matrix().t())[0]
    scores[0] = float("-inf")
    if exclude_history:
        scores[hist.to(dev)] = float("-inf")
    top = scores.topk(k)
    return top.indices.cpu().tolist(), top.values.cpu().tolist()


def run_method(method_cls: type[SASRec], config: SeqRecConfig, ctx: RunContext) -> RunResult:
    """``MethodSpec.run`` of the sequential recommenders: train, select, test."""
    method, metrics, splits = fit_seqrec(method_cls, config, _load_data(config), ctx)
    return RunResult(metrics=metrics, embeddings=user_embeddings(method, splits.test))


def run(config: SeqRecConfig, ctx: RunContext) -> RunResult:
    """Train SASRec or CL4SRec (by ``config.cl_weight``) on ``config.dataset``."""
    return run_method(CL4SRec if config.cl_weight > 0 else SASRec, config, ctx)


def evaluate(config: SeqRecConfig, embeddings: Tensor, ctx: RunContext) -> dict[str, float]:
    """Re-score saved test user representations ``[U, D]`` against the selected item table of
    ``ctx.out_dir/checkpoint.pt`` (full ranking, test targets)."""
    from ..core.checkpoint import load_checkpoint
    path = Path(ctx.out_dir) / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"evaluate: needs the run's checkpoint {path} for the item "
                                f"embeddings")
    state = load_checkpoint(path)["method"]
    extra = state.get("_extra_state", {})
    best = extra.get("best_state") or {}
    key = "item_embedding.weight"
    table = best.get(key, state.get(f"encoder.{key}"))
    splits = _load_data(config).split(max_len=config.max_len)
    if embeddings.size(0) != len(splits.test):
        raise ValueError(f"embeddings: expected {len(splits.test)} rows (test users of "
                         f"{config.dataset!r}), got {embeddings.size(0)}")
    items = table[: table.size(0) - 1].to(embeddings.dtype)
    ranks = rank_users(lambda idx: embeddings[idx], items, torch.arange(embeddings.size(0)),
                       splits.test.targets, chunk_size=config.eval_batch_size)
    return ranking_metrics(ranks)


#: per-dataset overrides (RecBole defaults are the same everywhere; ML-100K follows MCLRec's ml-1m
#: dropout 0.1 since it stands in for ML-1M)
SEQREC_PRESETS: dict[str, dict[str, Any]] = {
    "beauty": {}, "sports": {}, "toys": {}, "yelp": {}, "taobao": {},
    "ml-100k": {"hidden_dropout": 0.1, "attn_dropout": 0.1},
}

register(MethodSpec(
    name="sasrec", config_cls=SASRecConfig, run=run, evaluate=evaluate,
    description="SASRec (RecBole variant): causal Transformer, full-softmax next-item CE, "
                "full-ranking HR/NDCG",
    default_dataset="beauty", presets=copy.deepcopy(SEQREC_PRESETS), accepts=("sequence",)))
register(MethodSpec(
    name="cl4srec", config_cls=CL4SRecConfig, run=run, evaluate=evaluate,
    description="CL4SRec: SASRec + NT-Xent between crop/mask/reorder views (Xie et al., 2022)",
    default_dataset="beauty", presets=copy.deepcopy(SEQREC_PRESETS), accepts=("sequence",)))
