"""Queries answer from averaged semantic weights (core/field/semantic_average.py): the average is the
running mean, then an exponential one; the query view shares the live geometry; checkpoints keep it."""

import pytest
import torch
from tiny_config import tiny_config, tiny_room_trainer

from ovs3d_ros.config import apply_flat
from ovs3d_ros.core.field import SemanticField
from ovs3d_ros.core.field.semantic_average import SemanticAverage, average_weight
from ovs3d_ros.core.trainer import Trainer


def _fill_semantics(field: SemanticField, value: float) -> None:
    with torch.no_grad():
        for module in field.semantic_modules().values():
            for p in module.parameters():
                p.fill_(value)


def test_average_weight_fades_the_first_steps_until_the_decay_caps_it():
    assert average_weight(0.9, 0.0, 0) == 1.0  # the first update copies
    assert average_weight(0.9, 0.0, 4) == pytest.approx(0.2)  # power 0: the plain running mean
    assert average_weight(0.9, 3.0, 0) == 1.0
    assert average_weight(0.9, 3.0, 4) == pytest.approx(4 / 8)  # (1 + power) / (n + 1 + power)
    assert average_weight(0.9, 3.0, 36) == pytest.approx(0.1)
    assert average_weight(0.9, 3.0, 500) == pytest.approx(0.1)  # capped at 1 - decay


def test_average_of_known_weights_and_the_view_shares_geometry():
    field = SemanticField(tiny_config().field)
    average = SemanticAverage(field, decay=0.75, power=0.0)  # mean of 4 updates, then x0.25 each
    assert average.field(field) is field  # nothing averaged yet: the live field answers
    for value in (1.0, 2.0, 3.0, 6.0):
        _fill_semantics(field, value)
        average.update(field)
    view = average.field(field)
    assert view is not field and average.field(field) is view  # one view per live field
    for p in view.feature_head.parameters():
        assert torch.allclose(p, torch.full_like(p, 3.0))  # (1 + 2 + 3 + 6) / 4
    _fill_semantics(field, 7.0)
    average.update(field)
    for p in view.semantic_encoding.parameters():
        assert torch.allclose(p, torch.full_like(p, 3.0 + 0.25 * (7.0 - 3.0)))
    # geometry and bounds are the live field's, also when they change after the view was made
    field.set_scene_bounds(torch.tensor([0.5, -1.0, 2.0]), 3.0)
    assert torch.equal(view.scene_center, field.scene_center) and float(view.scene_radius) == 3.0
    with torch.no_grad():
        field.density_mlp[0].weight.mul_(2.0)
    x = torch.randn(64, 3)
    assert torch.equal(view.density(x)[0], field.density(x)[0])
    assert not torch.equal(view.semantic_at(x), field.semantic_at(x))
    assert view.semantic_encoding is not field.semantic_encoding
    assert {id(p) for p in view.parameters()} != {id(p) for p in field.parameters()}


def test_with_semantics_needs_every_semantic_module():
    field = SemanticField(tiny_config().field)
    with pytest.raises(ValueError, match="with_semantics needs"):
        field.with_semantics({"feature_head": field.feature_head})


def test_decay_zero_answers_from_the_last_step_and_bad_decays_are_refused():
    field = SemanticField(tiny_config().field)
    average = SemanticAverage(field, 0.0)
    average.update(field)
    assert average.field(field) is field and average.updates == 0
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="average_decay"):
            SemanticAverage(field, bad)
    with pytest.raises(ValueError, match="average_power"):
        SemanticAverage(field, 0.9, -1.0)


def test_trainer_queries_use_the_average_and_checkpoints_keep_it(tmp_path):
    trainer, teacher, cfg, data = tiny_room_trainer()
    trainer.train(8)
    assert trainer.semantic_step_count > 1
    assert trainer.semantic_average.updates == trainer.semantic_step_count
    view = trainer.query_field
    assert view is not trainer.field
    live = trainer.field.feature_head.weight
    assert not torch.equal(view.feature_head.weight, live)  # the mean of several steps, not the last
    path = trainer.save(tmp_path / "avg.ckpt")
    loaded = Trainer.load(path, "cpu", teacher)
    assert loaded.semantic_average.updates == trainer.semantic_average.updates
    assert torch.equal(loaded.query_field.feature_head.weight, view.feature_head.weight)
    x = torch.randn(32, 3)
    assert torch.equal(loaded.query_field.semantic_at(x), view.semantic_at(x))
    # a checkpoint written before the average existed loads and answers from its last step
    state = torch.load(path, weights_only=False)
    del state["semantic_average"]
    torch.save(state, tmp_path / "old.ckpt")
    old = Trainer.load(tmp_path / "old.ckpt", "cpu", teacher)
    assert old.query_field is old.field


def test_no_average_when_switched_off():
    trainer, teacher, _, data = tiny_room_trainer()
    off = Trainer(apply_flat(tiny_config(), {"semantic.average_decay": 0.0}), "cpu", teacher)
    for frame in data.train_frames:
        off.add_frame(frame)
    off.train(8)
    assert off.semantic_step_count > 1 and off.query_field is off.field
