"""Every reader against the same synthetic scene written by the writers: poses to 1e-6, pixels exact."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from ovs3d_ros.data import (
    DatasetError,
    SyntheticScene,
    detect_format,
    load_dataset,
    read_llff,
    read_nerfstudio,
    write_3dovs,
    write_nerfstudio,
    write_rosbag,
)
from ovs3d_ros.data.writers import CAMERA_IN_BODY_XYZ_QUAT


@pytest.fixture(scope="module")
def scene():
    return SyntheticScene("room", seed=2).make_frames(5, 2, 40, 30)


def assert_same_frames(a_frames, b_frames, depth_atol=0.0, check_intrinsics=True):
    assert len(a_frames) == len(b_frames)
    for a, b in zip(a_frames, b_frames, strict=True):
        np.testing.assert_allclose(b.pose, a.pose, atol=1e-6)
        np.testing.assert_array_equal(b.rgb, a.rgb)
        np.testing.assert_array_equal(b.labels, a.labels)
        np.testing.assert_allclose(b.depth, a.depth, atol=depth_atol, rtol=0)
        ka, kb = a.intrinsics, b.intrinsics
        np.testing.assert_allclose([kb.fx, kb.fy, kb.cx, kb.cy], [ka.fx, ka.fy, ka.cx, ka.cy], rtol=1e-12)
        assert (kb.width, kb.height) == (ka.width, ka.height)


def test_3dovs_round_trip(scene, tmp_path):
    write_3dovs(scene, tmp_path / "s")
    assert detect_format(tmp_path / "s") == "3dovs"
    back = load_dataset(tmp_path / "s")
    assert back.class_names == scene.class_names
    assert back.test_indices == scene.test_indices and back.test_held_out
    assert_same_frames(scene.frames, back.frames, depth_atol=5e-4)  # uint16 millimetres
    for i in scene.test_indices:
        np.testing.assert_array_equal(
            back.frames[i].extras["gt_multi_hot"], scene.frames[i].extras["gt_multi_hot"]
        )
    # the classes.txt + per-class masks alone (no labels/ folder) give the same labels
    shutil.rmtree(tmp_path / "s" / "labels")
    (tmp_path / "s" / "ovs3d_split.json").unlink()
    bare = read_llff(tmp_path / "s")
    assert not bare.test_held_out  # the 3D-OVS protocol: annotated views are trained on too
    assert bare.frames[0].labels is None
    for i in scene.test_indices:
        np.testing.assert_array_equal(bare.frames[i].labels, scene.frames[i].labels)


def test_3dovs_downsample_lanczos_and_nearest(scene, tmp_path):
    write_3dovs(scene, tmp_path / "s")
    half = read_llff(tmp_path / "s", downsample=2)
    f, src = half.frames[5], scene.frames[5]
    assert f.rgb.shape == (15, 20, 3)
    expected = np.asarray(Image.fromarray(src.rgb).resize((20, 15), Image.LANCZOS))
    np.testing.assert_array_equal(f.rgb, expected)
    np.testing.assert_array_equal(
        f.labels, np.asarray(Image.fromarray(src.labels).resize((20, 15), Image.NEAREST))
    )
    assert f.extras["gt_multi_hot"].shape == (15, 20, len(scene.class_names))
    assert f.intrinsics.fx == pytest.approx(src.intrinsics.fx / 2)
    assert f.intrinsics.cx == pytest.approx(10.0)


def test_3dovs_class_names_are_stripped_and_sorted(scene, tmp_path):
    write_3dovs(scene, tmp_path / "s")
    names = list(reversed(scene.class_names))
    (tmp_path / "s" / "segmentations" / "classes.txt").write_text(
        "\n".join(f"  {n} " for n in names) + "\n\n"
    )
    assert read_llff(tmp_path / "s").class_names == scene.class_names


def test_3dovs_malformed_inputs(scene, tmp_path):
    root = tmp_path / "s"
    write_3dovs(scene, root)
    pb = np.load(root / "poses_bounds.npy")

    np.save(root / "poses_bounds.npy", pb[:, :15])
    with pytest.raises(DatasetError, match=r"poses_bounds.npy.*\(N, 17\)"):
        read_llff(root)
    bad = pb.copy()
    bad[2, 3] = np.nan
    np.save(root / "poses_bounds.npy", bad)
    with pytest.raises(DatasetError, match=r"poses_bounds.npy.*NaN.*rows \[2\]"):
        read_llff(root)
    np.save(root / "poses_bounds.npy", pb[:-1])
    with pytest.raises(DatasetError, match="6 poses but 7 images"):
        read_llff(root)
    np.save(root / "poses_bounds.npy", pb)

    mask = root / "segmentations" / "006" / "red box.png"
    mask.rename(root / "moved.png")
    with pytest.raises(DatasetError, match="red box.png: mask of class 'red box' missing for view 6"):
        read_llff(root)
    (root / "moved.png").rename(mask)

    (root / "segmentations" / "test_view0").mkdir()
    with pytest.raises(DatasetError, match="test_view0: segmentation folders must be named by view number"):
        read_llff(root)
    (root / "segmentations" / "test_view0").rmdir()

    (root / "images" / "003.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="003.png: cannot read image"):
        read_llff(root)
    (root / "poses_bounds.npy").unlink()
    with pytest.raises(DatasetError, match="poses_bounds.npy: file not found"):
        read_llff(root)
    with pytest.raises(DatasetError, match="not a scene"):
        load_dataset(tmp_path)


def test_nerfstudio_round_trip_and_per_frame_intrinsics(scene, tmp_path):
    write_nerfstudio(scene, tmp_path / "ns")
    assert detect_format(tmp_path / "ns") == "nerfstudio"
    back = load_dataset(tmp_path / "ns")
    assert back.class_names == scene.class_names and back.test_indices == scene.test_indices
    assert_same_frames(scene.frames, back.frames, depth_atol=5e-4)
    # move the intrinsics into the frames: same result
    doc = json.loads((tmp_path / "ns" / "transforms.json").read_text())
    shared = {k: doc.pop(k) for k in ("fl_x", "fl_y", "cx", "cy", "w", "h")}
    for fr in doc["frames"]:
        fr.update(shared)
    (tmp_path / "ns" / "transforms.json").write_text(json.dumps(doc))
    assert_same_frames(scene.frames, read_nerfstudio(tmp_path / "ns" / "transforms.json").frames, 5e-4)


def test_nerfstudio_malformed_inputs(scene, tmp_path):
    root = tmp_path / "ns"
    write_nerfstudio(scene, root)
    path = root / "transforms.json"
    doc = json.loads(path.read_text())

    broken = json.loads(json.dumps(doc))
    broken["frames"][1]["transform_matrix"][0][0] = float("nan")
    path.write_text(json.dumps(broken))
    with pytest.raises(DatasetError, match=r"frames\[1\]: bad transform_matrix.*NaN"):
        read_nerfstudio(root)
    broken = json.loads(json.dumps(doc))
    broken["frames"][0]["transform_matrix"] = [[1, 0], [0, 1]]
    path.write_text(json.dumps(broken))
    with pytest.raises(DatasetError, match=r"frames\[0\]: bad transform_matrix"):
        read_nerfstudio(root)
    broken = json.loads(json.dumps(doc))
    del broken["fl_x"]
    path.write_text(json.dumps(broken))
    with pytest.raises(DatasetError, match="intrinsic 'fl_x' missing"):
        read_nerfstudio(root)
    broken = json.loads(json.dumps(doc))
    broken["w"] = 41
    path.write_text(json.dumps(broken))
    with pytest.raises(DatasetError, match="image is 40x30 but .* says 41x30"):
        read_nerfstudio(root)
    broken = json.loads(json.dumps(doc))
    broken["frames"][2]["depth_file_path"] = "depths/missing.png"
    path.write_text(json.dumps(broken))
    with pytest.raises(DatasetError, match="missing.png: file not found"):
        read_nerfstudio(root)
    path.write_text("{not json")
    with pytest.raises(DatasetError, match="transforms.json: invalid JSON"):
        read_nerfstudio(root)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
@pytest.mark.parametrize("pose_source", ["tf", "pose", "odometry"])
def test_rosbag_round_trip(scene, tmp_path, storage, pose_source):
    bag = write_rosbag(scene, tmp_path / "bag", storage=storage)
    assert detect_format(bag) == "rosbag2"
    opts = {"camera_in_body": CAMERA_IN_BODY_XYZ_QUAT} if pose_source == "odometry" else {}
    back = load_dataset(bag, pose_source=pose_source, **opts)
    stats = back.metadata["stats"]
    assert stats.frames == 7 and stats.skipped_no_pose == 0 and stats.depth_matched == 7
    assert back.class_names == scene.class_names and back.test_indices == scene.test_indices
    assert_same_frames(scene.frames, back.frames, depth_atol=0.0)  # 32FC1: exact
    assert back.frames[1].extras["stamp_ns"] - back.frames[0].extras["stamp_ns"] == 100_000_000


def test_rosbag_16uc1_depth_topic_and_single_file(scene, tmp_path):
    bag = write_rosbag(scene, tmp_path / "bag", storage="mcap", depth_encodings=("16UC1",))
    files = list(bag.glob("*.mcap"))
    assert len(files) == 1
    back = load_dataset(files[0], depth_topic="/camera/depth/image_raw_mm")
    assert_same_frames(scene.frames, back.frames, depth_atol=5e-4)


def test_rosbag_bad_options_name_the_problem(scene, tmp_path):
    bag = write_rosbag(scene, tmp_path / "bag")
    with pytest.raises(DatasetError, match="image topic '/nope' is not in the bag"):
        load_dataset(bag, image_topic="/nope")
    with pytest.raises(DatasetError, match="has type sensor_msgs/msg/CameraInfo"):
        load_dataset(bag, image_topic="/camera/color/camera_info")
    with pytest.raises(DatasetError, match="unknown pose_source"):
        load_dataset(bag, pose_source="gps")
    with pytest.raises(DatasetError, match="option not understood"):
        load_dataset(bag, downsample=2)
    with pytest.raises(DatasetError, match="already exists"):
        write_rosbag(scene, bag)
    (tmp_path / "junk.mcap").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="junk.mcap: cannot open as rosbag2"):
        load_dataset(tmp_path / "junk.mcap")


def test_rosbag_tf_only_bag_is_read_with_auto_pose_source(scene, tmp_path):
    bag = write_rosbag(scene, tmp_path / "bag", pose_outputs=("tf",))
    back = load_dataset(bag)
    assert back.metadata["pose_source"] == "tf"
    assert_same_frames(scene.frames, back.frames)
    with pytest.raises(DatasetError, match="no pose topic of type"):
        load_dataset(bag, pose_source="pose")
