"""Trainer on a tiny synthetic scene: losses fall, depth guidance, semantic distillation with a teacher
test double, the extra_losses hook, concurrency (add_frame / render while a thread trains), surface."""

import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from waiting import wait_until  # noqa: E402 - test/ is on sys.path

from ovs3d_ros.config import Config
from ovs3d_ros.core.frame import FrameError
from ovs3d_ros.core.surface import SurfaceError, extract_surface
from ovs3d_ros.core.teachers.base import TeacherFeatures
from ovs3d_ros.core.trainer import Trainer, TrainerError
from ovs3d_ros.data.synthetic import SyntheticScene


def tiny_config() -> Config:
    cfg = Config()
    f = cfg.field
    f.num_levels, f.log2_hashmap_size, f.max_resolution, f.hidden_dim = 6, 12, 128, 32
    f.semantic_num_levels, f.semantic_log2_hashmap_size, f.semantic_max_resolution = 2, 8, 32
    f.semantic_hidden_dim, f.semantic_latent_dim, f.clip_dim = 16, 8, 16
    f.occupancy_resolution, f.occupancy_update_every, f.occupancy_warmup_steps = 16, 5, 10
    t = cfg.trainer
    t.rays_per_step, t.samples_per_ray, t.importance_samples = 256, 16, 8
    t.depth_samples, t.depth_uniform_samples = 6, 6
    t.render_samples_per_ray, t.render_importance_samples = 16, 8
    t.semantic_start_step, t.holdout_eval_every, t.holdout_eval_rays = 5, 10, 64
    t.lr_grid, t.lr_mlp = 3e-2, 5e-3
    cfg.semantic.rays_per_step = 64
    cfg.keyframes.capacity, cfg.keyframes.min_translation_m = 6, 0.05
    return cfg


class RandomTeacherDouble:
    """Test double with the teacher interface: fixed random unit CLIP-like maps per frame, no DINO."""

    embed_dim = 16

    def extract(self, frame) -> TeacherFeatures:
        gen = torch.Generator().manual_seed(int(frame.stamp * 10))
        clip = F.normalize(torch.randn(3, 16, frame.height // 4, frame.width // 4, generator=gen), dim=1)
        return TeacherFeatures(clip=clip.half(), dino=None)


@pytest.fixture(scope="module")
def scene():
    return SyntheticScene(preset="table", seed=0).make_frames(6, 1, 32, 24)


def test_training_reduces_losses_and_renders(scene):
    torch.manual_seed(0)
    trainer = Trainer(tiny_config(), "cpu")
    with pytest.raises(TrainerError, match="no keyframes"):
        trainer.step()
    assert all(trainer.add_frame(f) for f in scene.train_frames)
    first = trainer.step()
    assert {"rgb", "depth", "loss"} <= set(first) and "feature" not in first
    for _ in range(40):
        last = trainer.step()
    assert last["rgb"] < first["rgb"] and last["depth"] < first["depth"]
    stats = trainer.stats()
    assert stats["iterations"] == 41 and stats["keyframes"] == 6 and np.isfinite(stats["psnr"])
    assert stats["lr"]["grid"] < tiny_config().trainer.lr_grid  # exponential decay is running
    assert int(trainer.occupancy.updates) == 41 // 5 and float(trainer.occupancy.opacity.std()) > 0
    test = scene.frames[scene.test_indices[0]]
    out = trainer.render(test.intrinsics, test.pose, width=16, height=12)
    assert out["rgb"].shape == (12, 16, 3) and out["feature"].shape == (12, 16, 16)
    assert out["selection"].shape == (12, 16, 3)


def test_frame_validation_and_duplicate_rejection(scene):
    trainer = Trainer(tiny_config(), "cpu")
    assert trainer.add_frame(scene.train_frames[0])
    assert not trainer.add_frame(scene.train_frames[0])  # same pose: not a keyframe
    bad = scene.train_frames[1]
    bad = type(bad)(**{**bad.__dict__, "depth": bad.depth.astype(np.float64)})
    with pytest.raises(FrameError, match="float32"):
        trainer.add_frame(bad)
    assert trainer.stats()["frames_rejected"] == 1


def test_stats_count_the_keyframes_that_came_with_depth(scene):
    trainer = Trainer(tiny_config(), "cpu")
    first, second, third = scene.train_frames[:3]
    assert trainer.add_frame(first)
    assert trainer.add_frame(type(second)(**{**second.__dict__, "depth": None}))  # its depth was lost
    no_valid_pixel = np.zeros_like(third.depth)  # 0 = no measurement anywhere
    assert trainer.add_frame(type(third)(**{**third.__dict__, "depth": no_valid_pixel}))
    stats = trainer.stats()
    assert stats["keyframes"] == 3 and stats["keyframes_with_depth"] == 1


def test_scene_bounds_from_first_keyframe(scene):
    trainer = Trainer(tiny_config(), "cpu")
    trainer.add_frame(scene.train_frames[0])
    stats = trainer.stats()
    cam = scene.train_frames[0].pose[:3, 3]
    center = np.array(stats["scene_center"])
    # the camera lies inside the linear region, the centre is in front of it
    assert np.linalg.norm(cam - center) < stats["scene_radius"]
    assert np.dot(center - cam, scene.train_frames[0].pose[:3, 2]) > 0
    # renders without depth stop a margin beyond the deepest observed depth, not at field.far_m
    far = trainer.current_render_settings().far
    deepest = float(scene.train_frames[0].depth.max())
    assert far < trainer.cfg.field.far_m and deepest < far <= 1.25 * deepest + 1e-6


def test_keyframe_depth_marks_its_occupancy_cells(scene):
    """The cells of a keyframe's measured depth points stay occupied (field.occupancy_keep_measured)."""
    from ovs3d_ros.core.trainer import _depth_points

    frame = scene.train_frames[0]
    trainer = Trainer(tiny_config(), "cpu")
    trainer.add_frame(frame)
    pts = torch.as_tensor(_depth_points(frame), dtype=torch.float32)
    cells = trainer.occupancy.cell_index(trainer.field.contract(pts))
    assert bool(trainer.occupancy.measured[cells].all())
    assert int(trainer.occupancy.measured.sum()) == int(cells.unique().numel())
    cfg = tiny_config()
    cfg.field.occupancy_keep_measured = False
    off = Trainer(cfg, "cpu")
    off.add_frame(frame)
    assert not bool(off.occupancy.measured.any())


def test_semantic_distillation_and_extra_loss_hook(scene):
    trainer = Trainer(tiny_config(), "cpu", teacher=RandomTeacherDouble())
    for f in scene.train_frames[:3]:
        trainer.add_frame(f)
    assert trainer.keyframes.keyframes[0].clip.dtype == torch.float16
    seen = []

    def hook(tr, batch, outputs):
        seen.append((len(batch), None if outputs.feature is None else outputs.feature.shape))
        return {"hook_term": 0.5 * outputs.opacity.mean()}

    trainer.extra_losses.append(hook)
    results = [trainer.step() for _ in range(8)]
    assert "feature" not in results[0] and "feature" in results[-1]  # starts at semantic_start_step = 5
    assert "feature_residual" not in results[0] and "feature_residual" in results[-1]  # with it
    assert all("hook_term" in r for r in results) and seen[0] == (256, None) and seen[-1][1] == (64, 16)
    before = trainer.field.semantic_encoding.table.detach().clone()
    trainer.step()
    assert not torch.equal(before, trainer.field.semantic_encoding.table.detach())


def test_teacher_dimension_mismatch_is_reported():
    cfg = tiny_config()
    cfg.field.clip_dim = 32
    with pytest.raises(TrainerError, match="clip_dim"):
        Trainer(cfg, "cpu", teacher=RandomTeacherDouble())


def test_add_frame_and_render_while_training_thread_runs(scene):
    trainer = Trainer(tiny_config(), "cpu")
    trainer.add_frame(scene.train_frames[0])
    stop, paused = threading.Event(), threading.Event()
    errors = []

    def loop():
        try:
            trainer.run(stop, paused)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        for frame in scene.train_frames[1:]:
            trainer.add_frame(frame)
            time.sleep(0.05)
        assert wait_until(lambda: trainer.stats()["iterations"] > 0, 120.0)  # the loop has stepped
        steps_before = trainer.stats()["iterations"]
        test = scene.frames[scene.test_indices[0]]
        out = trainer.render(test.intrinsics, test.pose, width=8, height=6, semantics=False)
        assert torch.isfinite(out["rgb"]).all()
        paused.set()
        # the step in flight (or one that passed the pause check just before) finishes; then the loop idles
        trainer.yield_to_step(timeout_s=120.0)
        frozen = trainer.stats()["iterations"]
        time.sleep(0.3)
        assert trainer.stats()["iterations"] == frozen  # paused: no steps
        paused.clear()
        # resumed: it steps again (waited for, not assumed to happen before the stop below)
        assert wait_until(lambda: trainer.stats()["iterations"] > frozen, 120.0)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors and not thread.is_alive()
    assert trainer.stats()["keyframes"] == 6 and trainer.stats()["iterations"] > steps_before > 0


def test_surface_extraction(scene):
    trainer = Trainer(tiny_config(), "cpu")
    with pytest.raises(SurfaceError, match="no keyframes"):
        extract_surface(trainer, max_points=100, voxel_size_m=0.05)
    for f in scene.train_frames:
        trainer.add_frame(f)
    trainer.train(30)
    cloud = extract_surface(trainer, max_points=50, voxel_size_m=0.02, downsample=4, min_opacity=0.5)
    assert 0 < len(cloud) <= 50 and cloud.xyz.dtype == np.float32 and cloud.rgb.dtype == np.uint8
    latent = trainer.field.semantic_at(torch.from_numpy(cloud.xyz))
    feature = trainer.field.expand_feature(latent, torch.ones(len(cloud)))
    assert feature.shape == (len(cloud), 16)


def test_semantics_start_on_running_psnr_or_at_the_latest_step_and_stay_on(scene):
    def first_semantic_step(cfg, steps=12):
        trainer = Trainer(cfg, "cpu", teacher=RandomTeacherDouble())
        for f in scene.train_frames[:3]:
            trainer.add_frame(f)
        results = [trainer.step() for _ in range(steps)]
        on = ["feature" in r for r in results]
        assert on == sorted(on), on  # once on, it stays on
        return on.index(True) if any(on) else None, trainer

    cfg = tiny_config()
    cfg.trainer.semantic_start_step, cfg.trainer.semantic_start_psnr = 10**6, 1.0  # any PSNR qualifies
    first, trainer = first_semantic_step(cfg)
    assert first == 1  # the running PSNR exists after the first step
    assert trainer.stats()["semantic_iterations"] == 11 and trainer.running_psnr > 1.0
    cfg.trainer.semantic_start_step, cfg.trainer.semantic_start_psnr = 7, 99.0  # never reached
    assert first_semantic_step(cfg)[0] == 7
    cfg.trainer.semantic_start_step, cfg.trainer.semantic_start_psnr = 10**6, 99.0
    assert first_semantic_step(cfg)[0] is None
    # the running PSNR follows the batches' PSNR (an exponential mean)
    cfg.trainer.semantic_start_psnr = 0.0  # 0: from the very first step
    first, trainer = first_semantic_step(cfg, steps=30)
    assert first == 0
    assert abs(trainer.running_psnr - trainer.last_losses["psnr_batch"]) < 5.0


def test_the_residual_feature_term_is_off_at_weight_zero(scene):
    cfg = tiny_config()
    cfg.semantic.feature_residual_weight = 0.0
    trainer = Trainer(cfg, "cpu", teacher=RandomTeacherDouble())
    for f in scene.train_frames[:3]:
        trainer.add_frame(f)
    results = [trainer.step() for _ in range(8)]
    assert "feature" in results[-1] and not any("feature_residual" in r for r in results)


def test_keyframes_hold_colour_guided_targets_when_the_filter_is_on(scene):
    """``semantic.target_colour_filter_radius`` takes effect where targets are stored: the keyframe's
    CLIP maps are the teacher's filtered under the frame's colours (``colour_guided_maps``); off, the
    teacher's own."""
    from ovs3d_ros.core.semantic_targets import colour_guided_maps

    frame, teacher = scene.train_frames[0], RandomTeacherDouble()
    raw = teacher.extract(frame).clip
    for radius in (0.0, 0.2):
        cfg = tiny_config()
        cfg.semantic.target_colour_filter_radius = radius
        trainer = Trainer(cfg, "cpu", teacher=teacher)
        assert trainer.add_frame(frame)
        stored = trainer.keyframes.snapshot()[0].clip
        expected = colour_guided_maps(raw, frame.rgb, radius, cfg.semantic.target_colour_filter_eps)
        torch.testing.assert_close(stored, expected)
        assert torch.equal(stored, raw) == (radius == 0.0)
