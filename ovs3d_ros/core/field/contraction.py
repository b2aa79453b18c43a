"""Scene contraction (mip-NeRF 360) for unbounded metric scenes.

World points are first normalised by the scene centre and radius (set once from the first keyframes
and stored in the checkpoint); inside the unit ball (L2) or cube (L-inf) space stays linear, outside it
is squashed so that infinity lands on the boundary of the [-2, 2]^3 cube the grids cover.
"""

from __future__ import annotations

import torch

from ovs3d_ros.config import ContractionOrder, choices

CONTRACTION_ORDERS = choices(ContractionOrder)


class ContractionError(ValueError):
    """An unknown contraction order or an invalid scene radius."""


def contract(
    x: torch.Tensor, center: torch.Tensor, radius: torch.Tensor | float, order: str = "inf"
) -> torch.Tensor:
    """(N, 3) world points -> (N, 3) contracted points in [-2, 2]^3.

    ``c(u) = u`` for ``|u| <= 1`` and ``(2 - 1/|u|) u/|u|`` otherwise, with ``u = (x - center) / radius``
    and ``|.|`` the L-inf (fills the cube, nerfstudio's default) or L2 norm.
    """
    if order not in CONTRACTION_ORDERS:
        raise ContractionError(f"field.contraction_order must be one of {CONTRACTION_ORDERS}, got {order!r}")
    u = (x - center) / radius
    if order == "inf":
        mag = u.abs().amax(dim=-1, keepdim=True)
    else:
        mag = u.norm(dim=-1, keepdim=True)
    # clamp keeps the unused branch of torch.where finite (and its gradient NaN-free)
    safe = mag.clamp_min(1.0)
    return torch.where(mag <= 1.0, u, (2.0 - 1.0 / safe) * (u / safe))


def uncontract(
    c: torch.Tensor, center: torch.Tensor, radius: torch.Tensor | float, order: str = "inf"
) -> torch.Tensor:
    """Inverse of :func:`contract` for points strictly inside the (-2, 2)^3 cube."""
    if order not in CONTRACTION_ORDERS:
        raise ContractionError(f"field.contraction_order must be one of {CONTRACTION_ORDERS}, got {order!r}")
    if order == "inf":
        mag = c.abs().amax(dim=-1, keepdim=True)
    else:
        mag = c.norm(dim=-1, keepdim=True)
    safe = mag.clamp(1.0, 2.0 - 1e-6)
    # |c| = 2 - 1/|u|  =>  |u| = 1 / (2 - |c|)
    u = torch.where(mag <= 1.0, c, c / safe / (2.0 - safe))
    return u * radius + center


def to_unit_cube(c: torch.Tensor) -> torch.Tensor:
    """Contracted [-2, 2]^3 -> [0, 1]^3 (the grids' domain)."""
    return (c + 2.0) * 0.25
