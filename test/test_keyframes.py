"""Keyframe selection, capacity and replacement, ray sampling (held-out pixels, recent fraction,
teacher targets), thread safety and memory accounting."""

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ovs3d_ros.config import KeyframeConfig
from ovs3d_ros.core.camera import generate_rays, look_at
from ovs3d_ros.core.frame import Frame, Intrinsics
from ovs3d_ros.core.keyframes import KeyframeBuffer, KeyframeError, _bilinear_features, sharpness

INTR = Intrinsics(fx=30.0, fy=30.0, cx=16.0, cy=12.0, width=32, height=24)


def make_frame(
    x: float = 0.0, yaw_deg: float = 0.0, seed: int = 0, depth: bool = True, blur: bool = False
) -> Frame:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    if blur:
        rgb = np.full((24, 32, 3), 128, dtype=np.uint8)
    yaw = np.radians(yaw_deg)
    pose = look_at([x, 0.0, 0.0], [x + np.cos(yaw), np.sin(yaw), 0.0])
    d = np.full((24, 32), 2.0, dtype=np.float32) if depth else None
    return Frame(rgb=rgb, intrinsics=INTR, pose=pose, depth=d, stamp=float(seed))


def test_selection_by_translation_rotation_and_sharpness():
    buf = KeyframeBuffer(KeyframeConfig(min_translation_m=0.2, min_rotation_deg=10.0, min_sharpness=5.0))
    assert buf.should_insert(make_frame())[0]
    buf.insert(make_frame())
    assert not buf.should_insert(make_frame(x=0.1, yaw_deg=5.0))[0]  # neither moved nor turned enough
    assert buf.should_insert(make_frame(x=0.25))[0]  # moved
    assert buf.should_insert(make_frame(yaw_deg=15.0))[0]  # turned
    ok, reason = buf.should_insert(make_frame(x=5.0, blur=True))
    assert not ok and "blurry" in reason
    assert sharpness(make_frame(blur=True).rgb) < 1.0 < sharpness(make_frame().rgb)


def test_capacity_replacement_keeps_coverage_and_newest():
    buf = KeyframeBuffer(KeyframeConfig(capacity=4, min_translation_m=0.01, min_rotation_deg=1.0))
    for i, x in enumerate([0.0, 1.0, 2.0, 2.05]):  # 2.0 and 2.05 are near-duplicates
        buf.insert(make_frame(x=x, seed=i))
    buf.insert(make_frame(x=3.0, seed=9))  # over capacity: evict one of the redundant pair, not the newest
    xs = sorted(round(float(kf.pose[0, 3]), 2) for kf in buf.keyframes)
    assert len(buf) == 4 and 3.0 in xs and 0.0 in xs and 1.0 in xs
    assert (2.0 in xs) != (2.05 in xs) and buf.evicted == 1
    for i in range(20):  # never grows beyond capacity; the newest always survives
        kf = buf.insert(make_frame(x=10.0 + i, seed=i))
        assert len(buf) == 4 and buf.keyframes[-1] is kf
    per_kf = 24 * 32 * 3 + 24 * 32 * 4
    assert buf.nbytes() == 4 * per_kf


def test_sample_never_returns_held_out_pixels_and_matches_camera_rays():
    buf = KeyframeBuffer(KeyframeConfig(holdout_every=4, min_translation_m=0.0))
    frames = [make_frame(x=float(i), seed=i) for i in range(3)]
    for f in frames:
        buf.insert(f)
    batch = buf.sample(4000, torch.Generator().manual_seed(0))
    u, v = batch.pixels[:, 0], batch.pixels[:, 1]
    assert not bool(((u % 4 == 0) & (v % 4 == 0)).any())
    assert bool((u >= 0).all() & (u < 32).all() & (v >= 0).all() & (v < 24).all())
    # colours and rays are those of the right keyframe pixel
    for uid in range(3):
        rows = (batch.keyframe_uids == uid).nonzero().squeeze(1)[:50]
        px = batch.pixels[rows]
        expected = torch.from_numpy(frames[uid].rgb)[px[:, 1], px[:, 0]].float() / 255
        torch.testing.assert_close(batch.rgb[rows], expected)
        o, d = generate_rays(INTR, frames[uid].pose, px)
        torch.testing.assert_close(batch.directions[rows], d)
        torch.testing.assert_close(batch.origins[rows], o)
    assert torch.allclose(batch.depth, torch.full_like(batch.depth, 2.0))
    hold = buf.holdout_batch(500, torch.Generator().manual_seed(1))
    assert bool(((hold.pixels % 4) == 0).all())


def test_recent_fraction_without_forgetting():
    cfg = KeyframeConfig(recent_count=2, recent_ray_fraction=0.5, min_translation_m=0.0)
    buf = KeyframeBuffer(cfg)
    for i in range(10):
        buf.insert(make_frame(x=float(i), seed=i))
    uids = buf.sample(10000, torch.Generator().manual_seed(0)).keyframe_uids
    recent_share = float((uids >= 8).float().mean())
    assert abs(recent_share - (0.5 + 0.5 * 2 / 10)) < 0.03
    assert set(uids.tolist()) == set(range(10))  # every keyframe still sampled


def test_clip_targets_bilinear_like_grid_sample_and_only_for_feature_rays():
    torch.manual_seed(0)
    clip = F.normalize(torch.randn(3, 8, 6, 8), dim=1).half()
    u = torch.randint(0, 32, (300,))
    v = torch.randint(0, 24, (300,))
    ours = _bilinear_features(clip, u, v, 32, 24)
    grid = torch.stack(((u + 0.5) / 32 * 2 - 1, (v + 0.5) / 24 * 2 - 1), dim=-1)[None, None].float()
    ref = F.grid_sample(clip.reshape(1, 24, 6, 8).float(), grid, align_corners=False, padding_mode="border")
    torch.testing.assert_close(ours, ref.reshape(3, 8, -1).permute(2, 0, 1), rtol=1e-3, atol=1e-3)

    buf = KeyframeBuffer(KeyframeConfig(min_translation_m=0.0))
    buf.insert(make_frame(), clip=clip)
    batch = buf.sample(100, torch.Generator().manual_seed(0), feature_rays=40)
    assert batch.clip_targets.shape == (40, 3, 8)
    expected = _bilinear_features(clip, batch.pixels[:40, 0], batch.pixels[:40, 1], 32, 24)
    torch.testing.assert_close(batch.clip_targets, expected)
    assert buf.keyframes[0].clip.dtype == torch.float16
    assert buf.nbytes() == 24 * 32 * 7 + clip.numel() * 2


def test_errors_and_state_round_trip():
    with pytest.raises(KeyframeError, match="capacity"):
        KeyframeBuffer(KeyframeConfig(capacity=1))
    buf = KeyframeBuffer(KeyframeConfig(min_translation_m=0.0))
    with pytest.raises(KeyframeError, match="empty"):
        buf.sample(4, torch.Generator())
    buf.insert(make_frame(seed=3, depth=False))
    other = KeyframeBuffer(KeyframeConfig(min_translation_m=0.0))
    other.load_state_dict(buf.state_dict())
    assert torch.equal(other.keyframes[0].rgb, buf.keyframes[0].rgb) and other.keyframes[0].depth is None
    assert other.keyframes[0].intrinsics == INTR
    with pytest.raises(KeyframeError, match="malformed"):
        other.load_state_dict({"keyframes": [{"uid": 0}]})


def test_concurrent_insert_and_sample():
    buf = KeyframeBuffer(KeyframeConfig(capacity=5, min_translation_m=0.0))
    buf.insert(make_frame())
    errors = []

    def producer():
        try:
            for i in range(40):
                buf.insert(make_frame(x=float(i), seed=i))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=producer)
    thread.start()
    gen = torch.Generator().manual_seed(0)
    while thread.is_alive():
        batch = buf.sample(64, gen)
        assert len(batch) == 64 and len(buf) <= 5
    thread.join()
    assert not errors and len(buf) == 5


def test_batched_clip_targets_equal_per_keyframe_bilinear_for_mixed_map_sizes():
    """The vectorised many-keyframe gather (fast path) against the one-keyframe bilinear reference."""
    torch.manual_seed(1)
    buf = KeyframeBuffer(KeyframeConfig(min_translation_m=0.0, min_rotation_deg=0.0, capacity=8))
    maps = [F.normalize(torch.randn(3, 8, h, w), dim=1).half() for h, w in ((6, 8), (3, 4), (24, 32), (6, 8))]
    for i, clip in enumerate(maps):
        buf.insert(make_frame(x=0.3 * i, seed=i), clip=clip)
    assert all(kf.clip.permute(2, 3, 0, 1).is_contiguous() for kf in buf.keyframes)  # stored pixel-major
    batch = buf.sample(400, torch.Generator().manual_seed(0), feature_rays=300)
    by_uid = {kf.uid: kf for kf in buf.keyframes}
    for uid in batch.keyframe_uids[:300].unique().tolist():
        rows = (batch.keyframe_uids[:300] == uid).nonzero().squeeze(1)
        px = batch.pixels[rows]
        expected = _bilinear_features(by_uid[uid].clip.contiguous(), px[:, 0], px[:, 1], 32, 24)
        torch.testing.assert_close(batch.clip_targets[rows], expected, rtol=0, atol=2e-3)


def test_snapshot_is_a_copy_that_never_shows_more_than_capacity_under_concurrent_inserts():
    buf = KeyframeBuffer(KeyframeConfig(capacity=3, min_translation_m=0.0))
    first = buf.insert(make_frame())
    snap = buf.snapshot()
    assert snap == [first] and snap is not buf.keyframes
    buf.insert(make_frame(x=1.0, seed=1))
    assert snap == [first] and len(buf.snapshot()) == 2  # the earlier copy does not change
    errors, sizes = [], []

    def producer():
        try:
            for i in range(30):
                buf.insert(make_frame(x=2.0 + i, seed=i))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=producer)
    thread.start()
    while thread.is_alive():
        sizes.append(len(buf.snapshot()))  # insert appends then evicts: never capacity + 1
    thread.join()
    assert not errors and max(sizes, default=3) <= 3
    assert [kf.uid for kf in buf.snapshot()] == [kf.uid for kf in buf.keyframes]
