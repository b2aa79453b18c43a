"""RDA and FDA for one fixed vocabulary as a trainer ``extra_losses`` callable (the paper's offline
mode): ``trainer.extra_losses.append(SemanticAlignment(text, cfg.semantic))``. The trainer's own
losses (RGB, depth, the class-agnostic feature distillation) never need class names; these do.
"""

from __future__ import annotations

import torch

from ovs3d_ros.config import FdaGradient, SemanticConfig, choices
from ovs3d_ros.core import losses
from ovs3d_ros.core.rendering import SamplingSettings, render_rays
from ovs3d_ros.core.semantic_targets import RelevancyCache, batch_relevancy, target_scale_weights, window_rays

FDA_GRADIENT_TARGETS: dict[str, tuple[str, ...] | None] = {
    "all": None,
    "semantic_grid": ("semantic_encoding.",),
}
"""``semantic.fda_gradient`` -> prefixes of the field parameters FDA trains (None: all of them)."""


class _RenderRays(torch.nn.Module):
    """``render_rays`` as a module around the field, so ``torch.func.functional_call`` can swap the
    field's parameters for detached copies during one render."""

    def __init__(self, field: torch.nn.Module):
        super().__init__()
        self.field = field

    def forward(self, *args, **kwargs):
        return render_rays(self.field, *args, **kwargs)


def render_rays_training_only(field: torch.nn.Module, trainable: tuple[str, ...] | None, *args, **kwargs):
    """``render_rays(field, *args, **kwargs)`` whose outputs carry gradient only into the field
    parameters whose names start with one of ``trainable`` (None: all); the others are used through
    detached copies (same values, so the forward pass is unchanged)."""
    if trainable is None:
        return render_rays(field, *args, **kwargs)
    frozen = {f"field.{name}": p.detach() for name, p in field.named_parameters()
              if not name.startswith(trainable)}
    return torch.func.functional_call(_RenderRays(field), frozen, args, kwargs, strict=False)


def fda_gradient_targets(sem: SemanticConfig) -> tuple[str, ...] | None:
    try:
        return FDA_GRADIENT_TARGETS[sem.fda_gradient]
    except KeyError:
        raise ValueError(f"semantic.fda_gradient must be one of {', '.join(choices(FdaGradient))}, "
                         f"got {sem.fda_gradient!r}") from None


def fda_from_windows(rendered: torch.Tensor, text: torch.Tensor, dino: torch.Tensor, sem: SemanticConfig,
                     generator: torch.Generator | None = None, colour: torch.Tensor | None = None
                     ) -> dict[str, torch.Tensor]:
    """FDA with the config's weights (rendered (B, T, D), dino (B, T, Cd), ray colours (B, T, 3))."""
    return losses.fda_loss(rendered, text, dino, temperature=sem.temperature, dino_shift=sem.dino_shift,
                           pos_weight=sem.fda_pos_weight, neg_weight=sem.fda_neg_weight,
                           max_pairs=sem.fda_max_pairs, generator=generator, pair_colour=colour,
                           colour_sigma=sem.fda_colour_sigma)


class SemanticAlignment:
    """RDA + FDA for one vocabulary as a trainer ``extra_losses`` callable (the paper's offline mode).

    Returns weighted terms ``{'rda': rda_weight * L_RDA, 'fda': fda_pos_weight * L_pos +
    fda_neg_weight * L_neg}``; a term is absent when its weight is 0 or its inputs are not there yet
    (no CLIP/DINO on the keyframes).
    FDA's gradient reaches only the parameters ``semantic.fda_gradient`` names (default: the semantic
    hash grid; see the config for why).
    """

    def __init__(self, text: torch.Tensor, sem: SemanticConfig, seed: int = 0):
        self.text = text
        self.sem = sem
        self.relevancy = RelevancyCache(text)
        self.generator = torch.Generator().manual_seed(seed)
        self.fda_trainable = fda_gradient_targets(sem)

    def __call__(self, trainer, batch, outputs) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        keyframes = trainer.keyframes.snapshot()
        self.relevancy.prune(kf.uid for kf in keyframes)
        text = self.text.to(trainer.device)
        if self.sem.rda_weight > 0 and outputs.feature is not None and outputs.selection is not None:
            k = outputs.feature.shape[0]
            rel = batch_relevancy(self.relevancy, keyframes, batch.keyframe_uids[:k].cpu(),
                                  batch.pixels[:k].cpu(), outputs.feature.device)
            if rel is not None:
                weights = outputs.selection if batch.clip_targets is None else \
                    target_scale_weights(trainer.cfg, outputs.selection, batch.clip_targets[:k])
                terms["rda"] = self.sem.rda_weight * losses.rda_loss(outputs.feature, text, rel, weights)
        if self.sem.fda_pos_weight > 0 or self.sem.fda_neg_weight > 0:
            with_dino = [kf for kf in keyframes if kf.dino is not None]
            if with_dino:
                picks = torch.randint(0, len(with_dino), (self.sem.fda_windows_per_step,),
                                      generator=self.generator).tolist()
                windows = [window_rays(with_dino[i], self.sem.fda_window, self.generator, trainer.device)
                           for i in picks]
                size = min(w[0].shape[0] for w in windows)  # windows of one size stack
                origins = torch.cat([w[0][:size] for w in windows])
                directions = torch.cat([w[1][:size] for w in windows])
                depth = torch.cat([w[2][:size] for w in windows])
                dino = torch.stack([w[3][:size] for w in windows])
                colour = torch.stack([w[4][:size] for w in windows])
                settings = SamplingSettings.for_training(trainer.cfg)
                out = render_rays_training_only(trainer.field, self.fda_trainable, origins, directions,
                                                settings, depth=depth,
                                                occupancy=getattr(trainer, "occupancy", None),
                                                semantic_rays=origins.shape[0])
                feat = out.feature.reshape(len(windows), size, -1)
                terms["fda"] = fda_from_windows(feat, text, dino, self.sem, self.generator, colour)["fda"]
        return terms
