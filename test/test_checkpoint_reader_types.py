"""Regression: frames from the 3D-OVS/LLFF reader carry numpy-typed intrinsics; a checkpoint trained on
them must load back (torch.load with weights_only=True rejects numpy scalars)."""

import numpy as np
from tiny_config import tiny_config

from ovs3d_ros.core.frame import Intrinsics
from ovs3d_ros.core.trainer import Trainer
from ovs3d_ros.data import load_dataset
from ovs3d_ros.data.synthetic import SyntheticScene
from ovs3d_ros.data.writers import write_3dovs


def test_intrinsics_hold_plain_python_numbers():
    intr = Intrinsics(np.float64(10), np.float32(11), np.float64(5), np.float64(4), np.int64(8), np.int64(6))
    assert all(type(getattr(intr, k)) is float for k in ("fx", "fy", "cx", "cy"))
    assert type(intr.width) is int and type(intr.height) is int


def test_checkpoint_of_a_3dovs_scene_loads_back(tmp_path):
    write_3dovs(SyntheticScene("room", 0).make_frames(3, 1, 32, 24), tmp_path / "scene")
    data = load_dataset(tmp_path / "scene")
    cfg = tiny_config()
    trainer = Trainer(cfg, "cpu", teacher=None)  # geometry only: no teacher
    for frame in data.train_frames:
        trainer.add_frame(frame)
    trainer.train(2)
    path = trainer.save(tmp_path / "model.ckpt")
    loaded = Trainer.load(path, "cpu")
    assert len(loaded.keyframes) == len(trainer.keyframes)
