"""Named losses: thin functions and modules over :func:`contrastkit.core.engine.contrastive_loss`.

One loss per file; the arithmetic lives in the engine.
"""

from .decoupled import DecoupledLoss, decoupled_loss
from .infonce import InfoNCE, NTXent, info_nce, nt_xent
from .positive_mass import positive_mass_loss
from .supcon import SupConLoss, supcon_loss

__all__ = ["InfoNCE", "NTXent", "info_nce", "nt_xent", "SupConLoss", "supcon_loss",
           "DecoupledLoss", "decoupled_loss", "positive_mass_loss"]
