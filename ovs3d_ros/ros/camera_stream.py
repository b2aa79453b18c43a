"""Publish core Frames as a robot camera would: Image, CameraInfo, PoseStamped, depth (and, for the
synthetic benchmark teacher only, the ground-truth label image), all with the frame's stamp."""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from ovs3d_ros.core.frame import Frame
from ovs3d_ros.ros import conversions as conv
from ovs3d_ros.ros.qos import CAMERA_STREAM_QOS

# Reliable on the sending side reaches both reliable and best-effort (sensor-data) subscribers.


class CameraStreamPublisher:
    """Publishers on `<ns>/image`, `camera_info`, `depth`, `labels`, `pose` of a node of yours."""

    def __init__(
        self,
        node: Node,
        namespace: str = "camera",
        world_frame: str = "map",
        camera_frame: str = "camera_color_optical_frame",
        publish_labels: bool = False,
    ):
        self.node = node
        self.world_frame = world_frame
        self.camera_frame = camera_frame
        self.publish_labels = publish_labels
        ns = namespace.rstrip("/")
        self.image_pub = node.create_publisher(Image, f"{ns}/image", CAMERA_STREAM_QOS)
        self.info_pub = node.create_publisher(CameraInfo, f"{ns}/camera_info", CAMERA_STREAM_QOS)
        self.depth_pub = node.create_publisher(Image, f"{ns}/depth", CAMERA_STREAM_QOS)
        self.labels_pub = node.create_publisher(Image, f"{ns}/labels", CAMERA_STREAM_QOS)
        self.pose_pub = node.create_publisher(PoseStamped, f"{ns}/pose", CAMERA_STREAM_QOS)

    def topics(self) -> dict[str, str]:
        """The node-side input name -> this stream's full topic (for remapping the ovs3d node)."""
        return {
            "image": self.image_pub.topic_name,
            "camera_info": self.info_pub.topic_name,
            "depth": self.depth_pub.topic_name,
            "labels": self.labels_pub.topic_name,
            "pose": self.pose_pub.topic_name,
        }

    def wait_for_subscribers(
        self, spin, timeout_s: float = 30.0, names=("image", "camera_info", "pose")
    ) -> bool:
        """Spin until the receiving node has matched our publishers, so the first frames are not lost."""
        import time

        pubs = {
            "image": self.image_pub,
            "camera_info": self.info_pub,
            "depth": self.depth_pub,
            "labels": self.labels_pub,
            "pose": self.pose_pub,
        }
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(pubs[n].get_subscription_count() > 0 for n in names):
                return True
            spin(0.1)
        return False

    def publish(self, frame: Frame, stamp: float) -> None:
        """Pose first: the node matches an image to the pose nearest in time."""
        t = conv.sec_to_stamp(stamp)
        cam = Header(frame_id=self.camera_frame, stamp=t)
        self.pose_pub.publish(conv.matrix_to_pose_stamped(frame.pose, self.world_frame, t))
        self.info_pub.publish(conv.intrinsics_to_camera_info(frame.intrinsics, cam))
        if frame.depth is not None:
            self.depth_pub.publish(
                conv.numpy_to_image(np.nan_to_num(frame.depth).astype(np.float32), "32FC1", cam)
            )
        if self.publish_labels and frame.labels is not None:
            self.labels_pub.publish(conv.numpy_to_image(frame.labels.astype(np.uint8), "mono8", cam))
        self.image_pub.publish(conv.numpy_to_image(frame.rgb, "rgb8", cam))
