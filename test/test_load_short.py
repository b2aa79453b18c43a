"""A short load run (bench/load.py at 320x240): the node trains on a continuous RGB-D stream with poses
while a client queries every few seconds. Memory stays bounded, every query succeeds, and the keyframe
buffer never exceeds its capacity. The full 10-minute 640x480 @ 30 Hz run: `python bench/load.py`."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import load  # noqa: E402  (bench/load.py)

from ovs3d_ros.data.synthetic import SyntheticScene  # noqa: E402

pytestmark = pytest.mark.ros

# At least 60 s, then on until three queries are answered and the buffer is full: a cloud query takes
# 2-20 s on the 2-core CI machine while the node trains on a 10 Hz stream, more on a busy one, and the
# run waits for the answers rather than counting how many fit into a window.
DURATION_S, WIDTH, HEIGHT, RATE_HZ, MIN_QUERIES = 60.0, 320, 240, 10.0, 3
CAPACITY = 6
# Fixed slack on top of the keyframes. The field, Adam states and occupancy grid exist before the
# first sample; after it come the training step's autograd working set at the default budgets
# (1024 rays x up to 80 samples through two hash grids and MLPs), the query's surface/cloud buffers,
# DDS message pools, and glibc's per-thread malloc arenas (executor + assembler + training threads),
# which keep freed blocks (the node runs with MALLOC_ARENA_MAX=2 to limit those). Measured here: the
# last quarter's median 1.4 to 1.9 GB above the first sample (bench/load.py plots it).
FIXED_SLACK_MB = 2500.0
# The last quarter's floor (minimum) may exceed the second quarter's by this much. In a 60 s run glibc's
# are still filling (measured: +0.1 to +0.4 GB between those quarters, flat only after minutes, see the
# 10-minute bench/results/load_640x480_30hz_10min.*), so this catches a leak of >= ~20 MB/s, not a slow
# one; the 10-minute run is the plateau check.
WARM_SLACK_MB = 600.0


def test_memory_bounded_queries_succeed_capacity_respected(tmp_path):
    scene = SyntheticScene(preset="room", seed=5).make_frames(1, 0, WIDTH, HEIGHT)
    per_keyframe = load.keyframe_bytes(scene.frames, scene.class_names)
    result = load.run_load(DURATION_S, WIDTH, HEIGHT, RATE_HZ, query_every_s=4.0, capacity=CAPACITY,
                           views=24, log_path=tmp_path / "node.log", min_queries=MIN_QUERIES,
                           min_keyframes=CAPACITY,
                           max_duration_s=600.0)
    log = (tmp_path / "node.log").read_text()[-3000:]
    assert result["alive"], log
    st = result["status"]
    assert st["frames_received"] > 0.5 * result["frames_sent"], st
    assert result["elapsed_s"] < 600.0, "the run hit its safety net before its queries/keyframes"
    assert st["keyframes"] == CAPACITY, st  # 24 distinct views fill the buffer ...
    assert max(s["keyframes"] for s in result["samples"]) <= CAPACITY  # ... and never overflow it
    queries = result["queries"]
    assert len(queries) >= MIN_QUERIES and all(q["ok"] for q in queries), [q["message"] for q in queries]
    assert all(q["points"] > 0 for q in queries)
    rss = np.array([s["rss_mb"] for s in result["samples"]])
    trace = " ".join(str(round(r)) for r in rss)  # the whole trace in a failure message, not pytest's "..."
    quarter = len(rss) // 4
    bound_mb = CAPACITY * per_keyframe / 2**20 + FIXED_SLACK_MB
    growth = np.median(rss[3 * quarter:]) - rss[0]
    assert growth < bound_mb, f"RSS grew {growth:.0f} MB (bound {bound_mb:.0f} MB: {CAPACITY} keyframes x " \
                              f"{per_keyframe / 2**20:.1f} MB + {FIXED_SLACK_MB:.0f} MB): {trace}"
    # bounded, not merely slow growth: the floor of the last quarter (RSS between the transient buffers of
    # queries, up to ~1 GB that are returned right after: 1.7 -> 3.0 -> 1.9 GB within seconds, measured)
    # stays near the second quarter's. A leak lifts the floor; a query in flight at a sample does not,
    # which made the median of a quarter swing by 0.4-0.8 GB between runs of unchanged code.
    settled, last = rss[quarter:2 * quarter].min(), rss[3 * quarter:].min()
    assert last - settled < WARM_SLACK_MB, f"floor {settled:.0f} -> {last:.0f} MB: {trace}"
    load.plot(result, tmp_path / "load.png")
    assert (tmp_path / "load.png").stat().st_size > 1000
