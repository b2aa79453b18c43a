"""Replay a rosbag2 file (sqlite3 or MCAP) onto live topics: a small stand-in for `ros2 bag play`,
which is not installable from PyPI. The bag is read with `rosbags`; each record's CDR bytes are what
rclpy itself serialises, so they are deserialised straight into rclpy messages and republished.

    python -m ovs3d_ros.ros.bag_player BAG [--rate 1.0] [--remap /old:=/new ...] [--topics /a /b]
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import QoSProfile
from rclpy.serialization import deserialize_message

from ovs3d_ros.ros.qos import PLAYBACK_QOS, TF_STATIC_QOS


def playback_qos(connection) -> QoSProfile:
    """QoS to republish a recorded connection with, as `ros2 bag play` adapts it: transient local when
    every recorded publisher offered it (or, with no recorded QoS, for /tf_static, which tf2 only
    receives transient local), else volatile; always reliable, which any subscription accepts."""
    from rosbags.interfaces import QosDurability

    offered = getattr(connection.ext, "offered_qos_profiles", None) or []
    if offered:
        latched = all(q.durability == QosDurability.TRANSIENT_LOCAL for q in offered)
    else:
        latched = connection.topic == "/tf_static"
    return TF_STATIC_QOS if latched else PLAYBACK_QOS


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> sensor_msgs.msg.Image."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def play(
    node,
    bag: Path,
    rate: float = 1.0,
    remaps: dict[str, str] | None = None,
    topics: list[str] | None = None,
    spin=None,
) -> int:
    """Publish every record of `bag` at `rate` x its recorded timing; returns the messages sent.

    `spin(seconds)` is called instead of sleeping, so the caller's executor keeps working.
    """
    from rosbags.rosbag2 import Reader

    remaps = remaps or {}
    publishers = {}
    sent = 0
    with Reader(bag) as reader:
        connections = [c for c in reader.connections if topics is None or c.topic in topics]
        for c in connections:
            if c.topic not in publishers:
                publishers[c.topic] = (
                    node.create_publisher(
                        message_class(c.msgtype), remaps.get(c.topic, c.topic), playback_qos(c)
                    ),
                    message_class(c.msgtype),
                )
        wall0, bag0 = time.monotonic(), None
        for connection, timestamp, rawdata in reader.messages(connections=connections):
            bag0 = timestamp if bag0 is None else bag0
            due = wall0 + (timestamp - bag0) * 1e-9 / max(rate, 1e-6)
            wait = due - time.monotonic()
            if wait > 0:
                (spin or time.sleep)(wait)
            pub, cls = publishers[connection.topic]
            pub.publish(deserialize_message(bytes(rawdata), cls))
            sent += 1
    return sent


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bag", type=Path)
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--remap", nargs="*", default=[], help="/recorded:=/published")
    p.add_argument("--topics", nargs="*", default=None)
    args, ros_args = p.parse_known_args(argv)
    remaps = dict(r.split(":=", 1) for r in args.remap)
    rclpy.init(args=ros_args)
    node = rclpy.create_node("ovs3d_bag_player")
    try:
        n = play(
            node,
            args.bag,
            args.rate,
            remaps,
            args.topics,
            spin=lambda s: rclpy.spin_once(node, timeout_sec=s),
        )
        node.get_logger().info(f"played {n} messages from {args.bag}")
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
