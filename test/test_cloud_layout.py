"""~/labeled_cloud's PointCloud2 layout as other ROS tools read it (issue 18): every field aligned
to its size (no float on an odd address), `label` uint32 as PCL's PointXYZRGBL has it, and the
upstream sensor_msgs_py.point_cloud2.read_points reads back exactly what was packed."""

import numpy as np
from sensor_msgs.msg import PointField
from std_msgs.msg import Header
from vendored_ros import import_upstream

from ovs3d_ros.ros import conversions as conv

SIZES = {PointField.UINT8: 1, PointField.UINT16: 2, PointField.UINT32: 4, PointField.FLOAT32: 4}


def _cloud(n=257, seed=0):
    rng = np.random.default_rng(seed)
    xyz = rng.normal(size=(n, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, size=(n, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, size=n).astype(np.uint16)
    labels[::7] = 65535  # unknown
    scores = rng.random(n).astype(np.float32)
    return (xyz, rgb, labels, scores), conv.labeled_cloud(xyz, rgb, labels, scores, Header(frame_id="map"))


def test_every_field_is_aligned_and_label_is_uint32():
    _, cloud = _cloud()
    fields = {f.name: f for f in cloud.fields}
    assert list(fields) == ["x", "y", "z", "rgb", "label", "score"]
    assert fields["label"].datatype == PointField.UINT32  # PCL PointXYZRGBL: std::uint32_t label
    for f in cloud.fields:
        assert f.offset % SIZES[f.datatype] == 0, f"{f.name} at offset {f.offset}"
    # the stride keeps every point's fields aligned too, not only the first point's
    assert cloud.point_step % 4 == 0 and cloud.row_step == cloud.point_step * cloud.width


def test_upstream_read_points_reads_the_published_cloud():
    point_cloud2 = import_upstream("sensor_msgs_py.point_cloud2")
    (xyz, rgb, labels, scores), cloud = _cloud()
    pts = point_cloud2.read_points(cloud, skip_nans=False)
    assert len(pts) == len(xyz)
    np.testing.assert_array_equal(np.stack([pts["x"], pts["y"], pts["z"]], axis=1), xyz)
    np.testing.assert_array_equal(conv.unpack_rgb_float(pts["rgb"]), rgb)
    np.testing.assert_array_equal(pts["label"], labels.astype(np.uint32))
    np.testing.assert_array_equal(pts["score"], scores)
    # and the project's own reader agrees with upstream field for field
    ours = conv.cloud_to_structured(cloud)
    for name in ours.dtype.names:
        np.testing.assert_array_equal(ours[name], pts[name])
