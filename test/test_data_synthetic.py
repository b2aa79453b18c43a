import numpy as np
import pytest

from ovs3d_ros.core.camera import generate_rays, look_at, project_points
from ovs3d_ros.data.dataset import labels_from_multi_hot
from ovs3d_ros.data.synthetic import PRESETS, SyntheticScene, intrinsics_for


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_render_every_class_sorted_and_consistent(preset):
    scene = SyntheticScene(preset, seed=0)
    assert scene.class_names == sorted(scene.class_names)
    assert len(scene.class_names) >= 5
    intr = intrinsics_for(48, 36)
    seen = set()
    for pose in scene.camera_path(8):
        rgb, depth, labels = scene.render(intr, pose)
        assert rgb.shape == (36, 48, 3) and rgb.dtype == np.uint8
        assert depth.shape == (36, 48) and depth.dtype == np.float32
        assert labels.dtype == np.uint8 and labels.max() < len(scene.class_names)
        assert np.all(np.isfinite(depth)) and depth.min() > 0.1
        seen |= set(np.unique(labels).tolist())
    assert seen == set(range(len(scene.class_names))), "every class is visible from some view"


def test_room_has_distinctive_object_names():
    names = SyntheticScene("room").class_names
    assert {"floor", "wall", "red box", "blue ball", "green cylinder", "yellow cone"} == set(names)


def test_depth_is_optical_z_and_labels_match_geometry():
    """A ray through the centre of the ball hits it at (distance - radius) along the optical axis."""
    scene = SyntheticScene("room", seed=0)
    ball = next(p for p in scene.objects if p.class_name == "blue ball")
    centre = np.array(ball.center)
    eye = centre + np.array([2.0, 0.3, 0.4])
    pose = look_at(eye, centre)
    intr = intrinsics_for(41, 31)  # odd size: the central pixel centre lies exactly on the axis
    rgb, depth, labels = scene.render(intr, pose)
    dist = np.linalg.norm(eye - centre)
    assert depth[15, 20] == pytest.approx(dist - ball.size[0], abs=1e-5)
    assert scene.class_names[labels[15, 20]] == "blue ball"
    # every ball pixel back-projects onto the sphere surface
    o, d = generate_rays(intr, pose)
    pts = o.numpy().astype(np.float64) + d.numpy().astype(np.float64) * depth.reshape(-1, 1)
    ball_px = labels.reshape(-1) == scene.class_names.index("blue ball")
    radii = np.linalg.norm(pts[ball_px] - centre, axis=1)
    np.testing.assert_allclose(radii, ball.size[0], atol=1e-4)
    # and the floor pixels lie on z = 0
    floor_px = labels.reshape(-1) == scene.class_names.index("floor")
    assert floor_px.any()
    np.testing.assert_allclose(pts[floor_px, 2], 0.0, atol=1e-4)


def test_views_are_consistent_across_viewpoints():
    """A surface point seen from two cameras has the same colour (view-independent shading)."""
    scene = SyntheticScene("room", seed=3)
    intr = intrinsics_for(64, 48)
    poses = scene.camera_path(12, jitter_m=0.0)
    rgb0, depth0, labels0 = scene.render(intr, poses[0])
    rgb1, depth1, labels1 = scene.render(intr, poses[1])
    o, d = generate_rays(intr, poses[0])
    pts = o.numpy().astype(np.float64) + d.numpy().astype(np.float64) * depth0.reshape(-1, 1)
    uv, z = project_points(intr, poses[1], pts)
    u, v = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    inside = (z > 0) & (u >= 0) & (u < 64) & (v >= 0) & (v < 48)
    visible = inside.copy()
    visible[inside] = np.abs(depth1[v[inside], u[inside]] - z[inside]) < 0.02 * z[inside]  # not occluded
    assert visible.sum() > 1000
    # pixel centres do not coincide, so only object boundaries may disagree
    assert np.mean(labels0.reshape(-1)[visible] == labels1[v[visible], u[visible]]) > 0.98
    diff = np.abs(rgb0.reshape(-1, 3)[visible].astype(int) - rgb1[v[visible], u[visible]].astype(int))
    assert np.median(diff) <= 6


def test_camera_path_goes_all_around_at_varying_heights():
    scene = SyntheticScene("room", seed=1)
    poses = scene.camera_path(24)
    eyes = np.array([p[:3, 3] for p in poses])
    az = np.sort(np.arctan2(eyes[:, 1], eyes[:, 0]))
    gaps = np.diff(np.concatenate([az, az[:1] + 2 * np.pi]))
    assert gaps.max() < np.radians(30)  # no side of the scene is unseen
    assert eyes[:, 2].max() - eyes[:, 2].min() > 0.5
    for p in poses:  # each camera looks roughly at the centre
        to_centre = scene.center - p[:3, 3]
        cos = p[:3, 2] @ to_centre / np.linalg.norm(to_centre)
        assert cos > 0.98


def test_make_frames_split_and_determinism():
    scene = SyntheticScene("table", seed=5)
    ds = scene.make_frames(6, 3, 32, 24)
    assert len(ds.frames) == 9 and ds.test_indices == [6, 7, 8] and ds.test_held_out
    assert ds.train_indices == list(range(6))
    ds.validate()
    train_eyes = np.array([f.pose[:3, 3] for f in ds.train_frames])
    for f in ds.test_frames:
        assert np.linalg.norm(train_eyes - f.pose[:3, 3], axis=1).min() > 0.1
        np.testing.assert_array_equal(labels_from_multi_hot(f.extras["gt_multi_hot"]), f.labels)
    again = SyntheticScene("table", seed=5).make_frames(6, 3, 32, 24)
    for a, b in zip(ds.frames, again.frames, strict=True):
        np.testing.assert_array_equal(a.rgb, b.rgb)
        np.testing.assert_array_equal(a.pose, b.pose)
    other = SyntheticScene("table", seed=6).make_frames(6, 3, 32, 24)
    assert not np.array_equal(ds.frames[0].rgb, other.frames[0].rgb)


def test_textures_make_rgb_non_trivial():
    scene = SyntheticScene("room")
    rgb, _, labels = scene.render(intrinsics_for(80, 60), scene.camera_path(1)[0])
    for k in np.unique(labels):
        colours = rgb[labels == k]
        if len(colours) > 50:
            assert len(np.unique(colours, axis=0)) > 3, scene.class_names[k]


def test_supersampling_filters_colour_only():
    """Sub-pixel rays average the colour (a pixel-area box filter); depth and labels stay the centre ray's,
    and the filtered image is the mean of the shifted one-ray images."""
    pose = SyntheticScene("room").camera_path(1)[0]
    intr = intrinsics_for(48, 36)
    point = SyntheticScene("room", supersample=1)
    rgb1, depth1, labels1 = point.render(intr, pose)
    rgb2, depth2, labels2 = SyntheticScene("room", supersample=2).render(intr, pose)
    np.testing.assert_array_equal(depth1, depth2)
    np.testing.assert_array_equal(labels1, labels2)
    # the same 2x2 sub-pixel grid, cast by hand: a 96x72 one-ray image averaged over 2x2 blocks
    fine, _, _ = point.render(intrinsics_for(96, 72), pose)
    block_mean = fine.reshape(36, 2, 48, 2, 3).astype(float).mean(axis=(1, 3))
    assert np.abs(rgb2.astype(float) - block_mean).max() <= 1.0  # per-ray uint8 rounding only
    assert np.abs(rgb2.astype(int) - rgb1.astype(int)).mean() > 1.0  # it does filter


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown synthetic preset"):
        SyntheticScene("castle")
    with pytest.raises(ValueError, match="supersample"):
        SyntheticScene("room", supersample=0)
    with pytest.raises(ValueError, match="image size"):
        intrinsics_for(0, 10)


def test_generate_writes_all_three_formats_and_preview(tmp_path):
    from PIL import Image

    from ovs3d_ros.data import generate, load_dataset
    from ovs3d_ros.data.preview import preview

    ds = generate("clutter", str(tmp_path / "gen"), n_train=3, n_test=1, width=24, height=18, seed=4)
    for sub in ("3dovs", "nerfstudio", "rosbag"):
        back = load_dataset(tmp_path / "gen" / sub)
        assert back.class_names == ds.class_names and back.test_indices == [3]
        np.testing.assert_array_equal(back.frames[3].labels, ds.frames[3].labels)
    out = preview("room", tmp_path / "p.png", n_views=2, width=32, height=24)
    with Image.open(out) as img:
        assert img.size[0] == 3 * 32 and img.size[1] > 2 * 24


def test_desk_preset_has_small_objects_on_the_table_seen_from_a_metre():
    """The robot's everyday query: several 5-20 cm objects standing on a table, cameras ~1 m away."""
    scene = SyntheticScene("desk", seed=2)
    table = next(p for p in scene.objects if p.class_name == "wooden table")
    top = table.center[2] + table.size[2]
    small = [p for p in scene.objects if p.class_name != "wooden table"]
    assert {"white mug", "blue book", "green bowl", "red apple"} <= {p.class_name for p in small}
    for p in small:
        lo, hi = _extent(p)
        largest = float(np.max(hi - lo))
        assert 0.05 - 1e-9 <= largest <= 0.20 + 1e-9, (p.class_name, largest)
        assert lo[2] == pytest.approx(top, abs=1e-6), f"{p.class_name} stands on the table top"
        assert np.all(np.abs(np.asarray(p.center[:2])) + 0.1 < np.asarray(table.size[:2])), p.class_name
    for pose in scene.camera_path(12):
        assert 0.7 <= np.linalg.norm(pose[:3, 3] - scene.center) <= 1.3
    # at 160x120 each object covers tens of pixels in a typical view: small, but not sub-pixel
    intr = intrinsics_for(160, 120)
    _, _, labels = scene.render(intr, scene.camera_path(3)[1])
    for p in small:
        area = int(np.count_nonzero(labels == scene.class_names.index(p.class_name)))
        assert 5 <= area <= 800, (p.class_name, area)


def _extent(prim):
    """(lo, hi) corners of a primitive in its own frame, in metres (a box's yaw turns it about z and
    changes none of its dimensions)."""
    c = np.asarray(prim.center, dtype=float)
    if prim.kind == "sphere":
        r = prim.size[0]
        return c - r, c + r
    if prim.kind == "box":
        half = np.asarray(prim.size, dtype=float)
        return c - half, c + half
    r, h = prim.size
    return c - [r, r, 0.0], c + [r, r, h]
