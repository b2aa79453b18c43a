"""A keyframe whose losses are non-finite is quarantined (removed from the buffer and counted) so one
poisoned keyframe cannot stall training; when every ray is bad, nothing is removed."""

import dataclasses

import numpy as np
import torch
from tiny_config import tiny_room_trainer  # noqa: E402 - test/ is on sys.path


def test_a_poisoned_keyframe_is_quarantined_and_training_goes_on():
    trainer, _teacher, _cfg, data = tiny_room_trainer()
    good = {kf.uid for kf in trainer.keyframes.keyframes}
    poison = dataclasses.replace(data.train_frames[0], depth=np.full_like(data.train_frames[0].depth, 3e38),
                                 stamp=99.0)
    assert trainer.add_frame(poison)  # past every input check: finite values
    for _ in range(20):  # the newest keyframe is in every batch's recent share
        trainer.step()
        if trainer.quarantined_keyframes:
            break
    assert trainer.nonfinite_steps >= 1 and trainer.quarantined_keyframes == 1
    assert {kf.uid for kf in trainer.keyframes.keyframes} == good
    losses = [trainer.step()["loss"] for _ in range(5)]
    assert all(np.isfinite(losses)) and trainer.stats()["quarantined_keyframes"] == 1


def test_nothing_is_quarantined_when_every_ray_is_bad():
    from types import SimpleNamespace

    trainer = tiny_room_trainer(2, 16, 12)[0]
    n = 8
    uids = torch.tensor([kf.uid for kf in trainer.keyframes.keyframes] * (n // 2))
    batch = SimpleNamespace(origins=torch.zeros(n, 3), directions=torch.ones(n, 3), depth=torch.zeros(n),
                            keyframe_uids=uids)
    out = SimpleNamespace(rgb=torch.full((n, 3), float("nan")), depth=torch.zeros(n), feature=None)
    trainer._quarantine(batch, out)  # the field, not one keyframe, is at fault
    assert len(trainer.keyframes) == 2 and trainer.quarantined_keyframes == 0
