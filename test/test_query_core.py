"""Query pieces without a field: classification, unknowns, the refine head and its LRU cache."""

import pytest
import torch
import torch.nn.functional as F

from ovs3d_ros.config import QueryConfig, SemanticConfig
from ovs3d_ros.core import losses
from ovs3d_ros.core.query import (
    RefineCache,
    RefineData,
    RefineHead,
    class_caps,
    class_extremes,
    class_quantiles,
    classify,
    column_quantiles,
    decide,
    to_cloud_labels,
    train_refine_head,
    unknown_without_surface,
)


def test_classify_matches_bruteforce_argmax_and_chunks():
    torch.manual_seed(0)
    feats = torch.randn(1000, 16) * 3
    text = F.normalize(torch.randn(5, 16), dim=-1)
    out = classify(feats, text, temperature=0.1, chunk=97)
    cos = F.cosine_similarity(feats[:, None], text[None], dim=-1)
    assert torch.equal(out.labels, cos.argmax(1))
    assert torch.allclose(out.scores, (cos / 0.1).softmax(1).max(1).values, atol=1e-6)
    assert classify(torch.zeros(0, 16), text, 0.1).labels.numel() == 0


def test_threshold_and_canonical_negatives_make_unknown():
    text = torch.eye(4)[:2]          # classes along axes 0 and 1
    negatives = torch.eye(4)[2:3]    # a negative along axis 2
    feats = torch.tensor([[1.0, 0.0, 0.0, 0.0],    # clearly class 0
                          [0.5, 0.5, 0.0, 0.0],    # ambiguous: low score
                          [0.1, 0.0, 1.0, 0.0]])   # closest to the negative
    plain = classify(feats, text, 0.1)
    assert plain.labels.tolist() == [0, 0, 0]  # ties go to the first class; no unknowns by default
    thr = classify(feats, text, 0.1, score_threshold=0.6)
    assert thr.labels[0] == 0 and thr.labels[1] == -1
    neg = classify(feats, text, 0.1, negatives=negatives)
    assert neg.labels.tolist()[0] == 0 and neg.labels[2] == -1
    assert to_cloud_labels(neg.labels).tolist()[2] == 65535


def test_relevancy_quantiles_keep_one_outlier_from_setting_a_class_scale():
    """A small object (class 1) on a large surface (class 0); one outlier row (an edge's mixed feature)
    has the largest class-1 cosine of all. Exact min-max squashes the object under it; 1 % quantiles
    do not. quantile 0 is exact min-max, and the quantiles are computed from strided rows when many."""
    torch.manual_seed(0)
    n = 1000
    cos = torch.stack([torch.full((n,), 0.8), torch.full((n,), 0.2)], dim=1) + 0.01 * torch.randn(n, 2)
    cos[:30] = torch.tensor([0.75, 0.4])     # the object: a blurred feature, still mostly surface
    cos[30:60] = torch.tensor([0.3, 0.25])   # another surface, far from class 0
    cos[-1] = torch.tensor([0.8, 0.95])      # the outlier
    chunks = [cos[i:i + 300] for i in range(0, n, 300)]

    def cosines(i):
        return chunks[i], None

    exact = decide(cosines, len(chunks), 0.1, rule="relevancy")
    robust = decide(cosines, len(chunks), 0.1, rule="relevancy", quantile=0.01)
    assert int((exact.labels[:30] == 1).sum()) == 0
    assert bool((robust.labels[:30] == 1).all()) and bool((robust.labels[60:-1] == 0).all())
    lo, hi = class_extremes(cosines, len(chunks), 0.0)
    assert torch.equal(lo, cos.amin(0)) and torch.equal(hi, cos.amax(0))
    lo, hi = class_extremes(cosines, len(chunks), 0.01)
    assert torch.allclose(hi, cos.quantile(0.99, dim=0)) and torch.allclose(lo, cos.quantile(0.01, dim=0))


def test_column_quantiles_match_torch_quantile_per_column():
    torch.manual_seed(1)
    x = torch.randn(257, 4)
    q = torch.tensor([0.0, 0.003, 0.5, 1.0])
    expected = torch.stack([x[:, c].quantile(float(q[c])) for c in range(4)])
    torch.testing.assert_close(column_quantiles(x, q), expected)


def test_class_quantiles_shrink_only_for_classes_smaller_than_the_quantile():
    areas = torch.tensor([0.5, 0.02, 0.004, 0.0])
    # min(0.01, 0.5 x area): the large classes keep 1 %, the 0.4 % class gets 0.2 %, an absent one min/max
    torch.testing.assert_close(class_quantiles(0.01, areas, 0.5), torch.tensor([0.01, 0.01, 0.002, 0.0]))


def test_area_aware_quantiles_keep_a_tiny_class_to_its_own_pixels():
    """A class covering 0.3 % of the rows (the ball, class 1) on a table (class 0) beside a wall (class 2).
    With one 1 % quantile the ball's top is set by rows of its blur on the table, which then normalise to
    ~1 and beat the table; with its own quantile (0.5 x its 0.3 % area) it wins its own rows only."""
    torch.manual_seed(0)
    n = 2000
    cos = torch.tensor([0.8, 0.1, 0.3]).repeat(n, 1) + 0.005 * torch.randn(n, 3)
    cos[1500:] = torch.tensor([0.3, 0.1, 0.8]) + 0.005 * torch.randn(500, 3)   # the wall
    cos[:6] = torch.tensor([0.78, 0.35, 0.3])                                  # the ball: 6 rows
    cos[6:40, 1] = torch.linspace(0.3, 0.2, 34)                                # its blur on the table

    def cosines(i):
        return cos, None

    one = decide(cosines, 1, 0.1, rule="relevancy", quantile=0.01)
    own = decide(cosines, 1, 0.1, rule="relevancy",
                 quantile=class_quantiles(0.01, torch.tensor([0.7, 0.003, 0.25]), 0.5))
    assert int((one.labels[6:] == 1).sum()) >= 8               # the blur wins
    assert bool((own.labels[:6] == 1).all()) and int((own.labels[6:] == 1).sum()) == 0


def test_class_floors_keep_a_small_class_off_its_blur_and_never_leave_a_row_unlabelled():
    """The ball (class 1) on a table (class 0): the rows of its blur on the table win under the
    'relevancy' rule; with a floor at the ball's own cosines they go to the table, the ball keeps its
    rows, and a row that no class reaches the floor of keeps the choice it had without floors."""
    torch.manual_seed(0)
    n = 2000
    cos = torch.tensor([0.8, 0.1]).repeat(n, 1) + 0.005 * torch.randn(n, 2)
    cos[:6] = torch.tensor([0.78, 0.35])          # the ball
    cos[6:40, 1] = torch.linspace(0.3, 0.2, 34)   # its blur on the table
    cos[40] = torch.tensor([0.1, 0.1])            # below both floors

    def cosines(i):
        return cos, None

    plain = decide(cosines, 1, 0.1, rule="relevancy", quantile=0.01)
    assert int((plain.labels[6:40] == 1).sum()) >= 8  # the blur wins without floors
    floor = torch.tensor([0.5, 0.33])
    floored = decide(cosines, 1, 0.1, rule="relevancy", quantile=0.01, floor=floor)
    assert bool((floored.labels[:6] == 1).all()) and int((floored.labels[6:40] == 1).sum()) == 0
    assert floored.labels[40] == plain.labels[40]
    assert bool((floored.labels[41:] == 0).all())  # the rest is table
    # floors apply under the 'cosine' rule too; floors everywhere below change nothing
    low = torch.full((2,), -2.0)
    assert torch.equal(decide(cosines, 1, 0.1, rule="relevancy", quantile=0.01, floor=low).labels,
                       plain.labels)
    assert torch.equal(decide(cosines, 1, 0.1, floor=torch.tensor([0.9, -2.0])).labels[41:],
                       torch.ones(n - 41, dtype=torch.long))


def test_class_caps_only_for_small_classes_and_at_most_everything():
    caps = class_caps(torch.tensor([0.3, 0.004, 0.04, 0.6]), 2.0, 0.05)
    torch.testing.assert_close(caps, torch.tensor([1.0, 0.008, 0.08, 1.0]))
    torch.testing.assert_close(class_caps(torch.tensor([0.01, 0.3]), 200.0, 0.5), torch.tensor([1.0, 1.0]))


def test_pixels_without_surface_are_unknown_not_the_nearest_class():
    text = torch.eye(3)
    feats = torch.eye(3)[[0, 1, 2, 2]]
    opacity = torch.tensor([[0.99, 0.2], [0.5, 0.0]])  # (2, 2) image, flattened row-major like feats
    labels = classify(feats, text, 0.1)
    out = unknown_without_surface(labels, opacity, 0.5)
    assert out.labels.tolist() == [0, -1, 2, -1]
    assert out.scores[1] == 0 and out.scores[3] == 0 and out.scores[0] == labels.scores[0]
    assert unknown_without_surface(labels, opacity, 0.0).labels.tolist() == [0, 1, 2, 2]


def test_refine_head_starts_as_identity_and_rda_improves():
    torch.manual_seed(1)
    d, c, n = 12, 3, 600
    text = F.normalize(torch.randn(c, d), dim=-1)
    truth = torch.randint(0, c, (n,))
    # zero-shot features are noisy; the relevancy (as a teacher would give) points to the truth
    feats = text[truth] * 0.3 + torch.randn(n, d) * 0.6
    rel = F.one_hot(truth, c).float()[:, None, :].expand(n, 3, c).contiguous()
    sel = torch.full((n, 3), 1 / 3)
    head = RefineHead(d, 32)
    assert torch.equal(head(feats), feats)
    data = RefineData(feats, rel, sel)
    before = losses.rda_loss(feats, text, rel, sel)
    stats = train_refine_head(head, data, text, SemanticConfig(), QueryConfig(refine_lr=1e-2),
                              max_steps=150, max_time_s=30.0, generator=torch.Generator().manual_seed(0))
    assert stats["steps"] == 150
    with torch.no_grad():
        after = losses.rda_loss(head(feats), text, rel, sel)
        acc_before = (classify(feats, text, 0.1).labels == truth).float().mean()
        acc_after = (classify(head(feats), text, 0.1).labels == truth).float().mean()
    assert after < before and acc_after > acc_before


def test_refine_respects_time_budget_and_runs_fda():
    torch.manual_seed(2)
    d, c = 8, 2
    text = F.normalize(torch.randn(c, d), dim=-1)
    data = RefineData(torch.randn(50, d), torch.rand(50, 3, c), torch.full((50, 3), 1 / 3),
                      torch.randn(4, 16, d), torch.randn(4, 16, 5))
    stats = train_refine_head(RefineHead(d, 8), data, text, SemanticConfig(), QueryConfig(),
                              max_steps=10**9, max_time_s=0.2)
    assert 0 < stats["steps"] < 10**9 and stats["time_s"] < 1.0 and "fda" in stats


def test_refine_cache_is_lru():
    cache = RefineCache(2)
    heads = [RefineHead(4, 2) for _ in range(3)]
    cache.put("a", heads[0])
    cache.put("b", heads[1])
    assert cache.get("a") is heads[0]     # 'a' becomes most recent
    cache.put("c", heads[2])              # evicts 'b'
    assert cache.get("b") is None and cache.get("a") is heads[0] and len(cache) == 2
    cache.clear()
    assert len(cache) == 0


def test_relevancy_rule_is_the_teachers_per_image_min_max_decision():
    """'relevancy' labels equal the 2D teacher's rule (teacher_labels on one scale at full resolution),
    and it undoes a per-class cosine bias that the plain argmax follows."""
    from ovs3d_ros.core.teachers.relevancy import teacher_labels

    torch.manual_seed(3)
    text = F.normalize(torch.randn(4, 16), dim=-1)
    truth = torch.randint(0, 4, (600,))
    # every feature leans towards class 0 (as features of small objects lean towards the large surface
    # around them): the plain argmax then says 0 too often
    feats = F.normalize(text[truth] + 0.9 * text[0] + 0.3 * torch.randn(600, 16), dim=-1)
    got = classify(feats, text, 0.1, chunk=77, rule="relevancy")
    maps = feats.t().reshape(1, 16, 20, 30)  # (S=1, D, h, w): the same 600 rows as an image
    expected = teacher_labels(maps, text, 20, 30).reshape(-1)
    assert torch.equal(got.labels, expected)
    cosine = classify(feats, text, 0.1, rule="cosine")
    assert (got.labels == truth).float().mean() > (cosine.labels == truth).float().mean() + 0.1
    # the score stays the chosen class's softmax probability
    cos = feats @ text.t()
    torch.testing.assert_close(got.scores, (cos / 0.1).softmax(1).gather(1, got.labels[:, None])[:, 0])
    with pytest.raises(ValueError, match="decision rule"):
        classify(feats, text, 0.1, rule="vote")
