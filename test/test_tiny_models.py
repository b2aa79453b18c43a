"""The project's tiny CLIP + DINO: the caption data, the training script (a few steps, so it cannot
rot) and the committed checkpoints, loaded through the unchanged teacher config path."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from ovs3d_ros.config import Config, apply_flat
from ovs3d_ros.core.frame import Frame
from ovs3d_ros.core.teachers import build_teacher
from ovs3d_ros.core.teachers.tiny import tiny_teacher_settings
from ovs3d_ros.data.caption_scenes import RandomScene, generate_crops, majority_class, vocabulary
from ovs3d_ros.data.synthetic import PRESETS, SyntheticScene, intrinsics_for

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "models" / "tiny"


def _script():
    path = ROOT / "scripts" / "train_tiny_models.py"
    spec = importlib.util.spec_from_file_location("train_tiny_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _frame(preset="table", seed=5, width=96, height=72) -> Frame:
    scene = SyntheticScene(preset, seed=seed)
    intr = intrinsics_for(width, height)
    rgb, depth, labels = scene.render(intr, scene.camera_path(1)[0])
    return Frame(rgb=rgb, intrinsics=intr, pose=scene.camera_path(1)[0], stamp=0.0, labels=labels), scene


TRAINED_FOR = ("room", "table", "clutter")
"""The presets whose classes the committed tiny models were trained on. The desk preset (issue 14) came
later: its bowl, apple and bottle are kinds the caption generator does not make yet, so the tiny CLIP
cannot name them until both are extended and the models retrained."""


def test_vocabulary_covers_every_preset_class_the_models_were_trained_for():
    vocab = set(vocabulary())
    assert set(TRAINED_FOR) <= set(PRESETS)
    for preset in TRAINED_FOR:
        for seed in range(4):
            assert set(SyntheticScene(preset, seed=seed).class_names) <= vocab


def test_random_scenes_differ_by_seed_and_caption_crops_are_deterministic():
    a, b = RandomScene(seed=1), RandomScene(seed=2)
    assert [p.class_name for p in a.objects] != [p.class_name for p in b.objects]
    first, second = generate_crops(11, 3, views_per_scene=2), generate_crops(11, 3, views_per_scene=2)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.classes, second.classes)
    assert first.images.shape[1:] == (32, 32, 3) and len(set(first.classes.tolist())) >= 3


def test_majority_class_against_counting():
    labels = np.zeros((10, 10), dtype=np.uint8)
    labels[:, :7] = 3
    assert majority_class(labels, (0, 0, 10, 10), 0.6) == 3
    assert majority_class(labels, (0, 0, 10, 10), 0.75) is None  # 70 % is not a clear caption
    assert majority_class(labels, (7, 0, 10, 10), 0.6) == 0


def test_training_script_few_steps_is_deterministic_and_loads_as_a_teacher(tmp_path):
    args = ["--clip-scenes", "3", "--clip-views-per-scene", "2", "--clip-steps", "3", "--clip-batch", "8",
            "--dino-scenes", "4", "--dino-steps", "2", "--dino-batch", "4"]
    script = _script()
    for run in ("a", "b"):
        assert script.main(["--out", str(tmp_path / run)] + args) == 0
    for name in ("tiny_clip.pt", "tiny_dino.pt"):
        first = torch.load(tmp_path / "a" / name, weights_only=True)
        second = torch.load(tmp_path / "b" / name, weights_only=True)
        assert first.keys() == second.keys()
        for key in first:
            torch.testing.assert_close(first[key], second[key], rtol=0, atol=0, msg=f"{name}:{key}")
    log = (tmp_path / "a" / "training_log.txt").read_text()
    assert "clip step 2 loss" in log and "dino step 1 loss" in log and "done: wall" in log
    cfg = apply_flat(Config(), tiny_teacher_settings(tmp_path / "a"))
    teacher = build_teacher(cfg.teacher, "cpu")
    frame, _ = _frame()
    feats = teacher.extract(frame)
    assert feats.clip.shape[:2] == (3, 64) and torch.isfinite(feats.clip.float()).all()
    assert feats.dino.shape[-1] == 96 and torch.isfinite(feats.dino.float()).all()


def test_settings_name_missing_files(tmp_path):
    with pytest.raises(Exception, match="tiny_clip.pt"):
        tiny_teacher_settings(tmp_path)


def test_committed_models_are_small_and_classify_unseen_crops():
    sizes = sum(p.stat().st_size for p in COMMITTED.glob("*.pt"))
    assert sizes < 10.5e6, f"committed checkpoints are {sizes / 1e6:.1f} MB"
    cfg = apply_flat(Config(), tiny_teacher_settings(COMMITTED) | {"teacher.dino.enabled": False})
    teacher = build_teacher(cfg.teacher, "cpu")
    data = generate_crops(3_500_000, 6, views_per_scene=3)  # seeds neither training nor the bench used
    x = torch.from_numpy(data.images).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        img = torch.nn.functional.normalize(teacher.encode_crops(teacher.normalize_pixels(x)), dim=-1)
    text = teacher.encode_text(data.class_names)
    top1 = float(((img @ text.T).argmax(1).numpy() == data.classes).mean())
    # chance is 1/106 (0.009); bench/results/tiny_clip_eval.md measures 0.32 on 570 other unseen crops
    assert top1 > 0.15, f"zero-shot top-1 {top1:.3f} on {len(data.classes)} unseen crops"


def test_local_clip_checkpoint_loads_every_weight_without_claiming_a_random_model(caplog):
    """open_clip warns "No pretrained weights loaded ... initialized randomly" when the architecture is
    built; for a local checkpoint the weights follow at once, so that warning would mislead a user."""
    import logging

    from ovs3d_ros.core.teachers.loading import load_clip, read_state_dict

    cfg = apply_flat(Config(), tiny_teacher_settings(COMMITTED))
    with caplog.at_level(logging.WARNING):
        bundle = load_clip(cfg.teacher.clip, "cpu")
    assert not [r for r in caplog.records if "initialized randomly" in r.getMessage()]
    state = read_state_dict(cfg.teacher.clip.pretrained, "tiny CLIP")
    loaded = bundle.model.state_dict()
    assert set(state) == set(loaded)
    assert all(torch.equal(loaded[k].float(), v.float()) for k, v in state.items())
    logging.warning("No pretrained weights loaded for model 'x'. Model initialized randomly.")
    assert any("initialized randomly" in r.getMessage() for r in caplog.records)  # the filter is gone
