"""What can be checked of the ROS packaging without colcon, ros2 launch or rviz (not installable here):
package.xml, the entry points, the params file against the declared parameters, the launch file's
arguments and remaps, and the RViz config's topics."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_package_xml_declares_dependencies():
    from catkin_pkg.package import parse_package

    pkg = parse_package(str(ROOT / "package.xml"))
    assert pkg.name == "ovs3d_ros" and pkg.package_format == 3
    names = {d.name for d in pkg.build_depends + pkg.exec_depends + pkg.buildtool_depends}
    for dep in (
        "rclpy",
        "sensor_msgs",
        "geometry_msgs",
        "std_msgs",
        "std_srvs",
        "nav_msgs",
        "visualization_msgs",
        "rosidl_default_generators",
        "rosidl_default_runtime",
        "tf2_ros",
    ):
        assert dep in names, dep
    assert "rosidl_interface_packages" in [g.name for g in pkg.member_of_groups]


def test_entry_points_exist():
    import importlib

    setup_src = (ROOT / "setup.py").read_text()
    for script in (
        "ovs3d = ovs3d_ros.cli:main",
        "ovs3d_node = ovs3d_ros.ros.node:main",
        "ovs3d_demo = ovs3d_ros.ros.demo:main",
    ):
        assert script in setup_src
        module, func = script.split(" = ")[1].split(":")
        assert callable(getattr(importlib.import_module(module), func))
    for exe in ("ovs3d_node", "ovs3d", "ovs3d_demo"):
        path = ROOT / "scripts" / exe
        assert path.is_file() and path.stat().st_mode & 0o111, exe
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert "scripts/ovs3d_node" in cmake and "rosidl_generate_interfaces" in cmake


def test_params_file_is_generated_from_config_and_every_key_is_declared():
    import rclpy

    from ovs3d_ros.config import Config, load_yaml, to_flat_dict
    from ovs3d_ros.ros.params import config_from_parameters, declare_config_parameters

    spec = __import__("importlib.util").util.spec_from_file_location(
        "wpy", ROOT / "scripts" / "write_params_yaml.py"
    )
    wpy = __import__("importlib.util").util.module_from_spec(spec)
    spec.loader.exec_module(wpy)
    assert (ROOT / "config" / "ovs3d.yaml").read_text() == wpy.render(), (
        "config/ovs3d.yaml drifted from config.py: run scripts/write_params_yaml.py"
    )
    cfg = load_yaml(ROOT / "config" / "ovs3d.yaml")
    assert to_flat_dict(cfg) == to_flat_dict(Config())

    raw = yaml.safe_load((ROOT / "config" / "ovs3d.yaml").read_text())["ovs3d"]["ros__parameters"]

    def flat(d, prefix=""):
        for k, v in d.items():
            yield from flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("param_check", context=context)
        declare_config_parameters(node)
        for key in flat(raw):
            assert node.has_parameter(key), f"{key} in the params file is not a declared parameter"
            desc = node.describe_parameter(key)
            assert desc.description, f"{key} has no description"
        assert to_flat_dict(config_from_parameters(node)) == to_flat_dict(Config())
    finally:
        rclpy.shutdown(context=context)


def test_launch_file_arguments_and_remaps():
    from ovs3d_ros.ros.node import INPUT_TOPICS

    tree = ast.parse((ROOT / "launch" / "ovs3d.launch.py").read_text())
    topic_args = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "TOPIC_ARGUMENTS"
    )
    names = [ast.literal_eval(elt)[0] for elt in topic_args.value.elts]
    assert set(names) <= set(INPUT_TOPICS), f"the launch file remaps names the node does not use: {names}"
    assert {"image", "camera_info", "depth", "pose", "odom"} <= set(names)
    declared = {
        ast.literal_eval(c.args[0])
        for c in ast.walk(tree)
        if isinstance(c, ast.Call)
        and getattr(c.func, "id", "") == "DeclareLaunchArgument"
        and c.args
        and isinstance(c.args[0], ast.Constant)
    }
    assert {"params_file", "device", "use_sim_time"} <= declared
    src = (ROOT / "launch" / "ovs3d.launch.py").read_text()
    assert 'executable="ovs3d_node"' in src and 'name="ovs3d"' in src and 'package="ovs3d_ros"' in src
    from ovs3d_ros.config import Config, to_flat_dict

    for key in ("ros.pose_source", "ros.world_frame", "ros.compressed", "device"):
        assert key in to_flat_dict(Config()) and f'"{key}"' in src


def test_rviz_config_shows_the_node_outputs():
    rviz = yaml.safe_load((ROOT / "config" / "ovs3d.rviz").read_text())
    topics = {
        d["Topic"]["Value"]: d["Class"] for d in rviz["Visualization Manager"]["Displays"] if "Topic" in d
    }
    assert topics["/ovs3d/labeled_cloud"] == "rviz_default_plugins/PointCloud2"
    assert topics["/ovs3d/mask_overlay"] == "rviz_default_plugins/Image"
    assert topics["/ovs3d/class_markers"] == "rviz_default_plugins/MarkerArray"
    assert rviz["Visualization Manager"]["Global Options"]["Fixed Frame"] == "map"


@pytest.mark.parametrize("bad", [{"trainer": {"rays_per_step": "many"}}, {"no_such": {"key": 1}}])
def test_bad_params_file_is_rejected_with_the_key(tmp_path, bad):
    from ovs3d_ros.config import ConfigError, load_yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"ovs3d": {"ros__parameters": bad}}))
    with pytest.raises(ConfigError, match="rays_per_step|no_such"):
        load_yaml(path)
