"""Loss terms as plain functions (tensors in, scalar tensor out); weights live in the config.

Geometry/appearance: ``rgb_loss``, ``depth_loss``. Semantics (3D-OVS, notes §5.2): the feature and
selection distillation ``feature_distillation_loss``; RDA and FDA live beside them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rgb_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE over (N, 3) colours in [0, 1]."""
    return F.mse_loss(pred, target)


def depth_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (metres) over rays with a valid depth measurement; 0 when there are none.

    L1 rather than L2: depth sensors have heavy-tailed errors at edges.
    """
    if not bool(valid.any()):
        return pred.new_zeros(())
    return (pred[valid] - target[valid]).abs().mean()


def feature_distillation_loss(rendered: torch.Tensor, selection: torch.Tensor,
                              targets: torch.Tensor) -> torch.Tensor:
    """Negative cosine between the rendered feature and the selection-weighted multi-scale target.

    Args:
        rendered: (N, D) composited CLIP-space feature (not necessarily normalised).
        selection: (N, S) per-ray softmax over the S patch scales.
        targets: (N, S, D) unit CLIP features of the ray's pixel at each scale.
    Gradient flows into both the feature and the selection (as in the original).
    """
    mixed = F.normalize((selection.unsqueeze(-1) * targets.float()).sum(dim=1), dim=-1)
    return -F.cosine_similarity(rendered, mixed, dim=-1).mean()
