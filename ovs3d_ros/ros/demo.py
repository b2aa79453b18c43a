"""The built-in demo: a generated 360° scene streamed through the real ovs3d node over ROS 2 topics
(Image, CameraInfo, PoseStamped, depth) like a robot camera, trained on, then queried from this
separate process. Writes the cloud (PLY), masks and overlays (PNG) and prints a summary with the mask's
mIoU on a held-out view.

Teacher: the clearly named *synthetic* benchmark teacher (no CLIP weights can be downloaded here). It
needs the scene's ground-truth labels: they travel on the node's `labels` topic, one mono8 image per
colour image with the same stamp, and the node hands them to the teacher only (never to training
targets directly). With `--teacher clip` the node uses real open_clip/timm weights from the config.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from std_msgs.msg import Header

from ovs3d_ros.core import metrics, outputs
from ovs3d_ros.data.synthetic import SyntheticScene
from ovs3d_ros.ros import conversions as conv
from ovs3d_ros.ros.camera_stream import CameraStreamPublisher
from ovs3d_ros.ros.client import Ovs3dClient, init_context, spin_for, start_node_process, stop_node_process
from ovs3d_ros.ros.paths import params_file
from ovs3d_ros.srv import Query


def demo_params(class_names: list[str], teacher: str, device: str) -> dict:
    """Node parameters of the demo on top of config/ovs3d.yaml: small, CPU-friendly budgets."""
    params = {
        "device": device,
        "ros": {"pose_source": "pose", "world_frame": "map", "pose_tolerance_s": 0.02},
        "teacher": {"kind": teacher},
        "keyframes": {"min_translation_m": 0.05, "min_rotation_deg": 5.0},
    }
    if teacher == "synthetic":
        params["teacher"]["synthetic"] = {"class_names": class_names}
    return params


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="room", help="synthetic scene preset (room, table, clutter)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=160)
    p.add_argument("--height", type=int, default=120)
    p.add_argument("--frames", type=int, default=36, help="training views streamed")
    p.add_argument("--rate", type=float, default=3.0, help="camera rate, Hz")
    p.add_argument("--train-time", type=float, default=75.0, help="seconds of training after the stream")
    p.add_argument("--teacher", default="synthetic", choices=["synthetic", "clip"])
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="outputs/demo")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    scene = SyntheticScene(preset=args.preset, seed=args.seed)
    data = scene.make_frames(args.frames, 1, args.width, args.height)
    held_out = data.frames[data.test_indices[0]]
    print(
        f"[demo] scene '{args.preset}': classes {data.class_names}, {args.frames} views "
        f"{args.width}x{args.height} + 1 held-out view"
    )

    context, node, executor = init_context()
    stream = CameraStreamPublisher(node, namespace="/demo/camera", publish_labels=args.teacher == "synthetic")
    proc = start_node_process(
        demo_params(data.class_names, args.teacher, args.device),
        remaps=stream.topics(),
        log_path=out / "node.log",
        extra_params_file=params_file(),  # the checkout's, or share/ovs3d_ros/ when installed
    )
    try:
        client = Ovs3dClient(node)
        client.wait_ready(executor, timeout_s=90.0, proc=proc)
        names = ("image", "camera_info", "pose", "depth") + (
            ("labels",) if args.teacher == "synthetic" else ()
        )
        if not stream.wait_for_subscribers(lambda s: spin_for(executor, s), names=names):
            raise RuntimeError("the node did not subscribe to the camera stream")
        print(f"[demo] node up after {time.monotonic() - t_start:.1f} s; streaming")
        t0 = time.monotonic()
        for i in data.train_indices:
            stream.publish(data.frames[i], stamp=t0 + i / args.rate)
            spin_for(executor, 1.0 / args.rate)
        t_stream = time.monotonic()
        status = client.wait_status(
            executor, lambda s: s.training_time_s >= args.train_time, timeout_s=args.train_time + 60.0
        )
        t_trained = time.monotonic()
        print(
            f"[demo] trained: {status.keyframes} keyframes, {status.iterations} iterations, "
            f"PSNR {status.psnr:.1f} dB"
        )
        info = conv.intrinsics_to_camera_info(held_out.intrinsics, Header(frame_id="map"))
        res = client.query(
            executor,
            data.class_names,
            mask_source=Query.Request.MASK_POSE,
            camera_pose=conv.matrix_to_pose_msg(held_out.pose),
            camera_info=info,
        )
        if not res.success:
            print(f"[demo] query failed: {res.message}")
            return 1
        summary = write_results(res, held_out, data.class_names, out)
        summary.update(
            frames_sent=len(data.train_indices),
            frames_received=int(status.frames_received),
            keyframes=int(status.keyframes),
            iterations=int(status.iterations),
            stream_s=round(t_stream - t0, 1),
            training_s=round(t_trained - t0, 1),
            query_latency_s=round(float(res.latency_s), 3),
            total_s=round(time.monotonic() - t_start, 1),
        )
        outputs.write_json(out / "summary.json", summary)
        print("[demo] " + json.dumps(summary))
        return 0
    finally:
        stop_node_process(proc)
        node.destroy_node()
        context.try_shutdown()


def write_results(res, held_out, class_names: list[str], out: Path) -> dict:
    """PLY + PNGs of the answer, and its mIoU against the held-out view's ground truth."""
    scene = res.scene
    pts = conv.cloud_to_structured(scene.cloud)
    cloud = outputs.LabeledCloud(
        xyz=np.stack([pts["x"], pts["y"], pts["z"]], 1).astype(np.float32),
        rgb=conv.unpack_rgb_float(pts["rgb"]),
        labels=pts["label"].astype(np.uint16),
        scores=pts["score"].astype(np.float32),
    )
    outputs.write_ply(out / "labeled_cloud.ply", cloud)
    label = conv.image_to_numpy(scene.label_image)
    overlay = conv.image_to_numpy(scene.overlay_image)
    colors = np.array([[c.r, c.g, c.b] for c in scene.class_colors]) * 255.0
    gt_overlay = outputs.overlay(held_out.rgb, held_out.labels, colors.astype(np.uint8))
    outputs.write_png(out / "mask.png", label)
    outputs.write_png(out / "overlay.png", overlay)
    outputs.write_png(
        out / "overlay_vs_ground_truth.png", np.concatenate([held_out.rgb, overlay, gt_overlay], axis=1)
    )
    paper = metrics.paper_metrics([label], [held_out.labels], len(class_names))
    conventional = metrics.conventional_miou([label], [held_out.labels], len(class_names))
    return {
        "classes": class_names,
        "points": int(len(cloud)),
        "mask_miou_paper": round(paper.miou, 4),
        "mask_accuracy": round(paper.accuracy, 4),
        "mask_miou_conventional": round(conventional.miou, 4),
    }


if __name__ == "__main__":
    raise SystemExit(main())
