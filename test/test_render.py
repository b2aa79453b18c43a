"""Rendering maths: vectorised weights and compositing vs python-loop references, samplers, render_rays."""

import math

import numpy as np
import pytest
import torch

from ovs3d_ros.config import Config
from ovs3d_ros.core.field import SemanticField
from ovs3d_ros.core.frame import Intrinsics
from ovs3d_ros.core.rendering import (
    RenderError,
    SamplingSettings,
    composite,
    composite_reference,
    depth_guided_edges,
    render_image,
    render_rays,
    render_weights,
    render_weights_reference,
    sample_pdf,
    stratified_edges,
)


def test_weights_and_compositing_match_python_loop_reference():
    torch.manual_seed(0)
    sigmas = torch.rand(7, 13) * 5
    deltas = torch.rand(7, 13) * 0.3
    w = render_weights(sigmas, deltas)
    torch.testing.assert_close(w, render_weights_reference(sigmas, deltas))
    values = torch.randn(7, 13, 5)
    torch.testing.assert_close(composite(w, values), composite_reference(w, values))
    assert bool((w.sum(-1) <= 1 + 1e-6).all())


def test_weights_hand_computed():
    # alpha_0 = 1 - e^-1, alpha_1 = 1 - e^-2; w_1 = alpha_1 * e^-1
    w = render_weights(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 1.0]]))
    assert math.isclose(float(w[0, 0]), 1 - math.exp(-1), rel_tol=1e-6)
    assert math.isclose(float(w[0, 1]), (1 - math.exp(-2)) * math.exp(-1), rel_tol=1e-6)


def test_stratified_edges_sorted_and_cover_range():
    near, far = torch.full((5,), 0.5), torch.full((5,), 4.0)
    e = stratified_edges(near, far, 10, jitter=True, generator=torch.Generator().manual_seed(0))
    assert e.shape == (5, 11) and bool((e.diff(dim=-1) > 0).all())
    assert bool((e >= 0.5).all()) and bool((e <= 4.0).all())
    e0 = stratified_edges(near, far, 10, jitter=False)
    assert torch.allclose(e0[0, 0], torch.tensor(0.5 + 3.5 * 0.5 / 11))


def test_sample_pdf_concentrates_on_heavy_bins():
    edges = torch.linspace(0, 10, 11).expand(3, 11).contiguous()
    weights = torch.zeros(3, 10)
    weights[:, 6] = 1.0
    t = sample_pdf(edges, weights, 64, jitter=True, generator=torch.Generator().manual_seed(0))
    assert t.shape == (3, 64) and bool((t.diff(dim=-1) >= 0).all())
    assert float(((t >= 6) & (t <= 7)).float().mean()) > 0.95


def test_depth_guided_edges_put_the_window_around_depth():
    s = SamplingSettings(
        0.1,
        10.0,
        16,
        0,
        depth_samples=8,
        depth_uniform_samples=4,
        depth_sigma_m=0.05,
        depth_sample_sigmas=3.0,
        jitter=False,
    )
    depth = torch.tensor([2.0, 5.0])
    edges, lo, hi = depth_guided_edges(torch.full((2,), 0.1), depth, s)
    assert edges.shape == (2, 8 + 4 + 2)
    assert torch.allclose(lo, depth - 0.15) and torch.allclose(hi, depth + 0.15)
    inside = ((edges >= lo[:, None]) & (edges <= hi[:, None])).sum(-1)
    assert bool((inside >= 9).all())  # the 9 window edges, plus any uniform ones falling there


def tiny_config() -> Config:
    cfg = Config()
    f = cfg.field
    f.num_levels, f.log2_hashmap_size, f.max_resolution, f.hidden_dim = 4, 10, 64, 16
    f.semantic_num_levels, f.semantic_log2_hashmap_size, f.semantic_max_resolution = 2, 8, 32
    f.semantic_hidden_dim, f.semantic_latent_dim, f.clip_dim = 16, 8, 16
    t = cfg.trainer
    t.samples_per_ray, t.importance_samples, t.depth_samples, t.depth_uniform_samples = 12, 6, 4, 4
    t.render_samples_per_ray, t.render_importance_samples = 12, 6
    return cfg


@pytest.fixture
def field():
    torch.manual_seed(0)
    f = SemanticField(tiny_config().field)
    f.set_scene_bounds(torch.zeros(3), 2.0)
    return f


def test_render_rays_outputs_and_no_per_sample_clip_tensor(field):
    cfg = tiny_config()
    n = 20
    origins = torch.zeros(n, 3)
    directions = torch.cat((torch.randn(n, 2) * 0.2, torch.ones(n, 1)), dim=1)
    depth = torch.where(torch.arange(n) % 2 == 0, 1.5, 0.0)  # half the rays with depth
    out = render_rays(
        field,
        origins,
        directions,
        SamplingSettings.for_training(cfg),
        depth=depth,
        semantic_rays=8,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.rgb.shape == (n, 3) and out.depth.shape == (n,) and out.opacity.shape == (n,)
    assert out.latent.shape == (8, 8) and out.feature.shape == (8, 16) and out.selection.shape == (8, 3)
    torch.testing.assert_close(out.selection.sum(-1), torch.ones(8))
    # the feature is the expansion of the composited latent with the composited opacity
    torch.testing.assert_close(out.feature, field.expand_feature(out.latent, out.weights[:8].sum(-1)))
    # selection stays in the original's soft range: S_k in [0, 1] -> softmax within [1/(1+2e), e/(e+2)]
    assert float(out.selection.detach().min()) >= 1 / (1 + 2 * math.e) - 1e-6


def test_detached_semantic_weights_keep_semantics_out_of_density(field):
    cfg = tiny_config()
    origins, directions = torch.zeros(6, 3), torch.tensor([[0.0, 0.0, 1.0]]).repeat(6, 1)
    out = render_rays(field, origins, directions, SamplingSettings.for_rendering(cfg), semantic_rays=6)
    out.feature.sum().backward()
    assert (
        field.geometry_encoding.table.grad is None
        or float(field.geometry_encoding.table.grad.abs().sum()) == 0
    )
    assert float(field.semantic_encoding.table.grad.abs().sum()) > 0


def test_render_image_any_resolution_and_chunk_invariance(field):
    cfg = tiny_config()
    intr = Intrinsics(fx=20.0, fy=20.0, cx=16.0, cy=12.0, width=32, height=24)
    pose = np.eye(4)
    settings = SamplingSettings.for_rendering(cfg)
    a = render_image(field, intr, pose, settings, chunk=1000)
    b = render_image(field, intr, pose, settings, chunk=37)
    assert (
        a["rgb"].shape == (24, 32, 3) and a["feature"].shape == (24, 32, 16) and a["depth"].shape == (24, 32)
    )
    torch.testing.assert_close(a["rgb"], b["rgb"])
    small = render_image(field, intr, pose, settings, width=8, height=6, semantics=False)
    assert small["rgb"].shape == (6, 8, 3) and "feature" not in small
    with pytest.raises(RenderError, match="both width and height"):
        render_image(field, intr, pose, settings, width=8)
    with pytest.raises(RenderError, match=r"\(N, 3\)"):
        render_rays(field, torch.zeros(3, 2), torch.zeros(3, 2), settings)


def test_free_space_loss_counts_only_weight_in_front_of_the_depth_window():
    from ovs3d_ros.core.losses import free_space_loss

    t_mid = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    weights = torch.tensor([[0.2, 0.7, 0.1], [0.0, 0.9, 0.1]])
    depth = torch.tensor([2.0, 2.0])
    valid = torch.tensor([True, True])
    # only t = 1 lies in front of 2 - 0.5: ray 0 has 0.2 there, ray 1 none -> mean 0.1
    assert float(free_space_loss(weights, t_mid, depth, 0.5, valid)) == pytest.approx(0.1)
    assert float(free_space_loss(weights, t_mid, depth, 0.5, torch.tensor([False, False]))) == 0.0
