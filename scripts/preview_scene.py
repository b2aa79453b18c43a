#!/usr/bin/env python3
"""Write a PNG grid (RGB | labels | depth) of a few views of a synthetic scene, and time rendering."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ovs3d_ros.data.preview import preview
from ovs3d_ros.data.synthetic import PRESETS, SyntheticScene, intrinsics_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="room", choices=PRESETS)
    parser.add_argument("--out", default="outputs/preview.png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--views", type=int, default=6)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--time", action="store_true", help="also report render time at 160x120 and 640x480")
    args = parser.parse_args()
    path = preview(args.preset, args.out, args.seed, args.views, args.width, args.height)
    print(f"wrote {path}")
    if args.time:
        scene = SyntheticScene(args.preset, seed=args.seed)
        poses = scene.camera_path(8)
        for w, h in ((160, 120), (640, 480)):
            intr = intrinsics_for(w, h)
            scene.render(intr, poses[0])
            t0 = time.perf_counter()
            for pose in poses:
                scene.render(intr, pose)
            print(f"{args.preset} {w}x{h}: {1000 * (time.perf_counter() - t0) / len(poses):.1f} ms per view")


if __name__ == "__main__":
    main()
