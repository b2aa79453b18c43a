"""Query latency, the reference renderer against the surface-guided one side by side on ONE trained field.

Trains a field briefly on a generated scene whose keyframes are ``--width`` x ``--height`` (640x480 by
default; the synthetic teacher, so no weights are needed), then, on that same field:

- the mask of a keyframe camera (the measured-depth path) and of each held-out view (the depth-pass
  path), rendered by ``query.mask_renderer=reference`` and ``=surface``: latency, label agreement, and
  the paper mIoU of both against the held-out ground truth;
- the labeled cloud: the first query (surface + latents), the old per-query labelling (expanded
  features through ``classify``) and a repeated query with a new vocabulary (cached points and latents,
  text encoder + one matmul);
- the refine burst and the repeated refined query, as before.

    .venv/bin/python bench/query.py --steps 60 --points 300000 --threads 1 --out bench/results/query_cpu

Latency does not depend on how converged the field is, only on sizes; agreement and mIoU do, which is
why ``bench/semantic_eval.py --renderers reference surface`` measures mIoU on better-trained fields.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from results_files import write_json_and_md  # noqa: E402  (bench/ is this script's folder)

from ovs3d_ros.config import apply_flat, build_config  # noqa: E402
from ovs3d_ros.core import metrics  # noqa: E402
from ovs3d_ros.core.evaluation import ground_truth_of  # noqa: E402
from ovs3d_ros.core.query import Segmenter, classify  # noqa: E402
from ovs3d_ros.core.scene_training import TrainPlan, train_scene  # noqa: E402
from ovs3d_ros.data.scene_spec import open_scene  # noqa: E402


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(device: str, fn):
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t


def bench_masks(trainer, teacher, dataset, device: str) -> dict:
    """Both renderers on the keyframe camera 0 and on every held-out view."""
    names = list(dataset.class_names)
    segs = {r: Segmenter(trainer, teacher, apply_flat(trainer.cfg, {"query.mask_renderer": r}))
            for r in ("reference", "surface")}
    cameras = [("keyframe 0 (measured depth)", 0, None)] + [
        (f"held-out {k}", (f.intrinsics, f.pose), f) for k, f in enumerate(dataset.test_frames)]
    rows, preds, gts = [], {"reference": [], "surface": []}, []
    for label, camera, frame in cameras:
        row = {"camera": label}
        images = {}
        for renderer, seg in segs.items():
            res, seconds = timed(device, lambda seg=seg, camera=camera: seg.segment(names, camera=camera,
                                                                                     cloud=False))
            images[renderer] = res.label_image
            row[f"{renderer}_s"] = seconds
            row[f"{renderer}_render_s"] = res.timing_s["render_s"]
            if "mask_fallback_fraction" in res.timing_s:
                row["fallback_fraction"] = res.timing_s["mask_fallback_fraction"]
            row["size"] = f"{res.label_image.shape[1]}x{res.label_image.shape[0]}"
        row["agreement"] = float((images["reference"] == images["surface"]).mean())
        if frame is not None and frame.labels is not None:
            gt = ground_truth_of(frame)
            for renderer in preds:
                preds[renderer].append(images[renderer].astype(np.int64))
            gts.append(gt)
        rows.append(row)
    miou = {r: metrics.paper_metrics(p, gts, len(names)).miou for r, p in preds.items()} if gts else {}
    return {"views": rows, "paper_miou": miou}


def bench_cloud(trainer, teacher, dataset, device: str, points: int) -> dict:
    names = list(dataset.class_names)
    seg = Segmenter(trainer, teacher, trainer.cfg)
    first, first_s = timed(device, lambda: seg.segment(names, max_points=points))
    cached = seg.point_cache.get(trainer, seg.point_cache.key(trainer, seg._keyframes(),
                                                             (points, trainer.cfg.query.voxel_size_m,
                                                              trainer.cfg.seed)))
    text = seg._text(names)
    # today's labelling of the same points: the (N, D) expanded features, then classify
    q = trainer.cfg.query
    old, old_s = timed(device, lambda: classify(cached.features(), text, q.score_temperature,
                                                q.score_threshold, rule=q.decision_rule))
    other = list(reversed(names)) + ["chair"]  # a new vocabulary on the unchanged field
    repeat, repeat_s = timed(device, lambda: seg.segment(other, max_points=points))
    flipped = np.where(first.labels == 65535, 65535, len(names) - 1 - first.labels.astype(np.int64))
    same = repeat.labels < len(names)
    return {"points": len(first.points), "first_query_s": first_s, "first_breakdown": first.timing_s,
            "old_labels_s": old_s, "repeat_query_s": repeat_s, "repeat_breakdown": repeat.timing_s,
            "repeat_cache_hit": bool(repeat.timing_s.get("point_cache_hit")),
            "old_vs_new_labels_agree": float((old.labels.cpu().numpy().astype(np.int64)
                                              == np.where(first.labels == 65535, -1, first.labels)).mean()),
            "repeat_matches_first_where_not_chair": float((repeat.labels[same] == flipped[same]).mean())
            if same.any() else float("nan")}


def bench_depthless(trainer, teacher, dataset, device: str, points: int) -> dict:
    """The cloud when keyframes have no sensor depth (a depth image lost in transport; a camera without
    depth): their points are the field's surface rendered from their cameras, kept per keyframe across
    training steps (``query.rendered_points_max_age_steps``). Side by side on this field: the first
    query (renders them), the next one after a training step (keeps them), and the same with keeping
    switched off (``query.rendered_points_max_age_steps=0`` and no age fraction: rendered again, as
    every query did before), against every keyframe with depth. Runs last: it trains a few steps."""
    from ovs3d_ros.core import surface

    names = list(dataset.class_names)
    keyframes = trainer.keyframes.snapshot()
    depths = [kf.depth for kf in keyframes]

    def after_a_step(seg):
        trainer.step()
        trainer.field.eval()
        return timed(device, lambda: seg.segment(names, max_points=points))

    out = {}
    try:
        seg = Segmenter(trainer, teacher, trainer.cfg)
        seg.prepare_cloud_geometry(points)
        result, out["all_depth_after_a_step_s"] = after_a_step(seg)
        out["all_depth_points"] = len(result.points)
        fraction = surface.RENDERED_POINTS_AGE_FRACTION
        for what, lost in (("one_without_depth", keyframes[:1]), ("none_with_depth", keyframes)):
            for kf in lost:
                kf.depth = None
            seg = Segmenter(trainer, teacher, trainer.cfg)
            result, first_s = timed(device, lambda seg=seg: seg.segment(names, max_points=points))
            _, kept_s = after_a_step(seg)
            surface.RENDERED_POINTS_AGE_FRACTION = 0.0
            no_keep = apply_flat(trainer.cfg, {"query.rendered_points_max_age_steps": 0})
            off = Segmenter(trainer, teacher, no_keep)
            off.segment(names, max_points=points)
            _, again_s = after_a_step(off)
            surface.RENDERED_POINTS_AGE_FRACTION = fraction
            out[what] = {"keyframes_without_depth": len(lost), "points": len(result.points),
                         "first_query_s": first_s, "after_a_step_kept_s": kept_s,
                         "after_a_step_rendered_again_s": again_s}
    finally:
        surface.RENDERED_POINTS_AGE_FRACTION = fraction
        for kf, depth in zip(keyframes, depths, strict=True):
            kf.depth = depth
    return out


def bench_refine(trainer, teacher, dataset, device: str, refine_time: float) -> dict:
    names = list(dataset.class_names)
    seg = Segmenter(trainer, teacher, trainer.cfg)
    refined, refine_s = timed(device, lambda: seg.segment(names, refine=True, max_time_s=refine_time,
                                                          cloud=False))
    _, cached_s = timed(device, lambda: seg.segment(names, refine=True))
    return {"refine_s": refine_s, "refine_steps": refined.timing_s.get("refine_steps"),
            "refine_collect_s": refined.timing_s.get("refine_collect_s"), "refined_repeat_s": cached_s}


def bench_device(device: str, args) -> dict:
    sets = ["teacher.kind=synthetic", "keyframes.min_translation_m=0.0", "keyframes.min_rotation_deg=0.0",
            "field.occupancy_warmup_steps=32", f"query.max_points={args.points}"] + args.set
    cfg = build_config(None, sets)
    dataset = open_scene(f"synthetic:{args.scene},train={args.frames},test={args.test},"
                         f"width={args.width},height={args.height}")
    t = time.perf_counter()
    trainer, teacher, _ = train_scene(dataset, cfg, TrainPlan(steps=args.steps), None,
                                      progress=False, device=device)
    train_s = time.perf_counter() - t
    Segmenter(trainer, teacher, trainer.cfg).segment(list(dataset.class_names), max_points=1000)  # warm-up
    result = {"device": device, "threads": torch.get_num_threads(), "train_s": train_s,
              "setup": vars(args).copy(), "masks": bench_masks(trainer, teacher, dataset, device),
              "cloud": bench_cloud(trainer, teacher, dataset, device, args.points)}
    if args.refine_time > 0:
        result["refine"] = bench_refine(trainer, teacher, dataset, device, args.refine_time)
    result["depthless"] = bench_depthless(trainer, teacher, dataset, device, args.points)
    return result


def markdown(results: list[dict], command: str) -> str:
    lines = ["# bench/query.py: reference vs surface-guided masks, cached cloud latents (issue 15)", "",
             f"    {command}", ""]
    for r in results:
        s = r["setup"]
        lines += [f"## {r['device']}, {r['threads']} thread(s): {s['frames']} keyframes "
                  f"{s['width']}x{s['height']}, {s['steps']} training steps ({r['train_s']:.0f} s)", "",
                  "| mask camera | size | reference s | surface s | speed-up | labels agree |",
                  "|---|---|---|---|---|---|"]
        for v in r["masks"]["views"]:
            lines.append(f"| {v['camera']} | {v['size']} | {v['reference_s']:.2f} | {v['surface_s']:.2f} | "
                         f"{v['reference_s'] / v['surface_s']:.1f}x | {100 * v['agreement']:.2f} % |")
        m = r["masks"]["paper_miou"]
        if m:
            lines += ["", f"Held-out paper mIoU on this field: reference {100 * m['reference']:.1f}, "
                          f"surface {100 * m['surface']:.1f}."]
        c = r["cloud"]
        rb = c["repeat_breakdown"]
        lines += ["", "| cloud of %d points | s |" % c["points"], "|---|---|",
                  f"| first query (surface + latents + labels) | {c['first_query_s']:.2f} |",
                  f"| labels the old way (expanded features, classify) | {c['old_labels_s']:.2f} |",
                  f"| labels from the latents (one matmul), in the first query | "
                  f"{c['first_breakdown']['cloud_labels_s']:.3f} |",
                  f"| repeated query, new vocabulary (cache hit: {c['repeat_cache_hit']}) | "
                  f"{c['repeat_query_s']:.3f} (text {rb['text_s']:.3f}, labels {rb['cloud_labels_s']:.3f}) |",
                  "", f"Old vs new cloud labels agree on {100 * c['old_vs_new_labels_agree']:.2f} % of "
                  "points."]
        d = r.get("depthless")
        if d:
            lines += ["", "| cloud after a training step, keyframes without sensor depth | points | first "
                          "query s | after a step: points kept s | after a step: rendered again s |",
                      "|---|---|---|---|---|",
                      f"| none (every keyframe with depth) | {d['all_depth_points']} | | "
                      f"{d['all_depth_after_a_step_s']:.2f} | |"]
            for key in ("one_without_depth", "none_with_depth"):
                e = d[key]
                lines.append(f"| {e['keyframes_without_depth']} of {s['frames']} | {e['points']} | "
                             f"{e['first_query_s']:.2f} | {e['after_a_step_kept_s']:.2f} | "
                             f"{e['after_a_step_rendered_again_s']:.2f} |")
        if "refine" in r:
            f = r["refine"]
            lines += ["", f"Refine burst {f['refine_s']:.2f} s ({f['refine_steps']:.0f} steps, refine set "
                          f"{f['refine_collect_s']:.2f} s); repeated refined query "
                          f"{f['refined_repeat_s']:.2f} s."]
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps before timing")
    parser.add_argument("--scene", default="room")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--test", type=int, default=1, help="held-out views (masks + mIoU)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--points", type=int, default=300_000, help="cloud cap (query.max_points)")
    parser.add_argument("--refine-time", type=float, default=10.0, help="0 = skip the refine burst")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", help="write OUT.json and OUT.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = []
    for device in devices:
        r = bench_device(device, args)
        results.append(r)
        for v in r["masks"]["views"]:
            print(f"[{device}] mask {v['camera']} {v['size']}: reference {v['reference_s']:.2f} s, surface "
                  f"{v['surface_s']:.2f} s ({v['reference_s'] / v['surface_s']:.1f}x), labels agree "
                  f"{100 * v['agreement']:.2f} % (surface fallback "
                  f"{100 * v.get('fallback_fraction', 0):.1f} %)",
                  flush=True)
        m = r["masks"]["paper_miou"]
        if m:
            print(f"[{device}] held-out paper mIoU: reference {100 * m['reference']:.1f}, surface "
                  f"{100 * m['surface']:.1f}")
        c = r["cloud"]
        print(f"[{device}] cloud {c['points']} points: first query {c['first_query_s']:.2f} s; old labels "
              f"{c['old_labels_s']:.2f} s; repeated query with a new vocabulary {c['repeat_query_s']:.3f} s "
              f"(cache hit {c['repeat_cache_hit']}, labels {c['repeat_breakdown']['cloud_labels_s']:.3f} s)")
        for e in r["depthless"].values():
            if isinstance(e, dict):
                print(f"[{device}] cloud, {e['keyframes_without_depth']} keyframes without depth: first "
                      f"query {e['first_query_s']:.2f} s; after a step {e['after_a_step_kept_s']:.2f} s "
                      f"(points kept), {e['after_a_step_rendered_again_s']:.2f} s (rendered again)",
                      flush=True)
        if "refine" in r:
            f = r["refine"]
            print(f"[{device}] refine burst {f['refine_s']:.2f} s; repeated refined query "
                  f"{f['refined_repeat_s']:.2f} s")
    if args.out:
        command = "python bench/query.py " + " ".join(sys.argv[1:])
        write_json_and_md(args.out, results, markdown(results, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
