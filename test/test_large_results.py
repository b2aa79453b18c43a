"""A 300k-point labeled cloud (the node's default cap) and 640x480 masks cross processes intact with
the node's latched QoS, including to a subscriber that joins after publication. Run once with Fast DDS
defaults and once with the LARGE_DATA builtin transport recommended in docs/reliability.md."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from sensor_msgs.msg import Image, PointCloud2

from ovs3d_ros.ros import conversions as conv
from ovs3d_ros.ros.client import init_context
from ovs3d_ros.ros.qos import LATCHED_QOS

sys.path.insert(0, str(Path(__file__).parent / "ros_helpers"))
from large_result_publisher import make_result  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.mark.parametrize("transport", ["default", "LARGE_DATA"])
def test_300k_cloud_and_640x480_masks_arrive_intact(transport):
    env = dict(os.environ)
    if transport != "default":
        env["FASTDDS_BUILTIN_TRANSPORTS"] = transport
    seed = 7
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "ros_helpers" / "large_result_publisher.py"), str(seed)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout.readline().strip() == "ready"
    old = os.environ.get("FASTDDS_BUILTIN_TRANSPORTS")
    if transport != "default":
        os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = transport
    context, node, executor = init_context()
    try:
        got = {}
        time.sleep(0.5)  # join after the publisher has published: only durability can deliver it
        node.create_subscription(
            PointCloud2, "big/labeled_cloud", lambda m: got.setdefault("cloud", m), LATCHED_QOS
        )
        node.create_subscription(Image, "big/mask", lambda m: got.setdefault("mask", m), LATCHED_QOS)
        node.create_subscription(
            Image, "big/mask_overlay", lambda m: got.setdefault("overlay", m), LATCHED_QOS
        )
        deadline = time.monotonic() + 60
        while len(got) < 3 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert set(got) == {"cloud", "mask", "overlay"}, f"received only {sorted(got)}"
        xyz, rgb, labels, scores, mask, overlay = make_result(seed)
        pts = conv.cloud_to_structured(got["cloud"])
        assert len(pts) == 300_000
        np.testing.assert_array_equal(np.stack([pts["x"], pts["y"], pts["z"]], 1), xyz)
        np.testing.assert_array_equal(conv.unpack_rgb_float(pts["rgb"]), rgb)
        np.testing.assert_array_equal(pts["label"], labels)
        np.testing.assert_array_equal(pts["score"], scores)
        np.testing.assert_array_equal(conv.image_to_numpy(got["mask"]), mask)
        np.testing.assert_array_equal(conv.image_to_numpy(got["overlay"]), overlay)
    finally:
        rclpy.shutdown(context=context)
        if old is None:
            os.environ.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
        else:
            os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = old
        proc.stdin.close()
        proc.wait(timeout=20)
