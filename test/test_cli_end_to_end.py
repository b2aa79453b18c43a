"""``ovs3d`` end to end on generated scenes: the synthetic teacher (train -> query -> render -> eval)
and the real CLIP/DINO code path with tiny random-weight models loaded from files."""

import json
import sys
from pathlib import Path

import numpy as np
import yaml

from ovs3d_ros import cli
from ovs3d_ros.config import to_nested
from ovs3d_ros.core import outputs

sys.path.insert(0, str(Path(__file__).parent))

TINY = {
    "field": {"num_levels": 4, "log2_hashmap_size": 12, "max_resolution": 128, "hidden_dim": 32,
              "semantic_num_levels": 4, "semantic_log2_hashmap_size": 12, "semantic_max_resolution": 64,
              "occupancy_warmup_steps": 10},
    "trainer": {"rays_per_step": 256, "samples_per_ray": 16, "importance_samples": 8,
                "render_samples_per_ray": 16, "render_importance_samples": 8, "semantic_start_step": 2},
    "semantic": {"rays_per_step": 128, "fda_window": 6, "fda_windows_per_step": 1},
    "query": {"refine_rays": 256, "refine_windows": 2, "refine_max_steps": 5, "voxel_size_m": 0.05},
    "keyframes": {"min_translation_m": 0.0, "min_rotation_deg": 0.0},
}


def _write_config(path: Path, extra: dict | None = None) -> str:
    data = json.loads(json.dumps(TINY))
    for section, values in (extra or {}).items():
        data.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_synthetic_train_query_render_eval(tmp_path, capsys):
    config = _write_config(tmp_path / "tiny.yaml", {"teacher": {"kind": "synthetic",
                                                                "synthetic": {"embed_dim": 32}}})
    data = "synthetic:table,train=4,test=1,width=32,height=24"
    run = tmp_path / "run"
    assert cli.main(["train", data, "--out", str(run), "--config", config, "--steps", "6", "--vocabulary",
                     "--set", "trainer.seed=1", "--quiet"]) == 0
    ckpt = run / "model.ckpt"
    assert ckpt.is_file() and json.loads(Path(str(ckpt) + ".json").read_text())["class_names"]

    q = tmp_path / "q"
    assert cli.main(["query", str(ckpt), "--classes", "table", "floor", "wall", "mug", "--views", "0", "2",
                     "--out", str(q), "--max-points", "300"]) == 0
    cloud = outputs.read_ply(q / "cloud_kf0.ply")
    assert 0 < len(cloud) <= 300 and int(cloud.labels.max()) < 4
    for name in ("labels_kf2.png", "overlay_kf2.png", "scores_kf2.png"):
        assert (q / name).is_file()
    summary = json.loads((q / "summary.json").read_text())
    assert summary["queries"][0]["class_names"] == ["table", "floor", "wall", "mug"]

    r = tmp_path / "r"
    assert cli.main(["render", str(ckpt), "--pose", "0", "-2", "1", "0.5", "0", "0", "0.8660254",
                     "--out", str(r)]) == 0
    assert outputs.read_png(r / "rendered.png").shape == (24, 32, 3)

    e = tmp_path / "e"
    capsys.readouterr()
    assert cli.main(["eval", data, "--ckpt", str(ckpt), "--out", str(e), "--quiet"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((e / "report.json").read_text())
    assert "mIoU (paper)" in printed and report["held_out"]
    for side in ("3d", "2d_teacher"):
        assert 0.0 <= report[side]["paper_miou"] <= 1.0
        assert set(report[side]["per_class_iou"]) == set(report["classes"])
    assert (e / "figures" / "view00_rgb_gt_3d_2d.png").is_file()


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert cli.main(["query", str(tmp_path / "none.ckpt"), "--classes", "a", "--out", str(tmp_path)]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert cli.main(["eval", "synthetic:nothing", "--out", str(tmp_path), "--steps", "1"]) == 2
    assert "unknown synthetic preset" in capsys.readouterr().err
    assert cli.main(["train", "synthetic:room,width=x", "--out", str(tmp_path)]) == 2
    assert "width must be an integer" in capsys.readouterr().err
    assert cli.main(["train", "synthetic:room", "--out", str(tmp_path), "--set", "trainer.nope=1"]) == 2
    assert "unknown configuration key" in capsys.readouterr().err


def test_real_teacher_path_with_tiny_clip_and_dino(tmp_path, capsys):
    from teacher_reference import save_tiny_clip, save_tiny_dino

    clip_cfg = save_tiny_clip(tmp_path / "clip")
    dino_cfg = save_tiny_dino(tmp_path / "dino")
    teacher = {"kind": "clip",
               "clip": {"model": clip_cfg.model, "pretrained": clip_cfg.pretrained,
                        "model_config": clip_cfg.model_config, "min_teacher_short_side": 20},
               "dino": {"checkpoint": dino_cfg.checkpoint, "arch_overrides": dino_cfg.arch_overrides}}
    config = _write_config(tmp_path / "tiny.yaml", {"teacher": teacher})
    data = "synthetic:room,train=3,test=1,width=48,height=36"
    e = tmp_path / "e"
    assert cli.main(["eval", data, "--out", str(e), "--config", config, "--steps", "4", "--quiet"]) == 0
    report = json.loads((e / "report.json").read_text())
    assert np.isfinite(report["3d"]["paper_miou"]) and np.isfinite(report["2d_teacher"]["paper_miou"])
    ckpt = e / "model.ckpt"
    q = tmp_path / "q"
    assert cli.main(["query", str(ckpt), "--classes", "chair", "table", "--refine", "--time", "5",
                     "--out", str(q), "--max-points", "200"]) == 0
    summary = json.loads((q / "summary.json").read_text())["queries"][0]
    assert summary["extra"]["refined"] and summary["timing_s"]["refine_steps"] >= 1
    assert outputs.read_png(q / "labels.png").shape == (36, 48)
    # the checkpoint remembers the real-teacher configuration
    from ovs3d_ros.core.trainer import Trainer

    assert to_nested(Trainer.load(ckpt).cfg)["teacher"]["clip"]["model"] == clip_cfg.model
