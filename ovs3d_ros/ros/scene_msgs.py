"""A core SegmentationResult -> the messages the node publishes and returns."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from ovs3d_ros.msg import SegmentedScene
from ovs3d_ros.ros import conversions as conv

# Text height of the class markers, metres.
MARKER_TEXT_SIZE_M = 0.15


def segmented_scene(result, header: Header) -> SegmentedScene:
    """SegmentationResult (core.query) -> SegmentedScene; images are left empty when no camera was asked."""
    scene = SegmentedScene(header=header, class_names=list(result.class_names))
    scene.class_colors = [conv.color_msg(c) for c in np.asarray(result.colors)]
    scene.cloud = conv.labeled_cloud(
        np.asarray(result.points, np.float32),
        np.asarray(result.rgb, np.uint8),
        np.asarray(result.labels, np.uint16),
        np.asarray(result.scores, np.float32),
        header,
    )
    if getattr(result, "label_image", None) is not None:
        camera_header = Header(stamp=header.stamp, frame_id=header.frame_id)
        label = np.asarray(result.label_image)
        scene.label_image = conv.numpy_to_image(
            label, "mono16" if label.dtype == np.uint16 else "mono8", camera_header
        )
        scene.score_image = conv.numpy_to_image(
            np.asarray(result.score_image, np.float32), "32FC1", camera_header
        )
        scene.overlay_image = conv.numpy_to_image(np.asarray(result.overlay, np.uint8), "rgb8", camera_header)
        intrinsics, c2w = result.camera
        scene.camera_info = conv.intrinsics_to_camera_info(intrinsics, camera_header)
        scene.camera_pose = conv.matrix_to_pose_stamped(c2w, header.frame_id, header.stamp)
    return scene


def class_markers(result, header: Header) -> MarkerArray:
    """A text marker per class at the centroid of its points, in the class colour (DELETEALL first)."""
    markers = MarkerArray()
    markers.markers.append(Marker(header=header, action=Marker.DELETEALL))
    points = np.asarray(result.points, np.float32)
    labels = np.asarray(result.labels)
    for index, (name, color) in enumerate(zip(result.class_names, np.asarray(result.colors), strict=True)):
        mask = labels == index
        if not mask.any():
            continue
        centroid = points[mask].mean(axis=0)
        m = Marker(
            header=header,
            ns="ovs3d_classes",
            id=index,
            type=Marker.TEXT_VIEW_FACING,
            action=Marker.ADD,
            text=name,
            lifetime=Duration(sec=0),
        )
        m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(v) for v in centroid)
        m.pose.orientation.w = 1.0
        m.scale.z = MARKER_TEXT_SIZE_M
        m.color = conv.color_msg(color)
        markers.markers.append(m)
    return markers
