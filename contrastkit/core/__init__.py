"""Shared core: the loss engine, losses, probes and metrics, the trainer.

The engine's entry points are re-exported here::

    from contrastkit.core import contrastive_loss, nt_xent, Aligned, SameLabel, Pairs
"""

from .engine import FORMS, REDUCTIONS, RowStats, contrastive_loss, reduce_rows, row_statistics
from .losses import (DecoupledLoss, InfoNCE, NTXent, SupConLoss, decoupled_loss, info_nce,
                     nt_xent, positive_mass_loss, supcon_loss)
from .method import ContrastiveMethod
from .pairs import Aligned, Dense, PairSelector, Pairs, SameLabel
from .weights import BlockWeight, LabelTable, NegativeWeight, SumOfWeights, VectorWeight

__all__ = [
    "FORMS", "REDUCTIONS", "RowStats", "contrastive_loss", "reduce_rows", "row_statistics",
    "DecoupledLoss", "InfoNCE", "NTXent", "SupConLoss", "decoupled_loss", "info_nce", "nt_xent",
    "positive_mass_loss", "supcon_loss", "ContrastiveMethod", "Aligned", "Dense", "PairSelector",
    "Pairs", "SameLabel", "BlockWeight", "LabelTable", "NegativeWeight", "SumOfWeights",
    "VectorWeight",
]
