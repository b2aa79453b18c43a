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
    pose_outputs: tuple[str, ...] = ("pose", "odometry", "tf"),
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
    from ovs3d_ros.data.rosbag2_format import Rosbag2Writer, offered_qos

    plugins = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
    if storage not in plugins:
        raise DatasetError(f"unknown rosbag2 storage '{storage}' (use sqlite3 or mcap)")
    unknown = set(pose_outputs) - {"pose", "odometry", "tf"}
    if unknown:
        raise DatasetError(f"unknown pose outputs {sorted(unknown)} (use pose, odometry, tf)")
    for enc in depth_encodings:
        if enc not in ("32FC1", "16UC1"):
            raise DatasetError(f"unknown depth encoding '{enc}' (use 32FC1 and/or 16UC1)")
    out = Path(out_path)
    if out.exists():
        raise DatasetError(f"{out}: already exists (rosbag2 writers need a new path)")
    ts = default_typestore()
    T = ts.types
    body_T_cam = pose_from_xyz_quat(camera_in_body[:3], camera_in_body[3:])

    def header(stamp_ns: int, frame_id: str):
        return T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](
                sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000
            ),
            frame_id=frame_id,
        )

    def pose_msg(pose: np.ndarray):
        xyz, q = xyz_quat_from_pose(pose)
        return T["geometry_msgs/msg/Pose"](
            position=T["geometry_msgs/msg/Point"](x=xyz[0], y=xyz[1], z=xyz[2]),
            orientation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]),
        )

    def transform_msg(stamp_ns: int, parent: str, child: str, pose: np.ndarray):
        xyz, q = xyz_quat_from_pose(pose)
        return T["geometry_msgs/msg/TransformStamped"](
            header=header(stamp_ns, parent),
            child_frame_id=child,
            transform=T["geometry_msgs/msg/Transform"](
                translation=T["geometry_msgs/msg/Vector3"](x=xyz[0], y=xyz[1], z=xyz[2]),
                rotation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]),
            ),
        )

    def image_msg(stamp_ns: int, encoded: tuple[str, int, bytes], h: int, w: int):
        encoding, step, data = encoded
        return T["sensor_msgs/msg/Image"](
            header=header(stamp_ns, camera_frame),
            height=h,
            width=w,
            encoding=encoding,
            is_bigendian=0,
            step=step,
            data=np.frombuffer(data, dtype=np.uint8),
        )

    stamps = [start_s * 1_000_000_000 + round(i * 1e9 / rate_hz) for i in range(len(dataset.frames))]
    with Rosbag2Writer(out, version=8, storage_plugin=plugins[storage]) as writer:
        conns = {}

        def conn(key: str, topic: str, msgtype: str):
            if key not in conns:
                conns[key] = writer.add_connection(
                    topic, msgtype, typestore=ts, offered_qos_profiles=offered_qos(topic)
                )
            return conns[key]

        def write(key: str, topic: str, msgtype: str, stamp_ns: int, msg) -> None:
            if (
                key in ("pose", "odometry", "tf", "tf_static")
                and key.removesuffix("_static") not in pose_outputs
            ):
                return
            writer.write(conn(key, topic, msgtype), stamp_ns, ts.serialize_cdr(msg, msgtype))

        meta = {
            "class_names": list(dataset.class_names),
            "name": dataset.name,
            "test_stamps_ns": [stamps[i] for i in dataset.test_indices],
            "test_held_out": dataset.test_held_out,
        }
        write(
            "scene",
            BAG_TOPICS["scene"],
            "std_msgs/msg/String",
            stamps[0],
            T["std_msgs/msg/String"](data=json.dumps(meta)),
        )
        write(
            "tf_static",
            "/tf_static",
            "tf2_msgs/msg/TFMessage",
            stamps[0],
            T["tf2_msgs/msg/TFMessage"](
                transforms=[transform_msg(stamps[0], base_frame, camera_frame, body_T_cam)]
            ),
        )
        for frame, stamp in zip(dataset.frames, stamps, strict=True):
            k, h, w = frame.intrinsics, frame.height, frame.width
            kmat = np.array([k.fx, 0, k.cx, 0, k.fy, k.cy, 0, 0, 1], dtype=np.float64)
            pmat = np.array([k.fx, 0, k.cx, 0, 0, k.fy, k.cy, 0, 0, 0, 1, 0], dtype=np.float64)
            info = T["sensor_msgs/msg/CameraInfo"](
                header=header(stamp, camera_frame),
                height=h,
                width=w,
                distortion_model=k.distortion_model or "plumb_bob",
                d=np.array(k.distortion if k.distortion else (0.0,) * 5, dtype=np.float64),
                k=kmat,
                r=np.eye(3).ravel(),
                p=pmat,
                binning_x=0,
                binning_y=0,
                roi=T["sensor_msgs/msg/RegionOfInterest"](
                    x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
                ),
            )
            # camera_info before its image: at equal stamps players publish in file order, and an
            # image that arrives before any camera_info is dropped by the node
            write("camera_info", BAG_TOPICS["camera_info"], "sensor_msgs/msg/CameraInfo", stamp, info)
            write(
                "image",
                BAG_TOPICS["image"],
                "sensor_msgs/msg/Image",
                stamp,
                image_msg(stamp, encode_rgb8(frame.rgb), h, w),
            )
            if frame.depth is not None:
                for enc in depth_encodings:
                    key = "depth" if enc == "32FC1" else "depth_mm"
                    write(
                        key,
                        BAG_TOPICS[key],
                        "sensor_msgs/msg/Image",
                        stamp,
                        image_msg(stamp, encode_depth(frame.depth, enc), h, w),
                    )
            if frame.labels is not None:
                write(
                    "labels",
                    BAG_TOPICS["labels"],
                    "sensor_msgs/msg/Image",
                    stamp,
                    image_msg(stamp, encode_mono8(frame.labels), h, w),
                )
            pose_stamp = stamp + int(round(pose_delay_s * 1e9))
            write(
                "pose",
                BAG_TOPICS["pose"],
                "geometry_msgs/msg/PoseStamped",
                pose_stamp,
                T["geometry_msgs/msg/PoseStamped"](
                    header=header(pose_stamp, world_frame), pose=pose_msg(frame.pose)
                ),
            )
            world_T_body = frame.pose @ np.linalg.inv(body_T_cam)
            odom = T["nav_msgs/msg/Odometry"](
                header=header(pose_stamp, world_frame),
                child_frame_id=base_frame,
                pose=T["geometry_msgs/msg/PoseWithCovariance"](
                    pose=pose_msg(world_T_body), covariance=np.zeros(36)
                ),
                twist=T["geometry_msgs/msg/TwistWithCovariance"](
                    twist=T["geometry_msgs/msg/Twist"](
                        linear=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
                        angular=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
                    ),
                    covariance=np.zeros(36),
                ),
            )
            write("odometry", BAG_TOPICS["odometry"], "nav_msgs/msg/Odometry", pose_stamp, odom)
            write(
                "tf",
                "/tf",
                "tf2_msgs/msg/TFMessage",
                pose_stamp,
                T["tf2_msgs/msg/TFMessage"](
                    transforms=[transform_msg(pose_stamp, world_frame, base_frame, world_T_body)]
                ),
            )
    return out
