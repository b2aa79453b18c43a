"""Relevancy maps from CLIP features and text features, exactly as 3D-OVS computes them.

``R[s, c, x] = cos(f_s(x), t_c)``, then min-max normalised over the pixels of one image, separately
for every (scale, class). No softmax, no temperature: the cross-class softmax belongs to the RDA loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ovs3d_ros.core.teachers.base import TeacherError


def _check(clip: torch.Tensor, text: torch.Tensor) -> None:
    if clip.ndim != 4:
        raise TeacherError(f"clip features must be (S, D, h, w), got shape {tuple(clip.shape)}")
    if text.ndim != 2 or text.shape[1] != clip.shape[1]:
        raise TeacherError(f"text features must be (C, {clip.shape[1]}), got shape {tuple(text.shape)}")


def cosine_maps(clip: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """(S, D, h, w) unit features x (C, D) unit text -> (S, C, h, w) float32 cosine."""
    _check(clip, text)
    return torch.einsum("sdhw,cd->schw", clip.float(), text.to(clip.device).float())


def relevancy_maps(clip: torch.Tensor, text: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(S, C, h, w) in [0, 1]: cosine, min-max normalised per image, per scale, per class.

    A constant map (max == min) becomes all zeros rather than NaN.
    """
    cos = cosine_maps(clip, text)
    flat = cos.flatten(2)
    lo = flat.amin(dim=2, keepdim=True)
    hi = flat.amax(dim=2, keepdim=True)
    return ((flat - lo) / (hi - lo).clamp_min(eps)).view_as(cos)


def teacher_labels(clip: torch.Tensor, text: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The 2D teacher's own segmentation: argmax over classes of the relevancy summed over scales,
    bilinearly upsampled to (height, width). Returns (height, width) int64 class indices.
    """
    score = relevancy_maps(clip, text).sum(dim=0, keepdim=True)  # (1, C, h, w)
    score = F.interpolate(score, size=(height, width), mode="bilinear", align_corners=False)
    return score[0].argmax(dim=0)


def teacher_class_areas(clips: list[torch.Tensor], text: torch.Tensor) -> torch.Tensor | None:
    """(C,) mean share of pixels the 2D teacher's own rule (``teacher_labels`` at each map's resolution)
    gives each class over the (S, D, h, w) CLIP maps ``clips``; None when there are none."""
    if not clips:
        return None
    total = torch.zeros(text.shape[0], dtype=torch.float64)
    for clip in clips:
        labels = teacher_labels(clip.float(), text.to(clip.device).float(), clip.shape[2], clip.shape[3])
        total += torch.bincount(labels.reshape(-1).cpu(), minlength=text.shape[0]).double() / labels.numel()
    return (total / len(clips)).float()


def unknown_mask(clip: torch.Tensor, text: torch.Tensor, negatives: torch.Tensor,
                 margin: float = 0.0) -> torch.Tensor:
    """(h, w) bool: pixels that no class claims against the canonical negatives.

    Per pixel the cosine is averaged over the scales; a pixel is 'unknown' when the best canonical
    negative ("object", "things", "stuff", "texture": ClipConfig.canonical_negatives, encoded with
    the same teacher) scores at least as high as the best class minus ``margin``. This is the
    argmax over the vocabulary extended with the negatives, the decision LERF's canonical phrases
    support; the original 3D-OVS has no unknown label.
    """
    cls = cosine_maps(clip, text).mean(dim=0).amax(dim=0)
    neg = cosine_maps(clip, negatives).mean(dim=0).amax(dim=0)
    return neg >= cls - margin
