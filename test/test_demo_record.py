"""The demo's run records: the README's table of demo runs is read from a file only demo runs append to."""

import json

from ovs3d_ros.ros.demo import append_run


def test_append_run_starts_a_runs_file_and_keeps_earlier_runs(tmp_path):
    path = tmp_path / "runs.json"
    append_run(path, {"mask_miou_paper": 0.9, "query_latency_s": 1.5}, "fresh clone, idle")
    append_run(path, {"mask_miou_paper": 0.8, "query_latency_s": 2.5}, "")
    data = json.loads(path.read_text())
    assert "--record-runs" in data["command"]
    assert [r["run"] for r in data["runs"]] == ["fresh clone, idle", "run 2"]
    assert [r["mask_miou_paper"] for r in data["runs"]] == [0.9, 0.8]
