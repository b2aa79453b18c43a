import json
import sys

for f in sys.argv[1:]:
    for r in json.load(open(f)):
        t = r["2d_teacher"]["per_class_iou"]
        d = r["3d"]["per_class_iou"]
        below = [
            f"{k} {100 * d[k]:.1f}/{100 * t[k]:.1f}"
            for k in d
            if t.get(k) is not None and d[k] is not None and t[k] >= 0.2 and d[k] < t[k]
        ]
        small = {
            k: f"{100 * d[k]:.1f}/{100 * t[k]:.1f}"
            for k in d
            if k in ("orange ball", "red apple", "yellow bottle", "white mug")
        }
        print(
            f.split("/")[-1][:28],
            r["preset"],
            r["seed"],
            r["variant"],
            f"3D {100 * r['3d']['paper_miou']:.1f} T {100 * r['2d_teacher']['paper_miou']:.1f}",
            small,
            "BELOW:",
            below,
        )
