"""Open-vocabulary queries: any list of class names answered at once from the current field.

Zero-shot: the label of a point or pixel is the argmax over classes of the cosine between its
expanded CLIP-space feature and the text features (3D-OVS's evaluation rule). ``refine=True`` runs a
bounded RDA+FDA burst for that vocabulary that trains a small *per-vocabulary residual head* on
features rendered once from the frozen field, and caches it (LRU, key: ordered names + teacher).
The field itself is never touched by a query, so other vocabularies' answers cannot change.

Speed (issue 15): the labeled cloud's points, latents and feature norms are kept per field version
(``PointFeatureCache``: same field object, keyframes and cloud request, at most
``query.point_cache_max_age_steps`` training steps old), so a new vocabulary on an unchanged field costs
the text encoder and one (N x L) @ (L x C) product (``classify_latent``); with sensor depth on every
keyframe the points alone are also kept across training steps (``Segmenter._cloud_geometry``), and a
keyframe without depth has its rendered points kept (``surface.RenderedSurfaceCache``). Masks are
rendered by ``rendering.render_image_surface`` (``query.mask_renderer: surface``) unless ``reference`` is
asked for, and labelled from their latents and opacity the same way (no (H*W, clip_dim) expansion).

Scores: the winning class's probability under ``softmax_c(cos / query.score_temperature)``. A label
becomes 'unknown' (uint16 65535 in clouds; 255/65535 in label images) when its score is below the
threshold, or, with canonical negatives on, when a negative phrase beats every class. A mask pixel
with no surface (rendered opacity below ``query.min_surface_opacity``) is unknown as well.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ovs3d_ros.config import DecisionRule, QueryConfig, SemanticConfig, choices
from ovs3d_ros.core import losses
from ovs3d_ros.core.field_guard import FieldGuard, FieldReplaced
from ovs3d_ros.core.guided_filter import guided_filter
from ovs3d_ros.core.lru import LruCache
from ovs3d_ros.core.refine_data import RefineData, collect_refine_data
from ovs3d_ros.core.request_budget import check_budget, chunk_rays, mask_size, request_cost
from ovs3d_ros.core.surface import (
    RenderedSurfaceCache,
    field_version,
    plausible_point_mask,
    still_young,
    surface_points,
)
from ovs3d_ros.core.vocabulary import UNKNOWN_U16, QueryError, validate_classes, vocabulary_key

# ----------------------------------------------------------------------------------------------
# Pure pieces


@dataclass
class Labels:
    labels: torch.Tensor   # (N,) int64, -1 = unknown
    scores: torch.Tensor   # (N,) float32


DECISION_RULES = choices(DecisionRule)


QUANTILE_ROWS = 65536
"""Rows (a strided subsample beyond this) from which 'relevancy' estimates its per-class quantiles."""


AREA_KEYFRAMES = 16
"""Keyframes (strided) over which ``query.relevancy_quantile_area`` estimates the teacher's class areas."""


def column_quantiles(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """(C,) the ``q[c]`` quantile of column c of (N, C) ``x``, interpolated linearly between order
    statistics as ``torch.quantile`` does (one sort instead of a (C, C) quantile table)."""
    xs = x.sort(dim=0).values
    pos = q.to(xs.device, xs.dtype).clamp(0, 1) * (xs.shape[0] - 1)
    below = pos.floor().long()
    above = (below + 1).clamp(max=xs.shape[0] - 1)
    cols = torch.arange(xs.shape[1], device=xs.device)
    frac = pos - below.to(pos.dtype)
    return xs[below, cols] + frac * (xs[above, cols] - xs[below, cols])


def class_quantiles(quantile: float, areas: torch.Tensor, area_factor: float) -> torch.Tensor:
    """(C,) per-class quantiles of the 'relevancy' rule: ``min(quantile, area_factor * area_c)``
    (``query.relevancy_quantile_area``). A class smaller than the quantile otherwise has its top
    normalised to a cosine its own pixels do not reach, and wins about ``quantile`` of every image."""
    return torch.minimum(torch.full_like(areas.float(), quantile), area_factor * areas.float())


def strided_rows(cosines, count: int) -> torch.Tensor:
    """(n, C) float cosines of at most about ``QUANTILE_ROWS`` rows, strided over all ``count`` chunks:
    what the per-class quantiles of the 'relevancy' rule are estimated from."""
    return torch.cat([c[::max(1, -(-len(c) * count // QUANTILE_ROWS))].float()
                      for c, _ in map(cosines, range(count))])


FLOOR_VIEW_SIDE = 40
"""Long side, pixels, of the keyframe renders the small classes' floors are taken over
(``Segmenter._class_floors``): 16 keyframes at 40x30 are about one 160x120 mask."""


def area_keyframes(keyframes: list) -> list[int]:
    """Indices of the (at most ``AREA_KEYFRAMES``, strided) keyframes with teacher features that the
    teacher's class areas and the small classes' floors are taken on."""
    with_clip = [k for k, kf in enumerate(keyframes) if kf.clip is not None]
    return with_clip[::max(1, -(-len(with_clip) // AREA_KEYFRAMES))]


def floor_view_size(intrinsics) -> tuple[int, int]:
    """(width, height) of a keyframe's render for the floors: ``FLOOR_VIEW_SIDE`` on the long side."""
    scale = FLOOR_VIEW_SIDE / max(intrinsics.width, intrinsics.height)
    return max(1, round(intrinsics.width * scale)), max(1, round(intrinsics.height * scale))


def class_caps(areas: torch.Tensor, area_cap: float, small_area: float) -> torch.Tensor:
    """(C,) the share of the scene's surface each class may take (``query.relevancy_area_cap``):
    ``area_cap`` times its share of keyframe pixels under the 2D teacher's own labels for a class
    smaller than ``small_area`` (``query.relevancy_small_class_area``), at most 1; 1 (no cap) for the
    others (capping every class cost the wall up to 29 IoU with the first, point-based floors)."""
    areas = areas.float()
    return torch.where(areas < small_area, (area_cap * areas).clamp(max=1.0), torch.ones_like(areas))


def class_extremes(cosines, count: int, quantile) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class (lo, hi) of the cosines over all rows: min and max, or with ``quantile`` > 0 the
    ``quantile`` and ``1 - quantile`` quantiles (over ``strided_rows``).
    ``quantile`` may be a (C,) tensor: one quantile per class (``class_quantiles``)."""
    if not torch.is_tensor(quantile) and quantile <= 0:
        extremes = [(c.amin(dim=0), c.amax(dim=0)) for c, _ in map(cosines, range(count))]
        return (torch.stack([e[0] for e in extremes]).amin(dim=0),
                torch.stack([e[1] for e in extremes]).amax(dim=0))
    every = strided_rows(cosines, count)
    if not torch.is_tensor(quantile):
        quantile = torch.full((every.shape[1],), float(quantile))
    return column_quantiles(every, quantile), column_quantiles(every, 1.0 - quantile)


def decide(cosines, count: int, temperature: float, score_threshold: float = 0.0,
           rule: str = "cosine", quantile: float | torch.Tensor = 0.0,
           floor: torch.Tensor | None = None, smooth=None) -> Labels:
    """Labels from class cosines produced chunk by chunk: ``cosines(i)`` -> ((n_i, C) cosine of chunk i,
    (n_i,) best canonical-negative cosine or None), for i < ``count``.

    Rules (``query.decision_rule``):
        'cosine': argmax over classes of the cosine (3D-OVS's evaluation rule).
        'relevancy': argmax of the cosine min-max normalised per class over all rows (one rendered image,
            or one cloud): the rule by which the 2D teacher itself decides
            (``teachers.relevancy.teacher_labels``), so the 3D answer inherits its per-image calibration.
            Each class reaches 1 somewhere in the set, so it suits a vocabulary of what is in view.
            With ``quantile`` > 0 (``query.relevancy_quantile``) the extremes are that quantile and its
            complement instead of the min and max: one outlier pixel then cannot set a class's scale;
            a (C,) tensor gives each class its own (``class_quantiles``).
    ``floor`` (C,) cosines (either rule; ``Segmenter._class_floors``): class c may take only rows whose
    cosine with it reaches ``floor[c]``; a row no class may take keeps the choice without floors.
    ``smooth``: (N, C) -> (N, C) applied to the per-class decision values of all rows at once before
    the argmax (one mask: ``colour_smoothing``); the chunks are then held together.
    The score is the chosen class's probability under softmax(cos / temperature); a row is unknown (-1)
    below ``score_threshold`` or when its best negative beats its best class. Chunks are computed twice
    under 'relevancy' (extremes, then labels) rather than kept: N x C logits never exist at once.
    """
    if rule not in DECISION_RULES:
        raise ValueError(f"decision rule must be one of {DECISION_RULES}, got {rule!r}")
    if count == 0:
        return Labels(torch.zeros(0, dtype=torch.long), torch.zeros(0))
    lo = hi = None
    if rule == "relevancy":
        lo, hi = class_extremes(cosines, count, quantile)
    if smooth is not None and count > 1:  # the filter needs every row of the image at once
        parts = [cosines(i) for i in range(count)]
        together = (torch.cat([c for c, _ in parts]),
                    None if parts[0][1] is None else torch.cat([n for _, n in parts]))
        cosines, count = (lambda _i: together), 1
    labels, scores = [], []
    for i in range(count):
        cos, best_negative = cosines(i)
        decision = cos if lo is None else (cos - lo) / (hi - lo).clamp_min(1e-8)
        if smooth is not None:
            decision = smooth(decision)
        if floor is not None:
            allowed = cos >= floor
            allowed |= ~allowed.any(dim=1, keepdim=True)
            decision = decision.masked_fill(~allowed, float("-inf"))
        label = decision.argmax(dim=-1)
        score = torch.softmax(cos / temperature, dim=-1).gather(1, label[:, None]).squeeze(1)
        unknown = score < score_threshold
        if best_negative is not None:
            unknown |= best_negative > cos.max(dim=-1).values
        labels.append(torch.where(unknown, torch.full_like(label, -1), label))
        scores.append(score)
    return Labels(torch.cat(labels), torch.cat(scores))


COLOUR_FILTER_SIDE = 120
"""Masks with a longer short side are colour-filtered by the fast guided filter, its fits computed at
about this short side (``guided_filter``'s ``subsample``): a 640x480 mask costs about a 160x120 one."""


def colour_smoothing(rgb: torch.Tensor, radius_fraction: float, eps: float):
    """``decide``'s ``smooth`` for one rendered mask: each class's decision map guided-filtered under the
    rendered colours ``rgb`` (H, W, 3) in [0, 1] (``guided_filter``; ``query.mask_colour_filter_*``),
    window radius ``radius_fraction`` x the short side; None when off."""
    height, width = rgb.shape[:2]
    radius = int(round(radius_fraction * min(height, width)))
    if radius_fraction <= 0 or radius < 1:
        return None
    guide = rgb.permute(2, 0, 1).float()
    subsample = max(1, min(height, width) // COLOUR_FILTER_SIDE)

    def smooth(decision: torch.Tensor) -> torch.Tensor:
        maps = decision.t().reshape(-1, height, width).float()
        out = guided_filter(guide.to(maps.device), maps, radius, eps, subsample)
        return out.reshape(len(maps), -1).t()

    return smooth


def unknown_without_surface(labels: Labels, opacity: torch.Tensor, min_opacity: float) -> Labels:
    """``labels`` with rows whose rendered ``opacity`` (N,) is below ``min_opacity`` set to unknown (-1)
    and their score to 0: no surface, nothing to label (``query.min_surface_opacity``)."""
    if min_opacity <= 0:
        return labels
    empty = opacity.reshape(-1).to(labels.labels.device) < min_opacity
    return Labels(torch.where(empty, torch.full_like(labels.labels, -1), labels.labels),
                  torch.where(empty, torch.zeros_like(labels.scores), labels.scores))


def classify(features: torch.Tensor, text: torch.Tensor, temperature: float,
             score_threshold: float = 0.0, negatives: torch.Tensor | None = None,
             chunk: int = 65536, rule: str = "cosine", quantile: float | torch.Tensor = 0.0,
             floor: torch.Tensor | None = None, smooth=None) -> Labels:
    """Per row of (N, D) CLIP-space features (any norm): a label by ``rule`` (see ``decide``) against
    (C, D) unit text features, its softmax score, and unknowns (-1); ``negatives`` (K, D) are unit
    canonical-negative features. Chunked so a 300k-point cloud never builds more than ``chunk`` x C
    logits at once."""
    starts = range(0, features.shape[0], chunk)

    def cosines(i: int):
        unit = F.normalize(features[starts[i]:starts[i] + chunk].float(), dim=-1)
        neg = None
        if negatives is not None and negatives.shape[0] > 0:
            neg = (unit @ negatives.t()).max(dim=-1).values
        return unit @ text.t(), neg

    return decide(cosines, len(starts), temperature, score_threshold, rule, quantile, floor, smooth)


def latent_cosines(latent: torch.Tensor, norm: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   text: torch.Tensor, negatives: torch.Tensor | None = None, chunk: int = 262144,
                   opacity: torch.Tensor | None = None):
    """``(cosines, count)`` as ``decide`` takes them, of the expanded features ``F = latent W^T + opacity b``
    without forming them.

    The head is affine, so ``cos(F, t) = (latent . W^T t + opacity b . t) / |F|``: the text goes through
    the head once ((C, D) -> (C, L)) and a row costs one (L x C) product instead of an (L x D) expansion
    and a (D x C) product. Args: latent (N, L), norm (N,) = |F| per row (``expanded_norm``), weight
    (D, L), bias (D,), text (C, D) and negatives (K, D) unit features, opacity (N,) the weight of the
    bias per row (a rendered ray's opacity, see ``SemanticField.expand_feature``; None = 1, a point).
    """
    def project(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (t @ weight).t().contiguous(), t @ bias  # (L, C), (C,)

    text_l, text_b = project(text)
    neg = project(negatives) if negatives is not None and negatives.shape[0] > 0 else None
    starts = range(0, latent.shape[0], chunk)

    def dot(z: torch.Tensor, op: torch.Tensor | None, proj: tuple) -> torch.Tensor:
        if op is None:
            return torch.addmm(proj[1], z, proj[0])
        return torch.addmm(op[:, None] * proj[1], z, proj[0])

    def cosines(i: int):
        rows = slice(starts[i], starts[i] + chunk)
        z, op = latent[rows], None if opacity is None else opacity[rows]
        inv = 1.0 / norm[rows, None].clamp_min(1e-12)
        best_negative = None if neg is None else (dot(z, op, neg) * inv).max(dim=-1).values
        return dot(z, op, (text_l, text_b)) * inv, best_negative

    return cosines, len(starts)


def classify_latent(latent: torch.Tensor, norm: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    text: torch.Tensor, temperature: float, score_threshold: float = 0.0,
                    negatives: torch.Tensor | None = None, chunk: int = 262144,
                    rule: str = "cosine", opacity: torch.Tensor | None = None,
                    quantile: float | torch.Tensor = 0.0, floor: torch.Tensor | None = None,
                    smooth=None) -> Labels:
    """``classify`` of the expanded features ``F = latent W^T + opacity b`` without forming them
    (``latent_cosines``; args as there and as ``decide``)."""
    cosines, count = latent_cosines(latent, norm, weight, bias, text, negatives, chunk, opacity)
    return decide(cosines, count, temperature, score_threshold, rule, quantile, floor, smooth)


def expanded_norm(latent: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                  opacity: torch.Tensor | None = None) -> torch.Tensor:
    """(N,) ``|latent W^T + opacity b|`` through the (L, L) Gram matrix ``W^T W`` instead of the (N, D)
    features: ``|F|^2 = z^T W^T W z + 2 opacity z . W^T b + opacity^2 |b|^2``. In float64, so the sum of
    large terms cannot cancel a small norm away."""
    w, b, z = weight.double(), bias.double(), latent.double()
    op = torch.ones(z.shape[0], dtype=z.dtype, device=z.device) if opacity is None else opacity.double()
    squared = ((z @ (w.t() @ w)) * z).sum(dim=-1) + 2 * op * (z @ (w.t() @ b)) + op * op * (b @ b)
    return squared.clamp_min(0).sqrt().to(latent.dtype)


@dataclass
class PointFeatures:
    """The labeled cloud of one field version: points and what labelling them needs, kept between queries."""

    xyz: np.ndarray          # (N, 3) float32 world
    rgb: np.ndarray          # (N, 3) uint8
    latent: torch.Tensor     # (N, L) semantic latent at each point
    norm: torch.Tensor       # (N,) |expanded feature| of each point
    weight: torch.Tensor     # (D, L) the feature head when the latents were taken
    bias: torch.Tensor       # (D,)
    excluded: int = 0        # surface points dropped as non-finite or implausibly far

    def features(self, chunk: int = 65536) -> torch.Tensor:
        """(N, D) expanded features (for a refine head, which is not affine)."""
        parts = [F.linear(z, self.weight, self.bias) for z in self.latent.split(chunk)]
        return torch.cat(parts) if parts else torch.zeros(0, self.weight.shape[0], device=self.weight.device)


class PointFeatureCache:
    """One ``PointFeatures`` and the field version it belongs to; thread-safe.

    Staleness rule: an entry is reused while it is of the same field object (a reset or load replaces
    it), the same keyframes (uids; a new keyframe adds surface) and the same cloud request (max_points,
    voxel, seed), and at most ``max_age_steps`` training steps old (0 = no step since). The field is
    held by a weak reference, so a replaced field can never be mistaken for the current one.
    """

    def __init__(self, max_age_steps: int = 0):
        self.max_age_steps = max(0, int(max_age_steps))
        self._lock = threading.Lock()
        self._entry: tuple | None = None  # (field weakref, step, key, PointFeatures)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(trainer, keyframes: list, request: tuple) -> tuple:
        return (tuple(int(getattr(kf, "uid", i)) for i, kf in enumerate(keyframes)), request)

    def get(self, trainer, key: tuple) -> PointFeatures | None:
        with self._lock:
            entry = self._entry
            step = int(getattr(trainer, "step_count", 0))
            if entry is not None and entry[0]() is trainer.field and entry[2] == key \
                    and 0 <= step - entry[1] <= self.max_age_steps:
                self.hits += 1
                return entry[3]
            self.misses += 1
            return None

    def put(self, trainer, step: int, key: tuple, value: PointFeatures) -> None:
        with self._lock:
            self._entry = (weakref.ref(trainer.field), int(step), key, value)

    def clear(self) -> None:
        with self._lock:
            self._entry = None


class RefineHead(nn.Module):
    """Per-vocabulary residual map on the expanded feature: ``F + W2 relu(W1 F)``, W2 zero-initialised
    so a fresh head is the identity (a refine starts exactly at the zero-shot answer)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.inner = nn.Linear(dim, hidden)
        self.outer = nn.Linear(hidden, dim)
        nn.init.zeros_(self.outer.weight)
        nn.init.zeros_(self.outer.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features + self.outer(torch.relu(self.inner(features)))


def train_refine_head(head: RefineHead, data: RefineData, text: torch.Tensor, sem: SemanticConfig,
                      qcfg: QueryConfig, max_steps: int, max_time_s: float,
                      generator: torch.Generator | None = None,
                      check=None) -> dict[str, float]:
    """RDA (+ FDA when windows are given) on the head only; stops at max_steps or max_time_s.

    ``check()`` runs before every step and may raise to end the burst (a reset cancels it)."""
    opt = torch.optim.Adam(head.parameters(), lr=qcfg.refine_lr)
    start = time.perf_counter()
    n = data.features.shape[0]
    steps, last = 0, {}
    while steps < max_steps and time.perf_counter() - start < max_time_s:
        if check is not None:
            check()
        idx = torch.randint(0, n, (min(qcfg.refine_rays_per_step, n),), generator=generator,
                            device=generator.device if generator is not None else "cpu")
        idx = idx.to(data.features.device)
        loss = sem.rda_weight * losses.rda_loss(head(data.features[idx]), text, data.relevancy[idx],
                                                data.selection[idx])
        terms = {"rda": loss.item()}
        if data.window_features is not None and data.window_dino is not None and \
                (sem.fda_pos_weight > 0 or sem.fda_neg_weight > 0):
            wsel = torch.randint(0, data.window_features.shape[0],
                                 (min(sem.fda_windows_per_step, data.window_features.shape[0]),),
                                 generator=generator,
                                 device=generator.device if generator is not None else "cpu")
            wsel = wsel.to(data.features.device)
            fda = losses.fda_loss(head(data.window_features[wsel]), text, data.window_dino[wsel],
                                  temperature=sem.temperature, dino_shift=sem.dino_shift,
                                  pos_weight=sem.fda_pos_weight, neg_weight=sem.fda_neg_weight,
                                  max_pairs=sem.fda_max_pairs, generator=generator)
            loss = loss + fda["fda"]
            terms["fda"] = fda["fda"].item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        last = terms
    return {"steps": float(steps), "time_s": time.perf_counter() - start, **last}


class RefineCache(LruCache[str, RefineHead]):
    """LRU of refined heads keyed by vocabulary_key; thread-safe."""


# ----------------------------------------------------------------------------------------------
# The entry point the ROS node and the CLI both call


@dataclass
class SegmentationResult:
    class_names: list[str]
    colors: np.ndarray                    # (C, 3) uint8
    points: np.ndarray                    # (N, 3) float32 world
    rgb: np.ndarray                       # (N, 3) uint8
    labels: np.ndarray                    # (N,) uint16, 65535 = unknown
    scores: np.ndarray                    # (N,) float32
    label_image: np.ndarray | None = None   # (H, W) uint8 (255 unknown) / uint16 (65535 unknown)
    score_image: np.ndarray | None = None   # (H, W) float32
    overlay: np.ndarray | None = None       # (H, W, 3) uint8
    rendered_rgb: np.ndarray | None = None  # (H, W, 3) uint8
    camera: tuple | None = None             # (Intrinsics, c2w 4x4) actually rendered
    refined: bool = False
    timing_s: dict[str, float] = field(default_factory=dict)
    warning: str = ""                       # why the labels may not mean much yet (see semantic_warning)
    points_excluded: int = 0                # surface points dropped as non-finite or implausibly far

    def points_per_class(self) -> dict[str, int]:
        counts = np.bincount(self.labels[self.labels != UNKNOWN_U16].astype(np.int64),
                             minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts, strict=False)}


FEW_SEMANTIC_STEPS = 100
"""Below this many feature-distillation steps a query's labels are flagged as unreliable: the demo's
field, which answers at ~89 mIoU, had ~250."""


def semantic_warning(trainer, cfg) -> str:
    """'' once the semantic field had FEW_SEMANTIC_STEPS of training, else why its labels are a guess.

    Before the feature distillation starts the semantic field is untrained and the argmax is the same
    class almost everywhere; a query still answers, but must not pass that off as a segmentation.
    """
    semantic = getattr(trainer, "semantic_step_count", None)
    if semantic is None:  # a trainer that does not count them: make no claim
        return ""
    if semantic == 0:
        t = cfg.trainer
        return (f"semantics not trained yet: the feature distillation starts once the training PSNR "
                f"reaches {t.semantic_start_psnr:g} dB (trainer.semantic_start_psnr) or at step "
                f"{t.semantic_start_step} at the latest, and the field has had "
                f"{getattr(trainer, 'step_count', 0)} steps; the labels are not a segmentation")
    if semantic < FEW_SEMANTIC_STEPS:
        return (f"only {semantic} semantic steps so far (fewer than {FEW_SEMANTIC_STEPS}): "
                "labels are unreliable")
    return ""


def to_cloud_labels(labels: torch.Tensor) -> np.ndarray:
    out = labels.cpu().numpy().astype(np.int64)
    out[out < 0] = UNKNOWN_U16
    return out.astype(np.uint16)



def teacher_id(teacher, cfg) -> str:
    """What makes text features differ between teachers (part of the refine cache key)."""
    kind = cfg.teacher.kind
    if kind == "clip":
        clip = cfg.teacher.clip
        return f"clip:{clip.model}:{clip.pretrained}:{clip.prompt_template}"
    return f"{kind}:{type(teacher).__name__}:{cfg.teacher.synthetic.seed}:{cfg.teacher.synthetic.embed_dim}"


class Segmenter:
    """The one query entry point of the ROS node and the CLI (thread-safe with a training thread).

    ``segment(classes, ...)`` answers from the current field; the trainer's lock is held per chunk of
    field evaluation (``FieldGuard``), so training steps and control requests run between chunks, and a
    reset or load between chunks makes the query fail (``FieldReplaced``) instead of mixing fields.
    """

    def __init__(self, trainer, teacher, cfg):
        self.trainer = trainer
        self.teacher = teacher
        self.cfg = cfg
        self.cache = RefineCache(cfg.query.refine_cache_size)
        self._refine_lock = threading.Lock()  # one refine burst at a time
        self._teacher_id = teacher_id(teacher, cfg)
        self.points_excluded = 0  # over all queries: a non-zero count means a poisoned keyframe
        self.point_cache = PointFeatureCache(cfg.query.point_cache_max_age_steps)
        self._geometry: tuple | None = None  # (key, (xyz, rgb, excluded)), see _cloud_geometry
        self.rendered_surface = RenderedSurfaceCache(cfg.query.rendered_points_max_age_steps)
        self._areas: dict[tuple, torch.Tensor | None] = {}  # the teacher's class areas, see _calibration
        self._floor_rows: tuple | None = None  # (key, step, latents, opacities, head), see _class_floors

    # ------------------------------------------------------------------ helpers
    def _text(self, names: list[str]) -> torch.Tensor:
        return self.teacher.encode_text(list(names)).float().to(self.trainer.device)

    def _negatives(self, names: list[str]) -> torch.Tensor | None:
        negs = [n for n in self.cfg.teacher.clip.canonical_negatives if n not in set(names)]
        return self._text(negs) if negs else None

    def _keyframes(self) -> list:
        return self.trainer.keyframes.snapshot()

    def _resolve_camera(self, camera, keyframes):
        """-> (intrinsics, c2w, background image or None)."""
        from ovs3d_ros.core.frame import Intrinsics

        if isinstance(camera, (int, np.integer)) and not isinstance(camera, bool):
            if not -len(keyframes) <= int(camera) < len(keyframes):
                raise QueryError(f"camera keyframe index {int(camera)} outside 0..{len(keyframes) - 1}")
            kf = keyframes[int(camera)]
            return kf.intrinsics, np.asarray(kf.pose, dtype=np.float64), kf.rgb.cpu().numpy()
        if isinstance(camera, (tuple, list)) and len(camera) == 2 and isinstance(camera[0], Intrinsics):
            c2w = np.asarray(camera[1], dtype=np.float64)
            if c2w.shape != (4, 4) or not np.all(np.isfinite(c2w)):
                raise QueryError(f"camera pose must be a finite 4x4 matrix, got shape {c2w.shape}")
            try:
                camera[0].validate()
            except ValueError as exc:
                raise QueryError(f"camera intrinsics: {exc}") from None
            return camera[0], c2w, None
        raise QueryError("camera must be None, a keyframe index, or (Intrinsics, 4x4 camera-to-world)")

    def _surface(self, keyframes: list, max_points: int, guard: FieldGuard) -> tuple[np.ndarray, np.ndarray]:
        return surface_points(self.trainer, max_points, chunk_guard=guard, cache=self.rendered_surface,
                              keyframes=keyframes)

    def _plausible(self, xyz: np.ndarray, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Drop (and count) non-finite points and points farther from the scene than any input bound
        allows (a camera input.max_distance_m from the first pose seeing input.depth_max_m)."""
        inp = self.cfg.input
        field_ = self.trainer.field
        if bool(getattr(field_, "bounds_set", False)):
            center, reach = field_.scene_center.detach().cpu().numpy(), inp.max_distance_m
        else:
            center, reach = np.zeros(3), inp.max_position_m
        keep = plausible_point_mask(xyz, center, reach + inp.depth_max_m)
        excluded = int(len(keep) - np.count_nonzero(keep))
        if excluded:
            self.points_excluded += excluded
            xyz, rgb = xyz[keep], rgb[keep]
        return xyz, rgb, excluded

    @torch.no_grad()
    def _point_latents(self, xyz: np.ndarray, guard: FieldGuard,
                       chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, L) latents and (N,) expanded-feature norms of world points (``guard`` per chunk)."""
        field_ = self.trainer.query_field
        latents, norms = [], []
        for start in range(0, len(xyz), chunk):
            pts = torch.as_tensor(xyz[start:start + chunk], dtype=torch.float32, device=self.trainer.device)
            with guard():
                latent = field_.semantic_at(pts)
                head = field_.feature_head
                norms.append(expanded_norm(latent, head.weight, head.bias))
            latents.append(latent)
        if not latents:
            return (torch.zeros(0, self.cfg.field.semantic_latent_dim, device=self.trainer.device),
                    torch.zeros(0, device=self.trainer.device))
        return torch.cat(latents), torch.cat(norms)

    def point_features(self, keyframes: list, max_points: int, guard: FieldGuard | None = None,
                       timing: dict | None = None) -> tuple[PointFeatures, bool]:
        """The cloud of the current field version (cached, see ``PointFeatureCache``), and whether it
        came from the cache; ``timing`` gets the seconds of its geometry and latents when built."""
        guard = guard or self._guard()
        timing = {} if timing is None else timing
        key = self._cloud_key(keyframes, max_points)
        cached = self.point_cache.get(self.trainer, key)
        if cached is not None:
            return cached, True
        step = int(getattr(self.trainer, "step_count", 0))  # before: a step during the build makes it stale
        t = time.perf_counter()
        xyz, rgb, excluded = self._cloud_geometry(keyframes, max_points, key, guard)
        timing["cloud_geometry_s"] = time.perf_counter() - t
        t = time.perf_counter()
        latent, norm = self._point_latents(xyz, guard)
        timing["cloud_latents_s"] = time.perf_counter() - t
        with guard():  # the head of the field the latents came from (FieldReplaced after a reset)
            head = self.trainer.query_field.feature_head
            weight, bias = head.weight.detach().clone(), head.bias.detach().clone()
        value = PointFeatures(xyz, rgb, latent, norm, weight, bias, excluded)
        self.point_cache.put(self.trainer, step, key, value)
        return value, False

    def _cloud_key(self, keyframes: list, max_points: int) -> tuple:
        return self.point_cache.key(self.trainer, keyframes,
                                    (max_points, self.cfg.query.voxel_size_m, self.cfg.seed))

    @staticmethod
    def _sensor_only(keyframes: list) -> bool:
        """Every keyframe has a sensor depth: the cloud's points are then the keyframes' alone."""
        return all(kf.has_depth() for kf in keyframes)

    def prepare_cloud_geometry(self, max_points: int | None = None) -> bool:
        """Build the cloud's points for the current keyframes now, ahead of the next query, which then
        pays only the latents (the node calls this when its frame queue runs empty after a new keyframe).

        Only a sensor-depth cloud is prepared (``_cloud_geometry``): rendering a depth-less keyframe's
        points here would hold the frame thread for as long as a render takes (a second on the CPU,
        more on a young field), and frames waiting behind it lost their TF poses in a CI run. The query
        renders those itself, once, and keeps them (``query.rendered_points_max_age_steps``). True if
        the points are ready."""
        keyframes = self._keyframes()
        if not keyframes or not self._sensor_only(keyframes):
            return False
        max_points = self.cfg.query.max_points if max_points is None else int(max_points)
        self._cloud_geometry(keyframes, max_points, self._cloud_key(keyframes, max_points),
                             self._guard("cloud preparation"))
        return True

    def _cloud_geometry(self, keyframes: list, max_points: int, key: tuple,
                        guard: FieldGuard) -> tuple[np.ndarray, np.ndarray, int]:
        """The thinned cloud's points, colours and excluded count for the cloud request ``key``.

        When every keyframe has a sensor depth the points are the keyframes' alone, not the field's
        (``surface_points``): they are kept while the keyframes, the request and the scene bounds stay,
        across training steps, so a query on a field still training pays only the latents.
        """
        from ovs3d_ros.core import outputs

        q, field_ = self.cfg.query, self.trainer.field
        key = (key, tuple(field_.scene_center.tolist()), float(field_.scene_radius), bool(field_.bounds_set))
        sensor_only = self._sensor_only(keyframes)
        cached = self._geometry
        if sensor_only and cached is not None and cached[0] == key:
            return cached[1]
        xyz, rgb = self._surface(keyframes, max_points * 2, guard)
        xyz, rgb, excluded = self._plausible(xyz, rgb)
        thin = outputs.downsample_cloud(
            outputs.LabeledCloud(xyz, rgb, np.zeros(len(xyz), np.uint16), np.zeros(len(xyz), np.float32)),
            max_points, q.voxel_size_m, seed=self.cfg.seed)
        value = (thin.xyz, thin.rgb, excluded)
        if sensor_only:
            self._geometry = (key, value)  # one tuple assignment: a concurrent reader sees old or new
        return value

    def _measured_depth(self, camera, keyframes: list, width: int, height: int) -> torch.Tensor | None:
        """(height, width) depth of a keyframe camera (nearest-neighbour resized, 0 = none), else None."""
        if not (isinstance(camera, (int, np.integer)) and not isinstance(camera, bool)):
            return None
        depth = keyframes[int(camera)].depth
        if depth is None:
            return None
        return F.interpolate(depth[None, None].float(), size=(height, width), mode="nearest")[0, 0]

    def render_mask_view(self, intr, c2w: np.ndarray, measured: torch.Tensor | None = None,
                         renderer: str | None = None, chunk_guard=None) -> dict[str, torch.Tensor]:
        """Render the mask camera with ``query.mask_renderer``; ``chunk_guard`` (a ``FieldGuard``) is
        entered per chunk (None: the caller holds the trainer)."""
        from ovs3d_ros.core.rendering import SurfaceSettings, render_image, render_image_surface

        q = self.cfg.query
        renderer = q.mask_renderer if renderer is None else renderer
        # the trainer's settings: its far plane hugs the observed depth (12 m of uniform
        # samples in a 6 m room misses thin surfaces), and its chunk shrinks after an OOM
        settings = dataclasses.replace(self.trainer.current_render_settings(),
                                       uniform_samples=q.mask_samples_per_ray,
                                       importance_samples=q.mask_importance_samples)
        chunk = chunk_rays(self.trainer.cfg, settings.uniform_samples + settings.importance_samples,
                           self.trainer.device, self.trainer.render_chunk())  # bounds the trainer's hold
        # no CLIP-space features: labels come from the latents (``classify_latent``)
        common = dict(occupancy=getattr(self.trainer, "occupancy", None), chunk=chunk,
                      chunk_guard=chunk_guard, feature=False)
        if renderer == "reference":
            return render_image(self.trainer.query_field, intr, c2w, settings, **common)
        if renderer == "surface":
            surface = SurfaceSettings(downsample=q.mask_depth_downsample, window_m=q.mask_window_m,
                                      smooth_samples=q.mask_smooth_samples,
                                      depth_pass_samples=q.mask_depth_pass_samples,
                                      min_short_side=q.mask_depth_min_short_side)
            return render_image_surface(self.trainer.query_field, intr, c2w, settings, surface,
                                        depth=measured, **common)
        raise QueryError(f"query.mask_renderer must be 'surface' or 'reference', got '{renderer}'")

    def refine_head(self, names: list[str], text: torch.Tensor, max_time_s: float | None,
                    max_steps: int | None = None,
                    guard: FieldGuard | None = None) -> tuple[RefineHead, dict[str, float]]:
        """The cached head of this vocabulary, or a new one trained by a bounded RDA+FDA burst (ended
        by ``FieldReplaced`` when a reset or load replaces the field meanwhile)."""
        key = vocabulary_key(names, self._teacher_id)
        head = self.cache.get(key)
        if head is not None:
            return head, {"cached": 1.0}
        with self._refine_lock:
            head = self.cache.get(key)
            if head is not None:
                return head, {"cached": 1.0}
            q = self.cfg.query
            budget = q.refine_max_time_s if max_time_s is None else float(max_time_s)
            if budget <= 0:
                raise QueryError(f"refine time budget must be positive, got {budget}")
            start = time.perf_counter()
            guard = guard or self._guard("refine")
            gen = torch.Generator().manual_seed(self.cfg.seed)
            data = collect_refine_data(self.trainer, text, self.cfg, gen, chunk_guard=guard)
            if data is None:
                raise QueryError("cannot refine: no keyframe has teacher (CLIP) features yet")
            collect_s = time.perf_counter() - start
            head = RefineHead(text.shape[1], q.refine_hidden_dim).to(self.trainer.device)
            # The budget covers rendering the refine set too; when that alone ate it (a slow CPU),
            # the burst still gets a quarter of the budget rather than caching an untrained head.
            stats = train_refine_head(head, data, text, self.cfg.semantic, q,
                                      max_steps=q.refine_max_steps if max_steps is None else max_steps,
                                      max_time_s=max(budget - collect_s, 0.25 * budget), generator=gen,
                                      check=guard.check)
            head.eval()
            for p in head.parameters():
                p.requires_grad_(False)
            self.cache.put(key, head)
            return head, {"cached": 0.0, "collect_s": collect_s, **stats}

    def _priced_view(self, camera, keyframes: list, names: list[str], refine: bool, cloud_points: int,
                     floor_rays: int = 0):
        """The mask camera at its rendered size ((intrinsics, c2w, background) or None), after checking
        the request's estimated cost (the floors' keyframe renders priced as mask rays) against the
        budget (``core/request_budget.py``)."""
        q = self.cfg.query
        view = None
        if camera is not None:
            intr, c2w, background = self._resolve_camera(camera, keyframes)
            width, height = mask_size(intr.width, intr.height, q.mask_max_side, q.mask_max_rays)
            view = (intr.scaled(width, height), c2w, background)
        uncached_refine = refine and vocabulary_key(names, self._teacher_id) not in self.cache.keys()
        mask_rays = (0 if view is None else view[0].width * view[0].height) + floor_rays
        check_budget(request_cost(self.cfg, mask_rays, uncached_refine, cloud_points), self.cfg)
        return view

    def _guard(self, what: str = "query") -> FieldGuard:
        return FieldGuard(self.trainer, what, yield_every_s=self.cfg.query.training_step_every_s)

    # ------------------------------------------------------------------ the query
    def segment(self, classes, refine: bool = False, max_time_s: float | None = None,
                max_points: int | None = None, score_threshold: float | None = None, camera=None,
                unknown: bool | None = None, cloud: bool = True) -> SegmentationResult:
        from ovs3d_ros.core.vocabulary import class_colors

        t0, cpu0 = time.perf_counter(), time.thread_time()
        timing: dict[str, float] = {}
        q = self.cfg.query
        names = validate_classes(classes, q.max_classes, q.max_class_name_chars)
        keyframes = self._keyframes()
        if not keyframes:
            raise QueryError("no keyframes yet: the field has not seen any image, nothing to segment")
        max_points = q.max_points if max_points is None else int(max_points)
        if max_points <= 0:
            raise QueryError(f"max_points must be positive, got {max_points}")
        threshold = q.score_threshold if score_threshold is None else float(score_threshold)
        if not 0.0 <= threshold <= 1.0:
            raise QueryError(f"score_threshold must be in [0, 1], got {threshold}")
        guard = self._guard()  # before anything is read: a reset from here on ends the query
        with guard.holding_training():  # training waits for the answer, but for guard's steps
            text = self._text(names)
            picked = area_keyframes(keyframes)
            quantile, cap = self._calibration(names, text, keyframes, picked)
            floors = cap is not None and not refine
            view = self._priced_view(camera, keyframes, names, refine, max_points if cloud else 0,
                                     floor_rays=self._floor_rays(keyframes, picked) if floors else 0)
            use_negatives = q.use_canonical_negatives if unknown is None else bool(unknown)
            vocab = _Vocabulary(names, text, self._negatives(names) if use_negatives else None, threshold)
            vocab.quantile = quantile
            timing["text_s"] = time.perf_counter() - t0

            if refine:
                t = time.perf_counter()
                vocab.head, stats = self.refine_head(names, text, max_time_s, guard=guard)
                timing["refine_s"] = time.perf_counter() - t
                timing.update({f"refine_{k}": float(v) for k, v in stats.items()})

            result = SegmentationResult(class_names=names, colors=class_colors(names),
                                        points=np.zeros((0, 3), np.float32), rgb=np.zeros((0, 3), np.uint8),
                                        labels=np.zeros(0, np.uint16), scores=np.zeros(0, np.float32),
                                        refined=vocab.head is not None, timing_s=timing,
                                        warning=semantic_warning(self.trainer, self.cfg))
            if floors:
                t = time.perf_counter()
                vocab.floor = self._class_floors(text, cap, keyframes, picked, guard)
                timing["class_floors_s"] = time.perf_counter() - t
            if cloud:
                t = time.perf_counter()
                points, hit = self.point_features(keyframes, max_points, guard, timing)
                timing["surface_s"] = time.perf_counter() - t
                timing["point_cache_hit"] = float(hit)
                self._cloud_answer(result, vocab, points)
            if view is not None:
                self._mask_answer(result, vocab, camera, keyframes, view, guard)
            # the part of the above spent waiting for the trainer (its lock, steps let in)
            timing["guard_wait_s"] = guard.wait_s
            timing["steps_let_in"] = float(guard.steps_let_in)
            # this thread's CPU time: far below total_s means it waited (the lock, the GIL, a busy CPU)
            timing["thread_cpu_s"] = time.thread_time() - cpu0
            timing["total_s"] = time.perf_counter() - t0
            return result

    def _calibration(self, names: list[str], text: torch.Tensor, keyframes: list, picked: list[int]
                     ) -> tuple[float | torch.Tensor, torch.Tensor | None]:
        """The 'relevancy' rule's quantile(s) and caps from the 2D teacher's class areas on the keyframes
        ``picked`` (``area_keyframes``): ``query.relevancy_quantile``, per class
        ``class_quantiles`` when ``query.relevancy_quantile_area`` > 0, and ``class_caps`` when
        ``query.relevancy_area_cap`` > 0 (else None: no floors)."""
        from ovs3d_ros.core.teachers.relevancy import teacher_class_areas

        q = self.cfg.query
        per_class_quantile = q.relevancy_quantile > 0 and q.relevancy_quantile_area > 0
        if q.decision_rule != "relevancy" or not (per_class_quantile or q.relevancy_area_cap > 0):
            return q.relevancy_quantile, None
        key = (self._teacher_id, tuple(names), tuple(keyframes[k].uid for k in picked))
        areas = self._areas.get(key)
        if areas is None:
            areas = teacher_class_areas([keyframes[k].clip for k in picked], text)
            self._areas = {key: areas}  # the last vocabulary and keyframe set only
        if areas is None:
            return q.relevancy_quantile, None
        quantile = (class_quantiles(q.relevancy_quantile, areas, q.relevancy_quantile_area).to(text.device)
                    if per_class_quantile else q.relevancy_quantile)
        cap = (class_caps(areas, q.relevancy_area_cap, q.relevancy_small_class_area).to(text.device)
               if q.relevancy_area_cap > 0 else None)
        return quantile, cap

    def _floor_rays(self, keyframes: list, picked: list[int]) -> int:
        """Rays the floors' keyframe renders will cost this query: none while the rendered rows are
        kept (``_floor_rows_kept``), so a request near ``query.request_max_samples`` is not refused
        for renders it will not do. A training step the query lets in (``FieldGuard``) can age the rows
        past the rule before they are used; those 16 small renders then go unpriced."""
        key = self._floor_key(self.trainer.query_field, keyframes, picked)
        if self._floor_rows_kept(key, int(getattr(self.trainer, "step_count", 0))):
            return 0
        return sum(w * h for w, h in (floor_view_size(keyframes[k].intrinsics) for k in picked))

    def _floor_key(self, query_field, keyframes: list, picked: list[int]) -> tuple:
        return (weakref.ref(query_field), field_version(self.trainer),
                tuple(keyframes[k].uid for k in picked))

    def _floor_rows_kept(self, key: tuple, step: int) -> bool:
        """Whether the floors' rendered rows (``_floor_rows``) still stand for the field ``key``
        (``_floor_key``) at training step ``step``: the same field object, version and keyframes, and
        young enough by ``surface.still_young``."""
        cached = self._floor_rows
        return (cached is not None and cached[0][0]() is key[0]() and cached[0][1:] == key[1:]
                and still_young(step, cached[1], self.cfg.query.rendered_points_max_age_steps))

    def _class_floors(self, text: torch.Tensor, cap: torch.Tensor, keyframes: list, picked: list[int],
                      guard: FieldGuard) -> torch.Tensor:
        """(C,) per class the cosine its top ``cap`` share of the scene's surface reaches, over the
        surface pixels (opacity >= ``query.min_surface_opacity``) of the keyframes the teacher's areas
        were taken on, rendered as masks are at ``FLOOR_VIEW_SIDE`` pixels: the same pixels as the areas,
        in the same domain as a mask. One floor for the whole scene, not per view, so a close-up that a
        small class fills keeps it, while the rows the teacher's blur spreads around it go to the surface.
        (Taken over the cloud's points instead, whose share per class is not the pixels' share, a floor
        sat above every pixel of a found ball: bench/results/issue14/heldout_s12.) The rendered rows are
        kept with the head they were rendered for (``_floor_rows``) while the field and keyframes are the
        same and it has trained at most ``query.rendered_points_max_age_steps`` steps since, as the
        cloud's rendered points are (``surface.still_young``): rendered again after every step, they
        doubled the cloud's query after a step (0.47 -> 1.0 s; 0.04 -> 1.6 s with no depth,
        bench/query.py). Zero-shot only: a refine head's cosine is calibrated by its own training."""
        query_field = self.trainer.query_field
        step = int(getattr(self.trainer, "step_count", 0))
        key = self._floor_key(query_field, keyframes, picked)
        cached = self._floor_rows
        if not self._floor_rows_kept(key, step):
            latents, opacities = [], []
            for k in picked:
                kf = keyframes[k]
                w, h = floor_view_size(kf.intrinsics)
                c2w = np.asarray(kf.pose, dtype=np.float64)
                img = self.render_mask_view(kf.intrinsics.scaled(w, h), c2w,
                                            self._measured_depth(k, keyframes, w, h), chunk_guard=guard)
                opacity = img["opacity"].reshape(-1)
                surface = opacity >= self.cfg.query.min_surface_opacity
                latents.append(img["latent"].reshape(-1, img["latent"].shape[-1])[surface])
                opacities.append(opacity[surface])
            with guard():  # the head the latents were rendered for (a reset since raises FieldReplaced)
                head = query_field.feature_head
                weight, bias = head.weight.detach().clone(), head.bias.detach().clone()
            cached = self._floor_rows = (key, step, torch.cat(latents), torch.cat(opacities), weight, bias)
        _, _, latent, opacity, weight, bias = cached
        if latent.shape[0] == 0:  # no surface yet: nothing to set a floor by
            return torch.full((text.shape[0],), -float("inf"), device=text.device)
        with torch.no_grad():
            norm = expanded_norm(latent, weight, bias, opacity)
            cosines, count = latent_cosines(latent, norm, weight, bias, text, opacity=opacity)
            floor = column_quantiles(strided_rows(cosines, count), 1.0 - cap.to(latent.device))
        return floor.to(text.device)

    def _labels(self, vocab: "_Vocabulary", latent: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                opacity: torch.Tensor | None = None, norm: torch.Tensor | None = None, smooth=None) -> Labels:
        """Labels of (N, L) latents (points: ``opacity`` None; rendered rays: their opacity; ``smooth``
        as ``decide``'s, zero-shot only).

        Zero-shot, the feature head is affine all the way: one (L x C) product per row
        (``classify_latent``). A refine head is not: the features are expanded and go through it.
        """
        q = self.cfg.query
        with torch.no_grad():
            if vocab.head is None:
                if norm is None:
                    norm = expanded_norm(latent, weight, bias, opacity)
                return classify_latent(latent, norm, weight, bias, vocab.text, q.score_temperature,
                                       vocab.threshold, vocab.negatives, rule=q.decision_rule,
                                       opacity=opacity, quantile=vocab.quantile, floor=vocab.floor,
                                       smooth=smooth)
            op = torch.ones(latent.shape[0], device=latent.device) if opacity is None else opacity
            features = vocab.head(F.linear(latent, weight) + op[:, None] * bias)
            # a refine head is trained (RDA) to put the teacher's relevancy calibration into the
            # cosine itself; min-max on top of it measured 10.4 against 50.3 mIoU for the cosine
            # (room seed 1, held-out masks; both below the zero-shot 87.0: the refine burst at the
            # default settings loses to the zero-shot answer, an open problem)
            return classify(features, vocab.text, q.score_temperature, vocab.threshold, vocab.negatives,
                            rule="cosine")

    def _cloud_answer(self, result: SegmentationResult, vocab: "_Vocabulary", points: PointFeatures) -> None:
        """The labeled cloud into ``result``: the points and latents of this field version, labelled."""
        result.points, result.rgb = points.xyz.astype(np.float32), points.rgb.astype(np.uint8)
        result.points_excluded = points.excluded
        t = time.perf_counter()
        lab = self._labels(vocab, points.latent, points.weight, points.bias, norm=points.norm)
        result.labels = to_cloud_labels(lab.labels)
        result.scores = lab.scores.cpu().numpy().astype(np.float32)
        result.timing_s["cloud_labels_s"] = time.perf_counter() - t

    def _mask_answer(self, result: SegmentationResult, vocab: "_Vocabulary", camera, keyframes: list,
                     view: tuple, guard: FieldGuard) -> None:
        """The label image, scores and overlay of ``camera`` (rendered as the priced ``view``:
        intrinsics at the mask's size, c2w, background) into ``result``."""
        from ovs3d_ros.core import outputs

        q, timing = self.cfg.query, result.timing_s
        t = time.perf_counter()
        intr, c2w, background = view
        width, height = intr.width, intr.height
        measured = self._measured_depth(camera, keyframes, width, height)
        img = self.render_mask_view(intr, c2w, measured, chunk_guard=guard)
        with guard():  # the head the latents were rendered for (a reset since raises FieldReplaced)
            head = self.trainer.query_field.feature_head
            weight, bias = head.weight.detach().clone(), head.bias.detach().clone()
        timing["render_s"] = time.perf_counter() - t
        if "fallback" in img:  # the surface renderer: share of pixels the reference had to redo
            timing["mask_fallback_fraction"] = float(img["fallback"].float().mean())
        latent = img["latent"].reshape(height * width, -1)
        opacity = img["opacity"].reshape(-1)
        rgb = img["rgb"].reshape(height, width, 3).clamp(0, 1)
        smooth = colour_smoothing(rgb, q.mask_colour_filter_radius, q.mask_colour_filter_eps)
        lab = self._labels(vocab, latent, weight, bias, opacity=opacity, smooth=smooth)
        lab = unknown_without_surface(lab, opacity, q.min_surface_opacity)
        idx = lab.labels.reshape(height, width).cpu().numpy()
        rendered = (rgb * 255).round().to(torch.uint8).cpu().numpy()
        if background is not None and background.shape[:2] != (height, width):
            from PIL import Image

            background = np.asarray(Image.fromarray(background).resize((width, height), Image.BILINEAR))
        base = background if background is not None else rendered
        result.label_image = outputs.label_image(idx, len(result.class_names))
        result.score_image = lab.scores.reshape(height, width).cpu().numpy().astype(np.float32)
        result.overlay = outputs.overlay(base, result.label_image, result.colors, q.overlay_alpha)
        result.rendered_rgb = rendered
        result.camera = (intr, c2w)
        timing["mask_s"] = time.perf_counter() - t


@dataclass
class _Vocabulary:
    """What labelling needs of one query: names, their unit text features, canonical negatives (or None),
    the score threshold and the refine head (None = zero-shot)."""

    names: list[str]
    text: torch.Tensor
    negatives: torch.Tensor | None
    threshold: float
    head: RefineHead | None = None
    quantile: float | torch.Tensor = 0.0  # the 'relevancy' rule's quantile(s) (Segmenter._calibration)
    floor: torch.Tensor | None = None  # per-class cosine floors (Segmenter._class_floors)

__all__ = [
    "FieldReplaced",
    "Labels",
    "PointFeatureCache",
    "PointFeatures",
    "QueryError",
    "RefineCache",
    "RefineData",
    "RefineHead",
    "SegmentationResult",
    "classify",
    "classify_latent",
    "latent_cosines",
    "expanded_norm",
    "semantic_warning",
    "to_cloud_labels",
    "train_refine_head",
    "unknown_without_surface",
    "validate_classes",
    "vocabulary_key",
]
