"""Contraction, hash encoding (vectorised vs per-corner reference) and field heads."""

import pytest
import torch

from ovs3d_ros.config import FieldConfig
from ovs3d_ros.core.field import HashEncoding, SemanticField, contract, uncontract
from ovs3d_ros.core.field.contraction import ContractionError
from ovs3d_ros.core.field.encodings import EncodingError, level_resolutions
from ovs3d_ros.core.field.field import trunc_exp


@pytest.mark.parametrize("order", ["inf", "l2"])
def test_contraction_identity_inside_bounded_outside_and_invertible(order):
    center, radius = torch.tensor([1.0, -2.0, 0.5]), 3.0
    inside = center + (torch.rand(100, 3) - 0.5) * 2.0  # |u| <= 1/3 * sqrt(3) < 1 for both norms
    assert torch.allclose(contract(inside, center, radius, order), (inside - center) / radius, atol=1e-6)
    far = center + torch.randn(1000, 3) * 1e4
    c = contract(far, center, radius, order)
    norm = c.abs().amax(-1) if order == "inf" else c.norm(dim=-1)
    assert bool((norm < 2.0).all()) and bool((norm > 1.9).all())
    mid = center + torch.randn(500, 3) * 5.0
    assert torch.allclose(
        uncontract(contract(mid, center, radius, order), center, radius, order), mid, atol=1e-3
    )


def test_contraction_worked_example_and_bad_order():
    # u = (4, 0, 0) -> (2 - 1/4) * (1, 0, 0)
    out = contract(torch.tensor([[8.0, 0.0, 0.0]]), torch.zeros(3), 2.0, "inf")
    assert torch.allclose(out, torch.tensor([[1.75, 0.0, 0.0]]))
    with pytest.raises(ContractionError, match="contraction_order"):
        contract(torch.zeros(1, 3), torch.zeros(3), 1.0, "l1")


def test_level_resolutions_geometric():
    res = level_resolutions(4, 16, 128)
    assert res[0] == 16 and res[-1] == 128 and res == sorted(res)
    with pytest.raises(EncodingError):
        level_resolutions(4, 64, 16)


def test_hash_encoding_matches_reference_with_dense_and_hashed_levels():
    torch.manual_seed(0)
    enc = HashEncoding(
        num_levels=5, features_per_level=2, log2_hashmap_size=12, base_resolution=4, max_resolution=300
    )
    assert bool(enc.dense_levels[0]) and not bool(enc.dense_levels[-1])  # both paths exercised
    with torch.no_grad():
        enc.table.normal_()
    x = torch.rand(257, 3)
    assert enc(x).shape == (257, 10)
    torch.testing.assert_close(enc(x), enc.forward_reference(x), rtol=1e-5, atol=1e-5)
    # backward (bincount) against autograd through the reference
    g = torch.randn(257, 10)
    enc.table.grad = None
    (enc(x) * g).sum().backward()
    fast = enc.table.grad.clone()
    enc.table.grad = None
    (enc.forward_reference(x) * g).sum().backward()
    torch.testing.assert_close(fast, enc.table.grad, rtol=1e-4, atol=1e-5)


def test_hash_encoding_interpolates_linearly_within_a_cell():
    enc = HashEncoding(1, 1, 12, 4, 4)  # one dense level, 5^3 vertices
    with torch.no_grad():
        enc.table.copy_(torch.arange(125, dtype=torch.float32)[:, None])  # value = x + 5 y + 25 z at vertex
    x = torch.tensor([[0.1, 0.3, 0.6]])  # grid coords (0.4, 1.2, 2.4)
    assert torch.allclose(enc(x), torch.tensor([[0.4 + 5 * 1.2 + 25 * 2.4]]), atol=1e-4)


def test_hash_encoding_rejects_bad_input_and_accepts_empty():
    enc = HashEncoding(2, 2, 8, 4, 8)
    assert enc(torch.zeros(0, 3)).shape == (0, 4)  # every sample skipped by the occupancy grid
    with pytest.raises(EncodingError, match=r"\(N, 3\)"):
        enc(torch.zeros(4, 2))


def tiny_field_config() -> FieldConfig:
    return FieldConfig(
        num_levels=4,
        log2_hashmap_size=10,
        max_resolution=64,
        hidden_dim=16,
        semantic_num_levels=2,
        semantic_log2_hashmap_size=8,
        semantic_max_resolution=32,
        semantic_hidden_dim=16,
        semantic_latent_dim=8,
        clip_dim=16,
    )


def test_field_heads_shapes_and_affine_feature_head():
    torch.manual_seed(0)
    field = SemanticField(tiny_field_config())
    field.set_scene_bounds(torch.zeros(3), 2.0)
    pts = torch.randn(50, 3)
    sigma, app = field.density(pts)
    assert sigma.shape == (50,) and bool((sigma >= 0).all()) and app.shape == (50, 27)
    rgb = field.color(app, torch.randn(50, 3))
    assert rgb.shape == (50, 3) and bool(((rgb >= 0) & (rgb <= 1)).all())
    z = field.semantic_at(pts)
    assert z.shape == (50, 8)
    # expanding a weighted sum equals the weighted sum of per-point expansions (affine head identity)
    w = torch.rand(50)
    per_point = field.expand_feature(z, torch.ones(50))
    torch.testing.assert_close(
        field.expand_feature((w[:, None] * z).sum(0, keepdim=True), w.sum()[None]),
        (w[:, None] * per_point).sum(0, keepdim=True),
        rtol=1e-4,
        atol=1e-5,
    )
    groups = field.param_groups()
    assert len(groups["grid"]) == 2 and len(groups["grid"]) + len(groups["mlp"]) == len(
        list(field.parameters())
    )


def test_trunc_exp_gradient_is_clamped():
    x = torch.tensor([1.0, 50.0], requires_grad=True)
    trunc_exp(x).sum().backward()
    assert torch.allclose(x.grad[0], torch.exp(torch.tensor(1.0)))
    assert torch.allclose(x.grad[1], torch.exp(torch.tensor(15.0)))
