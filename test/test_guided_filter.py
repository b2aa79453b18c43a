"""The colour-guided filter of mask decisions (``core/guided_filter.py``, ``query.colour_smoothing``):
the pooled fast path against the per-window definition, the halo narrower than its window that
it is there to remove, and ``decide``'s ``smooth`` hook."""

import pytest
import torch

from ovs3d_ros.core.guided_filter import box_mean, guided_filter, guided_filter_reference
from ovs3d_ros.core.query import COLOUR_FILTER_SIDE, colour_smoothing, decide


def test_box_mean_is_the_mean_over_the_clipped_window():
    x = torch.rand(2, 6, 7, dtype=torch.float64)
    out = box_mean(x, 2)
    for i, j in [(0, 0), (3, 3), (5, 6), (2, 0)]:
        window = x[:, max(i - 2, 0):i + 3, max(j - 2, 0):j + 3]
        torch.testing.assert_close(out[:, i, j], window.mean(dim=(1, 2)))


@pytest.mark.parametrize("radius", [1, 2, 4])
@pytest.mark.parametrize("eps", [1e-4, 1e-2, 1.0])
def test_guided_filter_equals_the_per_window_ridge_fits(radius, eps):
    gen = torch.Generator().manual_seed(radius)
    guide, src = torch.rand(3, 9, 11, generator=gen), torch.rand(4, 9, 11, generator=gen)
    torch.testing.assert_close(guided_filter(guide, src, radius, eps),
                               guided_filter_reference(guide, src, radius, eps), atol=1e-5, rtol=1e-5)


def _halo_scene(height: int = 60, width: int = 80, ball_radius: float = 5.0):
    """A wooden-table image with an orange ball, and decision maps whose ball reaches 2 px onto the
    table (the halo a field learns from the teacher's blur) against a flat table score."""
    v, u = torch.meshgrid(torch.arange(height).float(), torch.arange(width).float(), indexing="ij")
    dist = ((u - 40) ** 2 + (v - 30) ** 2).sqrt()
    ball = dist <= ball_radius
    table_rgb, ball_rgb = torch.tensor([0.55, 0.40, 0.25]), torch.tensor([0.95, 0.50, 0.05])
    rgb = torch.where(ball[..., None], ball_rgb, table_rgb) + 0.01 * torch.randn(
        height, width, 3, generator=torch.Generator().manual_seed(0))
    ball_score = torch.sigmoid(ball_radius + 2.0 - dist)  # its edge 2 px outside the ball: the halo
    decision = torch.stack([torch.full_like(ball_score, 0.5), ball_score], dim=-1).reshape(-1, 2)
    return rgb.clamp(0, 1), decision, ball.reshape(-1)


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / float((a | b).sum())


@pytest.mark.parametrize("subsample", [1, 2])
def test_the_filter_pulls_a_halo_back_to_the_colour_edge(subsample):
    rgb, decision, ball = _halo_scene()
    before = decision.argmax(dim=1) == 1
    assert _iou(before, ball) < 0.6  # the halo: the ball's label covers table around it
    maps = decision.t().reshape(2, *rgb.shape[:2])
    smoothed = guided_filter(rgb.permute(2, 0, 1), maps, 4, 1e-4, subsample)
    after = smoothed.reshape(2, -1).t().argmax(dim=1) == 1
    assert _iou(after, ball) > 0.9


def test_colour_smoothing_sizes_its_window_by_the_short_side_and_is_off_at_zero():
    rgb, decision, ball = _halo_scene()
    assert colour_smoothing(rgb, 0.0, 1e-4) is None
    assert colour_smoothing(rgb, 0.001, 1e-4) is None  # under one pixel
    smooth = colour_smoothing(rgb, 0.05, 1e-4)  # radius 3 at 60 rows
    maps = decision.t().reshape(2, *rgb.shape[:2])
    expected = guided_filter(rgb.permute(2, 0, 1), maps, 3, 1e-4).reshape(2, -1).t()
    torch.testing.assert_close(smooth(decision), expected)
    assert COLOUR_FILTER_SIDE <= 480 // 2  # a 640x480 mask takes the subsampled path


def test_decide_smooths_all_rows_together_whatever_the_chunks():
    rgb, decision, ball = _halo_scene()
    cos = decision * 0.5  # any cosines: the 'cosine' rule decides on them as they are
    smooth = colour_smoothing(rgb, 0.07, 1e-4)  # radius 4 at 60 rows

    def chunked(size):
        starts = range(0, len(cos), size)
        return (lambda i: (cos[starts[i]:starts[i] + size], None)), len(starts)

    whole = decide(*chunked(len(cos)), temperature=0.1, smooth=smooth)
    pieces = decide(*chunked(1000), temperature=0.1, smooth=smooth)
    plain = decide(*chunked(1000), temperature=0.1)
    torch.testing.assert_close(pieces.labels, whole.labels)
    assert _iou(whole.labels == 1, ball) > 0.9 > 0.6 > _iou(plain.labels == 1, ball)


def test_colour_guided_targets_pull_a_blurred_feature_back_inside_its_colour_edge():
    """``semantic.target_colour_filter_radius``: the teacher's CLIP maps, blurred so the ball's feature
    spills 2 px onto the table, are filtered under the frame's colours before they become targets."""
    import torch.nn.functional as F

    from ovs3d_ros.core.semantic_targets import colour_guided_maps

    rgb, decision, ball = _halo_scene()
    height, width = rgb.shape[:2]
    ball_dir, table_dir = torch.zeros(8), torch.zeros(8)
    ball_dir[0], table_dir[1] = 1.0, 1.0
    weight = decision[:, 1].reshape(height, width)  # the blurred ball, 2 px wider than its edge
    feats = weight[None] * ball_dir[:, None, None] + (1 - weight[None]) * table_dir[:, None, None]
    clip = F.normalize(torch.stack([feats, feats]), dim=1).half()  # (S=2, D=8, h, w) unit
    frame_rgb = (rgb * 255).round().to(torch.uint8).numpy()
    assert colour_guided_maps(clip, frame_rgb, 0.0, 1e-4) is clip  # off: the teacher's own maps
    out = colour_guided_maps(clip, frame_rgb, 4 / height, 1e-4)
    assert out.shape == clip.shape and out.dtype == clip.dtype
    torch.testing.assert_close(out.float().norm(dim=1), torch.ones(2, height, width), atol=2e-3, rtol=0)

    def ball_label(maps):  # where the ball's direction beats the table's, per scale
        return (maps[:, 0] > maps[:, 1]).reshape(2, -1)

    for before, after in zip(ball_label(clip.float()), ball_label(out.float()), strict=True):
        assert _iou(before, ball) < 0.6
        assert _iou(after, ball) > 0.9
