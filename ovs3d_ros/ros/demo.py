"""The built-in demo: a generated 360° scene streamed through the real ovs3d node over ROS 2 topics
(Image, CameraInfo, PoseStamped, depth) like a robot camera, trained on, then queried from this
separate process. Writes the cloud (PLY), masks and overlays (PNG) and prints a summary with the mask's
mIoU on a held-out view.

Teacher: the clearly named *synthetic* benchmark teacher (no CLIP weights can be downloaded here). It
needs the scene's ground-truth labels: they travel on the node's `labels` topic, one mono8 image per
colour image with the same stamp, and the node hands them to the teacher only (never to training
targets directly). With `--teacher clip` the node uses the real open_clip/timm path with the project's
own tiny CLIP + DINO (models/tiny, trained by scripts/train_tiny_models.py), or with
`--clip-weights config` the weights config/ovs3d.yaml names.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
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


def demo_params(class_names: list[str], teacher: str, device: str, clip_weights: str = "tiny") -> dict:
    """Node parameters of the demo on top of config/ovs3d.yaml: small, CPU-friendly budgets."""
    params = {
        "device": device,
        "ros": {"pose_source": "pose", "world_frame": "map", "pose_tolerance_s": 0.02},
        "teacher": {"kind": teacher},
        "keyframes": {"min_translation_m": 0.05, "min_rotation_deg": 5.0},
    }
    if teacher == "synthetic":
        params["teacher"]["synthetic"] = {"class_names": class_names}
    if teacher == "clip" and clip_weights == "tiny":
        tiny = tiny_clip_params()
        params["teacher"].update(tiny["teacher"])
        params["field"] = tiny["field"]
    return params


def tiny_clip_params() -> dict:
    """Nested parameters (teacher.*, field.clip_dim) selecting the project's own tiny CLIP + DINO
    (models/tiny, no download)."""
    from ovs3d_ros.core.teachers.tiny import tiny_teacher_settings
    from ovs3d_ros.ros.paths import tiny_models_dir

    nested: dict = {}
    for key, value in tiny_teacher_settings(tiny_models_dir()).items():
        *groups, leaf = key.split(".")
        node = nested
        for group in groups:
            node = node.setdefault(group, {})
        node[leaf] = value
    return nested


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="room", help="synthetic scene preset (room, table, clutter, desk)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=160)
    p.add_argument("--height", type=int, default=120)
    p.add_argument("--frames", type=int, default=36, help="training views streamed")
    p.add_argument("--rate", type=float, default=3.0, help="camera rate, Hz")
    p.add_argument(
        "--semantic-iterations",
        type=int,
        default=500,
        help="train until the node reports this many iterations with the feature distillation on; "
        "on a slow or busy machine the wait stretches instead of the training being cut short",
    )
    p.add_argument("--max-wait", type=float, default=900.0, help="safety net for that wait, seconds")
    p.add_argument("--teacher", default="synthetic", choices=["synthetic", "clip"])
    p.add_argument("--clip-weights", default="tiny", choices=["tiny", "config"],
                   help="with --teacher clip: the committed tiny CLIP + DINO (models/tiny), or the "
                        "weights config/ovs3d.yaml names (teacher.clip.*, teacher.dino.*)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="outputs/demo")
    p.add_argument("--record", default="", help="also write the summary here")
    p.add_argument("--record-runs", default="", metavar="FILE",
                   help="also append the summary, labelled with --run-label, to the 'runs' list of this "
                        "JSON file (bench/results/demo_cpu_runs.json: the README's table of runs)")
    p.add_argument("--run-label", default="", help="what this run was, for --record-runs")
    return p.parse_args(argv)


def node_config(params: dict):
    """The Config the node runs with: config/ovs3d.yaml under the demo's parameters."""
    from ovs3d_ros.config import from_nested, load_yaml

    return from_nested(params, base=load_yaml(params_file()))


def _stream_training_views(stream, executor, data, rate_hz: float) -> float:
    """Publish the training views at ``rate_hz`` (stamps on that clock); returns the stream's start."""
    t0 = time.monotonic()
    for i in data.train_indices:
        stream.publish(data.frames[i], stamp=t0 + i / rate_hz)
        spin_for(executor, 1.0 / rate_hz)
    return t0


def _query_view(client, executor, class_names: list[str], view):
    """The node's answer for ``view``'s camera (pose + CameraInfo in the world frame)."""
    info = conv.intrinsics_to_camera_info(view.intrinsics, Header(frame_id="map"))
    return client.query(executor, class_names, mask_source=Query.Request.MASK_POSE,
                        camera_pose=conv.matrix_to_pose_msg(view.pose), camera_info=info)


def _run_record(args, data, status, reached: bool, res, times: dict[str, float]) -> dict:
    """What the run was and how it went, beside the result's metrics in summary.json."""
    return dict(
        preset=args.preset,
        seed=args.seed,
        resolution=[args.width, args.height],
        frames_sent=len(data.train_indices),
        frames_received=int(status.frames_received),
        frames_superseded=int(status.frames_superseded),
        frames_dropped=int(status.frames_dropped_no_pose + status.frames_dropped_invalid),
        keyframes=int(status.keyframes),
        iterations=int(status.iterations),
        semantic_iterations=int(status.semantic_iterations),
        semantic_iterations_target=args.semantic_iterations,
        training_target_reached=bool(reached),
        psnr_db=round(float(status.psnr), 2),
        stream_s=round(times["stream"] - times["t0"], 1),
        training_wait_s=round(times["trained"] - times["stream"], 1),
        query_latency_s=round(float(res.latency_s), 3),
        query_message=res.message,
        total_s=round(time.monotonic() - times["start"], 1),
        loadavg_1min=[round(times["load"], 2), round(os.getloadavg()[0], 2)],
        cpu_count=os.cpu_count(),
    )


def _train_and_query(args, data, out: Path, node, executor, proc, stream, times: dict) -> dict | None:
    """Stream, wait for the training target, query the held-out view; the summary, or None on failure."""
    client = Ovs3dClient(node)
    client.wait_ready(executor, timeout_s=90.0, proc=proc)
    names = ("image", "camera_info", "pose", "depth") + (("labels",) if args.teacher == "synthetic" else ())
    if not stream.wait_for_subscribers(lambda s: spin_for(executor, s), names=names):
        raise RuntimeError("the node did not subscribe to the camera stream")
    print(f"[demo] node up after {time.monotonic() - times['start']:.1f} s; streaming")
    times["t0"] = _stream_training_views(stream, executor, data, args.rate)
    times["stream"] = time.monotonic()
    status = wait_for_training(client, executor, args.semantic_iterations, args.max_wait, proc)
    times["trained"] = time.monotonic()
    if status is None:
        print("[demo] no status from the node")
        return None
    reached = status.semantic_iterations >= args.semantic_iterations
    if not reached:
        print(f"[demo] WARNING: only {status.semantic_iterations} of {args.semantic_iterations} semantic "
              f"iterations after {args.max_wait:.0f} s (--max-wait); querying the model as it is")
    print(f"[demo] trained: {status.keyframes} keyframes, {status.iterations} iterations "
          f"({status.semantic_iterations} semantic), PSNR {status.psnr:.1f} dB; querying")
    held_out = data.frames[data.test_indices[0]]
    res = _query_view(client, executor, data.class_names, held_out)
    if not res.success:
        print(f"[demo] query failed: {res.message}")
        return None
    params = demo_params(data.class_names, args.teacher, args.device)
    teacher_2d = teacher_prediction(node_config(params), data.class_names, held_out)
    summary = write_results(res, held_out, data.class_names, out, teacher_2d)
    summary.update(_run_record(args, data, status, reached, res, times))
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    times = {"start": time.monotonic(), "load": os.getloadavg()[0]}
    scene = SyntheticScene(preset=args.preset, seed=args.seed)
    data = scene.make_frames(args.frames, 1, args.width, args.height)
    print(f"[demo] scene '{args.preset}': classes {data.class_names}, {args.frames} views "
          f"{args.width}x{args.height} + 1 held-out view")
    params = demo_params(data.class_names, args.teacher, args.device, args.clip_weights)
    context, node, executor = init_context()
    stream = CameraStreamPublisher(node, namespace="/demo/camera", publish_labels=args.teacher == "synthetic")
    proc = start_node_process(params, remaps=stream.topics(), log_path=out / "node.log",
                              extra_params_file=params_file())  # the checkout's, or share/ovs3d_ros/
    try:
        summary = _train_and_query(args, data, out, node, executor, proc, stream, times)
        if summary is None:
            return 1
        outputs.write_json(out / "summary.json", summary)
        if args.record:
            outputs.write_json(Path(args.record), summary)
        if args.record_runs:
            append_run(Path(args.record_runs), summary, args.run_label)
        print("[demo] " + json.dumps(summary))
        return 0
    finally:
        stop_node_process(proc)
        node.destroy_node()
        context.try_shutdown()


def append_run(path: Path, summary: dict, label: str) -> None:
    """Add ``summary`` as ``label`` to the runs file at ``path`` ({"command", "runs": [...]}); a new
    file is started when there is none. The file is only ever written by demo runs."""
    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    runs.append({**summary, "run": label or f"run {len(runs) + 1}"})
    outputs.write_json(path, {"command": "bash scripts/demo.sh --record-runs <file> --run-label <what>",
                              "runs": runs})


def wait_for_training(client, executor, target: int, max_wait_s: float, proc):
    """Spin until the node's status reports ``target`` semantic iterations (or the node exits, or
    ``max_wait_s`` passes), showing keyframes, iterations, PSNR and the feature loss meanwhile: a
    progress bar on a terminal, a line every 10 s in a log."""
    from tqdm import tqdm

    interactive = sys.stdout.isatty()
    bar = tqdm(total=target, desc="[demo] semantic iterations", unit="it", disable=not interactive,
               dynamic_ncols=True, file=sys.stdout)
    deadline = time.monotonic() + max_wait_s
    last_line = 0.0
    seen = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            executor.spin_once(timeout_sec=0.2)
            status = client.status
            if status is None or status is seen:
                continue
            seen = status
            progress = progress_fields(status)
            bar.n = min(int(status.semantic_iterations), target)
            bar.set_postfix(progress, refresh=True)
            if not interactive and time.monotonic() - last_line >= 10.0:
                last_line = time.monotonic()
                print("[demo] training: " + ", ".join(f"{k} {v}" for k, v in progress.items()), flush=True)
            if status.semantic_iterations >= target:
                break
    finally:
        bar.close()
    return client.status


def progress_fields(status) -> dict:
    losses = dict(zip(status.loss_names, status.loss_values, strict=False))
    fields = {
        "keyframes": status.keyframes,
        "iterations": status.iterations,
        "semantic": status.semantic_iterations,
        "PSNR": f"{status.psnr:.1f} dB",
    }
    if "feature" in losses:
        fields["feature loss"] = f"{losses['feature']:.3f}"
    return fields


def teacher_prediction(cfg, class_names: list[str], frame) -> np.ndarray | None:
    """The 2D teacher's own labels on ``frame`` (argmax of its relevancy maps), the teacher built as the
    node builds it; None when it cannot be built here (e.g. real CLIP weights that are not installed)."""
    import torch

    from ovs3d_ros.core.teachers import build_teacher, teacher_labels

    try:
        teacher = build_teacher(cfg.teacher, "cpu", class_names=class_names)
    except Exception as exc:  # noqa: BLE001 - the comparison is optional, the node's answer is not
        print(f"[demo] no 2D teacher comparison: {exc}")
        return None
    with torch.no_grad():
        text = teacher.encode_text(class_names).float()
        clip = teacher.extract(frame).clip.float()
        return teacher_labels(clip, text, frame.height, frame.width).numpy()


def write_results(res, held_out, class_names: list[str], out: Path, teacher_2d: np.ndarray | None) -> dict:
    """PLY + PNGs of the answer, and its mIoU (and the 2D teacher's) against the held-out ground truth."""
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
    colors = (np.array([[c.r, c.g, c.b] for c in scene.class_colors]) * 255.0).astype(np.uint8)
    gt_overlay = outputs.overlay(held_out.rgb, held_out.labels, colors)
    outputs.write_png(out / "mask.png", label)
    outputs.write_png(out / "overlay.png", overlay)
    panels = [held_out.rgb, overlay]
    if teacher_2d is not None:
        teacher_labels = outputs.label_image(teacher_2d, len(class_names))
        panels.append(outputs.overlay(held_out.rgb, teacher_labels, colors))
    outputs.write_png(out / "overlay_vs_ground_truth.png", np.concatenate([*panels, gt_overlay], axis=1))
    c = len(class_names)
    paper = metrics.paper_metrics([label], [held_out.labels], c)
    conventional = metrics.conventional_miou([label], [held_out.labels], c)
    summary = {
        "classes": class_names,
        "points": int(len(cloud)),
        "mask_miou_paper": round(paper.miou, 4),
        "mask_accuracy": round(paper.accuracy, 4),
        "mask_miou_conventional": round(conventional.miou, 4),
        "per_class_iou": _per_class(class_names, paper),
    }
    if teacher_2d is not None:
        teacher = metrics.paper_metrics([teacher_2d], [held_out.labels], c)
        summary.update(
            teacher_miou_paper=round(teacher.miou, 4),
            teacher_accuracy=round(teacher.accuracy, 4),
            teacher_per_class_iou=_per_class(class_names, teacher),
            margin_points=round(100.0 * (paper.miou - teacher.miou), 1),
        )
    return summary


def _per_class(class_names: list[str], result) -> dict[str, float]:
    return {n: round(float(v), 4) for n, v in zip(class_names, result.per_class_iou, strict=True)}


if __name__ == "__main__":
    raise SystemExit(main())
