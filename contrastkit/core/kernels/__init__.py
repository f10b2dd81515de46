"""Optional fused GPU kernels (Triton) behind the engine's ``backend="fused"``.

Nothing here is imported by the engine until a fused computation is asked for, so the package
works without Triton; see :mod:`contrastkit.core.kernels.fused_stats`.
"""

from .fused_stats import (fused_row_statistics, fused_unsupported_reason, triton_available,
                          triton_interpreting)

__all__ = ["fused_row_statistics", "fused_unsupported_reason", "triton_available",
           "triton_interpreting"]
