"""Load benchmark: the real node under a 30 Hz RGB-D stream with poses while it trains and a client
queries every few seconds. Samples the node's resident memory (psutil) and GPU memory (nvidia-smi, when
present) over time, plots them to a PNG, and reports query failures, frame drops/supersessions and the
keyframe count against its capacity.

    .venv/bin/python bench/load.py                       # 10 min, 640x480 @ 30 Hz (the target run)
    .venv/bin/python bench/load.py --duration 60 --width 320 --height 240 --rate 10   # the test's size

Writes bench/results/load.json and load.png (or --out). Exit code 1 when a query failed, the node died
or the keyframe buffer exceeded its capacity. The synthetic benchmark teacher (ground-truth label
images on the `labels` topic) stands in for CLIP: no weights can be downloaded here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from ovs3d_ros.data.synthetic import SyntheticScene  # noqa: E402


def gpu_memory_mb(pid: int) -> float | None:
    """GPU memory of process `pid` via nvidia-smi (None when there is no NVIDIA GPU)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        query = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
        out = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid):
            return float(parts[1])
    return 0.0


def keyframe_bytes(scene_frames, class_names: list[str], device: str = "cpu") -> int:
    """Bytes one keyframe holds in the buffer (rgb, depth, CLIP and DINO features as stored)."""
    from ovs3d_ros.config import Config
    from ovs3d_ros.core.keyframes import KeyframeBuffer
    from ovs3d_ros.core.teachers import build_teacher

    cfg = Config(device=device)
    cfg.teacher.kind = "synthetic"
    teacher = build_teacher(cfg.teacher, device, class_names=class_names)
    frame = scene_frames[0]
    feats = teacher.extract(frame)
    buf = KeyframeBuffer(cfg.keyframes, device)
    buf.insert(frame, feats.clip, feats.dino)
    return buf.nbytes()


def node_params(class_names: list[str], capacity: int, checkpoint_dir: str) -> dict:
    return {
        "device": "auto",
        "teacher": {"kind": "synthetic", "synthetic": {"class_names": class_names}},
        "ros": {"pose_source": "pose", "checkpoint_dir": checkpoint_dir, "pose_tolerance_s": 0.01},
        "keyframes": {"min_translation_m": 0.02, "min_rotation_deg": 2.0, "capacity": capacity},
    }


def run_load(duration_s: float, width: int, height: int, rate_hz: float, query_every_s: float,
             capacity: int, views: int = 48, max_points: int = 20000, log_path: Path | None = None,
             sample_every_s: float = 1.0, min_queries: int = 0, min_keyframes: int = 0,
             max_duration_s: float | None = None) -> dict:
    """Stream, train, query; return samples and counters (see the module docstring).

    The run lasts ``duration_s`` and then goes on until ``min_queries`` queries were answered and the
    node holds ``min_keyframes`` keyframes (so a slow machine stretches the run instead of failing a
    count), up to
    ``max_duration_s`` (default 10x ``duration_s``) as a safety net.
    """
    from ovs3d_ros.srv import Query

    from ovs3d_ros.ros.camera_stream import CameraStreamPublisher
    from ovs3d_ros.ros.client import (
        Ovs3dClient,
        init_context,
        spin_for,
        start_node_process,
        stop_node_process,
    )

    data = SyntheticScene(preset="room", seed=5).make_frames(views, 0, width, height)
    frames = [data.frames[i] for i in data.train_indices]
    context, node, executor = init_context()
    stream = CameraStreamPublisher(node, namespace="/load/camera", publish_labels=True)
    ckpt = tempfile.mkdtemp(prefix="ovs3d_load_")
    log_path = Path(log_path or Path(ckpt) / "node.log")
    proc = start_node_process(node_params(data.class_names, capacity, ckpt), remaps=stream.topics(),
                              log_path=log_path)
    client = Ovs3dClient(node)
    samples: list[dict] = []
    queries: list[dict] = []
    try:
        client.wait_ready(executor, timeout_s=120.0, proc=proc)
        stream.wait_for_subscribers(lambda s: spin_for(executor, s),
                                    names=("image", "camera_info", "pose", "depth", "labels"))
        ps = psutil.Process(proc.pid)
        t_start = time.monotonic()
        next_frame = next_sample = t_start
        next_query = t_start + query_every_s
        pending = None
        sent = 0
        stop_at = t_start + (max_duration_s if max_duration_s is not None else 10.0 * duration_s)

        def done(now: float) -> bool:
            keyframes = client.status.keyframes if client.status is not None else 0
            return now >= t_start + duration_s and len(queries) >= min_queries and keyframes >= min_keyframes

        while not done(now := time.monotonic()) and now < stop_at:
            if now >= next_frame:
                stream.publish(frames[sent % len(frames)], stamp=1000.0 + sent / rate_hz)
                sent += 1
                next_frame += 1.0 / rate_hz
                if next_frame < now:  # this process cannot keep up: do not build a backlog
                    next_frame = now + 1.0 / rate_hz
            if now >= next_sample:
                samples.append({"t": now - t_start, "rss_mb": ps.memory_info().rss / 2**20,
                                "gpu_mb": gpu_memory_mb(proc.pid),
                                "keyframes": client.status.keyframes if client.status else 0})
                next_sample += sample_every_s
            if pending is None and now >= next_query:
                pending = (now, client.query_client.call_async(
                    Query.Request(classes=list(data.class_names), max_points=max_points,
                                  mask_source=Query.Request.MASK_NONE)))
            if pending is not None and pending[1].done():
                res = pending[1].result()
                queries.append({"t": pending[0] - t_start, "ok": bool(res.success), "message": res.message,
                                "round_trip_s": time.monotonic() - pending[0],
                                "points": res.scene.cloud.width})
                pending, next_query = None, time.monotonic() + query_every_s
            if proc.poll() is not None:
                break
            executor.spin_once(timeout_sec=0.002)
        if pending is not None:  # wait for the last answer rather than count it lost
            executor.spin_until_future_complete(pending[1], timeout_sec=120.0)
            res = pending[1].result() if pending[1].done() else None
            queries.append({"t": pending[0] - t_start, "ok": bool(res and res.success),
                            "message": res.message if res else "no answer",
                            "round_trip_s": time.monotonic() - pending[0],
                            "points": res.scene.cloud.width if res else 0})
        status = client.wait_status(executor, lambda s: True, 3.0)
        alive = proc.poll() is None
        result = {
            "duration_s": duration_s, "width": width, "height": height, "rate_hz": rate_hz,
            "elapsed_s": time.monotonic() - t_start,
            "frames_sent": sent, "achieved_rate_hz": sent / (time.monotonic() - t_start),
            "capacity": capacity,
            "alive": alive, "samples": samples, "queries": queries,
            "queries_failed": sum(not q["ok"] for q in queries),
            "status": {k: getattr(status, k) for k in (
                "frames_received", "frames_dropped_no_pose", "frames_dropped_invalid", "frames_superseded",
                "keyframes", "keyframe_capacity", "iterations", "training_time_s")} if status else {},
            "log": str(log_path),
        }
        return result
    finally:
        stop_node_process(proc)
        node.destroy_node()
        context.try_shutdown()


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] for s in result["samples"]]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t, [s["rss_mb"] for s in result["samples"]], label="node RSS (MB)")
    gpu = [s["gpu_mb"] for s in result["samples"]]
    if any(g is not None for g in gpu):
        ax.plot(t, [g or 0 for g in gpu], label="node GPU memory (MB)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("MB")
    ax2 = ax.twinx()
    ax2.plot(t, [s["keyframes"] for s in result["samples"]], "k:", label="keyframes")
    ax2.axhline(result["capacity"], color="r", lw=0.8, ls="--", label="capacity")
    ax2.set_ylabel("keyframes")
    for q in result["queries"]:
        ax.axvline(q["t"], color="g" if q["ok"] else "r", alpha=0.2, lw=0.8)
    fig.legend(loc="upper left")
    ax.set_title(f"{result['width']}x{result['height']} @ {result['achieved_rate_hz']:.1f} Hz, "
                 f"{len(result['queries'])} queries ({result['queries_failed']} failed)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds of streaming")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--rate", type=float, default=30.0, help="camera rate, Hz")
    p.add_argument("--query-every", type=float, default=5.0, help="seconds between queries")
    p.add_argument("--capacity", type=int, default=64, help="keyframes.capacity of the node")
    p.add_argument("--views", type=int, default=48, help="distinct synthetic views cycled through")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = p.parse_args(argv)
    os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = run_load(args.duration, args.width, args.height, args.rate, args.query_every, args.capacity,
                      views=args.views, log_path=out / "load_node.log")
    rss = [s["rss_mb"] for s in result["samples"]]
    result["rss_mb"] = {"first": rss[0], "max": max(rss), "last": rss[-1]} if rss else {}
    (out / "load.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "load.png")
    st = result["status"]
    print(json.dumps({k: result[k] for k in ("frames_sent", "achieved_rate_hz", "alive", "queries_failed",
                                             "rss_mb")} | {"queries": len(result["queries"]),
                                                           "median_query_round_trip_s": float(np.median(
                                                               [q["round_trip_s"] for q in result["queries"]]
                                                               or [0]))} | st, indent=1))
    ok = result["alive"] and result["queries_failed"] == 0 and st.get("keyframes", 0) <= args.capacity
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
