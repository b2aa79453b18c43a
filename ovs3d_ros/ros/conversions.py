"""ROS message <-> core conversions (numpy in, messages out and back). No node state here.

sensor_msgs_py and tf_transformations are not available everywhere (not on PyPI), so clouds are
built from numpy structured arrays and rotations go through scipy (ROS quaternion order x y z w).
"""

from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, PoseStamped, Quaternion, TransformStamped
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header

from ovs3d_ros.core.camera import intrinsics_from_camera_info, pose_from_xyz_quat, xyz_quat_from_pose
from ovs3d_ros.core.frame import FrameError, Intrinsics
from ovs3d_ros.core.image_codec import decode_raw, encode_raw

_NP_OF_FIELD = {
    PointField.INT8: "i1",
    PointField.UINT8: "u1",
    PointField.INT16: "i2",
    PointField.UINT16: "u2",
    PointField.INT32: "i4",
    PointField.UINT32: "u4",
    PointField.FLOAT32: "f4",
    PointField.FLOAT64: "f8",
}
_FIELD_OF_NP = {v: k for k, v in _NP_OF_FIELD.items()}


# ---------------------------------------------------------------------------------------------
# time


def stamp_to_sec(stamp: Time) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def stamp_to_ns(stamp: Time) -> int:
    """Integer nanoseconds: the unit of stamp matching (core/frame_assembly.py), exact like a bag's."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def sec_to_stamp(t: float) -> Time:
    sec = int(math.floor(t))
    return Time(sec=sec, nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000)


# ---------------------------------------------------------------------------------------------
# poses


def pose_msg_to_matrix(pose: Pose) -> np.ndarray:
    """geometry_msgs/Pose -> 4x4; raises FrameError on NaN or a zero quaternion."""
    p, q = pose.position, pose.orientation
    xyz = np.array([p.x, p.y, p.z], dtype=np.float64)
    quat = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    if not (np.all(np.isfinite(xyz)) and np.all(np.isfinite(quat))):
        raise FrameError("pose contains NaN or infinite values")
    if np.linalg.norm(quat) < 1e-6:
        raise FrameError("pose quaternion has zero length")
    return pose_from_xyz_quat(xyz, quat)


def transform_msg_to_matrix(tf: TransformStamped) -> np.ndarray:
    t, q = tf.transform.translation, tf.transform.rotation
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = t.x, t.y, t.z
    pose.orientation = q
    return pose_msg_to_matrix(pose)


def matrix_to_pose_msg(matrix: np.ndarray) -> Pose:
    xyz, q = xyz_quat_from_pose(np.asarray(matrix, dtype=np.float64))
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in xyz)
    pose.orientation = Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))
    return pose


def matrix_to_pose_stamped(matrix: np.ndarray, frame_id: str, stamp: Time) -> PoseStamped:
    msg = PoseStamped()
    msg.header = Header(frame_id=frame_id, stamp=stamp)
    msg.pose = matrix_to_pose_msg(matrix)
    return msg


# ---------------------------------------------------------------------------------------------
# cameras


# CameraInfo -> Intrinsics is ROS-free (the rosbag reader needs it too): one function in the core.
camera_info_to_intrinsics = intrinsics_from_camera_info


def intrinsics_to_camera_info(intr: Intrinsics, header: Header) -> CameraInfo:
    info = CameraInfo()
    info.header = header
    info.width, info.height = int(intr.width), int(intr.height)
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.k = [intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [intr.fx, 0.0, intr.cx, 0.0, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


# ---------------------------------------------------------------------------------------------
# images (outgoing; incoming decoding lives in core.image_codec so bags and topics share it)


def numpy_to_image(array: np.ndarray, encoding: str, header: Header) -> Image:
    """rgb8 (H,W,3 uint8), mono8 (uint8), mono16 (uint16), 32FC1 (float32) -> sensor_msgs/Image."""
    encoding, step, data = encode_raw(array, encoding)
    msg = Image()
    msg.header = header
    msg.height, msg.width = int(np.shape(array)[0]), int(np.shape(array)[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = step
    msg.data = data  # bytes: assigning an ndarray is converted element by element (slow)
    return msg


def image_to_numpy(msg: Image) -> np.ndarray:
    """The inverse of numpy_to_image for the encodings this package publishes (tests, clients)."""
    return decode_raw(msg.encoding, msg.height, msg.width, msg.step, bytes(msg.data), msg.is_bigendian)


# ---------------------------------------------------------------------------------------------
# point clouds


def pack_rgb_float(rgb: np.ndarray) -> np.ndarray:
    """(N,3) uint8 -> float32 whose bits are 0x00RRGGBB: the packing RViz's RGB8 transformer reads."""
    rgb = np.asarray(rgb, dtype=np.uint32)
    packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    return packed.astype(np.uint32).view(np.float32)


def unpack_rgb_float(packed: np.ndarray) -> np.ndarray:
    bits = np.asarray(packed, dtype=np.float32).view(np.uint32)
    return np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=1).astype(np.uint8)


def structured_to_cloud(points: np.ndarray, header: Header) -> PointCloud2:
    """1-D numpy structured array -> PointCloud2 (one PointField per named field, little endian)."""
    points = np.ascontiguousarray(points)
    dt = points.dtype
    fields = []
    for name in dt.names:
        sub, offset = dt.fields[name][0], dt.fields[name][1]
        code = sub.newbyteorder("<").str[1:]
        if code not in _FIELD_OF_NP:
            raise ValueError(f"field '{name}' has unsupported dtype {sub}")
        fields.append(PointField(name=name, offset=offset, datatype=_FIELD_OF_NP[code], count=1))
    msg = PointCloud2(
        height=1,
        width=len(points),
        fields=fields,
        is_bigendian=False,
        point_step=dt.itemsize,
        row_step=dt.itemsize * len(points),
        is_dense=True,
    )
    msg.header = header
    msg.data = points.astype(dt.newbyteorder("<"), copy=False).tobytes()
    return msg


def cloud_to_structured(msg: PointCloud2) -> np.ndarray:
    """PointCloud2 -> zero-copy structured view (count > 1 fields are not used by this package)."""
    order = ">" if msg.is_bigendian else "<"
    dt = np.dtype(
        {
            "names": [f.name for f in msg.fields],
            "formats": [order + _NP_OF_FIELD[f.datatype] for f in msg.fields],
            "offsets": [f.offset for f in msg.fields],
            "itemsize": msg.point_step,
        }
    )
    return np.frombuffer(bytes(msg.data), np.uint8)[: msg.width * msg.height * msg.point_step].view(dt)


# 24 bytes a point, every field 4-byte aligned (a uint16 label made it 22: `score` and every odd
# point's floats misaligned). `label` is uint32 as in PCL's PointXYZRGBL, so pcl::fromROSMsg reads it;
# its values stay the core's uint16 ones (65535 = unknown).
LABELED_CLOUD_DTYPE = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4"), ("label", "<u4"), ("score", "<f4")]
)


def labeled_cloud(
    xyz: np.ndarray, rgb: np.ndarray, labels: np.ndarray, scores: np.ndarray, header: Header
) -> PointCloud2:
    """x y z rgb (float32) label (uint32, 65535 = unknown) score (float32): ~/labeled_cloud."""
    pts = np.empty(len(xyz), dtype=LABELED_CLOUD_DTYPE)
    pts["x"], pts["y"], pts["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    pts["rgb"] = pack_rgb_float(rgb)
    pts["label"] = labels
    pts["score"] = scores
    return structured_to_cloud(pts, header)


def color_msg(rgb: np.ndarray) -> ColorRGBA:
    return ColorRGBA(r=float(rgb[0]) / 255.0, g=float(rgb[1]) / 255.0, b=float(rgb[2]) / 255.0, a=1.0)
