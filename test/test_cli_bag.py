"""A rosbag2 of a generated scene (PoseStamped poses, 16UC1 depth, labels) trains through `ovs3d train`,
the same KeyframeBuffer/Trainer path the node uses, and the checkpoint answers `ovs3d query`."""

import json

import yaml
from test_cli_end_to_end import TINY  # noqa: E402 - the CLI tests' tiny model sizes

from ovs3d_ros import cli
from ovs3d_ros.core import outputs
from ovs3d_ros.data.synthetic import SyntheticScene
from ovs3d_ros.data.writers import write_rosbag


def test_ovs3d_train_on_a_rosbag(tmp_path):
    data = SyntheticScene(preset="room", seed=4).make_frames(5, 1, 32, 24)
    bag = write_rosbag(data, tmp_path / "bag", storage="sqlite3", pose_outputs=("pose",))
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump({**TINY, "teacher": {"kind": "synthetic", "synthetic": {"embed_dim": 32}}})
    )
    run = tmp_path / "run"
    assert (
        cli.main(["train", str(bag), "--out", str(run), "--config", str(config), "--steps", "6", "--quiet"])
        == 0
    )
    meta = json.loads((run / "model.ckpt.json").read_text())
    assert meta["class_names"] == data.class_names  # the bag's /ovs3d/scene record carried them
    q = tmp_path / "q"
    assert (
        cli.main(
            [
                "query",
                str(run / "model.ckpt"),
                "--classes",
                *data.class_names,
                "--views",
                "0",
                "--out",
                str(q),
                "--max-points",
                "200",
            ]
        )
        == 0
    )
    cloud = outputs.read_ply(q / "cloud.ply")  # one view: no per-view suffix
    assert 0 < len(cloud) <= 200 and int(cloud.labels.max()) < len(data.class_names)
