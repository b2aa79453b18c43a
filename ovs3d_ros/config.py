"""The one typed configuration of ovs3d_ros.

Every tunable number lives here, with a one-line docstring under it (the ROS parameter description
and the ``--help`` text come from those). ``config/ovs3d.yaml`` and the node's ROS parameters map onto
this tree 1:1 with dotted names: ``trainer.rays_per_step`` is ``Config().trainer.rays_per_step``.

Sections are owned by the part of the code that reads them; add a field to the section of the code
you write, never a module-level constant.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

# Choices: the one list of the values each string option takes. Every way into a Config (defaults,
# YAML, --set, ROS parameters, live updates) is checked against these in ``_coerce``; code that reads
# an option can rely on it being one of them.
TeacherKind = Literal["clip", "synthetic"]
ContractionOrder = Literal["inf", "l2"]
FdaGradient = Literal["semantic_grid", "all"]
DecisionRule = Literal["relevancy", "cosine"]
MaskRenderer = Literal["surface", "reference"]
PoseSource = Literal["auto", "tf", "pose", "odometry"]


def choices(option: Any) -> tuple[str, ...]:
    """The values of a ``Literal`` option type, e.g. ``choices(MaskRenderer) == ('surface', 'reference')``."""
    return tuple(typing.get_args(option))


@dataclass
class KeyframeConfig:
    min_translation_m: float = 0.15
    """A frame becomes a keyframe when it moved at least this far from every kept keyframe ..."""
    min_rotation_deg: float = 12.0
    """... or turned at least this much (either suffices)."""
    min_sharpness: float = 0.0
    """Variance of the Laplacian of the grey image (0-255 scale) below which a frame is too blurry to keep."""
    capacity: int = 64
    """Most keyframes kept; beyond it the one most redundant with its neighbours is replaced."""
    recent_count: int = 4
    """The newest keyframes count as 'recent' for ray sampling."""
    recent_ray_fraction: float = 0.5
    """Fraction of each training batch drawn from the recent keyframes (the rest: the whole buffer)."""
    holdout_every: int = 8
    """Every n-th pixel row/column pair of each keyframe is held out of training for the PSNR estimate."""


@dataclass
class ClipConfig:
    model: str = "ViT-B-16"
    """open_clip architecture name."""
    pretrained: str = "openai"
    """open_clip pretrained tag (downloaded once into the cache) or a path to a local checkpoint file."""
    cache_dir: str = ""
    """Where open_clip looks for / stores pretrained weights ('' = its default, ~/.cache)."""
    model_config: str = ""
    """Optional open_clip model-config JSON file (or folder of them) registering a custom architecture."""
    image_downsample: int = 8
    """The teacher sees the image divided by this (the original: 8)."""
    min_teacher_short_side: int = 40
    """Never downsample below this short side (small robot images would give 2-pixel patches)."""
    scale_divisors: tuple[int, int, int] = (5, 7, 10)
    """Patch side = teacher-image short side // d, one scale per divisor."""
    stride_fraction: float = 0.25
    """Patch stride as a fraction of the patch side (the original: p // 4)."""
    jitter: bool = True
    """Push each crop side outward by its own random 0..p*jitter_fraction pixels (as the original)."""
    jitter_fraction: float = 0.25
    """Largest outward jitter of a crop side as a fraction of the patch side (the original: p // 4)."""
    batch_size: int = 256
    """Crops encoded per forward pass (bounded memory for any image size)."""
    pil_rounding: bool = False
    """Round crops to uint8 after each resampling pass as PIL does (bit-faithful, slower); off: linear."""
    feature_downsample: int = 1
    """Stored CLIP features are the teacher-resolution map divided by this (fp16)."""
    prompt_template: str = ""
    """'' = encode the raw class string (the paper); e.g. 'a photo of a {}.'"""
    canonical_negatives: tuple[str, ...] = ("object", "things", "stuff", "texture")
    """Phrases used to decide 'unknown' when a query asks for it."""
    text_cache_size: int = 16
    """Vocabularies whose text features are kept (least recently used dropped first)."""


@dataclass
class DinoConfig:
    enabled: bool = True
    """Compute DINO tokens per keyframe (needed by FDA)."""
    model: str = "vit_base_patch8_224.dino"
    """timm model name (the paper: DINO ViT-B/8; also vit_small_patch8_224.dino, vit_small_patch14_dinov2)."""
    checkpoint: str = ""
    """Local weights file for the timm model ('' = timm's pretrained download/cache)."""
    arch_overrides: str = ""
    """JSON object of timm create_model keyword overrides for a custom architecture ('' = none)."""
    image_downsample: int = 5
    """DINO sees the image divided by this (the original: 5) ..."""
    min_short_side: int = 64
    """... but never smaller than this short side (rounded to a multiple of the patch size)."""


@dataclass
class SyntheticTeacherConfig:
    embed_dim: int = 512
    """Dimension of the synthetic CLIP-like space (text and image embeddings)."""
    confusion_prob: float = 0.1
    """Probability that a region (largest-patch cell) of a view has its crops lean toward a wrong class."""
    confusion_strength: float = 0.55
    """How far a confused crop leans toward the wrong class (0..1)."""
    noise_std: float = 0.15
    """Norm of the Gaussian noise added to each unit crop embedding before averaging."""
    dino_dim: int = 64
    """Channels of the synthetic DINO-like token grid."""
    dino_patch: int = 8
    """Pixels per synthetic DINO token side (at the DINO resolution of teacher.dino)."""
    dino_color_weight: float = 0.5
    """Weight of the token's mean colour (randomly projected) against its class vector in DINO tokens."""
    seed: int = 0
    """Seed of the synthetic text space and of the per-view confusions."""
    class_names: tuple[str, ...] = ()
    """Sorted class names of the scene whose ground-truth label maps feed the synthetic teacher (the
    ROS node receives those maps on its `labels` topic, stamped like the images)."""


@dataclass
class TeacherConfig:
    kind: TeacherKind = "clip"
    """'clip' (open_clip + timm DINO) or 'synthetic' (benchmark teacher built from ground-truth labels)."""
    clip: ClipConfig = dataclasses.field(default_factory=ClipConfig)
    dino: DinoConfig = dataclasses.field(default_factory=DinoConfig)
    synthetic: SyntheticTeacherConfig = dataclasses.field(default_factory=SyntheticTeacherConfig)
    seed: int = 0
    """Seed of the crop jitter (combined with each frame's stamp and source id)."""


@dataclass
class FieldConfig:
    num_levels: int = 12
    """Hash-grid levels (geometry and appearance grid)."""
    features_per_level: int = 2
    """Features per hash-grid level."""
    log2_hashmap_size: int = 17
    """Entries per level = 2**this."""
    base_resolution: int = 16
    """Coarsest grid resolution (over the contracted [-2, 2]^3 cube)."""
    max_resolution: int = 1024
    """Finest grid resolution (the linear inner region gets half of it across its diameter)."""
    hidden_dim: int = 64
    """Width of the small MLPs."""
    appearance_dim: int = 27
    """Appearance feature per point (the original's app_dim), output by the density MLP next to density."""
    semantic_num_levels: int = 8
    """Levels of the separate semantic hash grid (latent + selection)."""
    semantic_log2_hashmap_size: int = 15
    """Entries per semantic level = 2**this."""
    semantic_max_resolution: int = 256
    """Finest resolution of the semantic grid (CLIP targets are patch-level, so coarser than geometry)."""
    semantic_hidden_dim: int = 32
    """Width of the semantic MLP."""
    semantic_latent_dim: int = 32
    """Low-dimensional semantic latent composited along the ray, expanded to CLIP dim after compositing."""
    clip_dim: int = 512
    """Teacher CLIP embedding dimension."""
    num_scales: int = 3
    """Selection volume logits (one per CLIP patch scale)."""
    detach_semantic_weights: bool = True
    """Composite semantics with detached weights so semantic losses never reshape density."""
    contraction_order: ContractionOrder = "inf"
    """Scene contraction norm: 'inf' (fills the grid cube) or 'l2' (mip-NeRF 360)."""
    scene_radius_m: float = 4.0
    """Smallest radius of the linear (uncontracted) region around the scene centre."""
    scene_radius_margin: float = 1.2
    """The radius also covers the first keyframes' cameras and depth points times this margin."""
    near_m: float = 0.05
    """Nearest sample distance from the camera."""
    far_m: float = 12.0
    """Farthest sample distance for rays without depth."""
    occupancy_resolution: int = 64
    """Occupancy grid cells per side (over the contracted cube)."""
    occupancy_threshold: float = 0.01
    """Opacity of one cell-sized step above which a cell stays occupied."""
    occupancy_update_every: int = 16
    """Training steps between occupancy grid updates."""
    occupancy_update_fraction: float = 0.25
    """Random fraction of cells re-evaluated per update (plus all occupied cells after warm-up)."""
    occupancy_ema_decay: float = 0.95
    """Decay of the occupancy opacity estimate."""
    occupancy_keep_measured: bool = True
    """Cells holding a keyframe's measured depth points (``OccupancyGrid.mark_measured``, the strided
    points of each keyframe) are never skipped. The estimate tests one random point per cell (25 cm in a
    4 m scene radius) per update, which almost never lands on a 5-6 cm object: its cell decayed to empty,
    training never noticed (depth-window samples are always evaluated) but a query's mask rays skipped
    it and saw the floor behind (desk seed 3: 'yellow bottle' density present over 5-12 cm along its
    held-out rays, its cells marked empty). Same saved field, held-out mIoU 55.8 -> 59.5 (bottle 35.0 ->
    60.7), as much as marking every cell occupied. Costs only evaluations in those cells."""
    occupancy_warmup_steps: int = 128
    """Before this many steps every cell counts as occupied."""
    surface_image_downsample: int = 4
    """Surface extraction renders keyframe depth at the keyframe size divided by this."""
    surface_min_opacity: float = 0.9
    """Surface extraction keeps rendered pixels at least this opaque."""


@dataclass
class TrainerConfig:
    rays_per_step: int = 1024
    """Rays per training step."""
    samples_per_ray: int = 48
    """Uniform (occupancy-skipped) samples per ray without depth."""
    importance_samples: int = 32
    """Extra samples per ray drawn from the uniform pass's weights (0 = no importance pass)."""
    depth_samples: int = 8
    """Samples around the measured depth (depth-guided sampling)."""
    depth_uniform_samples: int = 8
    """Additional uniform samples per ray between near and the measured depth."""
    depth_sigma_m: float = 0.05
    """Spread of the depth-guided samples."""
    depth_sample_sigmas: float = 3.0
    """Depth-guided samples cover measured depth +- this many depth_sigma_m."""
    render_samples_per_ray: int = 128
    """Uniform samples per ray when rendering images (no depth at render time). Depth-trained surfaces
    are thin: 64 samples over a 10 m far plane step past some of them (measured on novel views of the
    room scene: 128 gives +1.4 dB PSNR over 64, at 1.5x the render time)."""
    render_importance_samples: int = 64
    """Importance samples per ray when rendering images."""
    render_far_depth_margin: float = 1.25
    """Renders without depth stop at this x the largest depth seen in keyframes (0 = always field.far_m)."""
    render_chunk: int = 8192
    """Rays per chunk when rendering images (bounds memory at any resolution)."""
    lr_grid: float = 1e-2
    """Learning rate of the hash grids."""
    lr_mlp: float = 1e-2
    """Learning rate of the MLPs and heads."""
    lr_decay_steps: int = 20000
    """Exponential decay horizon: lr x 0.1 after this many steps."""
    adam_eps: float = 1e-15
    """Adam epsilon (tiny, as Instant-NGP: hash entries get rare, small gradients)."""
    rgb_weight: float = 1.0
    """Weight of the RGB MSE loss."""
    depth_weight: float = 0.1
    """Weight of the depth loss (when depth is given)."""
    free_space_weight: float = 0.0
    """Weight of the free-space loss (weight in front of the depth window; 0: measured no novel-view gain)."""
    max_steps_per_s: float = 0.0
    """Cap on training steps per second (0 = as fast as possible): the node's compute budget."""
    semantic_start_psnr: float = 20.0
    """Semantic losses start once the running training PSNR (dB) reaches this, i.e. once geometry puts
    the rendering weights near the surfaces the features belong to (~70 steps on the demo scene);
    0 = from the first step."""
    semantic_start_step: int = 200
    """... or at this step at the latest (for scenes whose PSNR stays low); once started they stay on."""
    holdout_eval_every: int = 50
    """Steps between PSNR estimates on the keyframes' held-out pixels."""
    holdout_eval_rays: int = 1024
    """Held-out rays rendered per PSNR estimate."""
    seed: int = 0
    """Seed of the ray sampling."""
    oom_min_rays_per_step: int = 128
    """After a GPU out-of-memory in a step the ray budgets halve (core/oom.py), never below this."""


@dataclass
class SemanticConfig:
    feature_weight: float = 1.0
    """Weight of the feature/selection cosine distillation loss (class-agnostic, always on)."""
    feature_residual_weight: float = 3.0
    """Weight of the same distillation on residuals from the batch's mean target
    (``losses.residual_feature_loss``): a 5 cm ball's target is ~85 % the table around it, a small angle
    for the cosine, and the field held about two thirds of its share. Tuning scenes only (desk 1 / 3
    with trainer seeds 0-2, table 2 with 0 and 2; bench/results/issue14/tuning_s11/summary.md), mean
    held-out mIoU of the eight runs / ball / apple IoU: 0 69.5 / 0.2 / 48.9, 1 70.5 / 7.9 / 50.2,
    3 72.9 / 20.6 / 58.4 (larger not tried). 0 = off."""
    rays_per_step: int = 512
    """Feature rays per step (the first of the training rays carry CLIP targets; 3D-OVS: 4096 of 12288).
    Half of the 1024 training rays: held-out mIoU after 500 semantic steps room / clutter seed 1 88.0 /
    66.6 against 88.5 / 66.6 with all 1024, for about half the semantic step's extra cost."""
    average_decay: float = 0.995
    """Queries (masks, clouds, refine sets) answer from an average of the semantic weights over the last
    steps (grid, MLP, feature head; ``core/field/semantic_average.py``), not from the last step's: with
    Adam at the grid learning rate a small object's IoU swings between steps (desk seed 1, tuning, one
    run: apple 71 / 59 / 35 / 34 at steps 450 / 500 / 550 / 600). Once ``average_power`` has narrowed it,
    the average is exponential with this decay per semantic step (a window of ~200 steps at 0.995).
    Geometry is never averaged. 0 = the last step's weights. Tuning scenes only (desk 1 / 3 with
    trainer seeds 0-2, table 2 with 0 and 2; bench/results/issue14/tuning_s10), mean held-out mIoU of
    the eight runs / apple IoU / classes below a teacher IoU >= 20: off 69.1 / 43.5 / 1, power 3 69.5 /
    48.9 / 0, power 0 (a plain mean before the decay) 68.8 / 61.7 / 0 (but table 2 80.2 -> 73.2),
    decay 0.98 power 0 68.7 / 39.5 / 0."""
    average_power: float = 3.0
    """Until ``average_decay`` caps it, the update after n others gives the live weights the share
    (1 + power) / (n + 1 + power): step k of n weighs about (k / n)^power, so the weights of the first
    semantic steps fade (0 = a plain running mean, which kept them; measured above)."""
    rare_ray_fraction: float = 0.5
    """Share of the feature rays drawn by colour rarity instead of uniformly (``rare_rays``): each colour
    bin of a keyframe gets about the same number of these rays, so a 5 cm ball (0.15 % of the pixels,
    ~7 % of the rare rays on desk seed 3) is distilled as often as larger things. Tuning scenes only
    (bench/results/issue14/tuning_s8), held-out mIoU 0 -> 0.25: desk 1 63.9 -> 67.6 (ball 0.0 -> 14.9,
    apple 35.8 -> 59.7), desk 3 61.2 -> 67.0 (apple 17.1 -> 43.9), table 2 77.6 -> 80.2; over three
    trainer seeds desk 1 / 3 65.5 / 66.3; 0.5 on desk 3: 64.3 (one run, before the residual term, the
    averaging and the floors). 0.25 -> 0.5 with those (bench/results/issue14/tuning_s13, twelve tuning
    fields: desk 16 / 27 / 1 x trainer seeds 0-2, desk 3 x 0-1, table 2 x 0): mean mIoU 70.1 -> 74.3,
    classes below a teacher IoU >= 20: 4 (the ball, learned late) -> 0; no field lower, no class on any
    field down by more than 5 points. DINO-token rarity instead of colour lost
    (desk 3 58.0): at 160x120 a token is as large as the object. With the tiny CLIP + DINO, which do
    not see the small objects at all, it costs ~2 points (seed 5 zero-shot mean over table / clutter /
    room: 0.25 51.2, 0.1 51.8, 0 53.0; bench/results/issue14/README.md, session 9): re-measure with a
    real CLIP. 0 = uniform (the original)."""
    rare_colour_bins: int = 8
    """Colour bins per RGB channel for ``rare_ray_fraction``."""
    fine_scale_agreement: float = 0.9
    """Rays whose finest-scale CLIP target has a cosine below this with the coarsest-scale target are
    distilled (feature and RDA) towards the finest scale alone instead of the selection's mix
    (``losses.scale_mix_weights``): where the scales disagree only the finest patch saw a small object,
    and the learned selection put ~0.5 on the coarsest scale there (bench/small_objects.py). 0.9: on
    desk seed 1's training views (tuning) the synthetic benchmark teacher's two scales fall below it on
    45-67% of the mug/bowl/book/bottle pixels and 5-9% of table/floor ones. Together with
    ``fda_colour_sigma`` 0.2: desk seed 1 held-out mIoU 36.0 -> 43.5 (no FDA 46.8). A real CLIP's
    cross-scale cosines sit elsewhere: re-measure for it. -1 = off (the original's mix everywhere)."""
    target_surround_weight: float = 0.5
    """The feature loss's target is the ray's scale mix minus this times its coarsest-scale feature
    (``losses.surround_subtracted_weights``, an unsharp mask across the patch scales): over a small
    object even the finest patch is mostly the surface around it (desk seed 1 training views, apple
    pixels: finest target cosine 0.33 with "red apple", 0.88 with "wooden table"; with 0.5 subtracted
    0.48 / 0.79), and the field, fitting the dominant part, dropped the object (held-out apple IoU 0).
    On a uniform surface all scales agree and the target's direction is unchanged. Desk seed 1 (the
    tuning scene), held-out mIoU / apple IoU, one run each: 0 -> 52.2 / 0.0, 0.5 -> 55.2 / 32.5,
    0.7 -> 54.4 / 20.9; with ``fda_colour_sigma`` 0.1: 0 -> 56.4 / 22.1, 0.5 -> 56.5 / 21.2 (bottle
    33.7 -> 36.5) and, trainer.seed 1, 57.6 / 34.2 (the apple's IoU moves by ~10 between runs). The RDA
    target keeps the plain mix (a relevancy mix must stay convex).
    In [0, 1); 0 = off (the original's target). A real CLIP's crops are not linear mixtures: re-measure."""
    target_colour_filter_radius: float = 0.0
    """A keyframe's CLIP maps are guided-filtered under its colours (area-resized to the maps) before
    they become targets (``semantic_targets.colour_guided_maps``, the query's mask filter applied to the
    teacher): a crop's blur that spills a small object's feature onto the table around it goes back to
    the colour edge, where the field would otherwise learn it as a halo. Window radius x the maps'
    short side (at least one cell when on); 0 = off. The 2D teacher alone on the seven tuning scenes'
    views (160x120, maps 53x40; session 16): mIoU 50.2 -> 54.4 at one cell, 57.0 at two, but the orange
    ball 11-20 -> 5-20 at two (its few cells are averaged with its rim), about even at one."""
    target_colour_filter_eps: float = 1e-4
    """Regulariser of ``target_colour_filter_radius``'s filter, in squared colour units (0-1 per channel)."""
    rda_weight: float = 1.0
    """Relevancy-distribution alignment weight (the paper: 1, office_desk 0.1)."""
    fda_pos_weight: float = 20.0
    """Feature-distribution alignment: weight of DINO-similar pairs. The paper uses 200, but its feature
    head trains at lr 1e-4 and its run is 15k iterations; here, with every semantic parameter at the grid
    learning rate and a few hundred steps, x200 still absorbed the small objects into the surfaces around
    them (bench/semantic_eval clutter, held-out mIoU: no FDA 48.6, x200 34.9, x20 55.7)."""
    fda_neg_weight: float = 0.2
    """Feature-distribution alignment: weight of DINO-dissimilar pairs (the paper: 0.18-0.35)."""
    fda_colour_sigma: float = 0.1
    """FDA: a DINO-similar pair's attraction is scaled by exp(-|c_i - c_j|^2 / (2 sigma^2)) of the colours
    (0..1) of the pixels its two rays pass through (``losses.fda_colour_affinity``), so pairs across a
    colour edge, such as a small object's token and the table's, attract little. 0.2 kept 0.1-0.5
    between the red apple's two tones and the desk's wood (the orange ball is closer still), and FDA
    pulled the apple into the table: desk seed 1 (tuning) held-out mIoU / apple IoU, one run each: no
    FDA 56.9 / 24.2, sigma 0.2 52.2 / 0.0, sigma 0.1 56.4 / 22.1 (apple-wood 0.0001-0.05; the wood's
    own two tones 0.56 at 0.2, 0.1 at 0.1). 0 = off (the original)."""
    dino_shift: float = 0.7
    """DINO cosine minus this gives the pair weight."""
    temperature: float = 0.2
    """Softmax temperature on normalised features in FDA."""
    fda_window: int = 16
    """FDA window side in DINO tokens."""
    fda_windows_per_step: int = 2
    """FDA windows per refine step."""
    fda_max_pairs: int = 16384
    """Pairs per window beyond which pairs are subsampled (bounded cost)."""
    fda_gradient: FdaGradient = "semantic_grid"
    """Parameters FDA trains: 'semantic_grid' (the semantic hash grid: local, per-region features) or
    'all' (also the shared semantic MLP and feature head). With 'all' the x200 pair term is minimised
    fastest through the shared weights, which flattens then collapses every small class into the
    large surfaces around it (bench/semantic_eval: room 82 -> 39 mIoU); the original cannot do that,
    its feature head trains at lr 1e-4 against 0.02 for the grids."""


@dataclass
class QueryConfig:
    max_points: int = 300_000
    """Default cap of the labeled cloud (RViz struggles above ~300k)."""
    voxel_size_m: float = 0.02
    """Voxel size of the cloud downsampling."""
    score_threshold: float = 0.0
    """Default score below which a label is 'unknown' (0 = never unknown)."""
    min_surface_opacity: float = 0.5
    """A mask pixel whose rendered opacity is below this is 'unknown' (255 / 65535), not the nearest
    class: less than half of its ray met a surface, so there is nothing there to label (the sky, the
    space beyond a room the camera never saw). 0 = label every pixel. Cloud points are on a surface by
    construction (measured depth, or rendered pixels of opacity >= field.surface_min_opacity)."""
    decision_rule: DecisionRule = "relevancy"
    """'relevancy': argmax of the cosine min-max normalised per class over one mask / one cloud, the 2D
    teacher's own rule (held-out mIoU, room / clutter seed 1: 88.1 -> 90.5 / 50.2 -> 65.7 against
    'cosine'); every class then wins somewhere, so name what is in the scene. 'cosine': plain argmax of
    the cosine (3D-OVS's evaluation rule), for vocabularies with absent classes. Refined answers always
    use 'cosine': the refine head's RDA training already carries the calibration into the cosine."""
    relevancy_quantile: float = 0.01
    """'relevancy' rule: per class, the cosine is normalised between this quantile and its complement
    over the mask / cloud instead of its exact min and max (0 = min-max, the 2D teacher's rule). The
    exact max is one pixel, often a mixed feature at an edge, and it squashed the small objects' scale
    (desk seed 1 held-out, three fields: min-max 43.5 / 46.8 / 36.1 -> 1 % quantiles 53.3 / 55.1 / 48.1
    mIoU, mug 0 / 20 / 2 -> 51 / 55 / 34; 5 % quantiles 32.8 on the first)."""
    relevancy_quantile_area: float = 0.5
    """'relevancy' rule: per class the quantile is min(relevancy_quantile, this x the class's share of
    keyframe pixels under the 2D teacher's own labels; ``query.class_quantiles``; the teacher's areas on
    at most 16 strided keyframes, ``teachers.relevancy.teacher_class_areas``). A class smaller than the
    quantile had its top set by pixels that are not its own and won about 1 % of every image (desk seed
    1: apple 867 px predicted for 378 true, most on the floor behind it). The teacher's areas were
    within 2x of the held-out truth (apple 0.58 vs 0.49 %, ball 0.46 vs 0.22 %). Tuning scenes' saved
    fields, held-out mIoU with 1 % / this 1.0 / 0.5 / 0.25: desk seed 1 63.6 / 65.5 / 65.7 / 61.5,
    desk seed 3 57.5 / 57.9 / 57.8 / 58.0, table seed 2 71.0 / 73.4 / 74.6 / 73.1. Classes above
    2 x relevancy_quantile of the image are unchanged. 0 = off (one quantile for every class)."""
    relevancy_area_cap: float = 1.5
    """'relevancy' rule, zero-shot: a small class (``relevancy_small_class_area``) may take only pixels
    and points whose cosine with it reaches the cosine of its top (this x its teacher area share, as
    above) of the scene's surface pixels: those of the keyframes the areas are taken on, rendered small
    (``Segmenter._class_floors``). One floor per class for the scene, not per view, so a close-up that
    a mug fills keeps the mug. 0 = off. Why: the teacher's blur spreads a small
    object's relevancy over the surface around it, and min-max normalisation per view makes that halo
    win (desk seed 1: 700 pixels labelled ball for 172 true while the ball's own cosine ranked its
    pixels at AUC 0.997). Measured (bench/results/issue14/tuning_s12, heldout_s12): six tuning fields
    72.4 -> 73.2 at 2.0 (1.5: 73.4, 1.0: 73.0); the 16 held-out fields, same checkpoints, 74.9 -> 75.3
    at 2.0, 10 better, 6 equal, none worse (no class lost more than 0.7 IoU). Floors over the cloud's
    points instead (the first version) removed a found ball on held-out desk 7. On by default since
    session 13 (2.0), the README's tables rerun with it. 2.0 -> 1.0 in session 15, chosen on 21 tuning
    fields trained again at today's other defaults (desk 1 / 3 / 16 / 27 / 35 / 36 x trainer seeds 0-2,
    table 2 x 0-2; bench/results/issue14/tuning_s14/cap, tuning_s15/cap): mean mIoU 73.5 / 73.6 / 73.7
    at 2.0 / 1.5 / 1.0, classes below a teacher IoU >= 20: 4 / 3 / 1 (the halo: as training goes on the
    field labels the table around a small object with it). The cost at 1.0: a class whose field ranks
    its own pixels below some halo loses them (desk 35 trainer seed 2 ball -8.8, desk 3 blue book -5 to
    -7 on all three seeds, still above its teacher). 1.0 -> 1.5 in session 16: with the mask's colour
    filter on (``mask_colour_filter_radius``) the filter removes the halo the tighter cap was for; the
    same 21 tuning fields answered again (tuning_s15/colour_filter/cap_with_filter.txt): mean 77.7 /
    78.4 / 78.3 at 1.0 / 1.5 / 2.0, no class below its teacher at any; 2.0 cost desk 16 trainer seed 2's
    ball 21 IoU, 1.5 6.6."""
    relevancy_small_class_area: float = 0.05
    """Classes below this share of the keyframe pixels (teacher labels) get ``relevancy_area_cap``'s
    floor. Measured with the first, point-based floors: a cap on every class cost the wall up to 29
    IoU (desk seed 3, cap 1.5: 66 -> 37); not re-measured with the pixel floors."""
    mask_colour_filter_radius: float = 0.03
    """Zero-shot masks: each class's decision values are guided-filtered under the mask's rendered colours
    before the argmax (``core/guided_filter.py``, He et al. 2013), window radius this x the mask's short
    side (4 px at 160x120): within a window a label follows the colours, so a small object's label that
    spills a few pixels onto the table around it (the blur the field learned from the teacher) goes back
    to the colour edge, and the object's own pixels keep it. A halo wider than the window stays (0.05
    lost the ball on four tuning fields). Chosen on the 21 tuning fields answered at cap 1.0 (desk 1 / 3
    / 16 / 27 / 35 / 36 x trainer seeds 0-2, table 2 x 0-2; bench/results/issue14/tuning_s15/
    colour_filter), by the highest mean mIoU with no class the teacher finds below it, ties by the
    smaller largest one-class loss: off 73.7 (1 class below its teacher); radius 0.02 / 0.03 / 0.04 /
    0.05 at eps 1e-4: 76.3 / 77.7 / 77.4 / 76.9 (0 / 0 / 0 / 3 below); 0.03 at eps 1e-5: 77.7 (0 below,
    ball +6.6 on average, its largest loss 5.8). The synthetic scenes' surfaces are flat colours, which
    favours a colour guide: re-measure on real images. Masks only: the labeled cloud is not filtered.
    0 = off."""
    mask_colour_filter_eps: float = 1e-5
    """Regulariser of ``mask_colour_filter_radius``'s filter, in squared colour units (0-1 per channel):
    colour steps much larger than its square root are edges the labels keep (1e-3: the ball's largest
    loss 13.0 on the tuning fields, 1e-4: 6.4, 1e-5: 5.8)."""
    use_canonical_negatives: bool = False
    """Also call a point unknown when a canonical negative scores higher than every class."""
    max_classes: int = 1000
    """Longest vocabulary accepted by a query."""
    max_class_name_chars: int = 200
    """Longest class name accepted."""
    refine_max_time_s: float = 10.0
    """Default time budget of a refine burst."""
    refine_max_steps: int = 300
    """Most steps of a refine burst."""
    refine_cache_size: int = 8
    """Refined vocabularies kept."""
    mask_max_side: int = 640
    """Masks are rendered at the camera's resolution, scaled down to at most this side."""
    mask_max_rays: int = 307_200
    """... and to at most this many pixels (rays) in all (640x480): a mask's cost grows with its area."""
    request_max_samples: int = 32_000_000
    """A query whose estimated field evaluations (mask rays x mask samples per ray + refine rays x render
    samples per ray + cloud points, core/request_budget.py) exceed this is refused with the reason; the
    defaults need about 21.6M (640x480 mask, refine burst, 300k points)."""
    chunk_samples: int = 0
    """Field samples per locked chunk of a query's renders (mask, refine set, cloud surface): the longest
    a training step, save or load waits behind a running query. 0 = auto: 32768 on a CPU (about 0.2 s
    here), trainer.render_chunk rays on a GPU, where small chunks would cost launch overhead."""
    mask_samples_per_ray: int = 32
    """Uniform samples per mask ray (labels need the surface, not a photo-quality render)."""
    mask_importance_samples: int = 32
    """Importance samples per mask ray (the reference renderer, also the surface renderer's depth pass
    and fallback)."""
    mask_renderer: MaskRenderer = "surface"
    """'surface': a depth pass at 1/mask_depth_downsample resolution, then a few samples per pixel around
    the surface (rays that find too little fall back to 'reference'); 'reference': every pixel marched
    with mask_samples_per_ray + mask_importance_samples."""
    mask_depth_downsample: int = 8
    """Surface renderer: the depth pass renders 1/this of each side (objects thinner than this many
    pixels can be missed)."""
    mask_depth_pass_samples: int = 128
    """Surface renderer: uniform samples per ray of the depth pass (0 = mask_samples_per_ray). With the
    mask's 32 over a 7.5 m far plane they are 23 cm apart: a 6 cm bottle or 5 cm ball falls between two
    of them, the importance samples follow the floor behind, and every window then samples only the
    floor (desk seed 3, training views: the bottle's rendered depth 0.9-1.3 m behind its surface, 0.015 m
    with depth-guided samples; the field had the bottle, the query stepped over it). 128 puts them ~6 cm
    apart at the cost of the 1/64-size pass only. Held-out mIoU on the tuning scenes' saved fields,
    32 -> 128: desk seed 1 57.5 -> 61.9 (bottle 36.6 -> 54.5), desk seed 3 51.2 -> 55.9, table seed 2
    64.5 -> 67.2 (bench/results/issue14/tuning_s7/REEVAL_*.json)."""
    mask_depth_min_short_side: int = 30
    """Surface renderer: the depth pass's short side is at least this many pixels (mask_depth_downsample
    shrinks for small masks, ``rendering.depth_pass_size``). A depth-pass pixel as wide as an object
    lets it slip between the pass's rays: at 160x120 the 1/8 pass is 20x15 and a 6-8 px bottle or mug is
    one pass pixel. 30 keeps 1/8 at 640x480 (60 rows) and gives 1/4 at 160x120. Same saved fields, with
    ``mask_depth_pass_samples`` 128: desk 1 61.9 -> 63.6, desk 3 55.9 -> 57.5, table 2 67.2 -> 71.0
    (+0.2-0.4 s per 160x120 mask on this CPU). 0 = mask_depth_downsample alone."""
    mask_window_m: float = 0.15
    """Surface renderer: half width (m, along the optical axis) of the sample window around the surface."""
    mask_smooth_samples: int = 3
    """Surface renderer: intervals of the window of a pixel whose surface the depth pass interpolates
    well (most pixels); odd puts one sample on the interpolated surface (3 agreed with the reference as
    well as 5 or 6 at half the cost, bench/query.py; 4 did worse)."""
    training_step_every_s: float = 1.0
    """While a query is being answered, the training loop waits for it (someone is waiting for the
    answer; before, a step slipped in between every two chunks of it and the demo's query took 8-12 s
    instead of ~1-2 s), except for one step let in after every this many seconds of the query, so that a
    long one (a refine burst, a large mask) does not stop training. 0 = training waits for the whole
    answer."""
    point_cache_max_age_steps: int = 0
    """The labeled cloud's points and latents are reused while the field is this many training steps old
    at most (0 = only while no training step ran since; a reset, load or new keyframe always recomputes)."""
    rendered_points_max_age_steps: int = 100
    """The cloud's points of a keyframe without sensor depth (a camera with no depth, or a depth image lost
    in transport) are the field's surface rendered from its camera (``surface.rendered_points``); they are
    reused while the field has trained at most this many steps since, or, if more, half the steps it had
    trained when they were rendered (``surface.RENDERED_POINTS_AGE_FRACTION``). The small classes'
    floor rows (``relevancy_area_cap``: keyframes rendered small) are kept by the same rule. The query
    renders them (not the node's frame thread: frames waiting behind a render lost their TF poses in a
    CI run).
    One keyframe's render was ~1 s of a 2 s query on the CPU (room, 35 keyframes), paid at every query
    after a step, and by every keyframe of a camera without depth."""
    prepare_cloud_geometry: bool = True
    """When the node's frame queue runs empty after a new keyframe, build the cloud's points (sensor depth
    back-projected and thinned; only when every keyframe has depth) on the frame thread, so the next
    query pays only their latents. That
    share took 0.2 s of the demo's query idle but 1.6-2.2 s beside a busy core, where the query then
    missed its 2 s (issue 15). Costs one such build per keyframe, off the query and training threads."""
    overlay_alpha: float = 0.65
    """Class colour opacity in the overlay."""
    score_temperature: float = 0.1
    """Score = softmax over classes of cosine / this (the winning class's probability)."""
    refine_hidden_dim: int = 64
    """Hidden width of the per-vocabulary residual head trained by a refine burst."""
    refine_lr: float = 1e-3
    """Adam learning rate of the refine head."""
    refine_rays: int = 8192
    """Keyframe rays rendered once (field frozen) as the RDA set of a refine burst."""
    refine_windows: int = 0
    """DINO windows rendered once as the FDA set of a refine burst; 0 (default) = the burst is RDA only.
    FDA on the per-vocabulary head collapses it: the head is one global map, so the x200 pair term is
    met by giving every ray the same class distribution (measured, 120x90 held-out views after a
    300-step burst: table 51.2 -> 21.2 mIoU, clutter 63.3 -> 4.9 with 16 windows)."""
    refine_rays_per_step: int = 2048
    """RDA rays per refine step."""
    oom_retries: int = 2
    """A query that runs out of GPU memory is retried this often, each time with half the points and chunk."""


@dataclass
class InputConfig:
    min_focal_factor: float = 0.1
    """fx and fy must be at least this x the image's longer side (0.1: a 157 deg field of view)."""
    max_focal_factor: float = 20.0
    """... and at most this x the longer side (20: a 2.9 deg field of view)."""
    principal_point_margin: float = 0.0
    """cx may lie this fraction of the width outside [0, width] (cy likewise with the height)."""
    depth_min_m: float = 0.05
    """Depth below this is no measurement (pixel invalidated): as field.near_m, nothing nearer is modelled."""
    depth_max_m: float = 100.0
    """Depth above this is no measurement; a depth image with no value in range drops the whole frame."""
    max_position_m: float = 100000.0
    """Largest camera distance from the world origin: beyond 1e5 m float32 rays lose centimetres."""
    max_distance_m: float = 1000.0
    """Largest camera distance from the first accepted pose (a reset or checkpoint load re-anchors)."""
    max_speed_m_s: float = 20.0
    """Largest camera speed between consecutive accepted frames (0 = unchecked) ..."""
    speed_slack_m: float = 1.0
    """... plus this jump on top of it (pose noise, small relocalisations)."""
    quaternion_tolerance: float = 0.01
    """Largest |qx^2+qy^2+qz^2+qw^2 - 1| of an incoming pose (tf2's own normalisation check)."""
    max_image_pixels: int = 16_777_216
    """Compressed images claiming more pixels than this (header, before decoding) are dropped (4096^2)."""


@dataclass
class RosConfig:
    world_frame: str = "map"
    """Fixed frame of poses, clouds and markers."""
    pose_source: PoseSource = "auto"
    """'auto' (TF when tf2_ros imports, else the pose topic), 'tf', 'pose' (PoseStamped) or 'odometry'."""
    pose_tolerance_s: float = 0.05
    """Largest image/pose stamp difference accepted."""
    camera_in_body: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    """Odometry only: camera optical frame in the odometry child frame, x y z qx qy qz qw."""
    compressed: bool = False
    """Subscribe to sensor_msgs/CompressedImage instead of Image."""
    frame_queue_size: int = 16
    """Images waiting for frame assembly (teacher features, keyframe selection); when full, the oldest is
    dropped and counted as superseded. 1 = latest frame wins: at 3 Hz that lost 11 of the demo's 36 views
    while training shared the CPU (a keyframe's teacher features take ~0.2-0.4 s there), 4 still lost 9.
    16 holds 5 s of a 3 Hz camera, 0.5 s of a 30 Hz one (within the depth/label match history)."""
    use_depth: bool = True
    """Subscribe to the depth topic."""
    status_rate_hz: float = 1.0
    """Rate of ~/status."""
    log_every_s: float = 10.0
    """Period of the progress log line."""
    checkpoint_dir: str = "~/.ros/ovs3d"
    """~/save and ~/load may only touch files inside this directory."""
    autosave_every_s: float = 0.0
    """Autosave period (0 = off); also saves on shutdown when > 0."""
    resume: bool = False
    """Load checkpoint_dir/autosave.ckpt at start-up when it exists."""


@dataclass
class Config:
    device: str = "auto"
    """'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1' ..."""
    seed: int = 0
    """Global seed."""
    torch_threads: int = 1
    """CPU threads per torch op (0 = torch's default, all cores). 1 by default: the node already runs
    training, frame assembly and queries on separate threads, and on a busy 2-core machine intra-op
    threads wait on each other (measured up to 20x slower per small op)."""
    keyframes: KeyframeConfig = dataclasses.field(default_factory=KeyframeConfig)
    teacher: TeacherConfig = dataclasses.field(default_factory=TeacherConfig)
    field: FieldConfig = dataclasses.field(default_factory=FieldConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    semantic: SemanticConfig = dataclasses.field(default_factory=SemanticConfig)
    query: QueryConfig = dataclasses.field(default_factory=QueryConfig)
    input: InputConfig = dataclasses.field(default_factory=InputConfig)
    ros: RosConfig = dataclasses.field(default_factory=RosConfig)


# ----------------------------------------------------------------------------------------------
# Flat (dotted) views, for ROS parameters and YAML files


class ConfigError(ValueError):
    """A configuration key or value that does not fit the Config tree."""


_INT_MAX = 2**31 - 1
_FLOAT_MAX = 1e12

# The range of every numeric leaf, checked wherever a value enters the tree (a YAML file, --set, a ROS
# parameter, which also declares it): [0, max] by default (every numeric setting is a size, a rate, a
# weight or a threshold), and here where the code accepts less; each bound is what the reading code
# needs (a query refuses max_points < 1 and thresholds outside [0, 1], a refine a budget <= 0).
RANGES: dict[str, tuple[float, float]] = {
    "query.max_points": (1, 10_000_000),  # 200 MB of cloud; each point is a sample of the request budget
    "query.mask_max_rays": (1, _INT_MAX),
    "query.request_max_samples": (1, _INT_MAX),
    "query.score_threshold": (0.0, 1.0),  # a softmax probability
    "query.min_surface_opacity": (0.0, 1.0),  # a rendered opacity
    "query.relevancy_quantile": (0.0, 0.49),  # below the median: lo < hi
    "query.relevancy_small_class_area": (0.0, 1.0),  # a share of the pixels
    "query.mask_colour_filter_radius": (0.0, 0.5),  # a share of the short side
    "query.mask_colour_filter_eps": (1e-6, 10.0),  # squared colour units
    "semantic.fine_scale_agreement": (-1.0, 1.0),  # a cosine; -1 = off
    "semantic.target_surround_weight": (0.0, 0.95),  # 1 would cancel a uniform surface's target
    "semantic.target_colour_filter_radius": (0.0, 0.5),  # a share of the maps' short side
    "semantic.target_colour_filter_eps": (1e-6, 10.0),  # squared colour units
    "semantic.rare_ray_fraction": (0.0, 1.0),
    "semantic.average_decay": (0.0, 0.9999),  # 1 would never move from the first step
    "semantic.average_power": (0.0, 100.0),
    "semantic.rare_colour_bins": (1, 256),
    "query.refine_max_time_s": (1e-3, _FLOAT_MAX),
    "query.refine_max_steps": (1, _INT_MAX),
    "query.max_classes": (1, 65535),  # 65535 is the unknown label of uint16 outputs
    "query.max_class_name_chars": (1, _INT_MAX),
    "query.mask_max_side": (1, _INT_MAX),
    "query.overlay_alpha": (0.0, 1.0),
    "query.score_temperature": (1e-6, _FLOAT_MAX),
    "query.refine_rays": (1, _INT_MAX),
    "query.refine_rays_per_step": (1, _INT_MAX),
    "trainer.rays_per_step": (1, _INT_MAX),
    "trainer.render_chunk": (1, _INT_MAX),
    "trainer.oom_min_rays_per_step": (1, _INT_MAX),
    "keyframes.capacity": (2, _INT_MAX),  # KeyframeBuffer refuses fewer
    "ros.frame_queue_size": (1, _INT_MAX),
    "keyframes.recent_ray_fraction": (0.0, 1.0),
    "input.min_focal_factor": (1e-6, _FLOAT_MAX),
    "input.max_focal_factor": (1e-6, _FLOAT_MAX),
    "input.depth_max_m": (1e-6, _FLOAT_MAX),
    "input.quaternion_tolerance": (0.0, 1.0),
    "input.max_image_pixels": (1, _INT_MAX),
}


def parameter_range(key: str, value: Any) -> tuple[float, float]:
    """The (lowest, highest) a numeric leaf accepts (the ROS parameter's declared range)."""
    if key in RANGES:
        return RANGES[key]
    return (0, _INT_MAX) if isinstance(value, int) else (0.0, _FLOAT_MAX)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def to_flat_dict(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """``{'trainer.rays_per_step': 2048, ...}`` for every leaf of the tree (tuples become lists)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(to_flat_dict(value, key + "."))
        else:
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


@functools.cache
def _attribute_docstrings() -> dict[tuple[str, str], str]:
    """(class name, field name) -> the string literal written under that field, for every class in
    this module. Python keeps no attribute docstrings at run time, so they are read once from this
    file's own source with ``ast`` (the file ships with the package)."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    docs: dict[tuple[str, str], str] = {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for node, nxt in zip(cls.body, cls.body[1:], strict=False):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) \
                    and isinstance(nxt.value.value, str):
                docs[(cls.name, node.target.id)] = nxt.value.value
    return docs


def field_docs(cls: type = Config, prefix: str = "") -> dict[str, str]:
    """Dotted key -> the docstring written under the field (the ROS parameter description)."""
    written = _attribute_docstrings()
    docs: dict[str, str] = {}
    for name, typ in _field_types(cls).items():
        if dataclasses.is_dataclass(typ):
            docs.update(field_docs(typ, f"{prefix}{name}."))
        elif (cls.__name__, name) in written:
            docs[prefix + name] = written[(cls.__name__, name)]
    return docs


def _coerce(value: Any, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    if origin is Literal:
        allowed = choices(typ)
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(typ)
        inner = args[0] if args else Any
        if len(args) == 2 and args[1] is Ellipsis or len(args) == 1:
            return tuple(_coerce(v, inner, key) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, t, key) for v, t in zip(value, args, strict=True))
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def option_choices(cls: type = Config, prefix: str = "") -> dict[str, tuple[str, ...]]:
    """Dotted key -> its allowed values, for every ``Literal`` option of the tree."""
    out: dict[str, tuple[str, ...]] = {}
    for name, typ in _field_types(cls).items():
        if dataclasses.is_dataclass(typ):
            out.update(option_choices(typ, f"{prefix}{name}."))
        elif typing.get_origin(typ) is Literal:
            out[prefix + name] = choices(typ)
    return out


def validate(cfg: Config) -> Config:
    """Check every leaf of ``cfg`` against its type (choices included) and return it: for a Config
    whose attributes were assigned directly rather than through ``apply_flat``/``from_nested``."""
    _copy(cfg)
    return cfg


def apply_flat(cfg: Config, flat: dict[str, Any]) -> Config:
    """A copy of ``cfg`` with dotted keys set; unknown keys and wrong types raise ConfigError."""
    return from_nested(flat, cfg)


def update_in_place(cfg: Config, flat: dict[str, Any]) -> None:
    """Set dotted keys on ``cfg`` itself, all or none: every holder of ``cfg`` (the node, the Trainer,
    the Segmenter share one) sees the new values on its next read. Validated on a copy first, so a bad
    key or value raises ConfigError and changes nothing."""
    apply_flat(cfg, flat)
    for key, value in flat.items():
        _set(cfg, key, value)


def to_nested(cfg: Any) -> dict[str, Any]:
    """The tree as nested dicts (lists for tuples): the YAML form."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_nested(value)
        else:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def from_nested(d: dict[str, Any], base: Config | None = None) -> Config:
    """Build a Config from nested or dotted dicts, on top of a copy of ``base`` (default: the defaults)."""
    cfg = Config() if base is None else _copy(base)
    for key, value in _flatten(d).items():
        _set(cfg, key, value)
    return cfg


def _copy(cfg: Config) -> Config:
    return _rebuild(Config, to_nested(cfg))


def _rebuild(cls: type, d: dict[str, Any], prefix: str = "") -> Any:
    hints = _field_types(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            kwargs[f.name] = _rebuild(typ, d[f.name], f"{prefix}{f.name}.")
        else:
            kwargs[f.name] = _leaf(d[f.name], typ, prefix + f.name)
    return cls(**kwargs)


def _set(cfg: Config, key: str, value: Any) -> None:
    parts = key.split(".")
    node: Any = cfg
    for p in parts[:-1]:
        if not dataclasses.is_dataclass(node) or p not in {f.name for f in dataclasses.fields(node)}:
            raise ConfigError(f"unknown configuration key '{key}'")
        node = getattr(node, p)
    leaf = parts[-1]
    if not dataclasses.is_dataclass(node) or leaf not in {f.name for f in dataclasses.fields(node)}:
        raise ConfigError(f"unknown configuration key '{key}'")
    typ = _field_types(type(node))[leaf]
    if dataclasses.is_dataclass(typ):
        raise ConfigError(f"'{key}' is a section; set its fields ('{key}.<name>')")
    setattr(node, leaf, _leaf(value, typ, key))


def _leaf(value: Any, typ: Any, key: str) -> Any:
    """``value`` coerced to the leaf's type and, for a number, checked against ``parameter_range``."""
    value = _coerce(value, typ, key)
    if typ in (int, float):
        lo, hi = parameter_range(key, value)
        if not lo <= value <= hi:  # NaN fails too
            bounds = f"[{int(lo)}, {int(hi)}]" if typ is int else f"[{lo:g}, {hi:g}]"
            raise ConfigError(f"{key} must be in {bounds}, got {value!r}")
    return value


def load_yaml(path: str | Path, base: Config | None = None) -> Config:
    """Read a YAML file: a plain nested tree, or a ROS params file (``<node>: ros__parameters: ...``)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    for value in data.values():  # ROS params file: take the first node's ros__parameters
        if isinstance(value, dict) and "ros__parameters" in value:
            data = value["ros__parameters"]
            break
    try:
        return from_nested(data, base)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """``['trainer.rays_per_step=1024', ...]`` (``--set`` on a command line) -> a flat dict, values
    parsed as YAML scalars/lists. No leaf of the config is a mapping, so '{"depth": 2}' stays a
    string (the JSON string field ``arch_overrides``)."""
    flat: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        flat[key.strip()] = value if isinstance(parsed, dict) else parsed
    return flat


def build_config(config_path: str | Path | None = None, sets: list[str] | None = None,
                 teacher: str | None = None) -> Config:
    """Defaults <- YAML file <- ``key=value`` assignments <- ``teacher`` (teacher.kind)."""
    cfg = load_yaml(config_path) if config_path else Config()
    flat = parse_assignments(sets or [])
    if teacher:
        flat["teacher.kind"] = teacher
    return apply_flat(cfg, flat) if flat else cfg


def resolve_device(cfg: Config) -> str:
    """'auto' -> 'cuda' when available, else 'cpu'. Also applies ``cfg.torch_threads``."""
    import torch

    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)

    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{cfg.device}' requested but CUDA is not available")
    return cfg.device
