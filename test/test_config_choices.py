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


@pytest.mark.parametrize("key, value, message", [
    ("semantic.rare_ray_fraction", 1.5, r"semantic.rare_ray_fraction must be in \[0, 1\], got 1.5"),
    ("query.max_points", 0, r"query.max_points must be in \[1, 10000000\], got 0"),
    ("trainer.lr_grid", -0.01, r"trainer.lr_grid must be in \[0, 1e\+12\], got -0.01"),  # the default floor
    ("semantic.average_decay", 1.0, r"semantic.average_decay must be in \[0, 0.9999\]"),
    ("query.score_threshold", float("nan"), r"query.score_threshold must be in \[0, 1\], got nan"),
])
def test_numbers_outside_their_range_are_refused_on_every_way_in(tmp_path, key, value, message):
    """The ranges the ROS parameters declare (config.RANGES, else [0, max]) hold for --set, YAML files and
    a Config assigned directly too: before, the CLI clamped or crashed later on what the node refused."""
    with pytest.raises(ConfigError, match=message):
        apply_flat(Config(), {key: value})
    text = ".nan" if value != value else value  # YAML's spelling of NaN
    with pytest.raises(ConfigError, match=message):
        config.build_config(None, [f"{key}={text}"])
    section, leaf = key.split(".")
    path = tmp_path / "c.yaml"
    path.write_text(f"{section}:\n  {leaf}: {text}\n")
    with pytest.raises(ConfigError, match=message):
        config.load_yaml(path)
    cfg = Config()
    setattr(getattr(cfg, section), leaf, value)
    with pytest.raises(ConfigError, match=message):
        config.validate(cfg)


def test_every_range_bound_is_accepted():
    for key, (lo, hi) in config.RANGES.items():
        default = to_flat_dict(Config())[key]
        for bound in (lo, hi):
            value = int(bound) if isinstance(default, int) else float(bound)
            assert to_flat_dict(apply_flat(Config(), {key: value}))[key] == value
