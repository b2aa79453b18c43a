"""Cameras, rays and pose conventions.

One convention inside the core: camera-to-world 4x4, metric, camera axes of a ROS optical frame
(x right, y down, z forward). Everything that reads or writes another convention converts at the
edge with the explicit functions below:

- nerfstudio / OpenGL / Blender cameras: x right, y up, z back  (``opengl_to_optical``)
- LLFF ``poses_bounds.npy``: rotation columns (down, right, back), then translation, then
  (H, W, focal), then near/far  (``llff_to_optical``)
- ROS poses: translation + quaternion in (x, y, z, w) order  (``pose_from_xyz_quat``)
- ROS CameraInfo (a live rclpy message or one read from a bag): ``intrinsics_from_camera_info``
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from ovs3d_ros.core.frame import FrameError, Intrinsics


class PoseError(ValueError):
    """A pose array with the wrong shape or non-finite values."""


# Flipping y and z turns OpenGL camera axes (x right, y up, z back) into optical ones and back.
_GL_FLIP = np.diag([1.0, -1.0, -1.0, 1.0])


def _as_poses(c2w: np.ndarray, what: str) -> np.ndarray:
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.shape[-2:] != (4, 4):
        raise PoseError(f"{what}: expected (..., 4, 4) poses, got shape {c2w.shape}")
    if not np.all(np.isfinite(c2w)):
        raise PoseError(f"{what}: poses contain NaN or infinite values")
    return c2w


def opengl_to_optical(c2w: np.ndarray) -> np.ndarray:
    """Camera-to-world with OpenGL camera axes (x right, y up, z back) -> optical axes. Batched."""
    return _as_poses(c2w, "opengl_to_optical") @ _GL_FLIP


def optical_to_opengl(c2w: np.ndarray) -> np.ndarray:
    """Inverse of :func:`opengl_to_optical` (the flip is its own inverse)."""
    return _as_poses(c2w, "optical_to_opengl") @ _GL_FLIP


def llff_to_optical(poses_bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``poses_bounds.npy`` (N, 17) -> (c2w (N,4,4) optical, hwf (N,3), bounds (N,2)).

    LLFF rotation columns are the camera's (down, right, back) axes in world coordinates, so
    optical (right, down, forward) = (col1, col0, -col2). Poses are kept metric, un-recentred.
    """
    pb = np.asarray(poses_bounds, dtype=np.float64)
    if pb.ndim != 2 or pb.shape[1] != 17:
        raise PoseError(f"poses_bounds must have shape (N, 17), got {pb.shape}")
    if not np.all(np.isfinite(pb)):
        bad = np.unique(np.nonzero(~np.isfinite(pb))[0]).tolist()
        raise PoseError(f"poses_bounds contains NaN or infinite values (rows {bad})")
    mats = pb[:, :15].reshape(-1, 3, 5)
    rot, trans, hwf = mats[:, :, :3], mats[:, :, 3], mats[:, :, 4]
    c2w = np.tile(np.eye(4), (len(pb), 1, 1))
    c2w[:, :3, 0] = rot[:, :, 1]
    c2w[:, :3, 1] = rot[:, :, 0]
    c2w[:, :3, 2] = -rot[:, :, 2]
    c2w[:, :3, 3] = trans
    return c2w, hwf.copy(), pb[:, 15:17].copy()


def optical_to_llff(c2w: np.ndarray, hwf: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Inverse of :func:`llff_to_optical`: (N,4,4) optical c2w, (N,3) or (3,) hwf, (N,2) bounds -> (N,17)."""
    c2w = _as_poses(c2w, "optical_to_llff").reshape(-1, 4, 4)
    n = len(c2w)
    hwf = np.broadcast_to(np.asarray(hwf, dtype=np.float64), (n, 3))
    bounds = np.broadcast_to(np.asarray(bounds, dtype=np.float64), (n, 2))
    mats = np.zeros((n, 3, 5))
    mats[:, :, 0] = c2w[:, :3, 1]
    mats[:, :, 1] = c2w[:, :3, 0]
    mats[:, :, 2] = -c2w[:, :3, 2]
    mats[:, :, 3] = c2w[:, :3, 3]
    mats[:, :, 4] = hwf
    return np.concatenate([mats.reshape(n, 15), bounds], axis=1)


def pose_from_xyz_quat(xyz: Sequence[float], q_xyzw: Sequence[float]) -> np.ndarray:
    """4x4 float64 from a translation and a quaternion in ROS order (x, y, z, w); normalises q."""
    q = np.asarray(q_xyzw, dtype=np.float64)
    t = np.asarray(xyz, dtype=np.float64)
    if q.shape != (4,) or t.shape != (3,):
        raise PoseError(f"expected xyz (3,) and quaternion (4,), got {t.shape} and {q.shape}")
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(t))):
        raise PoseError("pose contains NaN or infinite values")
    if np.linalg.norm(q) < 1e-9:
        raise PoseError("quaternion has zero norm")
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_quat(q).as_matrix()
    pose[:3, 3] = t
    return pose


def xyz_quat_from_pose(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(xyz (3,), quaternion (4,) in ROS order x y z w with w >= 0) of a 4x4 pose."""
    pose = _as_poses(pose, "xyz_quat_from_pose")
    q = Rotation.from_matrix(pose[:3, :3]).as_quat()
    if q[3] < 0:  # one canonical sign, so round trips compare equal
        q = -q
    return pose[:3, 3].copy(), q


def look_at(
    eye: Sequence[float], target: Sequence[float], up: Sequence[float] = (0.0, 0.0, 1.0)
) -> np.ndarray:
    """Optical camera-to-world at ``eye`` looking at ``target`` with image 'up' toward ``up``."""
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    norm = np.linalg.norm(forward)
    if norm < 1e-12:
        raise PoseError("look_at: eye and target coincide")
    forward /= norm
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(right) < 1e-9:
        raise PoseError("look_at: viewing direction is parallel to 'up'")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, eye
    return pose


def intrinsics_from_camera_info(info) -> Intrinsics:
    """A sensor_msgs/CameraInfo (anything with ``k``, ``d``, ``width``, ``height``,
    ``distortion_model``: rclpy's message and the rosbags one alike) -> Intrinsics. K is row-major
    3x3. Raises FrameError when it is unusable (K missing or not finite, size or focal not positive)."""
    k = np.asarray(info.k, dtype=np.float64)
    if k.shape != (9,) or not np.all(np.isfinite(k)):
        raise FrameError("camera_info K is missing or not finite")
    intr = Intrinsics(fx=float(k[0]), fy=float(k[4]), cx=float(k[2]), cy=float(k[5]),
                      width=int(info.width), height=int(info.height),
                      distortion_model=str(info.distortion_model),
                      distortion=tuple(float(v) for v in info.d))
    intr.validate()
    return intr


def pixel_grid(width: int, height: int) -> np.ndarray:
    """(H*W, 2) int64 pixel indices (u, v) in row-major order."""
    v, u = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([u.ravel(), v.ravel()], axis=1)


def camera_directions(intrinsics: Intrinsics, pixels: np.ndarray) -> np.ndarray:
    """(N, 3) float64 camera-frame directions ((u+.5-cx)/fx, (v+.5-cy)/fy, 1) of pixel indices (u, v)."""
    pixels = np.asarray(pixels, dtype=np.float64)
    dirs = np.ones((len(pixels), 3))
    dirs[:, 0] = (pixels[:, 0] + 0.5 - intrinsics.cx) / intrinsics.fx
    dirs[:, 1] = (pixels[:, 1] + 0.5 - intrinsics.cy) / intrinsics.fy
    return dirs


def generate_rays(
    intrinsics: Intrinsics | Sequence[Intrinsics],
    c2w: np.ndarray | torch.Tensor,
    pixels: np.ndarray | torch.Tensor | None = None,
    camera_indices: np.ndarray | torch.Tensor | None = None,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """World-space rays (origins (N,3), directions (N,3)) float32 on ``device``.

    Directions are NOT normalised: their camera-frame z is 1, so the ray parameter t is optical depth.
    - ``c2w`` (4,4): ``pixels`` (N,2) integer (u, v), or None for every pixel in row-major order.
    - ``c2w`` (B,4,4): ``pixels=None`` gives all pixels of every camera (camera-major); with
      ``pixels`` (N,2), ``camera_indices`` (N,) says which camera each pixel belongs to.
    ``intrinsics`` is one camera model for all, or one per pose.
    """
    device = torch.device(device)
    poses = torch.as_tensor(np.asarray(c2w) if not torch.is_tensor(c2w) else c2w)
    poses = poses.to(device=device, dtype=torch.float32)
    single = poses.ndim == 2
    if single:
        poses = poses[None]
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise PoseError(f"generate_rays: c2w must be (4,4) or (B,4,4), got {tuple(poses.shape)}")
    n_cams = poses.shape[0]
    intr_list = [intrinsics] * n_cams if isinstance(intrinsics, Intrinsics) else list(intrinsics)
    if len(intr_list) != n_cams:
        raise PoseError(f"generate_rays: {len(intr_list)} intrinsics for {n_cams} poses")
    # fx, fy, cx, cy per camera
    k = torch.tensor([[i.fx, i.fy, i.cx, i.cy] for i in intr_list], dtype=torch.float32, device=device)

    if pixels is None:
        if camera_indices is not None:
            raise PoseError("generate_rays: camera_indices needs pixels")
        grids, cams = [], []
        for b, intr in enumerate(intr_list):
            grid = torch.as_tensor(pixel_grid(intr.width, intr.height), device=device)
            grids.append(grid)
            cams.append(torch.full((len(grid),), b, dtype=torch.long, device=device))
        pix = torch.cat(grids).to(torch.float32)
        cam_idx = torch.cat(cams)
    else:
        pix = torch.as_tensor(pixels if torch.is_tensor(pixels) else np.asarray(pixels))
        pix = pix.to(device=device, dtype=torch.float32)
        if pix.ndim != 2 or pix.shape[1] != 2:
            raise PoseError(f"generate_rays: pixels must be (N,2) (u, v), got {tuple(pix.shape)}")
        if camera_indices is None:
            if n_cams != 1:
                raise PoseError("generate_rays: several poses and pixels need camera_indices")
            cam_idx = torch.zeros(len(pix), dtype=torch.long, device=device)
        else:
            cam_idx = torch.as_tensor(
                camera_indices if torch.is_tensor(camera_indices) else np.asarray(camera_indices)
            ).to(device=device, dtype=torch.long)
            if cam_idx.shape != (len(pix),):
                raise PoseError(
                    f"generate_rays: camera_indices must be ({len(pix)},), got {tuple(cam_idx.shape)}"
                )
    kk = k[cam_idx]
    dirs_cam = torch.stack(
        [
            (pix[:, 0] + 0.5 - kk[:, 2]) / kk[:, 0],
            (pix[:, 1] + 0.5 - kk[:, 3]) / kk[:, 1],
            torch.ones_like(pix[:, 0]),
        ],
        dim=-1,
    )
    rot = poses[cam_idx, :3, :3]
    directions = torch.einsum("nij,nj->ni", rot, dirs_cam)
    origins = poses[cam_idx, :3, 3]
    return origins.contiguous(), directions.contiguous()


def project_points(
    intrinsics: Intrinsics, c2w: np.ndarray, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """World points (N,3) -> (pixel coordinates (N,2) float, optical depth z (N,)); inverse of the rays."""
    c2w = _as_poses(c2w, "project_points")
    pts_cam = (np.asarray(points, dtype=np.float64) - c2w[:3, 3]) @ c2w[:3, :3]
    z = pts_cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = pts_cam[:, 0] / z * intrinsics.fx + intrinsics.cx
        v = pts_cam[:, 1] / z * intrinsics.fy + intrinsics.cy
    return np.stack([u, v], axis=1), z
