"""Publishes one 300k-point labeled cloud and one 640x480 label image + overlay, latched (the QoS the
node uses for results), built from a seed so the receiving test can rebuild and compare them."""

import sys

import numpy as np
import rclpy
from helper_process import serve_until_stdin_closes
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header

from ovs3d_ros.ros import conversions as conv
from ovs3d_ros.ros.qos import LATCHED_QOS

N_POINTS, WIDTH, HEIGHT = 300_000, 640, 480


def make_result(seed: int):
    rng = np.random.default_rng(seed)
    xyz = rng.normal(size=(N_POINTS, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (N_POINTS, 3), dtype=np.uint8)
    labels = rng.integers(0, 40, N_POINTS).astype(np.uint16)
    scores = rng.random(N_POINTS).astype(np.float32)
    mask = rng.integers(0, 40, (HEIGHT, WIDTH)).astype(np.uint8)
    overlay = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    return xyz, rgb, labels, scores, mask, overlay


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("large_result_publisher")
    xyz, rgb, labels, scores, mask, overlay = make_result(int(sys.argv[1]))
    header = Header(frame_id="map")
    node.create_publisher(PointCloud2, "big/labeled_cloud", LATCHED_QOS).publish(
        conv.labeled_cloud(xyz, rgb, labels, scores, header)
    )
    node.create_publisher(Image, "big/mask", LATCHED_QOS).publish(conv.numpy_to_image(mask, "mono8", header))
    node.create_publisher(Image, "big/mask_overlay", LATCHED_QOS).publish(
        conv.numpy_to_image(overlay, "rgb8", header)
    )
    # stdin closed: exit without DDS teardown, which can block with the TCP transport of LARGE_DATA
    # (see large_result_subscriber.py); what this process had to do, publish, is done
    serve_until_stdin_closes(node, teardown=False)


if __name__ == "__main__":
    main()
