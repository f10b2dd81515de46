r"""COMET: hierarchical contrastive learning for medical time series (Wang et al., NeurIPS 2023).

COMET pre-trains a TS2Vec encoder ``G`` (:class:`~contrastkit.seqcl.hierarchical.TSEncoder`) on
unlabelled windows that carry their place in the data hierarchy (patient -> trial -> sample ->
observation) and contrasts at all four levels (spec ``../shared/specs/sequence/comet.md``):

* observation ``L_O``: TS2Vec's temporal loss on two continuously masked views, hierarchical
  (max-pool by 2 while ``T > 1``, mean over levels, no length-1 term), dot product, no temperature;
* sample ``L_S``: TS2Vec's instance loss, same views and hierarchy;
* trial ``L_R`` and patient ``L_P``: two unmasked views ``u, u'`` (differing only by the encoder's
  output dropout), each ``[B, T, D]`` L2-normalised along time per channel and flattened;
  ``S_ij = cos(u_i, u'_j) / 0.1``; positives are same-id pairs ``i != j``:

  .. math::

      L_{up} = \operatorname{mean}_{(i, j) \in P, i < j} -\log \frac{e^{S_{ij}}}{\sum_k e^{S_{ik}}},
      \quad
      L_{low} = \operatorname{mean}_{(i, j) \in P, i > j} -\log \frac{e^{S_{ij}}}{\sum_k e^{S_{kj}}},
      \quad L_{id} = (L_{up} + L_{low}) / 2

  — the engine's ``pair_mean`` form with explicit pairs, the same-sample entry kept as a negative
  (it is a different view, never a positive), 0 when no same-id pair is in the batch.

Total loss, ``level_weights = (w_P, w_R, w_S, w_O)``:

* ``weighting="code"`` (default; it produced the published numbers): the official ``comet.py``
  uses the patient and trial weights only as on/off switches,
  ``L = [w_P != 0] L_P + [w_R != 0] L_R + w_S L_S + w_O L_O``;
* ``weighting="paper"``: the paper's ``L = w_P L_P + w_R L_R + w_S L_S + w_O L_O``.

Trial-aware batching (:class:`~contrastkit.datasets.medical.TrialBatches`), AdamW, and an
equal-weight running average (SWA) of the encoder that is used downstream (official), optionally
starting at ``swa_start_epoch``.

Downstream (spec section 5): full fine-tuning of ``encoder -> max-pool over time -> Linear(D, 128)
-> BatchNorm -> ReLU -> Linear(128, 2) -> Dropout`` with 100 %, 10 %, 1 % of the training labels,
drawn per class at sample level inside the training patients (both classes always present).
Departures from the official code, documented: the head outputs logits and is trained with softmax
cross-entropy (the official head applies a sigmoid twice and feeds probabilities to
cross-entropy); fine-tuning runs a fixed number of epochs and reports the last epoch (no test-set
selection and no validation patients are taken out of the folds); ``class_weight="balanced"``
re-weights the cross-entropy because ADFSU is 76 : 12 imbalanced (the official AD set was
balanced). Also reported: linear evaluation (frozen encoder, standardised max-pooled features,
logistic regression), prefixed ``linear_``.

Evaluation is patient-independent: stratified patient-level k-fold
(:func:`~contrastkit.datasets.medical.patient_kfold`); metrics per window on the test patients:
``acc``, macro ``precision``/``recall``/``macro_f1``, ``auroc``, ``auprc`` (macro over the two
class columns, as the official code).

Baselines through the same trainer and folds (``variant``): ``"supervised"`` (the fine-tuning
classifier from a random encoder) and ``"sample_only"`` (pre-training with ``L_S`` only).
Pre-training skips batches on which no active level has a term (:class:`ContrastiveBatches`):
with ``L_S`` alone that is a trailing batch of a single window, which has no negatives (the
official code would call ``backward`` on a constant there and fail).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.checks import check_choice, check_config_numbers, check_ints, check_positive, check_tensor
from ..core.engine import contrastive_loss
from ..core.method import ContrastiveMethod
from ..core.pairs import Pairs
from ..core.trainer import CHECKPOINT_NAME, Trainer
from ..core.similarity import l2_normalize
from ..datasets.medical import (PatientDataset, SampleSet, TrialBatches, label_subset,
                                make_samples, patient_kfold)
from ..registry import MethodSpec, RunContext, RunResult, register
from .hierarchical import (MASK_MODES, AveragedEncoder, TSEncoder, encode_full,
                           hierarchical_contrastive_loss)

__all__ = ["COMETConfig", "COMET", "FineTuneClassifier", "id_contrastive_loss",
           "same_id_pairs", "comet_loss", "pretrain", "finetune", "classification_metrics",
           "run_fold", "run_folds", "run", "evaluate", "VARIANTS", "LEVELS", "ADFSU_PRESET",
           "linear_eval", "ContrastiveBatches"]

#: the four levels, in the order of ``level_weights`` and ``masks``
LEVELS = ("patient", "trial", "sample", "observation")
VARIANTS = ("comet", "supervised", "sample_only")


@dataclass
class COMETConfig:
    """COMET's hyperparameters (defaults: the official AD config, spec section 4).

    Attributes:
        dataset: dataset id (``adfsu``).
        variant: ``comet``, ``supervised`` (no pre-training) or ``sample_only`` (``L_S`` only).
        window, overlap: sample length in steps and overlap fraction.
        output_dims, hidden_dims, depth, dropout: encoder (320 / 64 / 10 / 0.1).
        epochs: pre-training epochs (the official loop runs ``n_epochs - 1 = 99``).
        batch_size, lr, weight_decay: AdamW pre-training.
        shuffle: ``trial`` (COMET's trial-aware batches) or ``random``.
        batch_seed: seed of the fixed trial-aware batch composition (official: 42).
        level_weights: ``(w_P, w_R, w_S, w_O)``.
        weighting: ``code`` (P/R weights are switches, default) or ``paper`` (all four applied).
        masks: timestamp masks per level (P, R, S, O).
        id_temperature: temperature of the trial/patient losses.
        swa: keep an equal-weight running average of the encoder and use it downstream.
        swa_start_epoch: first epoch whose steps enter the average (official: 0).
        label_fractions: fine-tuning label fractions.
        finetune_epochs: fine-tuning epochs per fraction (official 50 / 100 / 100).
        finetune_lr, finetune_batch_size, finetune_weight_decay: AdamW fine-tuning.
        class_weight: ``balanced`` (inverse class frequency in the labelled subset) or ``none``.
        linear_eval: also report the frozen-encoder logistic-regression metrics (``linear_*``).
        n_folds: patient-level folds; ``fold`` = -1 runs all of them, else only that one.
        fold_seed: seed of the fold assignment (fixed across training seeds).
        checkpoint_every: every stage (pre-training, each fine-tuning) writes ``checkpoint.pt``
            in its own folder of the run every this many epochs (0: at its end);
            ``contrastkit train comet ... --resume`` continues each stage from it.
    """

    dataset: str = "adfsu"
    variant: str = "comet"
    window: int = 128
    overlap: float = 0.5
    output_dims: int = 320
    hidden_dims: int = 64
    depth: int = 10
    dropout: float = 0.1
    epochs: int = 99
    batch_size: int = 256
    lr: float = 1e-4
    weight_decay: float = 1e-2
    shuffle: str = "trial"
    batch_seed: int = 42
    level_weights: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25)
    weighting: str = "code"
    masks: tuple[str, str, str, str] = ("all_true", "all_true", "continuous", "continuous")
    id_temperature: float = 0.1
    swa: bool = True
    swa_start_epoch: int = 0
    label_fractions: tuple[float, ...] = (1.0, 0.1, 0.01)
    finetune_epochs: tuple[int, ...] = (50, 100, 100)
    finetune_lr: float = 1e-4
    finetune_batch_size: int = 128
    finetune_weight_decay: float = 1e-2
    class_weight: str = "balanced"
    linear_eval: bool = True
    n_folds: int = 5
    fold: int = -1
    fold_seed: int = 0
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        check_config_numbers(self)
        check_choice("variant", self.variant, VARIANTS)
        check_choice("weighting", self.weighting, ("code", "paper"))
        check_choice("shuffle", self.shuffle, ("trial", "random"))
        check_choice("class_weight", self.class_weight, ("balanced", "none"))
        self.level_weights = tuple(float(w) for w in self.level_weights)
        if len(self.level_weights) != 4 or any(w < 0 for w in self.level_weights):
            raise ValueError(f"level_weights: expected 4 non-negative weights (patient, trial, "
                             f"sample, observation), got {self.level_weights}")
        self.masks = tuple(self.masks)
        if len(self.masks) != 4:
            raise ValueError(f"masks: expected 4 mask modes (patient, trial, sample, observation), "
                             f"got {self.masks}")
        for m in self.masks:
            check_choice("masks", m, MASK_MODES)
        self.label_fractions = tuple(float(f) for f in self.label_fractions)
        self.finetune_epochs = tuple(int(e) for e in self.finetune_epochs)
        if len(self.finetune_epochs) != len(self.label_fractions):
            raise ValueError(f"finetune_epochs: expected one entry per label fraction "
                             f"({len(self.label_fractions)}), got {self.finetune_epochs}")
        for f in self.label_fractions:
            if not 0 < f <= 1:
                raise ValueError(f"label_fractions: expected values in (0, 1], got {f}")
        for name in ("lr", "finetune_lr", "id_temperature"):
            check_positive(name, getattr(self, name))
        check_ints(self, ("window", "output_dims", "hidden_dims", "epochs", "batch_size",
                          "finetune_batch_size", "n_folds"))
        check_ints(self, ("depth", "batch_seed", "swa_start_epoch", "fold_seed",
                          "checkpoint_every"), minimum=0)
        if not 0 <= self.overlap < 1:
            raise ValueError(f"overlap: expected a float in [0, 1), got {self.overlap}")
        if not -1 <= self.fold < self.n_folds:
            raise ValueError(f"fold: expected -1 (all) or 0..{self.n_folds - 1}, got {self.fold}")

    def effective_weights(self) -> tuple[float, float, float, float]:
        """The level weights the loss uses for this variant (``sample_only``: ``(0, 0, 1, 0)``)."""
        if self.variant == "sample_only":
            return (0.0, 0.0, 1.0, 0.0)
        return self.level_weights


# ------------------------------------------------------------------------------------ losses
def same_id_pairs(ids: Tensor) -> Tensor:
    """All pairs ``(i, j)``, ``i < j``, with ``ids[i] == ids[j]``, as a ``[2, P]`` index.

    Built group by group (never an ``N x N`` mask).
    """
    check_tensor("ids", ids, ndim=1, integer=True)
    order = torch.argsort(ids, stable=True)
    _, counts = torch.unique_consecutive(ids[order], return_counts=True)
    rows, cols = [], []
    start = 0
    for c in counts.tolist():
        if c > 1:
            members = order[start:start + c].sort().values
            iu = torch.triu_indices(c, c, offset=1, device=ids.device)
            rows.append(members[iu[0]])
            cols.append(members[iu[1]])
        start += c
    if not rows:
        return torch.zeros(2, 0, dtype=torch.long, device=ids.device)
    return torch.stack([torch.cat(rows), torch.cat(cols)])


def id_contrastive_loss(u1: Tensor, u2: Tensor, ids: Tensor, temperature: float = 0.1) -> Tensor:
    r"""COMET's trial/patient loss :math:`L_{id}` for two views ``[B, T, D]`` and ids ``[B]``.

    ``L_up``: anchors ``u_i``, candidates ``u'_k``, positives ``(i, j)`` with ``i < j`` (row
    softmax); ``L_low``: anchors ``u'_j``, candidates ``u_k``, positives ``(j, i)`` with ``i > j``
    (column softmax) — the same upper-triangle index. Both are ``pair_mean`` engine calls.
    """
    check_tensor("u1", u1, ndim=3, floating=True)
    check_tensor("u2", u2, ndim=3, floating=True)
    if u1.shape != u2.shape or ids.numel() != u1.size(0):
        raise ValueError(f"u2, ids: expected u2 of shape {tuple(u1.shape)} and {u1.size(0)} ids, "
                         f"got {tuple(u2.shape)} and {ids.numel()}")
    pairs = same_id_pairs(ids)
    if pairs.size(1) == 0:
        return u1.new_zeros(())
    a = l2_normalize(u1, dim=1).reshape(u1.size(0), -1)
    b = l2_normalize(u2, dim=1).reshape(u2.size(0), -1)
    sel = Pairs(pairs)
    up = contrastive_loss(a, b, positives=sel, temperature=temperature, similarity="cosine",
                          form="pair_mean")
    low = contrastive_loss(b, a, positives=sel, temperature=temperature, similarity="cosine",
                           form="pair_mean")
    return (up + low) / 2


def comet_loss(levels: dict[str, Tensor], weights: tuple[float, ...], weighting: str = "code"
               ) -> Tensor:
    """Combine the level losses ``{"patient", "trial", "sample", "observation"}``.

    ``code``: ``[w_P != 0] L_P + [w_R != 0] L_R + w_S L_S + w_O L_O``; ``paper``: ``sum w_l L_l``.
    Levels with weight 0 may be absent.
    """
    check_choice("weighting", weighting, ("code", "paper"))
    total = None
    for name, w in zip(LEVELS, weights):
        if w == 0:
            continue
        coef = 1.0 if (weighting == "code" and name in ("patient", "trial")) else w
        term = coef * levels[name]
        total = term if total is None else total + term
    if total is None:
        raise ValueError(f"level_weights: expected at least one non-zero weight, got {weights}")
    return total


# ------------------------------------------------------------------------------------ method
class COMET(AveragedEncoder, ContrastiveMethod):
    """COMET pre-training as a method for the shared :class:`~contrastkit.core.trainer.Trainer`.

    Batches are dicts ``{"x": [B, T, C], "patient": [B], "trial": [B], ...}``
    (:class:`~contrastkit.datasets.medical.TrialBatches`).
    """

    name = "comet"

    def __init__(self, config: COMETConfig, in_channels: int) -> None:
        super().__init__(config)
        c = config
        self.encoder = TSEncoder(in_channels, c.output_dims, c.hidden_dims, c.depth,
                                 mask_mode="all_true", dropout=c.dropout)
        self.weights = c.effective_weights()
        self.init_average(c.swa)
        self._epoch = 0
        self.last_levels: dict[str, float] = {}

    def configure_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def on_epoch_start(self, epoch: int) -> None:
        self._epoch = epoch

    def on_epoch_end(self, epoch: int) -> None:
        # Fold the epoch's last weights into the average now instead of at the next step, so a
        # checkpoint written after this epoch holds no pending update and a resumed run averages
        # exactly as an uninterrupted one. That fold belongs to the next epoch's first step, so
        # the start rule is checked for ``epoch + 1`` (after the last epoch, the one case that
        # differs, ``epoch + 1 == swa_start_epoch``, gives an average of the last weights alone:
        # the same encoder as before).
        self._epoch = epoch + 1
        self.update_average()

    def averaging_active(self) -> bool:
        return self._epoch >= self.config.swa_start_epoch

    def has_contrastive_term(self, batch: dict[str, Tensor]) -> bool:
        """Whether some active level has a term on ``batch`` (and the loss a gradient).

        Patient / trial: a pair of windows with the same id; sample: at least two windows (the
        instance loss has no negatives in a batch of one) and two time steps; observation: two
        time steps. With the sample level alone (``variant="sample_only"``) a trailing batch of
        one window has none: :func:`pretrain` skips such batches.
        """
        x = batch["x"]
        b, t = int(x.size(0)), int(x.size(1))
        for name, w in zip(LEVELS, self.weights):
            if w == 0:
                continue
            if name in ("patient", "trial"):
                ids = batch[name]
                if int(torch.unique(ids).numel()) < int(ids.numel()):
                    return True
            elif name == "sample":
                if b >= 2 and t >= 2:
                    return True
            elif t >= 2:
                return True
        return False

    def level_losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The active levels' losses; two encoder passes per level (spec section 3.4)."""
        x = batch["x"]
        out: dict[str, Tensor] = {}
        for name, w, mask in zip(LEVELS, self.weights, self.config.masks):
            if w == 0:
                continue
            h1, h2 = self.encoder(x, mask), self.encoder(x, mask)
            if name == "patient":
                out[name] = id_contrastive_loss(h1, h2, batch["patient"],
                                                self.config.id_temperature)
            elif name == "trial":
                out[name] = id_contrastive_loss(h1, h2, batch["trial"],
                                                self.config.id_temperature)
            elif name == "sample":
                out[name] = hierarchical_contrastive_loss(h1, h2, alpha=1.0,
                                                          final_instance=False)
            else:
                out[name] = hierarchical_contrastive_loss(h1, h2, alpha=0.0,
                                                          final_instance=False)
        return out

    def training_step(self, batch: dict[str, Tensor]) -> Tensor:
        self.count_step()
        levels = self.level_losses(batch)
        self.last_levels = {k: float(v.detach()) for k, v in levels.items()}
        return comet_loss(levels, self.weights, self.config.weighting)

    @torch.no_grad()
    def embed(self, x: Tensor) -> Tensor:
        """Max-pooled representations ``[N, D]`` of windows ``x [N, T, C]`` (no mask)."""
        return encode_full(self.downstream_encoder(), x, 512)


# -------------------------------------------------------------------------------- fine-tuning
class FineTuneClassifier(nn.Module):
    """``encoder -> max-pool -> Linear(D, 128) -> BN -> ReLU -> Linear(128, K) -> Dropout``.

    ``forward(batch)`` is the (class-weighted) softmax cross-entropy of the logits — no sigmoid
    (the official head applies one twice). Trained by the shared trainer.
    """

    def __init__(self, encoder: nn.Module, output_dims: int, num_classes: int = 2, *,
                 lr: float = 1e-4, weight_decay: float = 1e-2,
                 class_weights: Tensor | None = None, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(output_dims, 128), nn.BatchNorm1d(128), nn.ReLU(),
                                  nn.Linear(128, num_classes), nn.Dropout(dropout))
        self.lr, self.weight_decay = lr, weight_decay
        self.register_buffer("class_weights", class_weights if class_weights is not None
                             else torch.ones(num_classes))

    def logits(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x, "all_true").amax(1))

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return F.cross_entropy(self.logits(batch["x"]), batch["y"], weight=self.class_weights)

    def configure_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    @torch.no_grad()
    def predict_proba(self, x: Tensor, batch_size: int = 512) -> Tensor:
        was = self.training
        self.eval()
        dev = next(self.parameters()).device
        out = [F.softmax(self.logits(x[i:i + batch_size].to(dev)), -1).cpu()
               for i in range(0, x.size(0), batch_size)]
        self.train(was)
        return torch.cat(out)


def classification_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """``acc``, macro ``precision``/``recall``/``macro_f1``, ``auroc`` (one-vs-rest macro),
    ``auprc`` (macro over the class columns of one-hot targets), per sample."""
    from sklearn.metrics import (accuracy_score, average_precision_score,
                                 precision_recall_fscore_support, roc_auc_score)
    y = np.asarray(y)
    proba = np.asarray(proba, dtype=np.float64)
    pred = proba.argmax(1)
    k = proba.shape[1]
    labels = np.arange(k)
    p, r, f, _ = precision_recall_fscore_support(y, pred, labels=labels, average="macro",
                                                 zero_division=0)
    onehot = np.eye(k)[y]
    present = [c for c in labels if 0 < onehot[:, c].sum() < len(y)]
    auroc = float(np.mean([roc_auc_score(onehot[:, c], proba[:, c]) for c in present])) \
        if present else float("nan")
    auprc = float(np.mean([average_precision_score(onehot[:, c], proba[:, c]) for c in present])) \
        if present else float("nan")
    return {"acc": float(accuracy_score(y, pred)), "precision": float(p), "recall": float(r),
            "macro_f1": float(f), "auroc": auroc, "auprc": auprc}


def _class_weights(y: Tensor, num_classes: int, mode: str) -> Tensor | None:
    if mode == "none":
        return None
    counts = torch.bincount(y, minlength=num_classes).float()
    return torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp_min(1)),
                       torch.zeros_like(counts))


class ContrastiveBatches:
    """The batches of ``loader`` on which ``method`` has a contrastive term
    (:meth:`COMET.has_contrastive_term`); the others are skipped, as a batch without a term
    gives no gradient (e.g. a trailing batch of one window with the sample level alone).

    ``set_epoch`` is passed on to ``loader``, so the trainer's epoch-seeded order still holds.

    Raises:
        ValueError: (when iterated) no batch of an epoch has a term.
    """

    def __init__(self, loader: TrialBatches, method: COMET) -> None:
        self.loader, self.method = loader, method

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        kept = 0
        for batch in self.loader:
            if self.method.has_contrastive_term(batch):
                kept += 1
                yield batch
        if kept == 0:
            raise ValueError(
                f"train: none of the {len(self.loader)} batches has a contrastive term for "
                f"level weights {self.method.weights} (variant {self.method.config.variant!r}): "
                f"the sample level needs at least 2 windows per batch, the patient and trial "
                f"levels two windows with the same id, sample and observation 2 time steps")


def _resume_from(out_dir: str | Path | None, resume: bool) -> bool:
    """Resume a stage when asked to and its folder holds a checkpoint (else start it fresh)."""
    return bool(resume) and out_dir is not None and (Path(out_dir) / CHECKPOINT_NAME).is_file()


def pretrain(config: COMETConfig, train: SampleSet, *, seed: int, device: str = "cpu",
             progress: bool = False, out_dir: str | Path | None = None,
             resume: bool = False) -> tuple[COMET, Trainer]:
    """Pre-train COMET (or the sample-only baseline) on ``train`` with the shared trainer.

    Batches without a contrastive term are skipped (:class:`ContrastiveBatches`). ``out_dir``:
    the trainer's folder (log, ``checkpoint.pt`` every ``config.checkpoint_every`` epochs);
    ``resume``: continue from ``out_dir/checkpoint.pt`` when it exists.
    """
    torch.manual_seed(seed)
    method = COMET(config, int(train.x.size(-1)))
    loader = ContrastiveBatches(TrialBatches(train, config.batch_size,
                                             seed=config.batch_seed + seed,
                                             mode=config.shuffle), method)
    trainer = Trainer(config.epochs, device=device, seed=seed, progress=progress,
                      out_dir=out_dir, checkpoint_every=config.checkpoint_every,
                      deterministic=False)
    trainer.fit(method, loader, resume=_resume_from(out_dir, resume))
    method.eval()
    return method, trainer


def finetune(config: COMETConfig, encoder: nn.Module | None, train: SampleSet, test: SampleSet,
             *, fraction: float, epochs: int, seed: int, device: str = "cpu",
             num_classes: int = 2, out_dir: str | Path | None = None,
             resume: bool = False) -> dict[str, float]:
    """Fine-tune ``encoder`` (a fresh random one when ``None``) on a per-class ``fraction`` of
    ``train``'s labels and return the test metrics of the last epoch.

    ``out_dir``: the trainer's folder (log, ``checkpoint.pt`` every ``config.checkpoint_every``
    epochs); ``resume``: continue from ``out_dir/checkpoint.pt`` when it exists."""
    idx = label_subset(train.y.numpy(), fraction, seed=seed)
    labelled = train.subset(idx)
    torch.manual_seed(seed)
    if encoder is None:
        encoder = TSEncoder(int(train.x.size(-1)), config.output_dims, config.hidden_dims,
                            config.depth, mask_mode="all_true", dropout=config.dropout)
    else:
        encoder = copy.deepcopy(encoder).requires_grad_(True)
    model = FineTuneClassifier(encoder, config.output_dims, num_classes, lr=config.finetune_lr,
                               weight_decay=config.finetune_weight_decay,
                               class_weights=_class_weights(labelled.y, num_classes,
                                                            config.class_weight))
    loader = TrialBatches(labelled, config.finetune_batch_size, seed=seed, mode="random")
    trainer = Trainer(epochs, device=device, seed=seed, progress=False, out_dir=out_dir,
                      checkpoint_every=config.checkpoint_every, deterministic=False)
    t0 = time.perf_counter()
    trainer.fit(model, loader, resume=_resume_from(out_dir, resume))
    proba = model.predict_proba(test.x).numpy()
    out = classification_metrics(test.y.numpy(), proba)
    out["n_labelled"] = float(len(idx))
    out["finetune_time_s"] = time.perf_counter() - t0
    return out


def linear_eval(encoder: nn.Module, train: SampleSet, test: SampleSet, *, seed: int = 0,
                class_weight: str = "balanced") -> dict[str, float]:
    """Frozen encoder: standardised max-pooled features -> logistic regression (all labels)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    ftr, fte = encode_full(encoder, train.x, 512).numpy(), encode_full(encoder, test.x, 512).numpy()
    sc = StandardScaler().fit(ftr)
    clf = LogisticRegression(max_iter=5000, random_state=seed,
                             class_weight=None if class_weight == "none" else "balanced")
    clf.fit(sc.transform(ftr), train.y.numpy())
    return classification_metrics(test.y.numpy(), clf.predict_proba(sc.transform(fte)))


def _pct(f: float) -> str:
    return f"{f * 100:g}%"


def _stage_dir(out_dir: str | Path | None, name: str) -> Path | None:
    return None if out_dir is None else Path(out_dir) / name


def run_fold(config: COMETConfig, data: PatientDataset, train_rows: np.ndarray,
             test_rows: np.ndarray, *, seed: int, device: str = "cpu", progress: bool = False,
             out_dir: str | Path | None = None, resume: bool = False) -> dict[str, Any]:
    """One fold: (pre-train), fine-tune at every label fraction, evaluate on the test patients.

    With ``out_dir``, every stage trains in its own subfolder (``pretrain``,
    ``finetune-<fraction>``) with its log and checkpoint; ``resume`` continues each stage from
    its checkpoint (a finished stage is restored, not retrained). The fine-tuning stages resume
    only when pre-training trained nothing in this call: after more pre-training (e.g. a larger
    ``epochs`` budget) their checkpoints belong to another encoder, so they start afresh.

    Returns ``{"<pct>": metrics, ..., "linear": metrics, "pretrain_time_s": ...}``.
    """
    overlap = set(data.patient_ids[train_rows].tolist()) & set(data.patient_ids[test_rows].tolist())
    if overlap:
        raise ValueError(f"train_rows/test_rows: patients {sorted(overlap)} are in both splits")
    train = make_samples(data, train_rows, window=config.window, overlap=config.overlap)
    test = make_samples(data, test_rows, window=config.window, overlap=config.overlap)
    out: dict[str, Any] = {}
    encoder = None
    finetune_resume = resume
    if config.variant != "supervised":
        t0 = time.perf_counter()
        method, trainer = pretrain(config, train, seed=seed, device=device, progress=progress,
                                   out_dir=_stage_dir(out_dir, "pretrain"), resume=resume)
        out["pretrain_time_s"] = time.perf_counter() - t0
        finetune_resume = resume and trainer.stats["epochs_run"] == 0
        out["pretrain_final_loss"] = trainer.history[-1]["loss"]
        encoder = method.downstream_encoder()
        if config.linear_eval:
            out["linear"] = linear_eval(encoder, train, test, seed=seed,
                                        class_weight=config.class_weight)
    for frac, ep in zip(config.label_fractions, config.finetune_epochs):
        out[_pct(frac)] = finetune(config, encoder, train, test, fraction=frac, epochs=ep,
                                   seed=seed, device=device, num_classes=data.num_classes,
                                   out_dir=_stage_dir(out_dir, f"finetune-{frac:g}"),
                                   resume=finetune_resume)
    return out


def run_folds(config: COMETConfig, data: PatientDataset, *, seed: int, device: str = "cpu",
              progress: bool = False, out_dir: str | Path | None = None,
              resume: bool = False) -> list[dict[str, Any]]:
    """:func:`run_fold` over the stratified patient folds (or only ``config.fold``); fold ``k``
    trains in ``out_dir/fold-<k>`` when ``out_dir`` is given."""
    folds = patient_kfold(data.labels, config.n_folds, seed=config.fold_seed)
    which = range(config.n_folds) if config.fold < 0 else [config.fold]
    return [dict(run_fold(config, data, *folds[k], seed=seed, device=device, progress=progress,
                          out_dir=_stage_dir(out_dir, f"fold-{k}"), resume=resume),
                 fold=k) for k in which]


def _flatten(results: list[dict[str, Any]]) -> dict[str, float]:
    """Mean and std over folds of every metric; keys ``"<metric>@<pct>"``, ``"linear_<metric>"``.
    """
    keys: dict[str, list[float]] = {}
    for r in results:
        for part, val in r.items():
            if isinstance(val, dict):
                for m, v in val.items():
                    key = f"linear_{m}" if part == "linear" else f"{m}@{part}"
                    keys.setdefault(key, []).append(float(v))
            elif isinstance(val, (int, float)) and part != "fold":
                keys.setdefault(part, []).append(float(val))
    out = {}
    for k, vs in keys.items():
        out[k] = float(np.mean(vs))
        out[f"{k}_fold_std"] = float(np.std(vs))
    return out


def _load(config: COMETConfig) -> PatientDataset:
    from ..datasets import load_for
    return load_for(config.dataset, domain="timeseries", types=PatientDataset,
                    what="a patient-structured time-series dataset (e.g. 'adfsu')")


def run(config: COMETConfig, ctx: RunContext, data: PatientDataset | None = None) -> RunResult:
    """CLI entry: all folds (or one) for ``ctx.seed``; metrics averaged over folds.

    Every training stage keeps its log and checkpoint in a subfolder of ``ctx.out_dir``
    (``fold-<k>/pretrain``, ``fold-<k>/finetune-<fraction>``, ``pretrain-all``);
    ``ctx.resume`` (``train --resume``) continues each from its checkpoint. ``data`` replaces
    the dataset of ``config.dataset`` (e.g. patients built with
    :func:`~contrastkit.datasets.medical.from_arrays`).
    """
    data = _load(config) if data is None else data
    results = run_folds(config, data, seed=ctx.seed, device=ctx.device, progress=ctx.progress,
                        out_dir=ctx.out_dir, resume=ctx.resume)
    metrics = _flatten(results)
    # saved embeddings (for `contrastkit eval`): every window, from one extra label-free
    # pre-training on all windows; the supervised variant has no label-free encoder and saves the
    # windows' channel means instead
    everything = make_samples(data, window=config.window, overlap=config.overlap)
    if config.variant != "supervised":
        method, _ = pretrain(config, everything, seed=ctx.seed, device=ctx.device,
                             out_dir=_stage_dir(ctx.out_dir, "pretrain-all"), resume=ctx.resume)
        emb = method.embed(everything.x)
    else:
        emb = everything.x.mean(1)
    return RunResult(metrics=metrics, embeddings=emb)


def evaluate(config: COMETConfig, embeddings: Tensor, ctx: RunContext) -> dict[str, float]:
    """Re-evaluate saved window embeddings ``[N, D]`` with a linear probe per patient fold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    data = _load(config)
    s = make_samples(data, window=config.window, overlap=config.overlap)
    if embeddings.size(0) != len(s):
        raise ValueError(f"embeddings: expected {len(s)} rows (one per window), got "
                         f"{embeddings.size(0)}")
    pid = s.patient.numpy()
    per = []
    for tr, te in patient_kfold(data.labels, config.n_folds, seed=config.fold_seed):
        mtr = np.isin(pid, data.patient_ids[tr])
        mte = np.isin(pid, data.patient_ids[te])
        x = embeddings.cpu().numpy()
        sc = StandardScaler().fit(x[mtr])
        clf = LogisticRegression(max_iter=5000, class_weight="balanced", random_state=ctx.seed)
        clf.fit(sc.transform(x[mtr]), s.y.numpy()[mtr])
        proba = clf.predict_proba(sc.transform(x[mte]))
        per.append(classification_metrics(s.y.numpy()[mte], proba))
    return {f"linear_{k}": float(np.mean([p[k] for p in per])) for k in per[0]}


#: CPU-budget preset for ADFSU (the README table): a smaller encoder, fewer epochs, a larger
#: learning rate; SWA starts half way so the average does not include the random initialisation.
ADFSU_PRESET: dict[str, Any] = dict(
    output_dims=64, hidden_dims=32, depth=4, epochs=5, batch_size=64, lr=1e-3,
    swa_start_epoch=2, finetune_epochs=(6, 20, 100), finetune_lr=1e-3, finetune_batch_size=64)

register(MethodSpec(
    name="comet", config_cls=COMETConfig, run=run, evaluate=evaluate,
    description="COMET: patient/trial/sample/observation contrastive learning for medical time "
                "series (variant=comet|supervised|sample_only)",
    default_dataset="adfsu", presets={"adfsu": ADFSU_PRESET}, accepts=("timeseries:patients",)))
