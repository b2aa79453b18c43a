"""Label images, overlays, cloud downsampling and the PLY/PNG/JSON writers (read back)."""

import json

import numpy as np
import pytest

from ovs3d_ros.core import outputs
from ovs3d_ros.core.outputs import LabeledCloud, OutputError


def _cloud(n, rng):
    return LabeledCloud(rng.random((n, 3)).astype(np.float32) * 2,
                        rng.integers(0, 256, (n, 3)).astype(np.uint8),
                        rng.integers(0, 7, n).astype(np.uint16), rng.random(n).astype(np.float32))


def test_ply_roundtrip_with_label_and_score(tmp_path, rng):
    import open3d as o3d

    cloud = _cloud(500, rng)
    cloud.labels[:3] = 65535
    path = outputs.write_ply(tmp_path / "c.ply", cloud)
    back = outputs.read_ply(path)
    assert np.array_equal(back.xyz, cloud.xyz) and np.array_equal(back.rgb, cloud.rgb)
    assert np.array_equal(back.labels, cloud.labels) and back.labels.dtype == np.uint16
    assert np.array_equal(back.scores, cloud.scores)
    legacy = o3d.io.read_point_cloud(str(path))  # a plain viewer still sees points and colours
    assert len(legacy.points) == 500 and legacy.has_colors()
    header = path.read_bytes()[:400]
    assert b"property uchar red" in header and b"property uint16 label" in header


def test_read_ply_without_labels_raises(tmp_path):
    import open3d as o3d

    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.zeros((4, 3))))
    o3d.io.write_point_cloud(str(tmp_path / "plain.ply"), pcd)
    with pytest.raises(OutputError, match="'label' missing"):
        outputs.read_ply(tmp_path / "plain.ply")
    with pytest.raises(OutputError, match="no such file"):
        outputs.read_ply(tmp_path / "none.ply")


def test_downsample_caps_and_keeps_attributes_aligned(rng):
    cloud = _cloud(5000, rng)
    cloud.scores = cloud.xyz[:, 0].copy()  # an attribute that identifies the point
    small = outputs.downsample_cloud(cloud, max_points=300, voxel_size=0.05)
    assert 0 < len(small) <= 300
    assert np.allclose(small.scores, small.xyz[:, 0])
    loose = outputs.downsample_cloud(cloud, max_points=10_000, voxel_size=0.0)
    assert len(loose) == 5000
    with pytest.raises(OutputError, match="max_points"):
        outputs.downsample_cloud(cloud, max_points=0, voxel_size=0.1)


def test_voxel_thinning_keeps_the_points_open3d_keeps(rng):
    """``voxel_first_indices`` against open3d's voxel grid, whose first trace per voxel it replaces."""
    import open3d as o3d

    xyz = (rng.random((20000, 3)) * np.array([3.0, 2.0, 1.0]) - 1.0).astype(np.float32)
    xyz[:500] = xyz[500:1000]  # duplicates: the first of them is kept
    for size in (0.02, 0.1, 0.37):
        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz.astype(np.float64)))
        _, _, traces = pcd.voxel_down_sample_and_trace(size, pcd.get_min_bound(), pcd.get_max_bound())
        expected = np.sort(np.array([t[0] for t in traces], dtype=np.int64))
        assert np.array_equal(outputs.voxel_first_indices(xyz, size), expected)
    assert len(outputs.voxel_first_indices(np.zeros((0, 3)), 0.1)) == 0


def test_label_image_dtypes_and_unknown():
    labels = np.array([[0, 1], [-1, 5]])
    img = outputs.label_image(labels, num_classes=3)
    assert img.dtype == np.uint8 and img.tolist() == [[0, 1], [255, 255]]
    big = outputs.label_image(np.array([[300, -1]]), num_classes=400)
    assert big.dtype == np.uint16 and big.tolist() == [[300, 65535]]


def test_overlay_alpha_and_black_boundaries():
    image = np.full((4, 6, 3), 100, np.uint8)
    labels = np.zeros((4, 6), np.uint8)
    labels[:, 3:] = 1
    labels[0, 0] = 255
    colors = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)
    out = outputs.overlay(image, labels, colors, alpha=0.65)
    assert out[3, 1].tolist() == [round(0.65 * 255 + 0.35 * 100), 35, 35]
    assert out[3, 2].tolist() == [0, 0, 0]  # boundary between class 0 and 1
    assert out[1, 0].tolist() == [round(0.65 * 255 + 0.35 * 100), 35, 35]
    assert out[0, 0].tolist() == [0, 0, 0]  # unknown next to class 0: boundary too
    clean = outputs.overlay(image, np.full((4, 6), 255, np.uint8), colors)
    assert np.array_equal(clean, image)  # unknown everywhere leaves the image


def test_png_and_json_writers(tmp_path):
    lab8 = np.array([[0, 1], [2, 255]], np.uint8)
    lab16 = np.array([[0, 300], [65535, 7]], np.uint16)
    rgb = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    assert np.array_equal(outputs.read_png(outputs.write_png(tmp_path / "l8.png", lab8)), lab8)
    back16 = outputs.read_png(outputs.write_png(tmp_path / "l16.png", lab16))
    assert np.array_equal(back16, lab16) and back16.dtype == np.uint16
    assert np.array_equal(outputs.read_png(outputs.write_png(tmp_path / "rgb.png", rgb)), rgb)
    score = np.array([[0.0, 0.5]], np.float32)
    back = outputs.read_png(outputs.write_png(tmp_path / "s.png", score))
    assert np.allclose(back / 65535, score, atol=1e-4)
    with pytest.raises(OutputError, match="cannot write"):
        outputs.write_png(tmp_path / "bad.png", np.zeros((2, 2), np.float64))
    summary = outputs.Summary(["chair", "椅子"], [[1, 2, 3], [4, 5, 6]], 10, {"chair": 4, "椅子": 6}, 65535,
                              {"total": 0.1})
    data = json.loads(outputs.write_json(tmp_path / "s.json", summary).read_text())
    assert data["class_names"] == ["chair", "椅子"] and data["points_per_class"]["椅子"] == 6
