"""Replay a rosbag2 file (sqlite3 or MCAP) onto live topics: a small stand-in for `ros2 bag play`,
which is not installable from PyPI. The bag is read with `rosbags`; each record's CDR bytes are what
rclpy itself serialises, so they are deserialised straight into rclpy messages and republished.

    python -m ovs3d_ros.ros.bag_player BAG [--rate 1.0] [--clock] [--loop N] [--remap /old:=/new ...]
                                           [--topics /a /b]
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

from ovs3d_ros.ros.interrupts import ignore_further_interrupts, interrupt_once
from ovs3d_ros.ros.qos import CLOCK_QOS, PLAYBACK_QOS, TF_STATIC_QOS


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


class PlaybackClock:
    """/clock as `ros2 bag play --clock` publishes it: the player's position in the bag, so nodes with
    use_sim_time run on bag time (and see it jump back when a loop starts over)."""

    def __init__(self, node, hz: float = 40.0):
        from rosgraph_msgs.msg import Clock

        self._msg = Clock
        self.publisher = node.create_publisher(Clock, "/clock", CLOCK_QOS)
        self.period_s = 1.0 / hz
        self.now_ns: int | None = None

    def publish(self, bag_ns: int) -> None:
        self.now_ns = bag_ns
        msg = self._msg()
        msg.clock.sec, msg.clock.nanosec = divmod(bag_ns, 1_000_000_000)
        self.publisher.publish(msg)


def _wait_until(due: float, spin, clock: PlaybackClock | None, wall0: float, bag0: int, rate: float) -> None:
    """Sleep (or spin) until wall time `due`, keeping /clock running at its rate meanwhile."""
    while (wait := due - time.monotonic()) > 0:
        (spin or time.sleep)(min(wait, clock.period_s) if clock else wait)
        if clock is not None:
            clock.publish(bag0 + int((time.monotonic() - wall0) * rate * 1e9))


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> sensor_msgs.msg.Image."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def _create_publishers(node, connections, remaps: dict[str, str]) -> dict:
    publishers = {}
    for c in connections:
        if c.topic not in publishers:
            cls = message_class(c.msgtype)
            publishers[c.topic] = (
                node.create_publisher(cls, remaps.get(c.topic, c.topic), playback_qos(c)),
                cls,
            )
    return publishers


def _wait_for_subscribers(publishers, clock: PlaybackClock | None, timeout_s: float, spin) -> None:
    """Until every publisher has matched a subscriber (bounded). What a publisher sends before
    discovery has matched it is lost (volatile) or arrives late and out of order: a /tf or /clock
    from seconds ago that tf2 then takes for a jump back in time."""
    pubs = [pub for pub, _ in publishers.values()] + ([clock.publisher] if clock else [])
    deadline = time.monotonic() + timeout_s
    while any(p.get_subscription_count() == 0 for p in pubs) and time.monotonic() < deadline:
        (spin or time.sleep)(0.05)


def play(
    node,
    bag: Path,
    rate: float = 1.0,
    remaps: dict[str, str] | None = None,
    topics: list[str] | None = None,
    spin=None,
    clock: PlaybackClock | None = None,
    loops: int = 1,
    wait_for_subscribers_s: float = 0.0,
) -> int:
    """Publish every record of `bag` at `rate` x its recorded timing, `loops` times over the same
    publishers (`ros2 bag play --loop`); returns the messages sent.

    `spin(seconds)` is called instead of sleeping, so the caller's executor keeps working. With a
    `clock`, /clock follows the bag's time (`ros2 bag play --clock`), and jumps back at each loop.
    `wait_for_subscribers_s` > 0: first wait (at most that long) until each publisher is matched.
    """
    from rosbags.rosbag2 import Reader

    sent = 0
    with Reader(bag) as reader:
        connections = [c for c in reader.connections if topics is None or c.topic in topics]
        publishers = _create_publishers(node, connections, remaps or {})
        if wait_for_subscribers_s > 0:
            _wait_for_subscribers(publishers, clock, wait_for_subscribers_s, spin)
        for _ in range(loops):
            wall0, bag0 = time.monotonic(), None
            for connection, timestamp, rawdata in reader.messages(connections=connections):
                bag0 = timestamp if bag0 is None else bag0
                _wait_until(
                    wall0 + (timestamp - bag0) * 1e-9 / max(rate, 1e-6), spin, clock, wall0, bag0, rate
                )
                if clock is not None:
                    clock.publish(timestamp)
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
    p.add_argument("--clock", action="store_true", help="publish /clock at the bag's time (40 Hz)")
    p.add_argument("--loop", type=int, default=1, help="play the bag this many times")
    p.add_argument(
        "--wait-for-subscribers",
        type=float,
        default=0.0,
        metavar="S",
        help="first wait up to S seconds until every topic (and /clock) has a matched subscriber",
    )
    args, ros_args = p.parse_known_args(argv)
    remaps = dict(r.split(":=", 1) for r in args.remap)
    interrupt_once()  # before rclpy.init, whose handler calls it: see ros/interrupts.py
    rclpy.init(args=ros_args)
    node = rclpy.create_node("ovs3d_bag_player")
    clock = PlaybackClock(node) if args.clock else None
    try:
        n = play(
            node,
            args.bag,
            args.rate,
            remaps,
            args.topics,
            spin=lambda s: rclpy.spin_once(node, timeout_sec=s),
            clock=clock,
            loops=args.loop,
            wait_for_subscribers_s=args.wait_for_subscribers,
        )
        node.get_logger().info(f"played {n} messages from {args.bag}")
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        ignore_further_interrupts()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
