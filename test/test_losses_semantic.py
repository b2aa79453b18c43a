"""RDA / FDA / JS losses on hand-made tensors: values against direct formulas, gradient directions."""

import math

import pytest
import torch
import torch.nn.functional as F

from ovs3d_ros.core import losses


def _js_reference(p, q):
    m = 0.5 * (p + q)
    return 0.5 * (p * (p / m).log()).sum(-1) + 0.5 * (q * (q / m).log()).sum(-1)


def test_js_matches_reference_and_bounds():
    torch.manual_seed(0)
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    got = losses.js_divergence(a.log_softmax(-1), b.log_softmax(-1))
    ref = _js_reference(a.softmax(-1), b.softmax(-1))
    assert torch.allclose(got, ref, atol=1e-6)
    same = losses.js_divergence(a.log_softmax(-1), a.log_softmax(-1))
    assert torch.allclose(same, torch.zeros(5), atol=1e-7)
    # disjoint one-hot distributions give ln 2; saturated logits stay finite
    big = torch.tensor([[200.0, -200.0]]), torch.tensor([[-200.0, 200.0]])
    js = losses.js_divergence(big[0].log_softmax(-1), big[1].log_softmax(-1))
    assert torch.isfinite(js).all() and abs(js.item() - math.log(2)) < 1e-5
    assert torch.allclose(got, losses.js_divergence(b.log_softmax(-1), a.log_softmax(-1)))


def test_relevancy_target_is_selection_weighted_sum():
    rel = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]])  # (N=1, S=3, C=2)
    sel = torch.tensor([[0.5, 0.25, 0.25]])
    got = losses.relevancy_target_logits(rel, sel)
    assert torch.allclose(got, torch.tensor([[0.5 + 0.125, 0.25 + 0.125]]))


def test_rda_value_and_gradients_reach_both_sides():
    torch.manual_seed(1)
    n, d, c, s = 6, 8, 3, 3
    text = F.normalize(torch.randn(c, d), dim=-1)
    feat = torch.randn(n, d, requires_grad=True)
    rel = torch.rand(n, s, c)
    sel_logits = torch.randn(n, s, requires_grad=True)
    sel = sel_logits.softmax(-1)
    loss = losses.rda_loss(feat, text, rel, sel)
    ref = _js_reference((feat @ text.t()).softmax(-1), (sel.unsqueeze(-1) * rel).sum(1).softmax(-1)).mean()
    assert torch.allclose(loss, ref, atol=1e-6)
    loss.backward()
    assert feat.grad.abs().sum() > 0 and sel_logits.grad.abs().sum() > 0  # neither side detached


def test_rda_gradient_moves_prediction_toward_relevant_class():
    text = torch.eye(3)
    feat = torch.zeros(1, 3, requires_grad=True)
    rel = torch.tensor([[[0.0, 1.0, 0.0]]] * 1)  # one scale, class 1 relevant
    sel = torch.ones(1, 1)
    losses.rda_loss(feat, text, rel, sel).backward()
    # gradient descent raises the logit of class 1 and lowers the others
    step = -feat.grad[0]
    assert step[1] > 0 and step[0] < 0 and step[2] < 0
    # the feature is used unnormalised: scaling it changes the loss
    l1 = losses.rda_loss(torch.tensor([[0.0, 1.0, 0.0]]), text, rel, sel)
    l5 = losses.rda_loss(torch.tensor([[0.0, 5.0, 0.0]]), text, rel, sel)
    assert not torch.isclose(l1, l5)


def test_sample_pairs_full_and_bounded():
    i, j = losses.sample_pairs(4, 100)
    pairs = set(zip(i.tolist(), j.tolist(), strict=True))
    assert len(i) == 16 and pairs == {(a, b) for a in range(4) for b in range(4)}
    g = torch.Generator().manual_seed(0)
    i, j = losses.sample_pairs(1000, 500, g)
    assert len(i) == 500 and int(i.max()) < 1000 and int(j.max()) < 1000
    g2 = torch.Generator().manual_seed(0)
    i2, _ = losses.sample_pairs(1000, 500, g2)
    assert torch.equal(i, i2)


def _fda_reference(feat, text, dino, t, shift, wp, wn):
    """Dense (B, T, T) loop-free reference of the original CorrelationLoss."""
    p = (F.normalize(feat, dim=-1) @ text.t() / t).softmax(-1)
    pi, pj = p[:, :, None], p[:, None, :]
    js = _js_reference(pi.expand(-1, -1, p.shape[1], -1), pj.expand(-1, p.shape[1], -1, -1))
    du = F.normalize(dino, dim=-1)
    corr = du @ du.transpose(1, 2) - shift
    lp = (corr.clamp(min=0) * js).sum() / (corr > 0).sum()
    ln = (corr.clamp(max=0) * js).sum() / (corr < 0).sum()
    return wp * lp + wn * ln, lp, ln


def test_fda_matches_dense_reference_when_not_subsampled():
    torch.manual_seed(2)
    b, t, d, c, cd = 2, 9, 6, 4, 5
    feat = torch.randn(b, t, d)
    text = F.normalize(torch.randn(c, d), dim=-1)
    dino = torch.randn(b, t, cd)
    out = losses.fda_loss(feat, text, dino, temperature=0.2, dino_shift=0.1, pos_weight=200.0,
                          neg_weight=0.2, max_pairs=10_000)
    ref, lp, ln = _fda_reference(feat, text, dino, 0.2, 0.1, 200.0, 0.2)
    assert torch.allclose(out["fda"], ref, atol=1e-5)
    assert torch.allclose(out["fda_pos"], lp, atol=1e-6) and torch.allclose(out["fda_neg"], ln, atol=1e-6)
    assert out["fda_neg"] <= 0 <= out["fda_pos"]


def test_fda_subsampled_estimates_dense_value():
    torch.manual_seed(3)
    b, t, d, c = 1, 64, 8, 3
    feat = torch.randn(b, t, d)
    text = F.normalize(torch.randn(c, d), dim=-1)
    dino = torch.randn(b, t, 4)
    kw = {"temperature": 0.2, "dino_shift": 0.0, "pos_weight": 1.0, "neg_weight": 1.0}
    dense = losses.fda_loss(feat, text, dino, max_pairs=t * t, **kw)
    sub = losses.fda_loss(feat, text, dino, max_pairs=2000, generator=torch.Generator().manual_seed(0), **kw)
    assert abs(sub["fda_pos"] - dense["fda_pos"]) < 0.15 * abs(dense["fda_pos"])
    assert abs(sub["fda_neg"] - dense["fda_neg"]) < 0.15 * abs(dense["fda_neg"])


def test_fda_gradient_pulls_similar_and_pushes_dissimilar_pairs():
    text = torch.eye(2)
    kw = {"temperature": 0.2, "dino_shift": 0.7, "pos_weight": 200.0, "neg_weight": 0.2, "max_pairs": 100}
    # two tokens with identical DINO (similar): their class distributions should get closer
    feat = torch.tensor([[[1.0, 0.2], [0.2, 1.0]]], requires_grad=True)
    same = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    before = losses.fda_loss(feat, text, same, **kw)["fda"]
    before.backward()
    moved = (feat - 0.01 * feat.grad).detach()
    after = losses.fda_loss(moved, text, same, **kw)["fda"]
    assert after < before
    p = (F.normalize(moved, dim=-1) @ text.t() / 0.2).softmax(-1)
    p0 = (F.normalize(feat.detach(), dim=-1) @ text.t() / 0.2).softmax(-1)
    assert (p[0, 0] - p[0, 1]).abs().sum() < (p0[0, 0] - p0[0, 1]).abs().sum()
    # orthogonal DINO (dissimilar): the step pushes the distributions apart
    feat2 = feat.detach().clone().requires_grad_(True)
    diff = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    losses.fda_loss(feat2, text, diff, **kw)["fda"].backward()
    moved2 = (feat2 - 1.0 * feat2.grad).detach()
    p2 = (F.normalize(moved2, dim=-1) @ text.t() / 0.2).softmax(-1)
    assert (p2[0, 0] - p2[0, 1]).abs().sum() > (p0[0, 0] - p0[0, 1]).abs().sum()


def test_fda_shape_mismatch_raises():
    import pytest

    with pytest.raises(ValueError, match="share B and T"):
        losses.fda_loss(torch.zeros(1, 3, 2), torch.eye(2), torch.zeros(1, 4, 2), temperature=0.2,
                        dino_shift=0.7, pos_weight=1, neg_weight=1, max_pairs=10)


def _feature_distillation_reference(rendered, selection, targets):
    """The loss as written in the method notes: normalise the selection-weighted target, then cosine."""
    mixed = F.normalize((selection.unsqueeze(-1) * targets.float()).sum(dim=1), dim=-1)
    return -(F.normalize(rendered, dim=-1) * mixed).sum(-1).mean()


def test_feature_distillation_matches_reference_values_and_gradients():
    torch.manual_seed(0)
    rendered = torch.randn(64, 16, requires_grad=True)
    logits = torch.randn(64, 3, requires_grad=True)
    targets = F.normalize(torch.randn(64, 3, 16), dim=-1)
    got = losses.feature_distillation_loss(rendered, logits.softmax(-1), targets)
    got.backward()
    grads = rendered.grad.clone(), logits.grad.clone()
    rendered.grad = logits.grad = None
    ref = _feature_distillation_reference(rendered, logits.softmax(-1), targets)
    ref.backward()
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(grads[0], rendered.grad)
    torch.testing.assert_close(grads[1], logits.grad)
    # fp16 targets (how keyframes store them) give the same value to fp16 precision
    half = losses.feature_distillation_loss(rendered, logits.softmax(-1), targets.half())
    assert abs(float(half) - float(ref)) < 2e-3
    # a rendered feature equal to its target's mix is the optimum, -1
    mix = (logits.softmax(-1).unsqueeze(-1) * targets).sum(1).detach()
    assert abs(float(losses.feature_distillation_loss(3.0 * mix, logits.softmax(-1), targets)) + 1.0) < 1e-5


def test_scale_mix_weights_use_the_finest_scale_only_where_the_scales_disagree():
    e = torch.eye(4)
    # ray 0: the coarsest and finest scales agree; ray 1: the coarse patch saw the table (e0), the finest
    # the mug (e1)
    middle = torch.nn.functional.normalize(e[0] + 0.5 * e[3], dim=0)
    targets = torch.stack([torch.stack([e[0], middle, e[0]]), torch.stack([e[0], e[0], e[1]])])
    sel = torch.tensor([[0.5, 0.2, 0.3], [0.6, 0.3, 0.1]])
    w = losses.scale_mix_weights(sel, targets, fine_agreement=0.5, finest=2, coarsest=0)
    assert torch.equal(w[0], sel[0]) and torch.equal(w[1], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.equal(losses.scale_mix_weights(sel, targets, fine_agreement=-1.0, finest=2, coarsest=0), sel)
    # the finest scale may come first (divisors in decreasing order): compared with the last one
    flipped = targets.flip(1)
    w = losses.scale_mix_weights(sel, flipped, fine_agreement=0.5, finest=0, coarsest=2)
    assert torch.equal(w[1], torch.tensor([1.0, 0.0, 0.0])) and torch.equal(w[0], sel[0])
    # the selection still learns from the rays where the scales agree
    sel = sel.clone().requires_grad_(True)
    losses.feature_distillation_loss(torch.randn(2, 4), losses.scale_mix_weights(sel, targets, 0.5, 2, 0),
                                     targets).backward()
    assert sel.grad[0].abs().sum() > 0 and sel.grad[1].abs().sum() == 0


@pytest.mark.parametrize("divisors, finest, coarsest", [
    ((1, 2, 4), 2, 0), ((4, 2, 1), 0, 2), ((2, 4, 1), 1, 2), ((3,), 0, 0),
])
def test_scale_extremes_follow_the_divisors_not_their_order(divisors, finest, coarsest):
    """The largest divisor is the smallest patch (finest), the smallest divisor the largest (coarsest):
    the agreement rule and the surround subtraction use the same two scales in any listed order."""
    from ovs3d_ros.core.semantic_targets import scale_extremes

    assert scale_extremes(divisors) == (finest, coarsest)


def test_fda_colour_affinity_weakens_attraction_across_a_colour_edge():
    text = torch.eye(2)
    kw = {"temperature": 0.2, "dino_shift": 0.7, "pos_weight": 200.0, "neg_weight": 0.2, "max_pairs": 100}
    # the DINO tokens look alike (a mixed token on a mug and the table's), the rays hit white and brown
    feat = torch.tensor([[[1.0, 0.2], [0.2, 1.0]]])
    same = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    white_brown = torch.tensor([[[0.93, 0.93, 0.9], [0.55, 0.35, 0.18]]])
    white_white = torch.tensor([[[0.93, 0.93, 0.9], [0.9, 0.92, 0.9]]])
    i, j = losses.sample_pairs(2, 100)
    w = losses.fda_colour_affinity(white_brown, i, j, 0.2)
    assert torch.allclose(w[0, i == j], torch.ones(2)) and float(w[0, i != j].max()) < 0.01
    plain = losses.fda_loss(feat, text, same, **kw)["fda_pos"]
    across = losses.fda_loss(feat, text, same, pair_colour=white_brown, colour_sigma=0.2, **kw)["fda_pos"]
    within = losses.fda_loss(feat, text, same, pair_colour=white_white, colour_sigma=0.2, **kw)["fda_pos"]
    assert float(across) < 0.01 * float(plain)
    assert float(within) == pytest.approx(float(plain), rel=0.05)
    off = losses.fda_loss(feat, text, same, pair_colour=white_brown, colour_sigma=0.0, **kw)["fda_pos"]
    assert torch.equal(off, plain)


def test_surround_subtracted_target_keeps_uniform_surfaces_and_brings_out_a_small_object():
    e = torch.eye(4)
    table, apple = e[0], e[1]
    # ray 0 on a uniform table (all scales agree); ray 1 on a small apple: even the finest patch is
    # mostly table, the coarsest almost only table
    fine = torch.nn.functional.normalize(0.9 * table + 0.4 * apple, dim=0)
    coarse = torch.nn.functional.normalize(0.99 * table + 0.1 * apple, dim=0)
    targets = torch.stack([torch.stack([table, table, table]), torch.stack([coarse, coarse, fine])])
    w = torch.tensor([[0.5, 0.2, 0.3], [0.0, 0.0, 1.0]])
    out = losses.surround_subtracted_weights(w, coarsest=0, surround=0.7)
    assert torch.allclose(out, torch.tensor([[-0.2, 0.2, 0.3], [-0.7, 0.0, 1.0]]))
    assert torch.equal(w, torch.tensor([[0.5, 0.2, 0.3], [0.0, 0.0, 1.0]]))  # not modified in place
    assert losses.surround_subtracted_weights(w, 0, 0.0) is w
    with pytest.raises(ValueError, match="below 1"):
        losses.surround_subtracted_weights(w, 0, 1.0)
    mixed = torch.bmm(out.unsqueeze(1), targets).squeeze(1)
    unit = torch.nn.functional.normalize(mixed, dim=-1)
    assert torch.allclose(unit[0], table)  # the uniform surface's target direction is unchanged
    assert float(unit[1] @ apple) > float(unit[1] @ table)  # the apple now dominates its own target
    assert float(fine @ apple) < float(fine @ table)
    # the loss: a rendered apple feature beats a rendered table feature only with the subtraction
    plain = [float(losses.feature_distillation_loss(f[None], w[1:], targets[1:])) for f in (apple, table)]
    sharp = [float(losses.feature_distillation_loss(f[None], out[1:], targets[1:])) for f in (apple, table)]
    assert plain[0] > plain[1] and sharp[0] < sharp[1]


def test_feature_target_weights_subtract_the_coarsest_scale_and_leave_rda_weights_alone():
    from ovs3d_ros.config import Config, apply_flat
    from ovs3d_ros.core.semantic_targets import feature_target_weights, target_scale_weights

    cfg = apply_flat(Config(), {"semantic.target_surround_weight": 0.5, "semantic.fine_scale_agreement": -1.0,
                                "teacher.clip.scale_divisors": [5, 7, 10]})
    sel = torch.tensor([[0.5, 0.2, 0.3]])
    targets = torch.nn.functional.normalize(torch.randn(1, 3, 8), dim=-1)
    assert torch.allclose(feature_target_weights(cfg, sel, targets), torch.tensor([[0.0, 0.2, 0.3]]))
    assert torch.equal(target_scale_weights(cfg, sel, targets), sel)


def _residual_reference(rendered, weights, targets):
    """Per ray, slowly: the unit weighted target and unit rendered feature, less the batch's mean target."""
    mixed = [F.normalize(sum(weights[i, k] * targets[i, k] for k in range(targets.shape[1])), dim=0)
             for i in range(targets.shape[0])]
    mean = torch.stack(mixed).mean(dim=0).detach()
    cos = [F.cosine_similarity(F.normalize(rendered[i], dim=0) - mean, mixed[i] - mean, dim=0)
           for i in range(targets.shape[0])]
    return -torch.stack(cos).mean()


def test_residual_feature_loss_matches_the_reference_and_its_mean_is_a_constant():
    g = torch.Generator().manual_seed(3)
    rendered = torch.randn(6, 16, generator=g).requires_grad_(True)
    weights = torch.softmax(torch.randn(6, 3, generator=g), dim=-1).requires_grad_(True)
    targets = F.normalize(torch.randn(6, 3, 16, generator=g), dim=-1)
    value = losses.residual_feature_loss(rendered, weights, targets)
    reference = _residual_reference(rendered, weights, targets)
    assert abs(float(value) - float(reference)) < 1e-5
    got = torch.autograd.grad(value, (rendered, weights))
    want = torch.autograd.grad(reference, (rendered, weights))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # rendering the target itself (any norm) is the minimum
    mixed = torch.bmm(weights.detach().unsqueeze(1), targets).squeeze(1)
    assert abs(float(losses.residual_feature_loss(3.0 * mixed, weights.detach(), targets)) + 1.0) < 1e-5


def test_a_small_share_is_a_larger_angle_as_a_residual():
    """Why the term exists: a ray over a 5 cm ball has a target 85 % table, 15 % ball; a render holding
    two thirds of that share is almost perfect for the plain cosine, clearly not for the residual one
    when most of the batch is table."""
    table, ball, wall = torch.eye(3, 8)[0], torch.eye(3, 8)[1], torch.eye(3, 8)[2]
    on_ball = 0.85 * table + 0.15 * ball
    targets = torch.stack([on_ball] + [table] * 5 + [wall] * 2)[:, None, :]  # one scale
    weights = torch.ones(len(targets), 1)
    rendered = targets[:, 0].clone()
    rendered[0] = 0.9 * table + 0.1 * ball  # two thirds of the ball's share
    plain = F.cosine_similarity(rendered[0], on_ball, dim=0)
    # every other ray renders its target exactly (cosine 1): what is left of the mean is ray 0's
    residual = -losses.residual_feature_loss(rendered, weights, targets) * len(targets) - (len(targets) - 1)
    plain_deg, residual_deg = (math.degrees(math.acos(min(1.0, float(c)))) for c in (plain, residual))
    assert plain_deg < 4.0  # the plain loss barely sees the missing share
    assert residual_deg > 2.5 * plain_deg  # the residual one sees it as a 2.5x larger angle
