"""Write a SceneDataset in the three on-disk forms the readers accept (3D-OVS/LLFF, nerfstudio,
rosbag2), so that every reader is exercised by the same (synthetic) scene."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ovs3d_ros.core.camera import optical_to_llff, optical_to_opengl, pose_from_xyz_quat, xyz_quat_from_pose
from ovs3d_ros.core.frame import Frame
from ovs3d_ros.core.image_codec import encode_depth, encode_mono8, encode_rgb8
from ovs3d_ros.data._io import view_name, write_depth_png, write_png
from ovs3d_ros.data.dataset import DatasetError, SceneDataset

SPLIT_FILE = "ovs3d_split.json"
"""Written next to a 3D-OVS layout: which annotated views are held out (not part of the original format)."""

# The synthetic rig: camera optical frame in the robot base frame (0.1 m ahead, 0.25 m up;
# optical z = base x, optical x = -base y, optical y = -base z).
CAMERA_IN_BODY_XYZ_QUAT = (0.1, 0.0, 0.25, -0.5, 0.5, -0.5, 0.5)

BAG_TOPICS = {
    "image": "/camera/color/image_raw",
    "camera_info": "/camera/color/camera_info",
    "depth": "/camera/depth/image_raw",  # 32FC1 metres
    "depth_mm": "/camera/depth/image_raw_mm",  # 16UC1 millimetres
    "labels": "/camera/labels",  # mono8 ground truth
    "pose": "/camera/pose",  # PoseStamped of the optical frame in the world frame
    "odometry": "/odom",  # Odometry of the base frame
    "scene": "/ovs3d/scene",  # std_msgs/String JSON: class names, test view stamps
}


def _check_class_names(dataset: SceneDataset) -> None:
    for name in dataset.class_names:
        if not name or "/" in name or name != name.strip() or "\n" in name:
            raise DatasetError(f"class name {name!r} cannot be a file name (3D-OVS stores one PNG per class)")


def write_3dovs(dataset: SceneDataset, out_dir: str | Path) -> Path:
    """images/, poses_bounds.npy, segmentations/classes.txt + <view>/<class>.png for the test views,
    labels/<view>.png, depths/<view>.png (uint16 mm), and ovs3d_split.json."""
    out = Path(out_dir)
    frames = dataset.frames
    if not frames:
        raise DatasetError(f"{dataset.name}: no frames to write")
    intr = frames[0].intrinsics
    for f in frames:
        k = f.intrinsics
        if (k.fx, k.fy, k.cx, k.cy, k.width, k.height) != (
            intr.fx,
            intr.fy,
            intr.cx,
            intr.cy,
            intr.width,
            intr.height,
        ):
            raise DatasetError(f"{f.source_id}: LLFF stores one camera for all views; intrinsics differ")
    if (
        abs(intr.fx - intr.fy) > 1e-9 * intr.fx
        or abs(intr.cx - intr.width / 2) > 1e-9
        or abs(intr.cy - intr.height / 2) > 1e-9
    ):
        raise DatasetError("LLFF needs fx == fy and the principal point at the image centre")
    _check_class_names(dataset)
    n = len(frames)
    names = [view_name(i, n) for i in range(n)]
    bounds = np.array([_near_far(f) for f in frames])
    hwf = np.array([intr.height, intr.width, intr.fx], dtype=np.float64)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "poses_bounds.npy", optical_to_llff(np.stack([f.pose for f in frames]), hwf, bounds))
    seg = out / "segmentations"
    seg.mkdir(exist_ok=True)
    (seg / "classes.txt").write_text("".join(c + "\n" for c in dataset.class_names))
    for i, (f, name) in enumerate(zip(frames, names, strict=True)):
        write_png(out / "images" / f"{name}.png", f.rgb)
        if f.labels is not None:
            write_png(out / "labels" / f"{name}.png", f.labels)
        if f.depth is not None:
            write_depth_png(out / "depths" / f"{name}.png", f.depth)
        if i in dataset.test_indices:
            multi_hot = _multi_hot(f, len(dataset.class_names))
            for c, cls in enumerate(dataset.class_names):
                write_png(seg / name / f"{cls}.png", multi_hot[..., c].astype(np.uint8) * 255)
    (out / SPLIT_FILE).write_text(
        json.dumps(
            {
                "name": dataset.name,
                "test_indices": list(dataset.test_indices),
                "test_held_out": dataset.test_held_out,
            },
            indent=1,
        )
    )
    return out


def _multi_hot(frame: Frame, num_classes: int) -> np.ndarray:
    mh = frame.extras.get("gt_multi_hot")
    if mh is not None:
        return np.asarray(mh, dtype=bool)
    if frame.labels is None:
        raise DatasetError(f"{frame.source_id}: a test view needs labels or gt_multi_hot to write masks")
    return frame.labels[..., None] == np.arange(num_classes)


def _near_far(frame: Frame) -> tuple[float, float]:
    if frame.depth is None:
        return 0.1, 100.0
    valid = frame.depth[np.isfinite(frame.depth) & (frame.depth > 0)]
    if valid.size == 0:
        return 0.1, 100.0
    return float(np.percentile(valid, 0.1)), float(np.percentile(valid, 99.9))


def write_nerfstudio(dataset: SceneDataset, out_dir: str | Path) -> Path:
    """transforms.json (OpenGL c2w, shared intrinsics when identical) + images/, depths/ (uint16 mm),
    labels/; the split goes into nerfstudio's ``test_filenames`` and the classes into ``class_names``."""
    out = Path(out_dir)
    frames = dataset.frames
    if not frames:
        raise DatasetError(f"{dataset.name}: no frames to write")
    n = len(frames)
    keys = ("fl_x", "fl_y", "cx", "cy", "w", "h")

    def cam(f: Frame) -> dict:
        k = f.intrinsics
        d = dict(zip(keys, (k.fx, k.fy, k.cx, k.cy, k.width, k.height), strict=True))
        if k.distortion:
            d.update(zip(("k1", "k2", "p1", "p2", "k3"), k.distortion, strict=False))
        return d

    cams = [cam(f) for f in frames]
    shared = all(c == cams[0] for c in cams)
    doc: dict = {"camera_model": "OPENCV"}
    if shared:
        doc.update(cams[0])
    entries = []
    out.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        name = view_name(i, n)
        entry: dict = {
            "file_path": f"images/{name}.png",
            "transform_matrix": optical_to_opengl(f.pose).tolist(),
        }
        write_png(out / entry["file_path"], f.rgb)
        if not shared:
            entry.update(cams[i])
        if f.depth is not None:
            entry["depth_file_path"] = f"depths/{name}.png"
            write_depth_png(out / entry["depth_file_path"], f.depth)
        if f.labels is not None:
            entry["label_file_path"] = f"labels/{name}.png"
            write_png(out / entry["label_file_path"], f.labels)
        entry["stamp"] = f.stamp
        entries.append(entry)
    doc["frames"] = entries
    doc["depth_unit_scale_factor"] = 0.001
    doc["class_names"] = list(dataset.class_names)
    doc["test_filenames"] = [entries[i]["file_path"] for i in dataset.test_indices]
    doc["test_held_out"] = dataset.test_held_out
    doc["scene_name"] = dataset.name
    (out / "transforms.json").write_text(json.dumps(doc, indent=1))
    return out


POSE_OUTPUTS = ("pose", "odometry", "tf")
DEPTH_TOPIC_KEY = {"32FC1": "depth", "16UC1": "depth_mm"}
_TOPIC_OF = {**BAG_TOPICS, "tf": "/tf", "tf_static": "/tf_static"}
_MSGTYPE_OF = {
    "image": "sensor_msgs/msg/Image",
    "camera_info": "sensor_msgs/msg/CameraInfo",
    "depth": "sensor_msgs/msg/Image",
    "depth_mm": "sensor_msgs/msg/Image",
    "labels": "sensor_msgs/msg/Image",
    "pose": "geometry_msgs/msg/PoseStamped",
    "odometry": "nav_msgs/msg/Odometry",
    "scene": "std_msgs/msg/String",
    "tf": "tf2_msgs/msg/TFMessage",
    "tf_static": "tf2_msgs/msg/TFMessage",
}


def _check_bag_options(out: Path, storage: str, depth_encodings, pose_outputs) -> None:
    if storage not in ("sqlite3", "mcap"):
        raise DatasetError(f"unknown rosbag2 storage '{storage}' (use sqlite3 or mcap)")
    unknown = set(pose_outputs) - set(POSE_OUTPUTS)
    if unknown:
        raise DatasetError(f"unknown pose outputs {sorted(unknown)} (use pose, odometry, tf)")
    for enc in depth_encodings:
        if enc not in DEPTH_TOPIC_KEY:
            raise DatasetError(f"unknown depth encoding '{enc}' (use 32FC1 and/or 16UC1)")
    if out.exists():
        raise DatasetError(f"{out}: already exists (rosbag2 writers need a new path)")


class _BagMessages:
    """Message objects of the bag's typestore for one rig (its world, base and camera frame names)."""

    def __init__(self, typestore, world_frame: str, base_frame: str, camera_frame: str):
        self.T = typestore.types
        self.world_frame, self.base_frame, self.camera_frame = world_frame, base_frame, camera_frame

    def header(self, stamp_ns: int, frame_id: str):
        T = self.T
        sec, nanosec = divmod(stamp_ns, 1_000_000_000)
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                        frame_id=frame_id)

    def _quaternion(self, q):
        return self.T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])

    def pose(self, pose: np.ndarray):
        xyz, q = xyz_quat_from_pose(pose)
        point = self.T["geometry_msgs/msg/Point"](x=xyz[0], y=xyz[1], z=xyz[2])
        return self.T["geometry_msgs/msg/Pose"](position=point, orientation=self._quaternion(q))

    def pose_stamped(self, stamp_ns: int, pose: np.ndarray):
        return self.T["geometry_msgs/msg/PoseStamped"](header=self.header(stamp_ns, self.world_frame),
                                                      pose=self.pose(pose))

    def tf(self, stamp_ns: int, parent: str, child: str, pose: np.ndarray):
        """A TFMessage with the one transform parent -> child."""
        T = self.T
        xyz, q = xyz_quat_from_pose(pose)
        translation = T["geometry_msgs/msg/Vector3"](x=xyz[0], y=xyz[1], z=xyz[2])
        transform = T["geometry_msgs/msg/Transform"](translation=translation, rotation=self._quaternion(q))
        stamped = T["geometry_msgs/msg/TransformStamped"](header=self.header(stamp_ns, parent),
                                                          child_frame_id=child, transform=transform)
        return T["tf2_msgs/msg/TFMessage"](transforms=[stamped])

    def image(self, stamp_ns: int, encoded: tuple[str, int, bytes], h: int, w: int):
        encoding, step, data = encoded
        return self.T["sensor_msgs/msg/Image"](
            header=self.header(stamp_ns, self.camera_frame), height=h, width=w, encoding=encoding,
            is_bigendian=0, step=step, data=np.frombuffer(data, dtype=np.uint8))

    def camera_info(self, stamp_ns: int, k):
        T = self.T
        roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                    do_rectify=False)
        return T["sensor_msgs/msg/CameraInfo"](
            header=self.header(stamp_ns, self.camera_frame), height=k.height, width=k.width,
            distortion_model=k.distortion_model or "plumb_bob",
            d=np.array(k.distortion if k.distortion else (0.0,) * 5, dtype=np.float64),
            k=np.array([k.fx, 0, k.cx, 0, k.fy, k.cy, 0, 0, 1], dtype=np.float64), r=np.eye(3).ravel(),
            p=np.array([k.fx, 0, k.cx, 0, 0, k.fy, k.cy, 0, 0, 0, 1, 0], dtype=np.float64),
            binning_x=0, binning_y=0, roi=roi)

    def odometry(self, stamp_ns: int, world_T_body: np.ndarray):
        """The base frame at rest in the world frame (zero twist)."""
        T = self.T
        zero = T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)
        twist = T["geometry_msgs/msg/TwistWithCovariance"](
            twist=T["geometry_msgs/msg/Twist"](linear=zero, angular=zero), covariance=np.zeros(36))
        pose = T["geometry_msgs/msg/PoseWithCovariance"](pose=self.pose(world_T_body),
                                                         covariance=np.zeros(36))
        return T["nav_msgs/msg/Odometry"](header=self.header(stamp_ns, self.world_frame),
                                          child_frame_id=self.base_frame, pose=pose, twist=twist)


class _BagSink:
    """Serialises messages into the writer by topic key (connections made on first use); pose forms
    the caller did not ask for are skipped here, so the frame writer can write every form."""

    def __init__(self, writer, typestore, pose_outputs: tuple[str, ...]):
        from ovs3d_ros.data.rosbag2_format import offered_qos

        self._writer, self._ts, self._offered_qos = writer, typestore, offered_qos
        self._pose_outputs = pose_outputs
        self._connections: dict[str, object] = {}

    def write(self, key: str, stamp_ns: int, msg) -> None:
        pose_form = key.removesuffix("_static")
        if pose_form in POSE_OUTPUTS and pose_form not in self._pose_outputs:
            return
        topic, msgtype = _TOPIC_OF[key], _MSGTYPE_OF[key]
        if key not in self._connections:
            self._connections[key] = self._writer.add_connection(
                topic, msgtype, typestore=self._ts, offered_qos_profiles=self._offered_qos(topic))
        self._writer.write(self._connections[key], stamp_ns, self._ts.serialize_cdr(msg, msgtype))


def _write_frame(sink: _BagSink, msgs: _BagMessages, frame: Frame, stamp: int, pose_stamp: int,
                 depth_encodings: tuple[str, ...], body_T_cam: np.ndarray) -> None:
    """One frame's messages: camera_info, image, depth(s), labels at ``stamp``; the pose forms at
    ``pose_stamp``. camera_info goes before its image: at equal stamps players publish in file order,
    and an image that arrives before any camera_info is dropped by the node."""
    h, w = frame.height, frame.width
    sink.write("camera_info", stamp, msgs.camera_info(stamp, frame.intrinsics))
    sink.write("image", stamp, msgs.image(stamp, encode_rgb8(frame.rgb), h, w))
    if frame.depth is not None:
        for enc in depth_encodings:
            sink.write(DEPTH_TOPIC_KEY[enc], stamp, msgs.image(stamp, encode_depth(frame.depth, enc), h, w))
    if frame.labels is not None:
        sink.write("labels", stamp, msgs.image(stamp, encode_mono8(frame.labels), h, w))
    sink.write("pose", pose_stamp, msgs.pose_stamped(pose_stamp, frame.pose))
    world_T_body = frame.pose @ np.linalg.inv(body_T_cam)
    sink.write("odometry", pose_stamp, msgs.odometry(pose_stamp, world_T_body))
    sink.write("tf", pose_stamp, msgs.tf(pose_stamp, msgs.world_frame, msgs.base_frame, world_T_body))


def write_rosbag(
    dataset: SceneDataset,
    out_path: str | Path,
    storage: str = "sqlite3",
    depth_encodings: tuple[str, ...] = ("32FC1", "16UC1"),
    rate_hz: float = 10.0,
    world_frame: str = "map",
    base_frame: str = "base_link",
    camera_frame: str = "camera_color_optical_frame",
    start_s: int = 1_700_000_000,
    camera_in_body: tuple[float, ...] = CAMERA_IN_BODY_XYZ_QUAT,
    pose_outputs: tuple[str, ...] = POSE_OUTPUTS,
    pose_delay_s: float = 0.0,
) -> Path:
    """A rosbag2 (``storage`` 'sqlite3' or 'mcap') with Image rgb8, CameraInfo, depth (32FC1 on
    ``/camera/depth/image_raw``, 16UC1 mm on ``..._mm``), mono8 labels, PoseStamped of the camera in
    ``world_frame``, Odometry of ``base_frame``, /tf (world -> base) and /tf_static (base -> camera),
    and a JSON String with the class names and test-view stamps. Stamps at ``rate_hz``.
    ``pose_outputs`` picks which of the pose forms ('pose', 'odometry', 'tf') are written.
    ``pose_delay_s``: poses are stamped this much after their image (each still the pose of its own
    image), so a reader must interpolate between two poses or take the nearest, as a live node does."""
    from rosbags.rosbag2 import StoragePlugin

    from ovs3d_ros.data.rosbag import default_typestore
    from ovs3d_ros.data.rosbag2_format import Rosbag2Writer

    out = Path(out_path)
    _check_bag_options(out, storage, depth_encodings, pose_outputs)
    ts = default_typestore()
    msgs = _BagMessages(ts, world_frame, base_frame, camera_frame)
    body_T_cam = pose_from_xyz_quat(camera_in_body[:3], camera_in_body[3:])
    stamps = [start_s * 1_000_000_000 + round(i * 1e9 / rate_hz) for i in range(len(dataset.frames))]
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    with Rosbag2Writer(out, version=8, storage_plugin=plugin) as writer:
        sink = _BagSink(writer, ts, pose_outputs)
        meta = {"class_names": list(dataset.class_names), "name": dataset.name,
                "test_stamps_ns": [stamps[i] for i in dataset.test_indices],
                "test_held_out": dataset.test_held_out}
        sink.write("scene", stamps[0], ts.types["std_msgs/msg/String"](data=json.dumps(meta)))
        sink.write("tf_static", stamps[0], msgs.tf(stamps[0], base_frame, camera_frame, body_T_cam))
        for frame, stamp in zip(dataset.frames, stamps, strict=True):
            pose_stamp = stamp + int(round(pose_delay_s * 1e9))
            _write_frame(sink, msgs, frame, stamp, pose_stamp, depth_encodings, body_T_cam)
    return out
