"""Declared parameter ranges match what the code accepts: a live `ros2 param set` that would make every
later query fail (query.max_points := 0, query.score_threshold := 5.0) is refused at set time."""

import math

import pytest
import rclpy
from rclpy.parameter import Parameter

from ovs3d_ros.config import RANGES, Config, to_flat_dict
from ovs3d_ros.ros.params import (
    LIVE_PARAMETERS,
    check_parameter_update,
    declare_config_parameters,
)


@pytest.fixture(scope="module")
def node():
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("param_ranges", context=context)
    declare_config_parameters(node)
    # what the node does: refuse what check_parameter_update refuses (it also covers the ranges)
    from rcl_interfaces.msg import SetParametersResult

    def on_set(params):
        for p in params:
            reason = check_parameter_update(Config(), p.name, p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    yield node
    node.destroy_node()
    rclpy.shutdown(context=context)


def test_every_range_names_a_parameter_and_holds_its_default():
    flat = to_flat_dict(Config())
    for key, (lo, hi) in RANGES.items():
        assert key in flat, key
        assert lo <= flat[key] <= hi, (key, flat[key])


@pytest.mark.parametrize(
    "name, value",
    [
        ("query.max_points", 0),
        ("query.max_points", -5),
        ("query.score_threshold", 5.0),
        ("query.score_threshold", -0.5),
        ("query.score_threshold", math.nan),
        ("query.refine_max_time_s", 0.0),
    ],
)
def test_values_that_break_a_query_are_refused_at_set_time(node, name, value):
    assert name in LIVE_PARAMETERS
    before = node.get_parameter(name).value
    result = node.set_parameters([Parameter(name, value=value)])[0]
    assert not result.successful, (name, value)
    assert node.get_parameter(name).value == before
    assert check_parameter_update(Config(), name, value) is not None


@pytest.mark.parametrize(
    "name, value",
    [("query.max_points", 1), ("query.score_threshold", 1.0), ("query.score_threshold", 0.0),
     ("query.refine_max_time_s", 0.5), ("trainer.max_steps_per_s", 0.0)],
)
def test_values_within_range_are_applied(node, name, value):
    result = node.set_parameters([Parameter(name, value=value)])[0]
    assert result.successful, result.reason
    assert node.get_parameter(name).value == value


def test_declared_descriptors_carry_the_ranges(node):
    desc = node.describe_parameter("query.max_points")
    assert desc.integer_range[0].from_value == 1
    desc = node.describe_parameter("query.score_threshold")
    assert (desc.floating_point_range[0].from_value, desc.floating_point_range[0].to_value) == (0.0, 1.0)


def test_string_options_declare_their_choices(node):
    desc = node.describe_parameter("query.mask_renderer")
    assert desc.additional_constraints == "one of: surface, reference"
    assert node.describe_parameter("ros.world_frame").additional_constraints == ""
