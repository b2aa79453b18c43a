"""Rare-colour feature rays (``semantic.rare_ray_fraction``): each colour bin gets the same sampling
mass whatever its size, the buffer puts the rare rays on a small object far more often than uniform
sampling does (never on held-out pixels), and a fraction of 0 leaves sampling unchanged."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ovs3d_ros.config import KeyframeConfig
from ovs3d_ros.core.camera import look_at
from ovs3d_ros.core.frame import Frame, Intrinsics
from ovs3d_ros.core.keyframes import KeyframeBuffer
from ovs3d_ros.core.rare_rays import colour_bins, sample_rare_pixels

INTR = Intrinsics(fx=30.0, fy=30.0, cx=16.0, cy=12.0, width=32, height=24)


def table_with_ball() -> np.ndarray:
    """(24, 32, 3): a brown 'table' with a 2x3 orange 'ball' at rows 10-11, columns 20-22."""
    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[:] = (120, 80, 45)
    rgb[10:12, 20:23] = (200, 100, 10)
    return rgb


def on_ball(pixels: torch.Tensor) -> float:
    u, v = pixels[:, 0], pixels[:, 1]
    return ((u >= 20) & (u <= 22) & (v >= 10) & (v <= 11)).float().mean().item()


def test_each_colour_bin_gets_the_same_mass_whatever_its_size():
    groups = colour_bins(torch.from_numpy(table_with_ball()), bins=8)
    assert groups.counts.tolist() == [6, 762] or groups.counts.tolist() == [762, 6]
    assert sorted(groups.order.tolist()) == list(range(24 * 32))  # every pixel once
    u, v = sample_rare_pixels(groups, 32, 4000, torch.Generator().manual_seed(0))
    assert 0.46 < on_ball(torch.stack([u, v], 1)) < 0.54
    ball = [(int(a), int(b)) for a, b in zip(u, v, strict=True) if 20 <= a <= 22 and 10 <= b <= 11]
    assert len(set(ball)) == 6  # every pixel of the small bin is drawn
    assert groups.nbytes() == 24 * 32 * 4 + 2 * 2 * 8
    with pytest.raises(ValueError, match="rare_colour_bins"):
        colour_bins(torch.from_numpy(table_with_ball()), bins=0)


def test_pixels_of_a_bin_are_drawn_uniformly():
    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[:, 16:] = 255  # two bins of 384 pixels each
    groups = colour_bins(torch.from_numpy(rgb), bins=4)
    u, v = sample_rare_pixels(groups, 32, 20000, torch.Generator().manual_seed(3))
    hits = torch.bincount(v * 32 + u, minlength=24 * 32).float()
    assert bool((hits > 0).all())
    assert float(hits.std() / hits.mean()) < 0.25  # ~26 draws per pixel: Poisson spread 0.2


def frame(rgb: np.ndarray) -> Frame:
    return Frame(rgb=rgb, intrinsics=INTR, pose=look_at([0.0, 0, 0], [1.0, 0, 0]),
                 depth=np.full((24, 32), 2.0, np.float32))


def test_rare_rays_hit_a_small_object_far_more_often_and_zero_changes_nothing():
    clip = F.normalize(torch.randn(3, 8, 6, 8), dim=1).half()
    buf = KeyframeBuffer(KeyframeConfig(min_translation_m=0.0, holdout_every=4))
    buf.insert(frame(table_with_ball()), clip=clip)
    uniform = buf.sample(4000, torch.Generator().manual_seed(1), feature_rays=2000)
    rare = buf.sample(4000, torch.Generator().manual_seed(1), feature_rays=2000, rare_rays=1000)
    assert on_ball(uniform.pixels[:1000]) < 0.03  # 6 pixels of 768
    assert 0.4 < on_ball(rare.pixels[:1000]) < 0.6  # half the mass: one of two colours
    assert on_ball(rare.pixels[1000:2000]) < 0.03  # the other feature rays stay uniform
    u, v = rare.pixels[:, 0], rare.pixels[:, 1]
    assert not bool(((u % 4 == 0) & (v % 4 == 0)).any())  # held-out pixels stay held out
    assert rare.clip_targets.shape == (2000, 3, 8)
    assert buf.nbytes() == 24 * 32 * 7 + clip.numel() * 2 + buf.keyframes[0].colour_bins(8).nbytes()
    expected = torch.from_numpy(table_with_ball())[v[:1000], u[:1000]].float() / 255
    torch.testing.assert_close(rare.rgb[:1000], expected)
    again = buf.sample(4000, torch.Generator().manual_seed(1), feature_rays=2000, rare_rays=0)
    torch.testing.assert_close(again.pixels, uniform.pixels)
