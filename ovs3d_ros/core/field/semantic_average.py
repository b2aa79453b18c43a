"""Queries answer from an average of the field's recent semantic weights, not from the last step's.

The semantic grid trains with Adam at the grid learning rate, so its last step is a noisy estimate: on
desk seed 1 (a tuning scene) the held-out apple IoU of one run read 71 / 59 / 35 / 34 at steps 450 / 500 /
550 / 600 (``semantic.average_decay``, ``semantic.average_power``). Only the semantic part
(``SemanticField.SEMANTIC_MODULES``) is averaged: geometry must follow the live field, which keeps
training on the same rays, and semantic latents depend on position alone (the grid sees detached
positions), so averaged semantics fit any geometry.

``torch.optim.swa_utils.AveragedModel`` keeps the copy. Its first update copies the live weights; the
update after ``n`` others gives the live weights the share ``(1 + power) / (n + 1 + power)``
(polynomial-decay averaging, Shamir & Zhang 2013: step k of n weighs about (k / n)^power, so the early
steps of a field whose semantics just started fade instead of lingering as they do in a plain running
mean) until that share falls to ``1 - decay``, from where it is an exponential average over about
``1 / (1 - decay)`` steps.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from ovs3d_ros.core.field.field import SemanticField


def average_weight(decay: float, power: float, averaged: int) -> float:
    """The live weights' share in an update after ``averaged`` earlier ones: ``(1 + power) /
    (averaged + 1 + power)`` while that is larger than ``1 - decay``, then ``1 - decay``."""
    return max(1.0 - decay, (1.0 + power) / (averaged + 1.0 + power))


class SemanticAverage(nn.Module):
    """The averaged semantic modules of one field (a checkpointed module: ``state_dict`` holds them)."""

    def __init__(self, field: SemanticField, decay: float, power: float = 0.0):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"semantic.average_decay must be in [0, 1), got {decay}")
        if not power >= 0.0:
            raise ValueError(f"semantic.average_power must be >= 0, got {power}")
        self.decay, self.power = float(decay), float(power)
        self.average = None if decay == 0.0 else AveragedModel(
            nn.ModuleDict(field.semantic_modules()), device=field.scene_center.device,
            avg_fn=lambda avg, live, n: avg + (live - avg) * average_weight(self.decay, self.power, int(n)))
        if self.average is not None:
            self.average.requires_grad_(False)
        self._view: tuple[SemanticField, SemanticField] | None = None

    @property
    def updates(self) -> int:
        return 0 if self.average is None else int(self.average.n_averaged)

    @torch.no_grad()
    def update(self, field: SemanticField) -> None:
        """Fold the live semantic weights of ``field`` in (after an optimiser step that trained them)."""
        if self.average is not None:
            self.average.update_parameters(nn.ModuleDict(field.semantic_modules()))

    def field(self, live: SemanticField) -> SemanticField:
        """The field queries answer from: ``live`` with the averaged semantic modules (a view that
        shares its geometry, bounds and buffers), or ``live`` itself while nothing was averaged."""
        if self.updates == 0:
            return live
        if self._view is None or self._view[0] is not live:
            self._view = (live, live.with_semantics(dict(self.average.module.items())))
        return self._view[1]
