"""The ovs3d node: posed images in, incremental training on its own thread, a query service that
publishes (latched) and returns a labeled PointCloud2, masks and class markers.

A thin adapter: messages are converted (ros.conversions, core.image_codec) into core Frames, the core
Trainer learns, the core Segmenter answers. Callbacks only enqueue (a bounded queue, oldest dropped
first); a frame assembler thread matches pose/depth and inserts keyframes; a training thread steps the
Trainer.
"""

from __future__ import annotations

import faulthandler
import signal
import threading
import time
import traceback
from collections import deque

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import SetBool, Trigger
from visualization_msgs.msg import MarkerArray

from ovs3d_ros.config import Config, ConfigError, resolve_device, update_in_place
from ovs3d_ros.core.camera import pose_from_xyz_quat
from ovs3d_ros.core.checkpoint_store import CheckpointStore
from ovs3d_ros.core.frame import Frame, FrameError
from ovs3d_ros.core.frame_assembly import seconds_to_ns
from ovs3d_ros.core.image_codec import (
    ImageDecodeError,
    decode_compressed,
    decode_depth,
    decode_image,
    decode_mono8,
)
from ovs3d_ros.core.oom import segment_with_oom_retry
from ovs3d_ros.core.plausibility import FrameGate, ImplausibleInput, check_quaternion
from ovs3d_ros.core.training_thread import TrainingThread
from ovs3d_ros.msg import TrainingStatus
from ovs3d_ros.ros import conversions as conv
from ovs3d_ros.ros.interrupts import ignore_further_interrupts, interrupt_once
from ovs3d_ros.ros.params import (
    check_parameter_updates,
    config_from_parameters,
    declare_config_parameters,
    live_updates,
    live_values,
)
from ovs3d_ros.ros.pose_sources import TfPoseSource, tf2_available
from ovs3d_ros.ros.qos import LATCHED_QOS, POSE_QOS, SENSOR_QOS, STATUS_QOS
from ovs3d_ros.ros.scene_msgs import class_markers, segmented_scene
from ovs3d_ros.ros.stamped_buffer import CLOCK_JUMP_BACK_NS, StampedBuffer, Timeline
from ovs3d_ros.srv import Checkpoint, Query

# Depth/label images kept for stamp matching against colour images.
MATCH_HISTORY = 30
# How much longer than the pose tolerance the frame assembler waits for an image's other inputs.
INPUT_WAIT_MARGIN_S = 0.1
# The node's input names (relative, so a launch file or -r remaps them to the robot's topics).
INPUT_TOPICS = ("image", "camera_info", "depth", "labels", "pose", "odom")


class Ovs3dNode(Node):
    def __init__(self, defaults: Config | None = None, **kwargs):
        super().__init__("ovs3d", **kwargs)
        declare_config_parameters(self, defaults)
        self.cfg = config_from_parameters(self, defaults)
        self.device = resolve_device(self.cfg)
        # live parameters: the on-set callback validates, the post-set one applies (ros/params.py)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        self._lock = threading.Lock()  # node counters and the frame slot
        self._frame_ready = threading.Condition(self._lock)
        self._pending_images: deque = deque()  # images waiting for assembly, oldest first
        self._camera_info: CameraInfo | None = None
        # keyed by integer nanoseconds, matched by core/frame_assembly.py's rule (as the bag reader)
        self._depths = StampedBuffer(maxlen=MATCH_HISTORY, jump=CLOCK_JUMP_BACK_NS)
        self._labels = StampedBuffer(maxlen=MATCH_HISTORY, jump=CLOCK_JUMP_BACK_NS)
        self._poses = StampedBuffer(jump=CLOCK_JUMP_BACK_NS)
        self._image_timeline = Timeline()
        self.counters = dict(
            frames_received=0, frames_dropped_no_pose=0, frames_dropped_invalid=0, frames_superseded=0,
            frames_assembled=0,
        )
        # Why frames were dropped, per reason (TrainingStatus has two fixed counters: every reason but
        # no_pose adds to frames_dropped_invalid), and non-image messages refused (not frames).
        self.drop_reasons: dict[str, int] = {}
        self.rejected_inputs: dict[str, int] = {}
        self._gate = FrameGate(self.cfg.input)  # plausibility bounds; one per map (reset, load)
        self.last_error = ""
        self._warned: set[str] = set()
        self._shutdown = threading.Event()  # the whole node is going down
        self._checkpoints = CheckpointStore(self.cfg.ros.checkpoint_dir, self.cfg.ros.autosave_every_s)

        self.trainer = self._new_trainer()
        self.segmenter = self._new_segmenter()
        if self.cfg.ros.resume:
            self._resume_from_autosave()

        self._sensor_group = ReentrantCallbackGroup()
        # one group per kind of service, so a long query (mask, refine) never blocks a control request:
        # pause alone (it only sets a flag), reset/save/load in one (they replace or read the model)
        self._query_group = MutuallyExclusiveCallbackGroup()
        self._control_group = MutuallyExclusiveCallbackGroup()
        self._pause_group = MutuallyExclusiveCallbackGroup()
        self._timer_group = MutuallyExclusiveCallbackGroup()
        self._create_inputs()
        self._create_outputs()

        self._assembler = threading.Thread(target=self._assemble_frames, name="ovs3d_frames", daemon=True)
        self._assembler.start()
        self._training = TrainingThread(self.trainer, on_error=self._on_training_error)
        self._last_log = time.monotonic()
        self.get_logger().info(
            f"ovs3d ready on {self.device}: teacher={self.cfg.teacher.kind}, pose source={self.pose_source}, "
            f"world frame '{self.cfg.ros.world_frame}', keyframe capacity {self.cfg.keyframes.capacity}"
        )

    # ------------------------------------------------------------------ set-up

    def _new_trainer(self):
        from ovs3d_ros.core.teachers import build_teacher
        from ovs3d_ros.core.trainer import Trainer

        if getattr(self, "teacher", None) is None:  # built once: a reset keeps it (CLIP loads in seconds)
            names = list(self.cfg.teacher.synthetic.class_names) or None
            self.teacher = build_teacher(self.cfg.teacher, self.device, class_names=names)
        return Trainer(self.cfg, self.device, self.teacher)

    def _new_segmenter(self):
        from ovs3d_ros.core.query import Segmenter

        return Segmenter(self.trainer, self.teacher, self.cfg)

    def _create_inputs(self) -> None:
        ros = self.cfg.ros
        guard = self._never_raise
        image_type = CompressedImage if ros.compressed else Image
        self.create_subscription(
            image_type,
            "image",
            guard(self._on_image),
            SENSOR_QOS,
            callback_group=self._sensor_group,
        )
        self.create_subscription(
            CameraInfo,
            "camera_info",
            guard(self._on_camera_info),
            SENSOR_QOS,
            callback_group=self._sensor_group,
        )
        if ros.use_depth:
            self.create_subscription(
                Image,
                "depth",
                guard(self._on_depth),
                SENSOR_QOS,
                callback_group=self._sensor_group,
            )
        if self.cfg.teacher.kind == "synthetic":
            # ground-truth label maps feed the synthetic benchmark teacher (never a real camera's input)
            self.create_subscription(
                Image,
                "labels",
                guard(self._on_labels),
                SENSOR_QOS,
                callback_group=self._sensor_group,
            )
        source = ros.pose_source
        if source == "auto":
            source = "tf" if tf2_available() else "pose"
        if source not in ("tf", "pose", "odometry"):
            raise ConfigError(f"ros.pose_source must be auto, tf, pose or odometry, got '{ros.pose_source}'")
        self.pose_source = source
        self._tf = TfPoseSource(self, ros.world_frame) if source == "tf" else None
        cam = np.asarray(ros.camera_in_body, dtype=np.float64)
        if cam.shape != (7,):
            raise ConfigError("ros.camera_in_body must be 7 numbers: x y z qx qy qz qw")
        self._camera_in_body = pose_from_xyz_quat(cam[:3], cam[3:])
        if source == "pose":
            self.create_subscription(
                PoseStamped, "pose", guard(self._on_pose), POSE_QOS, callback_group=self._sensor_group
            )
        elif source == "odometry":
            self.create_subscription(
                Odometry, "odom", guard(self._on_odometry), POSE_QOS, callback_group=self._sensor_group
            )

    def _create_outputs(self) -> None:
        self.cloud_pub = self.create_publisher(PointCloud2, "~/labeled_cloud", LATCHED_QOS)
        self.mask_pub = self.create_publisher(Image, "~/mask", LATCHED_QOS)
        self.overlay_pub = self.create_publisher(Image, "~/mask_overlay", LATCHED_QOS)
        self.mask_info_pub = self.create_publisher(CameraInfo, "~/mask_camera_info", LATCHED_QOS)
        self.markers_pub = self.create_publisher(MarkerArray, "~/class_markers", LATCHED_QOS)
        self.status_pub = self.create_publisher(TrainingStatus, "~/status", STATUS_QOS)
        control = self._control_group
        self.create_service(Query, "~/query", self._on_query, callback_group=self._query_group)
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=control)
        self.create_service(SetBool, "~/pause", self._on_pause, callback_group=self._pause_group)
        self.create_service(Checkpoint, "~/save", self._on_save, callback_group=control)
        self.create_service(Checkpoint, "~/load", self._on_load, callback_group=control)
        self._status_timer = self.create_timer(
            _status_period_s(self.cfg), self._publish_status, callback_group=self._timer_group
        )

    # ------------------------------------------------------------------ live parameters

    def _check_parameters(self, params) -> SetParametersResult:
        """On-set: refuse (with the reason) what may not change now; changes nothing itself."""
        reason = check_parameter_updates(self.cfg, params)
        return SetParametersResult(successful=reason is None, reason=reason or "")

    def _apply_parameters(self, params) -> None:
        """Post-set: write the accepted values into the Config every part reads (in place, so the
        Trainer's loop and the Segmenter's next query see them), then re-arm what runs on a period."""
        updates = live_updates(params)
        if not updates:
            return
        for cfg in self._configs_in_use():
            update_in_place(cfg, updates)
        if "ros.status_rate_hz" in updates:
            # a new period counts from now (changing the period alone would wait out the old one)
            self._status_timer.timer_period_ns = int(_status_period_s(self.cfg) * 1e9)
            self._status_timer.reset()

    def _configs_in_use(self) -> list[Config]:
        """The node's Config, which the Trainer and Segmenter share, plus the Trainer's own after a
        checkpoint load (a checkpoint brings the config its model was built with)."""
        configs = [self.cfg]
        if self.trainer.cfg is not self.cfg:
            configs.append(self.trainer.cfg)
        return configs

    def _share_live_settings(self) -> None:
        """After a checkpoint load: the loaded model keeps its shape, the live settings stay the node's."""
        if self.trainer.cfg is not self.cfg:
            update_in_place(self.trainer.cfg, live_values(self.cfg))

    # ------------------------------------------------------------------ input callbacks (never block)

    def _on_image(self, msg) -> None:
        with self._lock:
            self.counters["frames_received"] += 1
            self._pending_images.append(msg)
            # bounded: a node that cannot keep up drops the oldest waiting image, never builds a backlog
            while len(self._pending_images) > max(1, self.cfg.ros.frame_queue_size):
                self._pending_images.popleft()
                self.counters["frames_superseded"] += 1
            self._frame_ready.notify()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_depth(self, msg: Image) -> None:
        self._depths.add(conv.stamp_to_ns(msg.header.stamp), msg)

    def _on_labels(self, msg: Image) -> None:
        self._labels.add(conv.stamp_to_ns(msg.header.stamp), msg)

    def _on_pose(self, msg: PoseStamped) -> None:
        self._add_pose(msg.header, msg.pose)

    def _on_odometry(self, msg: Odometry) -> None:
        self._add_pose(msg.header, msg.pose.pose)

    def _add_pose(self, header: Header, pose) -> None:
        if header.frame_id and header.frame_id != self.cfg.ros.world_frame:
            self._warn_once(
                f"pose_frame:{header.frame_id}",
                f"poses arrive in frame '{header.frame_id}' but ros.world_frame is "
                f"'{self.cfg.ros.world_frame}'; they are used as if in the world frame",
            )
        try:
            q = pose.orientation
            check_quaternion((q.x, q.y, q.z, q.w), self.cfg.input)
            body = conv.pose_msg_to_matrix(pose)
        except FrameError as exc:
            # a refused pose is not a frame: the image it was meant for counts once, as no_pose
            self._reject_input(f"pose_{exc.reason or 'invalid'}", f"pose rejected: {exc}")
            return
        self._poses.add(conv.stamp_to_ns(header.stamp), body @ self._camera_in_body)

    # ------------------------------------------------------------------ frame assembly (own thread)

    def _assemble_frames(self) -> None:
        keyframes_changed = False  # since the query's cloud geometry was last prepared
        while not self._shutdown.is_set():
            with self._frame_ready:
                while not self._pending_images and not keyframes_changed and not self._shutdown.is_set():
                    self._frame_ready.wait(timeout=0.2)
                msg = self._pending_images.popleft() if self._pending_images else None
            if msg is None:
                if keyframes_changed:  # the queue ran empty: a good moment, nothing waits on this thread
                    keyframes_changed = False
                    self._prepare_cloud_geometry()
                continue
            try:
                frame = self._frame_from(msg)
                if frame is not None:
                    keyframes_changed |= bool(self.trainer.add_frame(frame))
                    with self._lock:  # every received frame ends in exactly one counter
                        self.counters["frames_assembled"] += 1
            except ImplausibleInput as exc:
                # always say once which value tripped which bound (the drop warning is throttled)
                self._warn_once(f"implausible:{exc.reason}", f"frame dropped ({exc.reason}): {exc}")
                self._drop("invalid", str(exc), exc.reason)
            except (FrameError, ImageDecodeError, ValueError) as exc:
                self._drop("invalid", str(exc), getattr(exc, "reason", None) or type(exc).__name__)
            except Exception as exc:  # a bug must not kill the node: log it and keep going
                self._drop("invalid", f"unexpected error: {exc!r}", "unexpected")
                self.get_logger().error(traceback.format_exc())

    def _prepare_cloud_geometry(self) -> None:
        """``Segmenter.prepare_cloud_geometry`` (query.prepare_cloud_geometry): a failure only means the
        next query builds the points itself, so it is logged, never raised into frame assembly."""
        if not self.cfg.query.prepare_cloud_geometry:
            return
        try:
            self.segmenter.prepare_cloud_geometry()
        except Exception as exc:
            self.get_logger().warning(f"cloud geometry not prepared ahead of the next query: {exc!r}")

    def _frame_from(self, msg) -> Frame | None:
        """Image message -> Frame with the matched pose, depth and labels (None: no pose, counted)."""
        stamp = conv.stamp_to_sec(msg.header.stamp)
        stamp_ns = conv.stamp_to_ns(msg.header.stamp)
        self._observe_image_stamp(stamp, stamp_ns)
        intrinsics = self._rectified_camera()
        rgb = self._decode_rgb(msg, intrinsics)
        pose = self._lookup_pose(msg, stamp_ns)
        if pose is None:
            self._drop(
                "no_pose",
                f"no pose within {self.cfg.ros.pose_tolerance_s:.3f} s of image stamp "
                f"{stamp:.3f} ({self.pose_source})"
                + (f": {self._tf.last_failure}" if self._tf is not None else ""),
            )
            return None
        tol = seconds_to_ns(self.cfg.ros.pose_tolerance_s)
        frame = Frame(
            rgb=rgb,
            intrinsics=intrinsics,
            pose=pose,
            stamp=stamp,
            depth=self._matched_depth(stamp_ns, tol, rgb.shape[:2]),
            labels=self._matched_labels(stamp_ns, tol),
            frame_id=msg.header.frame_id,
            source_id=f"ros:{msg.header.frame_id}@{stamp:.3f}",
        )
        return self._gate.check(frame.validate())

    def _observe_image_stamp(self, stamp: float, stamp_ns: int) -> None:
        head = self._image_timeline.head
        if self._image_timeline.observe(stamp):  # several images agree: not one outlier stamp
            self.get_logger().warning(
                f"image stamps jumped back from {head:.1f} s to {stamp:.1f} s "
                "(bag loop or clock reset): clearing pose/depth history of the old time line"
            )
            # values of the new time line (already matched by the images before this one) stay
            for buf in (self._poses, self._depths, self._labels):
                buf.discard_after(stamp_ns + CLOCK_JUMP_BACK_NS)
            # a new time line: the speed bound must not compare across it (same map, same anchor)
            self._gate.reanchor(self._gate.anchor)

    def _rectified_camera(self):
        # camera_info comes on its own topic beside the image: the first one may still be in flight
        info = self._wait_for_input(lambda: self._camera_info)
        if info is None:
            raise FrameError("no camera_info received yet", "no_camera_info")
        intrinsics = conv.camera_info_to_intrinsics(info)
        if intrinsics.has_distortion():
            raise FrameError(
                f"camera_info has distortion {intrinsics.distortion_model} {intrinsics.distortion}; "
                "this node expects rectified images (remap to image_rect / use image_proc)"
            )
        return intrinsics

    def _decode_rgb(self, msg, intrinsics) -> np.ndarray:
        if isinstance(msg, CompressedImage):
            return decode_compressed(msg.format, bytes(msg.data), max_pixels=self.cfg.input.max_image_pixels,
                                     expected_size=(intrinsics.width, intrinsics.height))
        return decode_image(msg.encoding, msg.height, msg.width, msg.step, bytes(msg.data), msg.is_bigendian)

    def _matched_depth(self, stamp_ns: int, tol: int, shape: tuple[int, int]) -> np.ndarray | None:
        if self._depths.latest_stamp() is None:
            return None  # no depth stream (depth is optional): nothing to wait for
        depth_msg = self._matched(self._depths, stamp_ns, tol)
        if depth_msg is None:
            return None
        m = depth_msg
        depth = decode_depth(m.encoding, m.height, m.width, m.step, bytes(m.data), m.is_bigendian)
        if depth.shape != shape:
            self._warn_once(
                "depth_size",
                f"depth {depth.shape[::-1]} does not match the image "
                f"{shape[::-1]}: depth ignored (register it to colour)",
            )
            return None
        return depth

    def _matched_labels(self, stamp_ns: int, tol: int) -> np.ndarray | None:
        if self.cfg.teacher.kind != "synthetic":
            return None
        label_msg = self._matched(self._labels, stamp_ns, tol)
        if label_msg is None:
            raise FrameError("synthetic teacher: no ground-truth label image for this frame", "no_labels")
        if label_msg.encoding != "mono8":
            raise FrameError(f"label images must be mono8, got '{label_msg.encoding}'")
        return decode_mono8(label_msg.height, label_msg.width, label_msg.step, bytes(label_msg.data))

    def _lookup_pose(self, msg, stamp_ns: int) -> np.ndarray | None:
        """The pose at the image stamp by core/frame_assembly.py's rule (tf2 interpolates by itself)."""
        tol_s = self.cfg.ros.pose_tolerance_s
        if self._tf is not None:
            return self._tf.lookup(msg.header.frame_id, msg.header.stamp, timeout_s=tol_s)
        tol = seconds_to_ns(tol_s)
        # the pose after this image may still be in flight: wait a little for it, so that the pose
        # is interpolated as a bag reader would, not the nearest earlier one (bounded: it may never come)
        def final_pose():
            pose, final = self._poses.pose_at(stamp_ns, tol)
            return pose if final else None

        pose = self._wait_for_input(final_pose)
        return pose if pose is not None else self._poses.pose_at(stamp_ns, tol)[0]

    def _matched(self, buffer: StampedBuffer, stamp_ns: int, tol: int):
        """The buffer's value nearest the image stamp within ``tol``, waited for while its stream has
        not yet passed the stamp (a depth stream slower than the images does not hold each one up)."""

        def passed() -> bool:
            latest = buffer.latest_stamp()
            return latest is not None and latest >= stamp_ns

        return self._wait_for_input(lambda: buffer.lookup(stamp_ns, tol), passed)

    def _wait_for_input(self, lookup, passed=lambda: False):
        """``lookup()`` once it is not None; None once ``passed()`` (its stream has moved beyond this
        image: what is missing is not coming) or after the pose tolerance + INPUT_WAIT_MARGIN_S.

        Image, camera_info, depth, labels and poses come on separate topics, each in its own callback,
        and a loaded machine may run the image's first: what belongs to this image may still be in
        flight. The wait is bounded (it may never come) and ends early when the node shuts down.
        """
        value = lookup()
        deadline = time.monotonic() + self.cfg.ros.pose_tolerance_s + INPUT_WAIT_MARGIN_S
        while value is None and time.monotonic() < deadline and not self._shutdown.is_set():
            if passed():  # what came since the last look may be this image's own: one more look
                return lookup()
            time.sleep(0.01)
            value = lookup()
        return value

    def _drop(self, kind: str, reason: str, code: str | None = None) -> None:
        """Count a dropped frame under ``kind`` (the TrainingStatus counter) and ``code`` (the reason)."""
        code = code or kind
        with self._lock:
            self.counters[f"frames_dropped_{kind}"] += 1
            self.drop_reasons[code] = self.drop_reasons.get(code, 0) + 1
            self.last_error = reason
        self.get_logger().warning(f"frame dropped: {reason}", throttle_duration_sec=5.0)

    def _reject_input(self, code: str, reason: str) -> None:
        """Count a refused non-image message (a pose): not a frame, so no frame counter moves."""
        with self._lock:
            self.rejected_inputs[code] = self.rejected_inputs.get(code, 0) + 1
            self.last_error = reason
        self.get_logger().warning(reason, throttle_duration_sec=5.0)

    def _never_raise(self, callback):
        """Wrap a subscription callback: an exception escaping one would stop executor.spin() and with
        it the node; here it is logged and counted as an invalid input instead."""

        def guarded(msg) -> None:
            try:
                callback(msg)
            except Exception as exc:  # noqa: BLE001 - the node must outlive any single message
                self._drop("invalid", f"{callback.__name__} failed: {exc!r}")
                self.get_logger().error(traceback.format_exc(), throttle_duration_sec=5.0)

        return guarded

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.get_logger().warning(text)

    # ------------------------------------------------------------------ training (own thread)

    def _on_training_error(self, message: str, trace: str) -> None:
        self.last_error = message
        self.get_logger().error(trace)

    # ------------------------------------------------------------------ services

    def _on_query(self, req: Query.Request, res: Query.Response) -> Query.Response:
        from ovs3d_ros.core.query import QueryError

        t0 = time.perf_counter()
        try:
            camera = self._query_camera(req)
            result = segment_with_oom_retry(
                self.segmenter,
                list(req.classes),
                warn=self.get_logger().warning,
                refine=bool(req.refine),
                max_time_s=req.max_time_s if req.max_time_s > 0 else None,
                max_points=int(req.max_points) if req.max_points > 0 else None,
                score_threshold=(
                    None
                    if req.score_threshold == 0
                    else (0.0 if req.score_threshold < 0 else float(req.score_threshold))
                ),
                camera=camera,
            )
        except (QueryError, FrameError, ValueError) as exc:
            res.success, res.message = False, str(exc)
            return res
        except Exception as exc:  # never let a query kill the node
            self.get_logger().error(traceback.format_exc())
            res.success, res.message = False, f"internal error: {exc!r}"
            return res
        header = Header(frame_id=self.cfg.ros.world_frame, stamp=self.get_clock().now().to_msg())
        scene = segmented_scene(result, header)
        self.cloud_pub.publish(scene.cloud)
        self.markers_pub.publish(class_markers(result, header))
        if camera is not None or req.mask_source != Query.Request.MASK_NONE:
            if scene.label_image.width:
                self.mask_pub.publish(scene.label_image)
                self.overlay_pub.publish(scene.overlay_image)
                self.mask_info_pub.publish(scene.camera_info)
        res.scene = scene
        res.success = True
        res.latency_s = float(time.perf_counter() - t0)
        self.get_logger().info(
            "query answered: "
            + ", ".join(f"{k} {v:.3f}" for k, v in result.timing_s.items())
            + f", response {res.latency_s:.3f} s"
        )
        res.message = (
            f"{len(result.class_names)} classes, {len(result.labels)} points"
            + (", mask rendered" if scene.label_image.width else "")
            + f" in {res.latency_s * 1e3:.0f} ms"
            + (f"; WARNING: {result.warning}" if result.warning else "")  # answered, but say so
        )
        return res

    def _query_camera(self, req: Query.Request):
        """Query.Request mask options -> None | keyframe index | (Intrinsics, c2w)."""
        src = req.mask_source
        if src == Query.Request.MASK_NONE:
            return None
        if src == Query.Request.MASK_LATEST_KEYFRAME:
            return -1
        if src == Query.Request.MASK_KEYFRAME:
            return int(req.keyframe_index)
        if src == Query.Request.MASK_POSE:
            c2w = conv.pose_msg_to_matrix(req.camera_pose)
            info = req.camera_info if req.camera_info.width else self._camera_info
            if info is None:
                raise ValueError(
                    "mask_source MASK_POSE needs a camera_info (none in the request, none received)"
                )
            return (conv.camera_info_to_intrinsics(info), c2w)
        raise ValueError(f"unknown mask_source {src}")

    def _on_reset(self, req: Trigger.Request, res: Trigger.Response) -> Trigger.Response:
        try:
            # never waits for a query: one still rendering the old field fails at its next chunk
            self.trainer.retire()
            self._training.stop_event.set()  # the old loop ends after the step in flight
            self.trainer = self._new_trainer()
            self.segmenter = self._new_segmenter()
            self._gate = FrameGate(self.cfg.input)  # a new map is anchored by its own first frame
            self._training.restart(self.trainer)  # waits <= 0.25 s for the old step (training_thread.py)
        except Exception as exc:
            res.success, res.message = False, f"reset failed: {exc!r}"
            return res
        res.success, res.message = True, "training state cleared"
        return res

    def _on_pause(self, req: SetBool.Request, res: SetBool.Response) -> SetBool.Response:
        self._training.pause(bool(req.data))
        res.success, res.message = True, "paused" if req.data else "training"
        return res

    def _on_save(self, req: Checkpoint.Request, res: Checkpoint.Response) -> Checkpoint.Response:
        try:
            path = self._checkpoints.save(self.trainer, req.path)
        except Exception as exc:
            res.success, res.message = False, f"save failed: {exc}"
            return res
        res.success, res.path, res.message = True, str(path), f"saved {path}"
        return res

    def _on_load(self, req: Checkpoint.Request, res: Checkpoint.Response) -> Checkpoint.Response:
        try:
            path = self._checkpoints.existing(req.path)
            self.trainer.load_state_from(path)
            self._share_live_settings()
            self.segmenter = self._new_segmenter()  # refined vocabularies belong to the old state
            self._gate = FrameGate(self.cfg.input)  # the loaded map bounds new frames, not the old one
            if bool(self.trainer.field.bounds_set):
                self._gate.reanchor(self.trainer.field.scene_center.detach().cpu().numpy())
        except Exception as exc:
            res.success, res.message = False, f"load failed: {exc}"
            return res
        res.success, res.path, res.message = True, str(path), f"loaded {path}"
        return res

    def _resume_from_autosave(self) -> None:
        path = self._checkpoints.path("")
        if path.is_file():
            try:
                self.trainer.load_state_from(path)
                self._share_live_settings()
                self.get_logger().info(f"resumed from {path}")
            except Exception as exc:
                self.get_logger().error(f"could not resume from {path}: {exc}")

    # ------------------------------------------------------------------ status, logs, autosave

    def _publish_status(self) -> None:
        stats = self.trainer.stats()
        with self._lock:
            counters = dict(self.counters)
            reasons = dict(self.drop_reasons)
            rejected = dict(self.rejected_inputs)
            last_error = self.last_error
        if self._training.is_paused:
            state = "paused"
        elif self._training.failed:
            state = "error"
        elif stats.get("keyframes", 0) == 0:
            state = "waiting_for_frames"
        else:
            state = "training"
        losses = stats.get("losses", {})
        msg = TrainingStatus(
            header=Header(stamp=self.get_clock().now().to_msg(), frame_id=self.cfg.ros.world_frame),
            state=state,
            device=str(self.device),
            keyframes=int(stats.get("keyframes", 0)),
            keyframe_capacity=int(self.cfg.keyframes.capacity),
            iterations=int(stats.get("iterations", 0)),
            semantic_iterations=int(stats.get("semantic_iterations", 0)),
            iterations_per_s=float(stats.get("iterations_per_s", 0.0)),
            training_time_s=float(stats.get("training_time_s", 0.0)),
            psnr=float(stats.get("psnr", 0.0)),
            loss_names=list(losses.keys()),
            loss_values=[float(v) for v in losses.values()],
            drop_reasons=list(reasons.keys()),
            drop_counts=[int(v) for v in reasons.values()],
            last_error=last_error,
            **counters,
        )
        self.status_pub.publish(msg)
        now = time.monotonic()
        if now - self._last_log >= self.cfg.ros.log_every_s:
            self._last_log = now
            self.get_logger().info(
                f"{state}: {msg.keyframes}/{msg.keyframe_capacity} keyframes, {msg.iterations} it "
                f"({msg.iterations_per_s:.1f}/s), PSNR {msg.psnr:.1f} dB, "
                f"frames {counters['frames_received']} (no pose {counters['frames_dropped_no_pose']}, "
                f"invalid {counters['frames_dropped_invalid']})"
                + (f", drops by reason {reasons}" if reasons else "")
                + (f", inputs rejected {rejected}" if rejected else "")
                + (f", depth pixels out of range {self._gate.depth_pixels_invalidated}"
                   if self._gate.depth_pixels_invalidated else "")
                + self._missing_depth_note(stats)
            )
        if self._checkpoints.autosave_due(has_data=msg.keyframes > 0):
            self._autosave()

    def _missing_depth_note(self, stats: dict) -> str:
        """With a depth stream: how many keyframes have no measured depth (``Keyframe.has_depth``: the depth
        image was lost on a best-effort topic, stamped too far from the image, or had no valid pixel). Their
        cloud points are rendered from the field (query.rendered_points_max_age_steps), not measured."""
        missing = int(stats.get("keyframes", 0)) - int(stats.get("keyframes_with_depth", 0))
        return f", {missing} keyframes without depth" if self.cfg.ros.use_depth and missing > 0 else ""

    def _autosave(self) -> None:
        try:
            self._checkpoints.save(self.trainer)
        except Exception as exc:
            self.get_logger().error(f"autosave failed: {exc}")

    def shutdown(self) -> None:
        if self._checkpoints.autosave_on and self.trainer.stats().get("keyframes", 0) > 0:
            self._autosave()
        self._shutdown.set()
        self._training.stop_event.set()  # wake the training and frame threads, then wait for both
        with self._frame_ready:
            self._frame_ready.notify_all()
        self._training.stop()
        self._assembler.join(timeout=5.0)


def _status_period_s(cfg: Config) -> float:
    return 1.0 / max(cfg.ros.status_rate_hz, 1e-3)


def main(args=None) -> None:
    # `kill -USR1 <pid>` prints every thread's stack: the first tool for "the node seems stuck"
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    interrupt_once()  # before rclpy.init, whose handler calls it: see ros/interrupts.py
    rclpy.init(args=args)
    node = None
    # a query, a control request, pause, the status timer and the input callbacks at once
    executor = MultiThreadedExecutor(num_threads=6)
    try:
        node = Ovs3dNode()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except _rclpy.RCLError:
        # a Ctrl-C (rclpy's handler shuts the context down) landing between the executor's check of the
        # context and its next wait set raises this instead of ExternalShutdownException: still a clean
        # shutdown (seen once under `ros2 launch` beside a busy core); with the context alive, a real error
        if rclpy.ok():
            raise
    finally:
        ignore_further_interrupts()  # a second Ctrl-C (terminal + launch) must not break the clean-up
        if node is not None:
            node.get_logger().info("shutting down")
            node.shutdown()
            executor.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
