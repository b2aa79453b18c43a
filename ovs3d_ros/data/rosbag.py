"""rosbag2 (sqlite3 or MCAP) -> SceneDataset, with the ``rosbags`` library (no ROS installation).

Images (Image or CompressedImage), CameraInfo, optional depth and label images, and poses from a
PoseStamped topic, an Odometry topic, or /tf + /tf_static (chained). Stamps are matched by the rule of
``core/frame_assembly.py``, the one the live node uses: poses interpolated between the two samples
bracketing the image stamp, else the nearest within ``tolerance_s``; depth and labels the nearest.
Images without a pose are skipped and counted in ``BagStats`` (``dataset.metadata["stats"]``).
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ovs3d_ros.config import PoseSource, choices
from ovs3d_ros.core.camera import PoseError, intrinsics_from_camera_info, pose_from_xyz_quat
from ovs3d_ros.core.frame import Frame, FrameError, Intrinsics
from ovs3d_ros.core.frame_assembly import PoseTrack, interpolate_pose, nearest_index, seconds_to_ns
from ovs3d_ros.core.image_codec import (
    ImageDecodeError,
    decode_compressed,
    decode_depth,
    decode_image,
    decode_mono8,
)
from ovs3d_ros.data.dataset import DatasetError, SceneDataset

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


def default_typestore():
    """ROS 2 Humble message definitions (the newest store when Humble is missing)."""
    from rosbags.typesys import Stores, get_typestore

    store = getattr(Stores, "ROS2_HUMBLE", None) or Stores.LATEST
    return get_typestore(store)


def stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


@dataclass
class BagStats:
    images: int = 0
    """Image messages seen on the image topic."""
    frames: int = 0
    """Frames produced."""
    skipped_no_pose: int = 0
    """Images without a pose within the tolerance."""
    skipped_no_camera_info: int = 0
    """Images with no CameraInfo of the same size."""
    skipped_decode_error: int = 0
    """Images whose bytes could not be decoded."""
    skipped_by_stride: int = 0
    """Images dropped by ``every_n`` / ``max_frames``."""
    depth_matched: int = 0
    """Frames that got a depth image."""
    depth_missing: int = 0
    """Frames with no depth image within the tolerance (when a depth topic is read)."""
    labels_matched: int = 0
    """Frames that got a label image."""

    def as_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------------
# Time-indexed poses (PoseTrack and interpolate_pose live in core/frame_assembly.py; re-exported here)

__all__ = ["BagStats", "PoseTrack", "TfBuffer", "interpolate_pose", "read_rosbag"]


class TfBuffer:
    """/tf and /tf_static edges (parent <- child); ``lookup(target, source, t)`` chains them."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.static: dict[str, np.ndarray] = {}  # child -> parent_T_child
        self.dynamic: dict[str, PoseTrack] = {}

    def add(self, parent: str, child: str, stamp: int, parent_T_child: np.ndarray, static: bool) -> None:
        parent, child = parent.lstrip("/"), child.lstrip("/")
        self.parent[child] = parent
        if static:
            self.static[child] = parent_T_child
            self.dynamic.pop(child, None)
        else:
            self.dynamic.setdefault(child, PoseTrack()).add(stamp, parent_T_child)

    def _chain_to_root(self, frame: str, stamp: int, tolerance_ns: int, max_gap_ns: int | None):
        """[(frame, root_T_frame)] for the frame and every ancestor; None when an edge has no data."""
        chain = [(frame, np.eye(4))]
        seen = {frame}
        while frame in self.parent:
            parent = self.parent[frame]
            if parent in seen:
                break  # a cycle in the tree: stop rather than loop
            if frame in self.static:
                edge = self.static[frame]
            else:
                edge = self.dynamic[frame].at(stamp, tolerance_ns, max_gap_ns)
                if edge is None:
                    return chain, False
            chain = [(f, edge @ t) for f, t in chain]  # re-express everything in the parent
            chain.append((parent, np.eye(4)))
            seen.add(parent)
            frame = parent
        return chain, True

    def lookup(
        self, target: str, source: str, stamp: int, tolerance_ns: int, max_gap_ns: int | None = None
    ) -> np.ndarray | None:
        """target_T_source at ``stamp``, or None when the frames are not connected or data is missing."""
        target, source = target.lstrip("/"), source.lstrip("/")
        if target == source:
            return np.eye(4)
        src_chain, ok_s = self._chain_to_root(source, stamp, tolerance_ns, max_gap_ns)
        tgt_chain, ok_t = self._chain_to_root(target, stamp, tolerance_ns, max_gap_ns)
        if not (ok_s and ok_t):
            return None
        # both chains end in their root; same root = connected
        if src_chain[-1][0] != tgt_chain[-1][0]:
            return None
        root_T_source = dict(src_chain)[source]
        root_T_target = dict(tgt_chain)[target]
        return np.linalg.inv(root_T_target) @ root_T_source


# ------------------------------------------------------------------------------------------------


def _pose_of(p) -> np.ndarray:
    return pose_from_xyz_quat(
        (p.position.x, p.position.y, p.position.z),
        (p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w),
    )


def _transform_of(t) -> np.ndarray:
    return pose_from_xyz_quat(
        (t.translation.x, t.translation.y, t.translation.z),
        (t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w),
    )


def _pick_topic(
    path: Path,
    topics: dict[str, str],
    wanted: str | None,
    types: Iterable[str],
    what: str,
    prefer: tuple[str, ...] = (),
    avoid: tuple[str, ...] = (),
    required: bool = True,
) -> str | None:
    types = tuple(types)
    if wanted is not None:
        if wanted not in topics:
            raise DatasetError(
                f"{path}: {what} topic '{wanted}' is not in the bag (topics: {', '.join(sorted(topics))})"
            )
        if topics[wanted] not in types:
            raise DatasetError(
                f"{path}: {what} topic '{wanted}' has type {topics[wanted]}, expected {' or '.join(types)}"
            )
        return wanted
    cands = [t for t, ty in topics.items() if ty in types and not any(a in t for a in avoid)]
    if len(cands) > 1 and prefer:
        preferred = [t for t in cands if any(p in t for p in prefer)]
        cands = preferred or cands
    if len(cands) == 1:
        return cands[0]
    if not cands:
        if required:
            raise DatasetError(
                f"{path}: no {what} topic of type {' or '.join(types)} (topics: {', '.join(sorted(topics))})"
            )
        return None
    if required:
        raise DatasetError(f"{path}: several possible {what} topics {sorted(cands)}; name one explicitly")
    return None


@dataclass
class BagTopics:
    """The topics one read uses, and how poses are found ('pose', 'odometry' or 'tf')."""

    image: str
    camera_info: str
    depth: str | None
    labels: str | None
    pose_source: str
    pose_topics: list[str]
    scene: list[str]


@dataclass
class BagPoses:
    """Pass 1 of a read: poses (a track, or the tf tree), CameraInfos by stamp, the scene metadata."""

    track: PoseTrack
    tf: TfBuffer
    infos: list[tuple[int, Intrinsics]]
    meta: dict


def read_rosbag(
    path: str | Path,
    image_topic: str | None = None,
    camera_info_topic: str | None = None,
    depth_topic: str | None = None,
    label_topic: str | None = None,
    pose_source: str = "auto",
    pose_topic: str | None = None,
    odometry_topic: str | None = None,
    world_frame: str = "map",
    camera_frame: str | None = None,
    camera_in_body: tuple[float, ...] | None = None,
    tolerance_s: float = 0.05,
    max_interpolation_gap_s: float | None = None,
    every_n: int = 1,
    max_frames: int | None = None,
    class_names: list[str] | None = None,
    use_depth: bool = True,
    name: str | None = None,
) -> SceneDataset:
    """Read a rosbag2 directory or a single .mcap/.db3 file.

    Topics left as None are found by type (image: an Image/CompressedImage topic, preferring 'color'/
    'rgb', not 'depth'/'label'; depth: an Image topic with 'depth' in its name). ``pose_source``:
    'pose' (PoseStamped of the camera in the world frame), 'odometry' (Odometry of the body;
    camera = body @ ``camera_in_body`` x y z qx qy qz qw), 'tf' (lookup ``world_frame`` <-
    ``camera_frame``, default the image's frame_id) or 'auto' (tf when /tf exists, else pose, else
    odometry). Class names and test views come from a ``/ovs3d/scene`` JSON String when present.
    ``max_interpolation_gap_s``: farthest apart two poses may be to interpolate between (None: 2 x
    ``tolerance_s``, as the node).
    """
    path = Path(path)
    _check_options(path, every_n, pose_source)
    matching = dict(
        tol=seconds_to_ns(tolerance_s),
        max_gap=None if max_interpolation_gap_s is None else seconds_to_ns(max_interpolation_gap_s),
        world_frame=world_frame,
        camera_frame=camera_frame,
    )
    ts = default_typestore()
    reader = _open_reader(path)
    try:
        topics = {c.topic: c.msgtype for c in reader.connections}
        chosen = _choose_topics(
            path, topics, image_topic, camera_info_topic, depth_topic, label_topic, use_depth,
            pose_source, pose_topic, odometry_topic,
        )
        body_T_cam = _body_T_camera(chosen.pose_source, camera_in_body)
        poses = _read_poses(reader, ts, chosen, body_T_cam, path)
        side = _read_side_images(reader, ts, chosen)
        stats = BagStats()
        frames = _read_frames(reader, ts, chosen, poses, side, matching, every_n, max_frames, stats, path)
        stats.frames = len(frames)
    finally:
        reader.close()
    return _dataset(path, frames, poses.meta, chosen, stats, class_names, name)


def _check_options(path: Path, every_n: int, pose_source: str) -> None:
    if not path.exists():
        raise DatasetError(f"{path}: rosbag2 not found")
    if every_n < 1:
        raise DatasetError(f"every_n must be >= 1, got {every_n}")
    if pose_source not in choices(PoseSource):
        raise DatasetError(f"unknown pose_source '{pose_source}' ({', '.join(choices(PoseSource))})")


def _body_T_camera(pose_source: str, camera_in_body: tuple[float, ...] | None) -> np.ndarray:
    """The camera in the odometry child frame (identity unless given; only odometry uses it)."""
    if camera_in_body is None or pose_source != "odometry":
        return np.eye(4)
    if len(camera_in_body) != 7:
        raise DatasetError(f"camera_in_body needs x y z qx qy qz qw, got {camera_in_body}")
    return pose_from_xyz_quat(camera_in_body[:3], camera_in_body[3:])


def _open_reader(path: Path):
    from rosbags.rosbag2 import Reader

    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises its own error types for every kind of broken bag
        raise DatasetError(f"{path}: cannot open as rosbag2: {exc}") from None
    return reader


def _choose_topics(
    path: Path,
    topics: dict[str, str],
    image_topic: str | None,
    camera_info_topic: str | None,
    depth_topic: str | None,
    label_topic: str | None,
    use_depth: bool,
    pose_source: str,
    pose_topic: str | None,
    odometry_topic: str | None,
) -> BagTopics:
    image = _pick_topic(
        path, topics, image_topic, IMAGE_TYPES, "image", prefer=("color", "rgb"), avoid=("depth", "label")
    )
    info = _pick_topic(
        path, topics, camera_info_topic, ("sensor_msgs/msg/CameraInfo",), "camera_info",
        prefer=("color", "rgb"), avoid=("depth",),
    )
    depth = _depth_topic(path, topics, depth_topic) if use_depth else None
    labels = _label_topic(path, topics, label_topic)
    source = _pose_source(path, topics, pose_source)
    scene = [t for t, ty in topics.items() if ty == "std_msgs/msg/String" and t.endswith("ovs3d/scene")]
    return BagTopics(image, info, depth, labels, source,
                     _pose_topics(path, topics, source, pose_topic, odometry_topic), scene)


def _depth_topic(path: Path, topics: dict[str, str], wanted: str | None) -> str | None:
    if wanted is not None:
        return _pick_topic(path, topics, wanted, ("sensor_msgs/msg/Image",), "depth")
    deps = sorted(t for t, ty in topics.items() if ty == "sensor_msgs/msg/Image" and "depth" in t)
    return deps[0] if deps else None


def _label_topic(path: Path, topics: dict[str, str], wanted: str | None) -> str | None:
    if wanted:
        return _pick_topic(path, topics, wanted, ("sensor_msgs/msg/Image",), "label", prefer=("label",))
    return next((t for t, ty in topics.items() if ty == "sensor_msgs/msg/Image" and "label" in t), None)


def _pose_source(path: Path, topics: dict[str, str], wanted: str) -> str:
    """'auto' -> tf when /tf exists, else pose, else odometry."""
    if wanted != "auto":
        return wanted
    if "/tf" in topics or "/tf_static" in topics:
        return "tf"
    if any(ty == "geometry_msgs/msg/PoseStamped" for ty in topics.values()):
        return "pose"
    if any(ty == "nav_msgs/msg/Odometry" for ty in topics.values()):
        return "odometry"
    raise DatasetError(f"{path}: no pose source (no /tf, PoseStamped or Odometry topic)")


def _pose_topics(
    path: Path, topics: dict[str, str], source: str, pose_topic: str | None, odometry_topic: str | None
) -> list[str]:
    if source == "pose":
        return [_pick_topic(path, topics, pose_topic, ("geometry_msgs/msg/PoseStamped",), "pose")]
    if source == "odometry":
        return [_pick_topic(path, topics, odometry_topic, ("nav_msgs/msg/Odometry",), "odometry")]
    found = [t for t in ("/tf", "/tf_static") if t in topics]
    if not found:
        raise DatasetError(f"{path}: pose_source 'tf' but the bag has no /tf or /tf_static")
    return found


def _read_poses(reader, ts, chosen: BagTopics, body_T_cam: np.ndarray, path: Path) -> BagPoses:
    """Pass 1: poses, camera infos, scene metadata."""
    out = BagPoses(PoseTrack(), TfBuffer(), [], {})
    wanted = set(chosen.pose_topics) | {chosen.camera_info} | set(chosen.scene)
    for conn, _, raw in reader.messages(connections=[c for c in reader.connections if c.topic in wanted]):
        msg = ts.deserialize_cdr(raw, conn.msgtype)
        try:
            _take_pass1_message(out, conn.topic, msg, chosen, body_T_cam)
        except PoseError as exc:
            raise DatasetError(f"{path}: bad pose on {conn.topic}: {exc}") from None
        except FrameError as exc:
            raise DatasetError(f"{path}: bad camera_info on {conn.topic}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: {conn.topic} is not valid JSON: {exc}") from None
    if not out.infos:
        raise DatasetError(f"{path}: no CameraInfo messages on {chosen.camera_info}")
    out.infos.sort(key=lambda x: x[0])
    return out


def _take_pass1_message(out: BagPoses, topic: str, msg, chosen: BagTopics, body_T_cam: np.ndarray) -> None:
    if topic == chosen.camera_info:
        out.infos.append((stamp_ns(msg.header), intrinsics_from_camera_info(msg)))
    elif topic in chosen.scene:
        out.meta = json.loads(msg.data)
    elif chosen.pose_source == "pose":
        out.track.add(stamp_ns(msg.header), _pose_of(msg.pose))
    elif chosen.pose_source == "odometry":
        out.track.add(stamp_ns(msg.header), _pose_of(msg.pose.pose) @ body_T_cam)
    else:
        for tr in msg.transforms:
            out.tf.add(tr.header.frame_id, tr.child_frame_id, stamp_ns(tr.header),
                       _transform_of(tr.transform), static=topic == "/tf_static")


class SideImages:
    """Pass 2: depth and label images by stamp (kept raw, decoded when matched); the nearest within
    the tolerance matches (core/frame_assembly.py)."""

    def __init__(self) -> None:
        self._by_stamp: dict[str, dict[int, object]] = {"depth": {}, "labels": {}}
        self._stamps: dict[str, list[int]] = {}

    def add(self, kind: str, stamp: int, msg) -> None:
        self._by_stamp[kind][stamp] = msg

    def seal(self) -> None:
        self._stamps = {k: sorted(v) for k, v in self._by_stamp.items()}

    def nearest(self, kind: str, stamp: int, tol: int):
        j = nearest_index(self._stamps[kind], stamp, tol)
        return None if j is None else self._by_stamp[kind][self._stamps[kind][j]]


def _read_side_images(reader, ts, chosen: BagTopics) -> SideImages:
    side = SideImages()
    kinds = {t: k for t, k in ((chosen.depth, "depth"), (chosen.labels, "labels")) if t}
    if kinds:
        for conn, _, raw in reader.messages(connections=[c for c in reader.connections if c.topic in kinds]):
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            side.add(kinds[conn.topic], stamp_ns(msg.header), msg)
    side.seal()
    return side


def _read_frames(reader, ts, chosen, poses, side, matching, every_n, max_frames, stats, path) -> list[Frame]:
    """Pass 3: one Frame per image with a pose and a camera (``stats`` counts the others)."""
    frames: list[Frame] = []
    info_stamps = [s for s, _ in poses.infos]
    images = [c for c in reader.connections if c.topic == chosen.image]
    for conn, _, raw in reader.messages(connections=images):
        stats.images += 1
        if (stats.images - 1) % every_n or (max_frames is not None and len(frames) >= max_frames):
            stats.skipped_by_stride += 1
            continue
        msg = ts.deserialize_cdr(raw, conn.msgtype)
        frame = _frame_of(conn.msgtype, msg, chosen, poses, info_stamps, side, matching, stats, path)
        if frame is not None:
            frames.append(frame)
    return frames


def _frame_of(msgtype, msg, chosen, poses, info_stamps, side, matching, stats, path) -> Frame | None:
    stamp = stamp_ns(msg.header)
    frame_id = msg.header.frame_id.lstrip("/")
    tol, max_gap = matching["tol"], matching["max_gap"]
    if chosen.pose_source == "tf":
        camera = matching["camera_frame"] or frame_id
        pose = poses.tf.lookup(matching["world_frame"], camera, stamp, tol, max_gap)
    else:
        pose = poses.track.at(stamp, tol, max_gap)
    if pose is None:
        stats.skipped_no_pose += 1
        return None
    try:
        rgb = _decode_rgb(msgtype, msg)
    except ImageDecodeError:
        stats.skipped_decode_error += 1
        return None
    h, w = rgb.shape[:2]
    intr = _camera_for(poses.infos, info_stamps, stamp, w, h)
    if intr is None:
        stats.skipped_no_camera_info += 1
        return None
    depth = _matched_depth(side, chosen, stamp, tol, (h, w), stats, path)
    labels = _matched_labels(side, chosen, stamp, tol, stats, path)
    frame = Frame(rgb=rgb, intrinsics=intr, pose=pose, stamp=stamp * 1e-9, depth=depth, labels=labels,
                  frame_id=frame_id, source_id=f"{path.name}:{chosen.image}@{stamp}")
    frame.extras["stamp_ns"] = stamp
    try:
        return frame.validate()
    except FrameError as exc:
        raise DatasetError(f"{path}: {exc}") from None


def _decode_rgb(msgtype: str, msg) -> np.ndarray:
    if msgtype.endswith("CompressedImage"):
        return decode_compressed(msg.format, msg.data)
    rgb = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)
    if rgb.ndim != 3:
        raise ImageDecodeError(f"image topic carries depth encoding '{msg.encoding}'")
    return rgb


def _camera_for(infos, info_stamps, stamp: int, w: int, h: int) -> Intrinsics | None:
    """The CameraInfo of the image's size nearest its stamp, else any of that size, else None."""
    j = max(0, min(bisect_left(info_stamps, stamp), len(infos) - 1))
    cands = sorted({max(j - 1, 0), j}, key=lambda i: abs(info_stamps[i] - stamp))
    intr = next((infos[i][1] for i in cands if (infos[i][1].width, infos[i][1].height) == (w, h)), None)
    if intr is None:
        intr = next((k for _, k in infos if (k.width, k.height) == (w, h)), None)
    return intr


def _matched_depth(side, chosen, stamp, tol, shape, stats, path) -> np.ndarray | None:
    if not chosen.depth:
        return None
    dmsg = side.nearest("depth", stamp, tol)
    if dmsg is None:
        stats.depth_missing += 1
        return None
    try:
        depth = decode_depth(dmsg.encoding, dmsg.height, dmsg.width, dmsg.step, dmsg.data, dmsg.is_bigendian)
    except ImageDecodeError as exc:
        raise DatasetError(f"{path}: depth on {chosen.depth}: {exc}") from None
    if depth.shape != shape:
        raise DatasetError(
            f"{path}: depth on {chosen.depth} is {depth.shape[::-1]} but the image "
            f"is {shape[1]}x{shape[0]} (register depth to the colour camera first)"
        )
    stats.depth_matched += 1
    return depth


def _matched_labels(side, chosen, stamp, tol, stats, path) -> np.ndarray | None:
    if not chosen.labels:
        return None
    lmsg = side.nearest("labels", stamp, tol)
    if lmsg is None:
        return None
    try:
        labels = decode_mono8(lmsg.height, lmsg.width, lmsg.step, lmsg.data)
    except ImageDecodeError as exc:
        raise DatasetError(f"{path}: labels on {chosen.labels}: {exc}") from None
    stats.labels_matched += 1
    return labels


def _dataset(path, frames, meta, chosen, stats, class_names, name) -> SceneDataset:
    names = sorted(class_names if class_names is not None else meta.get("class_names", []))
    test_stamps = set(meta.get("test_stamps_ns", []))
    return SceneDataset(
        name=name or meta.get("name") or path.stem,
        frames=frames,
        class_names=names,
        test_indices=[i for i, f in enumerate(frames) if f.extras["stamp_ns"] in test_stamps],
        test_held_out=bool(meta.get("test_held_out", True)),
        metadata={
            "stats": stats,
            "pose_source": chosen.pose_source,
            "image_topic": chosen.image,
            "depth_topic": chosen.depth,
            "format": "rosbag2",
        },
    )
