import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from ovs3d_ros.core.camera import (
    PoseError,
    generate_rays,
    llff_to_optical,
    look_at,
    opengl_to_optical,
    optical_to_llff,
    optical_to_opengl,
    pose_from_xyz_quat,
    project_points,
    xyz_quat_from_pose,
)
from ovs3d_ros.core.frame import Intrinsics


def random_pose(rng):
    pose = np.eye(4)
    pose[:3, :3] = Rotation.random(random_state=rng.integers(1 << 30)).as_matrix()
    pose[:3, 3] = rng.normal(size=3)
    return pose


def test_opengl_optical_flip_axes_and_round_trip():
    rng = np.random.default_rng(0)
    gl = np.stack([random_pose(rng) for _ in range(5)])
    opt = opengl_to_optical(gl)
    # optical x = GL x (right), optical y = -GL y (up -> down), optical z = -GL z (back -> forward)
    np.testing.assert_allclose(opt[:, :3, 0], gl[:, :3, 0])
    np.testing.assert_allclose(opt[:, :3, 1], -gl[:, :3, 1])
    np.testing.assert_allclose(opt[:, :3, 2], -gl[:, :3, 2])
    np.testing.assert_allclose(opt[:, :3, 3], gl[:, :3, 3])
    np.testing.assert_allclose(optical_to_opengl(opt), gl, atol=1e-12)
    assert np.allclose(np.linalg.det(opt[:, :3, :3]), 1.0)


def test_llff_columns_are_down_right_back():
    # a camera at (1,2,3) looking along world +x with world z up: optical right = -y, down = -z
    c2w = look_at((1, 2, 3), (5, 2, 3))
    pb = optical_to_llff(c2w[None], (30, 40, 50), (0.5, 9.0))
    assert pb.shape == (1, 17)
    mat = pb[0, :15].reshape(3, 5)
    np.testing.assert_allclose(mat[:, 0], [0, 0, -1], atol=1e-12)  # down
    np.testing.assert_allclose(mat[:, 1], [0, -1, 0], atol=1e-12)  # right
    np.testing.assert_allclose(mat[:, 2], [-1, 0, 0], atol=1e-12)  # back
    np.testing.assert_allclose(mat[:, 3], [1, 2, 3])
    np.testing.assert_allclose(mat[:, 4], [30, 40, 50])
    back, hwf, bounds = llff_to_optical(pb)
    np.testing.assert_allclose(back[0], c2w, atol=1e-12)
    np.testing.assert_allclose(hwf[0], [30, 40, 50])
    np.testing.assert_allclose(bounds[0], [0.5, 9.0])


def test_llff_rejects_bad_arrays():
    with pytest.raises(PoseError, match=r"\(N, 17\)"):
        llff_to_optical(np.zeros((3, 15)))
    pb = optical_to_llff(np.eye(4)[None], (1, 1, 1), (0.1, 1))
    pb[0, 3] = np.nan
    with pytest.raises(PoseError, match="NaN"):
        llff_to_optical(pb)


def test_quaternion_ros_order_90_deg_about_z():
    s = np.sqrt(0.5)
    pose = pose_from_xyz_quat((1, 2, 3), (0, 0, s, s))  # x y z w
    expected = np.array([[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1.0]])
    np.testing.assert_allclose(pose, expected, atol=1e-12)
    xyz, q = xyz_quat_from_pose(pose)
    np.testing.assert_allclose(xyz, [1, 2, 3])
    np.testing.assert_allclose(q, [0, 0, s, s], atol=1e-12)
    # 180 deg about x, and the sign convention w >= 0
    pose = pose_from_xyz_quat((0, 0, 0), (1, 0, 0, 0))
    np.testing.assert_allclose(pose[:3, :3], np.diag([1, -1, -1]), atol=1e-12)
    _, q = xyz_quat_from_pose(pose_from_xyz_quat((0, 0, 0), (0, 0, -s, -s)))
    np.testing.assert_allclose(q, [0, 0, s, s], atol=1e-12)


def test_quaternion_round_trip_and_errors():
    rng = np.random.default_rng(1)
    for _ in range(10):
        pose = random_pose(rng)
        xyz, q = xyz_quat_from_pose(pose)
        np.testing.assert_allclose(pose_from_xyz_quat(xyz, q), pose, atol=1e-12)
    with pytest.raises(PoseError, match="zero norm"):
        pose_from_xyz_quat((0, 0, 0), (0, 0, 0, 0))
    with pytest.raises(PoseError, match="NaN"):
        pose_from_xyz_quat((0, np.nan, 0), (0, 0, 0, 1))


def test_look_at_axes():
    pose = look_at((0, 0, 0), (1, 0, 0))
    np.testing.assert_allclose(pose[:3, 2], [1, 0, 0])  # forward
    np.testing.assert_allclose(pose[:3, 0], [0, -1, 0])  # right
    np.testing.assert_allclose(pose[:3, 1], [0, 0, -1])  # down
    with pytest.raises(PoseError):
        look_at((0, 0, 0), (0, 0, 5))


def reference_rays(intr, c2w):
    """One pixel at a time, as written in the architecture notes."""
    origins, dirs = [], []
    for v in range(intr.height):
        for u in range(intr.width):
            d_cam = np.array([(u + 0.5 - intr.cx) / intr.fx, (v + 0.5 - intr.cy) / intr.fy, 1.0])
            origins.append(c2w[:3, 3])
            dirs.append(c2w[:3, :3] @ d_cam)
    return np.array(origins), np.array(dirs)


def test_generate_rays_matches_reference_and_t_is_depth():
    rng = np.random.default_rng(2)
    intr = Intrinsics(fx=20.0, fy=22.0, cx=7.3, cy=5.1, width=13, height=9)
    c2w = random_pose(rng)
    o, d = generate_rays(intr, c2w)
    assert o.dtype == torch.float32 and d.shape == (13 * 9, 3)
    ro, rd = reference_rays(intr, c2w)
    np.testing.assert_allclose(o.numpy(), ro, atol=1e-5)
    np.testing.assert_allclose(d.numpy(), rd, atol=1e-5)
    # a point at ray parameter t has optical depth t and projects back to the pixel centre
    t = 3.7
    pts = (o + t * d).double().numpy()
    uv, z = project_points(intr, c2w, pts)
    np.testing.assert_allclose(z, t, atol=1e-4)
    v, u = np.divmod(np.arange(13 * 9), 13)
    np.testing.assert_allclose(uv, np.stack([u + 0.5, v + 0.5], 1), atol=1e-3)


def test_generate_rays_batched_cameras_and_pixel_subsets():
    rng = np.random.default_rng(3)
    intrs = [Intrinsics(10, 10, 4, 3, 8, 6), Intrinsics(12, 11, 2.5, 3.5, 5, 7)]
    poses = np.stack([random_pose(rng), random_pose(rng)])
    o, d = generate_rays(intrs, poses)
    assert o.shape == (8 * 6 + 5 * 7, 3)
    for b, (lo, hi) in enumerate(((0, 48), (48, 83))):
        ro, rd = reference_rays(intrs[b], poses[b])
        np.testing.assert_allclose(d[lo:hi].numpy(), rd, atol=1e-5)
        np.testing.assert_allclose(o[lo:hi].numpy(), ro, atol=1e-5)
    pixels = np.array([[0, 0], [4, 2], [1, 6]])
    cams = np.array([0, 0, 1])
    o2, d2 = generate_rays(intrs, poses, pixels=pixels, camera_indices=cams)
    np.testing.assert_allclose(d2[0].numpy(), d[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(d2[1].numpy(), d[2 * 8 + 4].numpy(), atol=1e-6)
    np.testing.assert_allclose(d2[2].numpy(), d[48 + 6 * 5 + 1].numpy(), atol=1e-6)
    np.testing.assert_allclose(o2[2].numpy(), poses[1][:3, 3], atol=1e-6)
    # torch inputs give the same
    o3, d3 = generate_rays(
        intrs, torch.as_tensor(poses), pixels=torch.as_tensor(pixels), camera_indices=torch.as_tensor(cams)
    )
    assert torch.equal(d3, d2)
    with pytest.raises(PoseError, match="camera_indices"):
        generate_rays(intrs, poses, pixels=pixels)
    with pytest.raises(PoseError, match="intrinsics"):
        generate_rays(intrs[:1], poses)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_generate_rays_cuda_matches_cpu():
    intr = Intrinsics(50, 50, 16, 12, 32, 24)
    pose = random_pose(np.random.default_rng(4))
    o, d = generate_rays(intr, pose, device="cuda")
    assert d.device.type == "cuda"
    oc, dc = generate_rays(intr, pose)
    torch.testing.assert_close(d.cpu(), dc)
    torch.testing.assert_close(o.cpu(), oc)
