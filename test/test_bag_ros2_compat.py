"""Generated bags as rosbag2's own tools read them (issue 18): /tf_static's offered QoS is recorded
transient local and replayed so, MCAP channels carry topic_type_hash, camera_info precedes its image."""

import struct
import time

import pytest
import yaml
from rosbags.interfaces import QosDurability
from rosbags.rosbag2 import Reader

from ovs3d_ros.data.rosbag import default_typestore
from ovs3d_ros.data.synthetic import SyntheticScene
from ovs3d_ros.data.writers import BAG_TOPICS, write_rosbag


@pytest.fixture(scope="module")
def scene():
    return SyntheticScene(preset="table", seed=3).make_frames(3, 1, 16, 12)


def _bag(scene, tmp_path, storage):
    return write_rosbag(scene, tmp_path / f"bag_{storage}", storage=storage, depth_encodings=("32FC1",))


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_tf_static_is_recorded_transient_local(scene, tmp_path, storage):
    bag = _bag(scene, tmp_path, storage)
    with Reader(bag) as reader:
        qos = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
    assert [q.durability for q in qos["/tf_static"]] == [QosDurability.TRANSIENT_LOCAL]
    # metadata.yaml (version 8): offered_qos_profiles is a YAML string of rmw enum values
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    entry = next(t for t in meta["topics_with_message_count"] if t["topic_metadata"]["name"] == "/tf_static")
    profiles = yaml.safe_load(entry["topic_metadata"]["offered_qos_profiles"])
    assert profiles[0]["durability"] == 1 and profiles[0]["reliability"] == 1  # transient local, reliable
    assert profiles[0]["history"] == 1 and profiles[0]["depth"] == 1  # keep last 1, as tf2's broadcaster


def _mcap_channels(path):
    """{topic: metadata dict} from the channel records of an MCAP file's summary section."""
    data = path.read_bytes()
    assert data[:8] == b"\x89MCAP0\r\n"
    pos, channels = 8, {}

    def string(buf, at):
        (n,) = struct.unpack_from("<I", buf, at)
        return buf[at + 4 : at + 4 + n].decode(), at + 4 + n

    while pos < len(data) - 8:
        op, length = data[pos], struct.unpack_from("<Q", data, pos + 1)[0]
        body = data[pos + 9 : pos + 9 + length]
        pos += 9 + length
        if op != 0x04:  # Channel
            continue
        topic, at = string(body, 4)
        _, at = string(body, at)  # message encoding
        (size,) = struct.unpack_from("<I", body, at)
        at, end, meta = at + 4, at + 4 + size, {}
        while at < end:
            key, at = string(body, at)
            meta[key], at = string(body, at)
        channels[topic] = meta
    return channels


def test_mcap_channels_carry_the_topic_type_hash(scene, tmp_path):
    bag = _bag(scene, tmp_path, "mcap")
    with Reader(bag) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
    channels = _mcap_channels(next(bag.glob("*.mcap")))
    assert set(channels) == set(types)
    ts = default_typestore()
    for topic, meta in channels.items():
        assert meta.get("topic_type_hash") == ts.hash_rihs01(types[topic]), topic
        assert "offered_qos_profiles" in meta


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_camera_info_comes_before_its_image(scene, tmp_path, storage):
    """A player publishes in file order at equal stamps: an image before its camera_info makes the
    node drop the first frame ('no camera_info received yet')."""
    bag = _bag(scene, tmp_path, storage)
    with Reader(bag) as reader:
        topics = (BAG_TOPICS["image"], BAG_TOPICS["camera_info"])
        wanted = [c for c in reader.connections if c.topic in topics]
        order = [(c.topic, t) for c, t, _ in reader.messages(connections=wanted)]
    info_stamps = set()
    for topic, stamp in order:
        if topic == BAG_TOPICS["camera_info"]:
            info_stamps.add(stamp)
        else:
            assert stamp in info_stamps, f"image at {stamp} precedes its camera_info"
    assert len(info_stamps) == len(scene.frames)


# ---------------------------------------------------------------------------------------------
# the project's player


def test_player_offers_the_recorded_durability(scene, tmp_path):
    from rclpy.qos import DurabilityPolicy

    from ovs3d_ros.ros.bag_player import playback_qos

    bag = _bag(scene, tmp_path, "sqlite3")
    with Reader(bag) as reader:
        qos = {c.topic: playback_qos(c) for c in reader.connections}
    assert qos["/tf_static"].durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert qos["/tf"].durability == DurabilityPolicy.VOLATILE
    assert qos[BAG_TOPICS["image"]].durability == DurabilityPolicy.VOLATILE


@pytest.mark.ros
def test_a_late_transient_local_subscriber_gets_a_replayed_latched_topic(tmp_path):
    """tf2's static listener subscribes transient local; it must still match (and get the latched
    message) when it starts after the player published. (A String topic stands in for /tf_static:
    the venv has no tf2_msgs for rclpy.)"""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    from ovs3d_ros.data.rosbag2_format import TF_STATIC_QOS, Rosbag2Writer
    from ovs3d_ros.ros.bag_player import play
    from ovs3d_ros.ros.client import init_context, spin_for

    ts = default_typestore()
    with Rosbag2Writer(tmp_path / "latched", version=8) as writer:
        conn = writer.add_connection("/latched", "std_msgs/msg/String", typestore=ts,
                                     offered_qos_profiles=[TF_STATIC_QOS])
        msg = ts.types["std_msgs/msg/String"](data="extrinsic")
        writer.write(conn, 1, ts.serialize_cdr(msg, "std_msgs/msg/String"))
    context, node, executor = init_context()
    try:
        assert play(node, tmp_path / "latched", spin=lambda s: spin_for(executor, s)) == 1
        got = []
        static_qos = QoSProfile(
            depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE
        )
        node.create_subscription(String, "/latched", got.append, static_qos)
        deadline = time.monotonic() + 20.0  # a safety net: discovery normally takes well under 1 s
        while not got and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert [m.data for m in got] == ["extrinsic"]
    finally:
        node.destroy_node()
        context.try_shutdown()
