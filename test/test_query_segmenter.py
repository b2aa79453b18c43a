"""The Segmenter on a real (tiny) Trainer with the synthetic teacher: zero-shot and refined queries,
masks for any camera, unknowns, edge cases, the refine cache, RDA/FDA as trainer extra losses, and a
query while a training thread runs."""

import threading

import numpy as np
import pytest
import torch
from tiny_config import tiny_config  # noqa: E402 - test/ is on sys.path

from ovs3d_ros.config import apply_flat
from ovs3d_ros.core.query import Segmenter
from ovs3d_ros.core.semantic_alignment import SemanticAlignment
from ovs3d_ros.core.teachers import build_teacher
from ovs3d_ros.core.trainer import Trainer
from ovs3d_ros.core.vocabulary import QueryError
from ovs3d_ros.data.synthetic import SyntheticScene


@pytest.fixture(scope="module")
def scene():
    torch.manual_seed(0)
    data = SyntheticScene("room", seed=0).make_frames(4, 1, 32, 24)
    cfg = tiny_config()
    teacher = build_teacher(cfg.teacher, "cpu", data.class_names)
    trainer = Trainer(cfg, "cpu", teacher)
    for frame in data.train_frames:
        trainer.add_frame(frame)
    align = SemanticAlignment(teacher.encode_text(data.class_names), cfg.semantic)
    trainer.extra_losses.append(align)
    losses = [trainer.step() for _ in range(6)]
    return data, cfg, teacher, trainer, losses


def test_extra_losses_rda_and_fda_run_in_training_steps(scene):
    _, _, _, trainer, losses = scene
    late = losses[-1]
    assert "rda" in late and "fda" in late and np.isfinite(late["rda"]) and np.isfinite(late["fda"])
    # the terms carry gradient into the semantic field
    batch = trainer.keyframes.sample(64, torch.Generator().manual_seed(0), feature_rays=32)
    from ovs3d_ros.core.rendering import render_rays

    out = render_rays(trainer.field, batch.origins, batch.directions, trainer.train_settings,
                      depth=batch.depth, semantic_rays=32)
    terms = trainer.extra_losses[0](trainer, batch, out)
    trainer.field.zero_grad()
    (terms["rda"] + terms["fda"]).backward()
    grad = trainer.field.semantic_encoding.table.grad
    assert grad is not None and grad.abs().sum() > 0


def test_query_before_any_keyframe_is_a_clear_error():
    cfg = tiny_config()
    teacher = build_teacher(cfg.teacher, "cpu", ["a", "b"])
    with pytest.raises(QueryError, match="no keyframes yet"):
        Segmenter(Trainer(cfg, "cpu", teacher), teacher, cfg).segment(["a"])


def test_zero_shot_cloud_and_masks(scene):
    data, cfg, teacher, trainer, _ = scene
    seg = Segmenter(trainer, teacher, cfg)
    names = data.class_names
    res = seg.segment(names, camera=0, max_points=500)
    assert 0 < len(res.points) <= 500 and res.points.dtype == np.float32 and res.rgb.dtype == np.uint8
    assert res.labels.dtype == np.uint16 and res.scores.dtype == np.float32
    assert int(res.labels.max()) < len(names) and res.colors.shape == (len(names), 3)
    assert res.label_image.shape == (24, 32) and res.label_image.dtype == np.uint8
    assert res.overlay.shape == (24, 32, 3) and res.score_image.dtype == np.float32
    assert res.camera[0].width == 32 and "total_s" in res.timing_s and not res.refined
    # a held-out pose given as (intrinsics, c2w), scaled down to query.mask_max_side
    test = data.test_frames[0]
    small = Segmenter(trainer, teacher, apply_flat(cfg, {"query.mask_max_side": 16}))
    held = small.segment(names[:2], camera=(test.intrinsics, test.pose), cloud=False)
    assert held.label_image.shape == (12, 16) and len(held.points) == 0
    assert set(np.unique(held.label_image)) <= {0, 1}


def test_query_edge_cases(scene):
    data, cfg, teacher, trainer, _ = scene
    seg = Segmenter(trainer, teacher, cfg)
    for bad, msg in (([], "empty"), (["a", "a"], "duplicate"), ([""], "empty"),
                     ([f"c{i}" for i in range(10_000)], "too many classes")):
        with pytest.raises(QueryError, match=msg):
            seg.segment(bad)
    with pytest.raises(QueryError, match="keyframe index 99"):
        seg.segment(["floor"], camera=99, cloud=False)
    with pytest.raises(QueryError, match="camera must be"):
        seg.segment(["floor"], camera="front", cloud=False)
    with pytest.raises(QueryError, match="score_threshold"):
        seg.segment(["floor"], score_threshold=2.0)
    # non-ASCII names are fine; 300 names need uint16 label images (65535 = unknown)
    many = [f"objet n°{i} 椅子" for i in range(300)]
    res = seg.segment(many, camera=0, max_points=100)
    assert res.label_image.dtype == np.uint16 and int(res.labels.max()) < 300


def test_unknown_by_threshold(scene):
    data, cfg, teacher, trainer, _ = scene
    res = Segmenter(trainer, teacher, cfg).segment(data.class_names, score_threshold=1.0, camera=0,
                                                   max_points=200)
    assert np.all(res.labels == 65535) and np.all(res.label_image == 255)
    # nothing is labelled, so the overlay is the keyframe image itself
    assert np.array_equal(res.overlay, trainer.keyframes.keyframes[0].rgb.numpy())


def test_mask_pixels_without_surface_are_unknown(scene):
    """query.min_surface_opacity: a pixel whose ray meets too little density gets no class."""
    data, cfg, teacher, trainer, _ = scene
    pose = np.asarray(trainer.keyframes.keyframes[0].pose)
    camera = (data.frames[0].intrinsics, pose)
    labelled = Segmenter(trainer, teacher, apply_flat(cfg, {"query.min_surface_opacity": 0.0}))
    img = labelled.render_mask_view(data.frames[0].intrinsics, pose)
    opacity = img["opacity"].numpy()
    threshold = float(np.median(opacity))  # about half of this barely trained field's pixels fall below
    strict = Segmenter(trainer, teacher, apply_flat(cfg, {"query.min_surface_opacity": threshold}))
    a = labelled.segment(data.class_names, camera=camera, cloud=False).label_image
    b = strict.segment(data.class_names, camera=camera, cloud=False).label_image
    assert not np.any(a == 255)
    empty = opacity < threshold
    assert empty.any() and not empty.all()
    assert np.all(b[empty] == 255) and np.array_equal(b[~empty], a[~empty])


def test_refine_is_cached_and_leaves_other_vocabularies_bit_identical(scene):
    data, cfg, teacher, trainer, _ = scene
    seg = Segmenter(trainer, teacher, cfg)
    other = ["wall", "floor", "sofa"]
    before = seg.segment(other, camera=1, max_points=300)
    refined = seg.segment(data.class_names, refine=True, max_time_s=20.0, camera=1, max_points=300)
    assert refined.refined and refined.timing_s["refine_cached"] == 0.0
    assert refined.timing_s["refine_steps"] >= 1
    again = seg.segment(data.class_names, refine=True, camera=1, max_points=300)
    assert again.timing_s["refine_cached"] == 1.0
    assert again.timing_s["refine_s"] < refined.timing_s["refine_s"]
    assert np.array_equal(again.labels, refined.labels)
    after = seg.segment(other, camera=1, max_points=300)
    assert np.array_equal(before.labels, after.labels) and np.array_equal(before.scores, after.scores)
    assert np.array_equal(before.label_image, after.label_image)
    assert np.array_equal(before.score_image, after.score_image)
    # another order is another vocabulary (another cache entry)
    seg.segment(list(reversed(data.class_names)), refine=True, max_time_s=5.0, cloud=False)
    assert len(seg.cache) == 2


def test_query_while_training_thread_runs(scene):
    data, cfg, teacher, trainer, _ = scene
    stop = threading.Event()
    thread = threading.Thread(target=trainer.run, args=(stop,), daemon=True)
    start_step = trainer.step_count
    thread.start()
    try:
        res = Segmenter(trainer, teacher, cfg).segment(data.class_names, camera=0, max_points=200)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert res.label_image.shape == (24, 32) and trainer.step_count >= start_step
