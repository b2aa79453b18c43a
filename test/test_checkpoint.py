"""Checkpoints: bit-identical renders after reload, resume continues the same trajectory, atomic
writes, corrupt / truncated / incompatible files raise CheckpointError and leave the state untouched."""

import os

import pytest
import torch
from test_trainer import RandomTeacherDouble, tiny_config

from ovs3d_ros.core.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from ovs3d_ros.core.trainer import Trainer
from ovs3d_ros.data.synthetic import SyntheticScene


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    scene = SyntheticScene(preset="clutter", seed=1).make_frames(4, 1, 32, 24)
    trainer = Trainer(tiny_config(), "cpu", teacher=RandomTeacherDouble())
    for frame in scene.train_frames:
        trainer.add_frame(frame)
    trainer.train(8)
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    trainer.save(path)
    return scene, trainer, path


def test_round_trip_renders_bit_identical(trained):
    scene, trainer, path = trained
    loaded = Trainer.load(path, "cpu", teacher=RandomTeacherDouble())
    test = scene.frames[scene.test_indices[0]]
    a = trainer.render(test.intrinsics, test.pose)
    b = loaded.render(test.intrinsics, test.pose)
    for key in ("rgb", "depth", "opacity", "feature", "selection"):
        assert torch.equal(a[key], b[key]), key
    assert loaded.stats()["iterations"] == trainer.stats()["iterations"] == 8
    assert len(loaded.keyframes) == len(trainer.keyframes)
    assert torch.equal(loaded.keyframes.keyframes[0].clip, trainer.keyframes.keyframes[0].clip)
    assert loaded.stats()["scene_center"] == trainer.stats()["scene_center"]


def test_resume_continues_where_it_stopped(trained, tmp_path):
    _, trainer, _ = trained
    path = tmp_path / "resume.ckpt"
    trainer.save(path)
    resumed = Trainer.load(path, "cpu", teacher=RandomTeacherDouble())
    ours = [trainer.step() for _ in range(3)]
    theirs = [resumed.step() for _ in range(3)]
    for a, b in zip(ours, theirs, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key
    assert resumed.stats()["iterations"] == trainer.stats()["iterations"]


def test_corrupt_truncated_and_foreign_files(trained, tmp_path):
    _, trainer, path = trained
    data = path.read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(os.urandom(2048))
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    before = trainer.render(
        trainer.keyframes.keyframes[0].intrinsics, trainer.keyframes.keyframes[0].pose, width=8, height=6
    )
    for bad, message in (
        (truncated, "corrupt or truncated"),
        (garbage, "corrupt or truncated"),
        (foreign, "not an ovs3d_ros"),
        (tmp_path / "missing.ckpt", "does not exist"),
    ):
        with pytest.raises(CheckpointError, match=message):
            trainer.load_state_from(bad)
    after = trainer.render(
        trainer.keyframes.keyframes[0].intrinsics, trainer.keyframes.keyframes[0].pose, width=8, height=6
    )
    assert torch.equal(before["rgb"], after["rgb"])  # running state untouched


def test_incompatible_version_and_state(trained, tmp_path):
    _, trainer, path = trained
    state = read_checkpoint(path)
    state["version"] = 999
    wrong = tmp_path / "v999.ckpt"
    torch.save(state, wrong)
    with pytest.raises(CheckpointError, match="version 999"):
        Trainer.load(wrong)
    state = read_checkpoint(path)
    state["field"]["geometry_encoding.table"] = torch.zeros(3, 3)
    broken = tmp_path / "shape.ckpt"
    torch.save(state, broken)
    with pytest.raises(CheckpointError, match="does not fit"):
        trainer.load_state_from(broken)
    state = read_checkpoint(path)
    state["config"]["field"]["num_levels"] = "many"
    badcfg = tmp_path / "cfg.ckpt"
    torch.save(state, badcfg)
    with pytest.raises(CheckpointError, match="incompatible configuration"):
        Trainer.load(badcfg)


def test_load_state_from_swaps_in_place(trained, tmp_path):
    scene, trainer, path = trained
    fresh = Trainer(tiny_config(), "cpu", teacher=RandomTeacherDouble())
    fresh.load_state_from(path)
    assert fresh.stats()["iterations"] == 8 and len(fresh.keyframes) == 4
    fresh.step()  # optimizer and field swapped together: stepping works


def test_atomic_write_leaves_no_temp_files_and_reports_bad_dirs(tmp_path):
    target = tmp_path / "a.ckpt"
    save_checkpoint({"x": torch.ones(2)}, target)
    save_checkpoint({"x": torch.zeros(2)}, target)  # replace over an existing file
    assert [p.name for p in tmp_path.iterdir()] == ["a.ckpt"]
    with pytest.raises(CheckpointError, match="does not exist"):
        save_checkpoint({"x": 1}, tmp_path / "nope" / "b.ckpt")
