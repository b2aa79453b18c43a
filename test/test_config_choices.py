"""String options are Literal types in config.py, checked in one place (config._coerce) on every way
into a Config; help text comes from the docstrings under the fields, read once from config.py."""

import pytest

from ovs3d_ros import config
from ovs3d_ros.config import (
    Config,
    ConfigError,
    apply_flat,
    choices,
    field_docs,
    option_choices,
    to_flat_dict,
)

CHOICE_KEYS = {"teacher.kind", "field.contraction_order", "semantic.fda_gradient", "query.decision_rule",
               "query.mask_renderer", "ros.pose_source"}


def test_every_string_option_declares_its_choices_and_the_defaults_are_among_them():
    found = option_choices()
    assert set(found) == CHOICE_KEYS
    flat = to_flat_dict(Config())
    for key, allowed in found.items():
        assert flat[key] in allowed and len(allowed) >= 2


@pytest.mark.parametrize("key", sorted(CHOICE_KEYS))
def test_a_value_outside_the_choices_is_refused_by_name(key):
    with pytest.raises(ConfigError, match=rf"{key} must be one of .*; got 'bogus'"):
        apply_flat(Config(), {key: "bogus"})
    for value in option_choices()[key]:
        assert to_flat_dict(apply_flat(Config(), {key: value}))[key] == value


def test_yaml_files_and_direct_assignment_are_checked_too(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("query:\n  mask_renderer: fast\n")
    with pytest.raises(ConfigError, match="query.mask_renderer must be one of surface, reference"):
        config.load_yaml(path)
    cfg = Config()
    cfg.ros.pose_source = "gps"  # assigned past the checks: validate() (and the Trainer) catch it
    with pytest.raises(ConfigError, match="ros.pose_source must be one of auto, tf, pose, odometry"):
        config.validate(cfg)
    from ovs3d_ros.core.trainer import Trainer

    with pytest.raises(ConfigError, match="ros.pose_source"):
        Trainer(cfg, "cpu")


def test_code_that_dispatches_on_an_option_covers_exactly_its_choices():
    from ovs3d_ros.core.field.contraction import CONTRACTION_ORDERS
    from ovs3d_ros.core.query import DECISION_RULES
    from ovs3d_ros.core.semantic_alignment import FDA_GRADIENT_TARGETS

    assert set(FDA_GRADIENT_TARGETS) == set(choices(config.FdaGradient))
    assert CONTRACTION_ORDERS == choices(config.ContractionOrder)
    assert DECISION_RULES == choices(config.DecisionRule)


def test_every_leaf_has_help_text_read_once_from_the_source():
    docs = field_docs()
    assert set(docs) == set(to_flat_dict(Config())) and all(d.strip() for d in docs.values())
    assert docs["trainer.rays_per_step"].startswith("Rays per")
    config._attribute_docstrings.cache_clear()
    field_docs()
    field_docs()
    assert config._attribute_docstrings.cache_info().misses == 1
