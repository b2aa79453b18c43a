"""Helpers of the vocabulary-specific training: relevancy-target construction per ray, DINO token
rays and windows."""

import numpy as np
import torch
import torch.nn.functional as F

from ovs3d_ros.core.camera import generate_rays, project_points
from ovs3d_ros.core.frame import Intrinsics
from ovs3d_ros.core.losses import relevancy_target_logits
from ovs3d_ros.core.semantic_targets import RelevancyCache, gather_maps, sample_window, token_pixels
from ovs3d_ros.core.teachers import relevancy_maps


def test_relevancy_targets_from_clip_maps_per_ray():
    torch.manual_seed(0)
    s, d, h, w, c = 3, 8, 4, 6, 2
    clip = F.normalize(torch.randn(s, d, h, w), dim=1).half()
    text = F.normalize(torch.randn(c, d), dim=-1)
    cache = RelevancyCache(text)
    maps = cache.get(7, clip)
    assert cache.get(7, clip) is maps  # computed once per keyframe
    ref = relevancy_maps(clip, text)
    assert torch.allclose(maps.float(), ref, atol=1e-3)
    # every map cell is min-max normalised per scale and class
    assert torch.allclose(ref.flatten(2).amin(-1), torch.zeros(s, c))
    assert torch.allclose(ref.flatten(2).amax(-1), torch.ones(s, c))
    # full-res 24x16 image: pixel (u, v) falls in map cell (v // 4, u // 4)
    pixels = torch.tensor([[0, 0], [23, 15], [5, 9], [12, 3]])
    got = gather_maps(ref, pixels, height=16, width=24)
    for n, (u, v) in enumerate(pixels.tolist()):
        assert torch.equal(got[n], ref[:, :, v // 4, u // 4])
    sel = torch.tensor([[0.2, 0.3, 0.5]] * 4)
    target = relevancy_target_logits(got, sel)
    manual = (sel[:, :, None] * got).sum(1)
    assert torch.allclose(target, manual)
    cache.prune([])
    assert cache.get(7, clip) is not maps


def test_token_rays_pass_through_token_centres():
    intr = Intrinsics(fx=50.0, fy=50.0, cx=40.0, cy=30.0, width=80, height=60)
    pose = np.eye(4)
    pose[:3, 3] = [0.1, -0.2, 0.3]
    rows, cols = torch.tensor([0, 3, 7]), torch.tensor([0, 5, 9])
    pix = token_pixels(rows, cols, grid_hw=(8, 10), image_hw=(60, 80))
    origins, directions = generate_rays(intr, pose, pix)
    points = (origins + 2.0 * directions).numpy()
    uv, z = project_points(intr, pose, points)
    expected = np.stack([(cols.numpy() + 0.5) * 80 / 10, (rows.numpy() + 0.5) * 60 / 8], axis=1)
    assert np.allclose(uv, expected, atol=1e-4) and np.allclose(z, 2.0, atol=1e-5)


def test_sample_window_inside_grid_and_clamped():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        rows, cols = sample_window((9, 12), 4, g)
        assert len(rows) == 16 and rows.max() - rows.min() == 3 and cols.max() - cols.min() == 3
        assert rows.min() >= 0 and rows.max() < 9 and cols.max() < 12
    rows, cols = sample_window((3, 5), 16, g)  # window larger than the grid: the whole grid
    assert len(rows) == 15


def test_fda_render_trains_only_the_semantic_grid():
    """semantic.fda_gradient='semantic_grid': the FDA render has the same values as a plain render,
    but its gradient reaches only the semantic hash grid, never the shared semantic MLP or feature
    head (through which the x200 pair term collapsed small classes; see SemanticConfig)."""
    import pytest
    from tiny_config import tiny_config  # noqa: E402 - test/ is on sys.path

    from ovs3d_ros.core.field import SemanticField
    from ovs3d_ros.core.rendering import SamplingSettings, render_rays
    from ovs3d_ros.core.semantic_alignment import fda_gradient_targets, render_rays_training_only

    cfg = tiny_config()
    torch.manual_seed(0)
    field = SemanticField(cfg.field)
    intr = Intrinsics(10.0, 10.0, 8.0, 6.0, 16, 12)
    origins, directions = generate_rays(intr, np.eye(4), torch.tensor([[3, 4], [8, 6], [12, 2]]))
    settings = SamplingSettings.for_training(cfg)
    text = F.normalize(torch.randn(3, cfg.field.clip_dim), dim=-1)

    def loss(out):
        return (torch.log_softmax(F.normalize(out.feature, dim=-1) @ text.t() / 0.2, -1)[:, 0]).sum()

    torch.manual_seed(1)
    plain = render_rays(field, origins, directions, settings, semantic_rays=3)
    torch.manual_seed(1)
    only = render_rays_training_only(field, fda_gradient_targets(cfg.semantic), origins, directions,
                                     settings, semantic_rays=3)
    assert torch.allclose(plain.feature, only.feature) and torch.allclose(plain.selection, only.selection)
    field.zero_grad(set_to_none=True)
    loss(only).backward()
    grid_grad = field.semantic_encoding.table.grad
    assert grid_grad is not None and grid_grad.abs().sum() > 0
    shared = list(field.semantic_mlp.parameters()) + list(field.feature_head.parameters())
    assert all(p.grad is None for p in shared)
    field.zero_grad(set_to_none=True)
    loss(plain).backward()  # the unrestricted render does train them
    assert all(p.grad is not None for p in shared)
    with pytest.raises(ValueError, match="fda_gradient"):
        fda_gradient_targets(type(cfg.semantic)(fda_gradient="everything"))
