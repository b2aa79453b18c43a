"""Captioned image crops of randomly generated scenes: the training set of the project's tiny CLIP/DINO.

Each scene is a ``SyntheticScene`` (same analytic renderer as the benchmark presets) whose room and
objects are drawn at random: any of 12 colours or wood on any of 8 object kinds (box, ball, cylinder, cone and
the table preset's mug, fruit, book, table), random textures and sizes, 2-9 objects anywhere on the
floor, random floor and wall materials, cameras at random heights and distances (near to far). This is
a far wider distribution than the three presets, so a model trained on it has to generalise to them.

A crop is captioned from its content: the class covering most of it ("a photo of a red box"). Crops
are square windows of many sizes (as the teacher's 3-scale patches) and boxes around whole objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ovs3d_ros.core.camera import look_at
from ovs3d_ros.data.synthetic import _COLOURS, Material, Primitive, Room, SyntheticScene, intrinsics_for

KINDS = ("box", "ball", "cylinder", "cone", "mug", "fruit", "book", "table")
TEMPLATES = ("{}", "a {}", "a photo of a {}", "a photo of the {}", "a {} in a room", "a picture of a {}")
FLOOR_NAMES = ("floor",)
WALL_NAMES = ("wall",)


COLOURS = (*_COLOURS, "wooden")
"""The presets' 12 colours, and 'wooden': brown wood-grain stripes (the table preset's 'wooden table')."""


def vocabulary() -> list[str]:
    """Every class name the generator can produce: 'floor', 'wall' and '<colour> <kind>'."""
    return sorted(["floor", "wall"] + [f"{c} {k}" for c in COLOURS for k in KINDS])


def _random_material(rng: np.random.Generator, colour: str, scale_range=(0.03, 0.2)) -> Material:
    if colour == "wooden":
        base = np.array((0.55, 0.35, 0.18)) * rng.uniform(0.8, 1.2)
        second = np.clip(base * rng.uniform(0.6, 0.8), 0, 1)
        return Material(tuple(np.clip(base, 0, 1)), tuple(second), "stripes", float(rng.uniform(0.03, 0.09)))
    base = np.array(_COLOURS[colour])
    second = np.clip(base * rng.uniform(0.4, 0.75) + rng.uniform(0.0, 0.12), 0, 1)
    pattern = ("plain", "checker", "stripes", "noise")[int(rng.integers(4))]
    return Material(tuple(base), tuple(second), pattern, float(rng.uniform(*scale_range)))


def _surface_material(rng: np.random.Generator) -> Material:
    """Floor or wall: a desaturated random colour (rooms are rarely saturated), any pattern."""
    base = rng.uniform(0.25, 0.9) * (1 - rng.uniform(0, 0.35, size=3))
    second = np.clip(base * rng.uniform(0.55, 0.85), 0, 1)
    pattern = ("plain", "checker", "stripes", "noise")[int(rng.integers(4))]
    return Material(tuple(base), tuple(second), pattern, float(rng.uniform(0.15, 0.6)))


def _object(kind: str, colour: str, x: float, y: float, z0: float,
            rng: np.random.Generator) -> list[Primitive]:
    name = f"{colour} {kind}"
    mat = _random_material(rng, colour)
    yaw = float(rng.uniform(0, np.pi))
    if kind == "box":
        hx, hy, hz = rng.uniform(0.08, 0.35, size=3)
        return [Primitive("box", name, (x, y, z0 + hz), (hx, hy, hz), mat, yaw)]
    if kind == "book":
        hx, hy, hz = rng.uniform(0.1, 0.18), rng.uniform(0.07, 0.12), rng.uniform(0.015, 0.035)
        return [Primitive("box", name, (x, y, z0 + hz), (hx, hy, hz), mat, yaw)]
    if kind == "ball":
        r = float(rng.uniform(0.12, 0.4))
        return [Primitive("sphere", name, (x, y, z0 + r), (r,), mat)]
    if kind == "fruit":
        r = float(rng.uniform(0.06, 0.11))
        return [Primitive("sphere", name, (x, y, z0 + r), (r,), mat)]
    if kind == "cylinder":
        return [Primitive("cylinder", name, (x, y, z0), (float(rng.uniform(0.1, 0.3)),
                                                         float(rng.uniform(0.3, 1.0))), mat)]
    if kind == "mug":
        r = float(rng.uniform(0.05, 0.09))
        return [Primitive("cylinder", name, (x, y, z0), (r, float(r * rng.uniform(1.8, 2.6))), mat)]
    if kind == "cone":
        return [Primitive("cone", name, (x, y, z0), (float(rng.uniform(0.08, 0.3)),
                                                     float(rng.uniform(0.2, 0.9))), mat)]
    if kind == "table":
        mat = _random_material(rng, colour, (0.03, 0.08))
        hx, hy, top = rng.uniform(0.4, 0.85), rng.uniform(0.3, 0.6), rng.uniform(0.5, 0.8)
        prims = [Primitive("box", name, (x, y, top), (hx, hy, 0.03), mat, yaw)]
        c, s = math.cos(yaw), math.sin(yaw)
        for sx in (-1, 1):
            for sy in (-1, 1):
                lx, ly = sx * (hx - 0.06), sy * (hy - 0.06)
                prims.append(Primitive("box", name, (x + c * lx - s * ly, y + s * lx + c * ly, top / 2),
                                       (0.035, 0.035, top / 2), mat, yaw))
        return prims
    raise ValueError(f"unknown object kind '{kind}'")


@dataclass
class RandomScene(SyntheticScene):
    """A ``SyntheticScene`` with a random room and 2-9 random objects (``preset`` is ignored)."""

    preset: str = "random"

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.room = Room(float(rng.uniform(2.5, 4.5)), float(rng.uniform(2.5, 4.5)),
                         float(rng.uniform(2.5, 3.2)),
                         _surface_material(rng), _surface_material(rng))
        self.objects = []
        placed: list[tuple[float, float, float]] = []
        for _ in range(int(rng.integers(2, 10))):
            kind, colour = KINDS[int(rng.integers(len(KINDS)))], COLOURS[int(rng.integers(len(COLOURS)))]
            foot = 0.9 if kind == "table" else 0.4
            for _try in range(50):
                x, y = rng.uniform(-1.6, 1.6, size=2)
                if all(math.hypot(x - px, y - py) > foot + pr for px, py, pr in placed):
                    break
            placed.append((float(x), float(y), foot))
            self.objects += _object(kind, colour, float(x), float(y), 0.0, rng)
        self.center, self.orbit_radius, self.height_range = np.array([0, 0, 0.3]), 2.4, (0.4, 2.2)
        self.class_names = sorted({"floor", "wall"} | {p.class_name for p in self.objects})
        self._class_index = {n: i for i, n in enumerate(self.class_names)}

    def random_view(self, rng: np.random.Generator) -> np.ndarray:
        """A camera 0.4 m to 2.5 m from an object (or, one time in five, any point near the objects),
        looking at it."""
        if rng.uniform() < 0.8:
            target = np.asarray(self.objects[int(rng.integers(len(self.objects)))].center)
            target = target + rng.normal(0, 0.1, 3)
        else:
            target = np.array([*rng.uniform(-1.2, 1.2, size=2), rng.uniform(0.0, 0.6)])
        dist, az = rng.uniform(0.4, 2.5), rng.uniform(0, 2 * np.pi)
        z = float(np.clip(target[2] + rng.uniform(0.2, 1.8), 0.2, self.room.height - 0.2))
        eye = target + np.array([dist * math.cos(az), dist * math.sin(az), 0.0])
        eye[:2] = np.clip(eye[:2], -np.array([self.room.half_x, self.room.half_y]) + 0.2,
                          np.array([self.room.half_x, self.room.half_y]) - 0.2)
        eye[2] = z
        return look_at(eye, target)


def _square_crops(labels: np.ndarray, rng: np.random.Generator,
                  count: int) -> list[tuple[int, int, int, int]]:
    """Square windows (left, top, right, bottom), each centred near a pixel of a class drawn uniformly
    among those visible (so small objects get crops too), 0.25-0.9 times the class region's extent
    (clamped to 1/12..1/2 of the short side)."""
    h, w = labels.shape
    regions = [np.nonzero(labels == c) for c in np.unique(labels)]
    boxes = []
    for _ in range(count):
        ys, xs = regions[int(rng.integers(len(regions)))]
        extent = max(xs.max() - xs.min(), ys.max() - ys.min()) + 1
        side = int(np.clip(extent * rng.uniform(0.25, 0.9), max(2, min(h, w) // 12), min(h, w) // 2))
        k = int(rng.integers(len(ys)))
        left = int(np.clip(xs[k] - side // 2 + rng.integers(-side // 8, side // 8 + 1), 0, w - side))
        top = int(np.clip(ys[k] - side // 2 + rng.integers(-side // 8, side // 8 + 1), 0, h - side))
        boxes.append((left, top, left + side, top + side))
    return boxes


def _object_boxes(labels: np.ndarray, rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """A loose box around each class region big enough to see (>= 16 pixels)."""
    h, w = labels.shape
    boxes = []
    for c in np.unique(labels):
        ys, xs = np.nonzero(labels == c)
        if len(ys) < 16:
            continue
        pad = rng.uniform(0.0, 0.3)
        bw, bh = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        boxes.append((max(0, int(xs.min() - pad * bw)), max(0, int(ys.min() - pad * bh)),
                      min(w, int(xs.max() + 1 + pad * bw)), min(h, int(ys.max() + 1 + pad * bh))))
    return boxes


@dataclass
class CaptionedCrops:
    """``images`` (N, S, S, 3) uint8 crops, ``classes`` (N,) index into ``class_names``."""

    images: np.ndarray
    classes: np.ndarray
    class_names: list[str]


def crop_to(rgb: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """The box of ``rgb`` resized to size x size (bicubic; CLIP's preprocessing of a square crop)."""
    return np.asarray(Image.fromarray(rgb[box[1]:box[3], box[0]:box[2]]).resize((size, size), Image.BICUBIC))


def majority_class(labels: np.ndarray, box: tuple[int, int, int, int], min_share: float) -> int | None:
    """The label covering at least ``min_share`` of the box, else None (a mixed crop has no caption)."""
    counts = np.bincount(labels[box[1]:box[3], box[0]:box[2]].ravel())
    best = int(counts.argmax())
    return best if counts[best] >= min_share * counts.sum() else None


def generate_crops(seed: int, scenes: int, views_per_scene: int = 3, crop_size: int = 32,
                   crops_per_view: int = 12, min_share: float = 0.6) -> CaptionedCrops:
    """Captioned crops of ``scenes`` random scenes (seeds ``seed .. seed + scenes - 1``), deterministic."""
    names = vocabulary()
    index = {n: i for i, n in enumerate(names)}
    rng = np.random.default_rng(seed)
    images, classes = [], []
    for s in range(scenes):
        scene = RandomScene(seed=seed + s, supersample=2)
        for _ in range(views_per_scene):
            width = int(rng.choice([48, 64, 80, 96]))
            intr = intrinsics_for(width, width * 3 // 4, float(rng.uniform(45, 75)))
            rgb, _, labels = scene.render(intr, scene.random_view(rng))
            per_class: dict[int, int] = {}
            for box in _square_crops(labels, rng, crops_per_view) + _object_boxes(labels, rng):
                c = majority_class(labels, box, min_share)
                # at most 2 crops of one class per view: floor and wall would otherwise be most crops
                if c is None or per_class.get(c, 0) >= 2:
                    continue
                per_class[c] = per_class.get(c, 0) + 1
                images.append(crop_to(rgb, box, crop_size))
                classes.append(index[scene.class_names[c]])
    return CaptionedCrops(np.stack(images), np.asarray(classes, dtype=np.int64), names)


def images_for_self_supervision(seed: int, scenes: int, size: int = 64) -> np.ndarray:
    """(N, size*3//4, size, 3) uint8 whole views of random scenes (no labels used), for the tiny DINO."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(scenes):
        scene = RandomScene(seed=seed + s, supersample=2)
        intr = intrinsics_for(size, size * 3 // 4, float(rng.uniform(45, 75)))
        out.append(scene.render(intr, scene.random_view(rng))[0])
    return np.stack(out)
