"""Named losses: thin functions and modules over :func:`contrastkit.core.engine.contrastive_loss`.

One loss per file; the arithmetic lives in the engine.
"""

from .decoupled import DecoupledLoss, decoupled_loss
from .infonce import InfoNCE, NTXent, info_nce, nt_xent
from .positive_mass import positive_mass_loss
from .supcon import SupConLoss, supcon_loss
from .amcl import AdaptiveTemperature, AMCLLoss, MultiHeadProjector, amcl_loss, amcl_regularizer
from .cacr import CACRLoss, cacr_loss
from .dclw import DCLWLoss, dclw_loss, dclw_weights
from .feature_transformation import (FTMoCoLoss, ft_moco_loss, moco_score_stats,
                                     negative_interpolation, positive_extrapolation)
from .hardness import (HardInfoNCELoss, alignment_loss, hard_infonce_loss, hard_nt_xent,
                       negative_weight_stats, simple_contrastive_loss, tolerance,
                       uniformity_loss)
from .mochi import (KeyQueue, MoCHiLoss, MoCoLoss, id_match_pairs, mochi_loss, mochi_negatives,
                    moco_loss)
from .multiview import (MVDHELLoss, MVInfoNCELoss, avg_loss, mv_dhel_loss, mv_infonce_loss,
                        pvc_loss, pwe_loss)
from .swav import SwAVLoss, SwAVPrototypes, sinkhorn_knopp, swav_loss

__all__ = ["InfoNCE", "NTXent", "info_nce", "nt_xent", "SupConLoss", "supcon_loss",
           "DecoupledLoss", "decoupled_loss", "positive_mass_loss",
           # vision specs (issue #9)
           "DCLWLoss", "dclw_loss", "dclw_weights",
           "SwAVLoss", "SwAVPrototypes", "sinkhorn_knopp", "swav_loss",
           "KeyQueue", "MoCHiLoss", "MoCoLoss", "id_match_pairs", "mochi_loss", "mochi_negatives",
           "moco_loss",
           "HardInfoNCELoss", "alignment_loss", "hard_infonce_loss", "hard_nt_xent",
           "negative_weight_stats", "simple_contrastive_loss", "tolerance", "uniformity_loss",
           "MVDHELLoss", "MVInfoNCELoss", "mv_dhel_loss", "mv_infonce_loss", "pwe_loss", "avg_loss", "pvc_loss",
           "CACRLoss", "cacr_loss",
           "FTMoCoLoss", "ft_moco_loss", "moco_score_stats", "negative_interpolation",
           "positive_extrapolation",
           "AdaptiveTemperature", "AMCLLoss", "MultiHeadProjector", "amcl_loss",
           "amcl_regularizer"]
