"""ROS parameters <-> Config: every leaf of the Config tree is one parameter with the same dotted name.

Declared up front with the field's docstring as description and a range for numbers: non-negative
by default (every numeric setting of the Config is a size, a rate, a weight or a threshold), tighter
where the code refuses more (``config.RANGES``, which YAML files and ``--set`` are checked against
too), so `ros2 param set` refuses a value that would make every later query fail instead of
accepting it. Most parameters shape the model and apply at start-up only; a
few are live (see LIVE_PARAMETERS).

How a `ros2 param set` travels: the node's on-set callback validates (``check_parameter_update``:
unknown to the Config, not live, wrong type or out of range -> refused with the reason, nothing
changes); its post-set callback applies (``live_updates`` -> ``config.update_in_place`` on the one
Config the node, Trainer and Segmenter share, then the status timer is re-armed when its rate
changed). No parameter is declared read-only: rclpy would refuse those with a generic
"read-only" reason before the on-set callback runs, and a user deserves to read "restart".
"""

from __future__ import annotations

import typing

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from ovs3d_ros.config import (
    Config,
    ConfigError,
    apply_flat,
    field_docs,
    option_choices,
    parameter_range,
    to_flat_dict,
)

# Settings the running node applies without a restart: each is read where it is used, at every use
# (the training loop's pacing per step, a query's defaults per query, the status timer's period and
# the log period per status), from the Config shared by the node, Trainer and Segmenter. Everything
# else shapes the model, the inputs or the subscriptions, built once at start-up: refused live.
LIVE_PARAMETERS = frozenset(
    {
        "trainer.max_steps_per_s",
        "query.score_threshold",
        "query.max_points",
        "query.refine_max_time_s",
        "query.use_canonical_negatives",
        "query.training_step_every_s",
        "ros.status_rate_hz",
        "ros.log_every_s",
    }
)

LIVE_NOTE = "[live: `ros2 param set` applies it to the running node]"
RESTART_NOTE = "[read at start-up: a change needs a node restart]"

def _descriptor(key: str, value: typing.Any, doc: str) -> ParameterDescriptor:
    when = LIVE_NOTE if key in LIVE_PARAMETERS else RESTART_NOTE
    desc = ParameterDescriptor(description=f"{doc} {when}".strip())
    if isinstance(value, bool):
        desc.type = ParameterType.PARAMETER_BOOL
    elif isinstance(value, int):
        desc.type = ParameterType.PARAMETER_INTEGER
        lo, hi = parameter_range(key, value)
        desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
    elif isinstance(value, float):
        desc.type = ParameterType.PARAMETER_DOUBLE
        lo, hi = parameter_range(key, value)
        desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    elif isinstance(value, str):
        desc.type = ParameterType.PARAMETER_STRING
        allowed = option_choices().get(key)
        if allowed:
            desc.additional_constraints = f"one of: {', '.join(allowed)}"
    elif isinstance(value, list):
        if (
            value
            and all(isinstance(v, str) for v in value)
            or key.endswith("class_names")
            or key.endswith("negatives")
        ):
            desc.type = ParameterType.PARAMETER_STRING_ARRAY
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in value) and value:
            desc.type = ParameterType.PARAMETER_INTEGER_ARRAY
        else:
            desc.type = ParameterType.PARAMETER_DOUBLE_ARRAY
    return desc


def declare_config_parameters(node: Node, defaults: Config | None = None) -> None:
    """Declare every Config leaf as a parameter (values from a params file override the defaults)."""
    defaults = defaults or Config()
    docs = field_docs()
    for key, value in to_flat_dict(defaults).items():
        desc = _descriptor(key, value, docs.get(key, ""))
        if isinstance(value, list) and not value:
            # an empty list has no type of its own: declare by type so a params file can fill it
            node.declare_parameter(key, Parameter.Type(desc.type), desc)
        else:
            node.declare_parameter(key, value, desc)


def config_from_parameters(node: Node, defaults: Config | None = None) -> Config:
    """Read the declared parameters back into a Config (raises ConfigError on bad values)."""
    defaults = defaults or Config()
    flat = {}
    for key, default in to_flat_dict(defaults).items():
        try:
            value = node.get_parameter(key).value
        except ParameterUninitializedException:  # declared by type only (an empty list) and never set
            value = None
        if value is None:
            value = default
        if isinstance(default, list) or isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
            value = list(value) if not hasattr(value, "tolist") else value.tolist()
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        flat[key] = value
    return apply_flat(defaults, flat)


def check_parameter_update(cfg: Config, name: str, value: typing.Any) -> str | None:
    """None when `name := value` may be applied to the running node, else the reason it may not."""
    if name not in to_flat_dict(cfg) or name == "use_sim_time":
        return None
    if name not in LIVE_PARAMETERS:
        return (
            f"'{name}' is read at start-up only: the change needs a restart "
            "(set it in the params file and restart the node)"
        )
    try:
        apply_flat(cfg, {name: value})  # types, choices and ranges (config.parameter_range; NaN fails too)
    except ConfigError as exc:
        return str(exc)
    return None


def check_parameter_updates(cfg: Config, params) -> str | None:
    """``check_parameter_update`` over a list of rclpy Parameters: the first reason, or None."""
    for p in params:
        reason = check_parameter_update(cfg, p.name, p.value)
        if reason:
            return reason
    return None


def live_updates(params) -> dict[str, typing.Any]:
    """The Config keys among accepted rclpy Parameters, as ``{dotted key: value}`` (lists for arrays)."""
    updates = {}
    for p in params:
        if p.name in LIVE_PARAMETERS:
            value = p.value
            updates[p.name] = value.tolist() if hasattr(value, "tolist") else value
    return updates


def live_values(cfg: Config) -> dict[str, typing.Any]:
    """The current values of the live keys in ``cfg``."""
    flat = to_flat_dict(cfg)
    return {key: flat[key] for key in LIVE_PARAMETERS}
