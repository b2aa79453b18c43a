import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, jaccard_score

from ovs3d_ros.core.metrics import (
    MetricError,
    conventional_miou,
    paper_metrics,
    psnr,
    view_accuracy,
    view_iou,
)


def random_case(rng, h=12, w=10, c=5, absent=(3,)):
    """Prediction indices and multi-hot GT with an absent class, unlabelled and multi-label pixels."""
    classes = [k for k in range(c) if k not in absent]
    pred = rng.choice(classes, size=(h, w))
    gt_idx = rng.choice(classes, size=(h, w))
    gt = gt_idx[..., None] == np.arange(c)
    gt[rng.random((h, w)) < 0.1] = False  # unlabelled
    multi = rng.random((h, w)) < 0.05
    gt[multi, classes[0]] = True  # multi-label pixels
    return pred, gt


def sklearn_reference(preds, gts, c):
    ious, accs = [], []
    for pred, gt in zip(preds, gts, strict=True):
        one_hot = np.eye(c, dtype=int)[pred.reshape(-1)]
        g = gt.reshape(-1, c).astype(int)
        ious.append(jaccard_score(g, one_hot, average=None, zero_division=0))
        accs.append(accuracy_score(g, one_hot))
    return np.array(ious), np.array(accs)


def test_paper_metrics_match_sklearn_on_random_views():
    rng = np.random.default_rng(0)
    c = 5
    cases = [random_case(rng, c=c, absent=(3,) if i % 2 else (1, 4)) for i in range(6)]
    preds, gts = [p for p, _ in cases], [g for _, g in cases]
    ref_iou, ref_acc = sklearn_reference(preds, gts, c)
    m = paper_metrics(preds, gts, c)
    np.testing.assert_allclose(m.per_view_iou, ref_iou, atol=1e-12)
    np.testing.assert_allclose(m.per_view_accuracy, ref_acc, atol=1e-12)
    assert m.miou == pytest.approx(ref_iou.mean())
    assert m.accuracy == pytest.approx(ref_acc.mean())
    # absent classes score 0 and still count
    assert np.all(m.per_view_iou[1::2, 3] == 0)


def test_index_labels_with_unlabelled_equal_multi_hot():
    rng = np.random.default_rng(1)
    c = 4
    pred = rng.integers(0, c, size=(9, 7))
    labels = rng.integers(0, c, size=(9, 7)).astype(np.uint8)
    labels[rng.random((9, 7)) < 0.2] = 255
    multi_hot = labels[..., None] == np.arange(c)
    np.testing.assert_array_equal(view_iou(pred, labels, c), view_iou(pred, multi_hot, c))
    assert view_accuracy(pred, labels, c) == view_accuracy(pred, multi_hot, c)
    ref_iou, ref_acc = sklearn_reference([pred], [multi_hot], c)
    np.testing.assert_allclose(view_iou(pred, labels, c), ref_iou[0])
    assert view_accuracy(pred, labels, c) == pytest.approx(ref_acc[0])


def test_perfect_prediction_and_hand_computed_case():
    labels = np.array([[0, 0, 1], [1, 255, 2]], dtype=np.uint8)
    pred = np.array([[0, 0, 1], [1, 2, 2]])
    # class 3 is absent from both: IoU 0 and it is averaged in
    iou = view_iou(pred, labels, 4)
    np.testing.assert_allclose(iou, [1.0, 1.0, 0.5, 0.0])
    assert view_accuracy(pred, labels, 4) == pytest.approx(5 / 6)  # the unlabelled pixel is wrong
    conv = conventional_miou([pred], [labels], 4)
    np.testing.assert_allclose(conv.per_class_iou[:3], [1.0, 1.0, 1.0])  # unlabelled pixel ignored
    assert np.isnan(conv.per_class_iou[3])  # absent class skipped
    assert conv.miou == pytest.approx(1.0) and conv.accuracy == pytest.approx(1.0)


def test_conventional_miou_against_confusion_reference():
    rng = np.random.default_rng(2)
    c = 4
    preds = [rng.integers(0, c, size=(8, 8)) for _ in range(3)]
    gts = [rng.integers(0, c, size=(8, 8)).astype(np.uint8) for _ in range(3)]
    for g in gts:
        g[rng.random((8, 8)) < 0.15] = 255
    p = np.concatenate([x.ravel() for x in preds])
    g = np.concatenate([x.ravel() for x in gts])
    keep = g != 255
    p, g = p[keep], g[keep]
    expected = [np.sum((p == k) & (g == k)) / np.sum((p == k) | (g == k)) for k in range(c)]
    m = conventional_miou(preds, gts, c)
    np.testing.assert_allclose(m.per_class_iou, expected)
    assert m.miou == pytest.approx(np.mean(expected))
    assert m.accuracy == pytest.approx(np.mean(p == g))


def test_metric_input_errors():
    with pytest.raises(MetricError, match="shape"):
        view_iou(np.zeros((2, 2), int), np.zeros((3, 2), np.uint8), 2)
    with pytest.raises(MetricError, match="outside"):
        view_iou(np.full((2, 2), 7), np.zeros((2, 2), np.uint8), 2)
    with pytest.raises(MetricError, match="outside"):
        view_iou(np.zeros((2, 2), int), np.full((2, 2), 9, np.uint8), 2)
    with pytest.raises(MetricError, match="predictions"):
        paper_metrics([np.zeros((2, 2), int)], [], 2)


def test_psnr():
    rng = np.random.default_rng(3)
    a = rng.random((5, 6, 3))
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    mse = np.mean((a - b) ** 2)
    assert psnr(b, a) == pytest.approx(-10 * np.log10(mse))
    assert psnr(torch.as_tensor(b), torch.as_tensor(a)) == pytest.approx(psnr(b, a))
    assert psnr(a, a) == float("inf")
    with pytest.raises(MetricError):
        psnr(a, a[:2])


def test_compare_per_class_flags_classes_below_the_teacher():
    from ovs3d_ros.core.metrics import compare_per_class, format_class_comparison

    rows = compare_per_class(["table", "mug", "book", "ghost"], [0.9, 0.0, 0.295, np.nan],
                             [0.8, 0.39, 0.30, 0.1])
    assert [r.below_teacher for r in rows] == [False, True, True, False]
    assert [r.below_teacher for r in compare_per_class(["book"], [0.295], [0.30], tolerance=0.01)] == [False]
    text = format_class_comparison(rows)
    flagged = [line.split()[0] for line in text.splitlines() if line.endswith("< 2D")]
    assert flagged == ["mug", "book"]
    assert "39.0" in text and "90.0" in text
    with pytest.raises(MetricError):
        compare_per_class(["a", "b"], [0.1], [0.2, 0.3])
