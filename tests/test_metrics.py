import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torchmetrics.classification import MulticlassJaccardIndex

from unetseg.metrics import ConfusionAccumulator, distribution, per_image_iou, scores_from_confusion

maps = arrays(np.uint8, st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 12)),
              elements=st.integers(0, 1))


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_scores_agree_with_direct_numpy_and_torchmetrics(data):
    pred = data.draw(maps)
    truth = data.draw(arrays(np.uint8, pred.shape, elements=st.integers(0, 1)))
    acc = ConfusionAccumulator(2)
    acc.update(torch.from_numpy(pred), torch.from_numpy(truth))
    s = scores_from_confusion(acc.matrix())
    p, t = pred.astype(bool), truth.astype(bool)
    ious = []
    for cls_p, cls_t in ((~p, ~t), (p, t)):
        union = (cls_p | cls_t).sum()
        ious.append((cls_p & cls_t).sum() / union if union else np.nan)
    assert np.isclose(s["per_class_iou"]["water"], ious[1], equal_nan=True)
    assert np.isclose(s["mean_iou"], np.nanmean(ious))
    assert np.isclose(s["pixel_accuracy"], (p == t).mean())
    if (p | t).any():
        assert np.isclose(s["dice"], 2 * (p & t).sum() / (p.sum() + t.sum()))
    tm = MulticlassJaccardIndex(num_classes=2, average="none", zero_division=np.nan)(
        torch.from_numpy(pred).long(), torch.from_numpy(truth).long())
    assert np.allclose(np.nanmean(tm.numpy()), s["mean_iou"])


def test_one_confusion_matrix_over_all_pixels_not_a_mean_of_images():
    # image 1: perfect on a big water area; image 2: misses a small one. Pooled IoU != mean of per-image IoUs.
    truth = np.zeros((2, 10, 10), np.uint8)
    truth[0, :8] = 1
    truth[1, 0, 0] = 1
    pred = truth.copy()
    pred[1, 0, 0] = 0
    acc = ConfusionAccumulator(2)
    acc.update(torch.from_numpy(pred), torch.from_numpy(truth))
    s = scores_from_confusion(acc.matrix())
    assert np.isclose(s["water_iou"], 80 / 81)
    assert np.allclose(per_image_iou(pred, truth), [1.0, 0.0])


def test_all_background_prediction_has_half_the_background_iou():
    truth = np.zeros((1, 4, 4), np.uint8)
    truth[0, :1] = 1
    acc = ConfusionAccumulator(2)
    acc.update(torch.zeros(1, 4, 4), torch.from_numpy(truth))
    s = scores_from_confusion(acc.matrix())
    assert s["water_iou"] == 0 and np.isclose(s["mean_iou"], 0.75 / 2)


def test_per_image_iou_counts_empty_agreement_as_perfect_and_distribution_summary():
    z = np.zeros((3, 5, 5), np.uint8)
    t = z.copy()
    t[1, 0, :2] = 1
    p = z.copy()
    p[1, 0, :1] = 1
    ious = per_image_iou(p, t)
    assert list(ious) == [1.0, 0.5, 1.0]
    d = distribution(ious)
    assert d["n"] == 3 and sum(d["histogram"]["counts"]) == 3 and np.isclose(d["quantiles"]["0.5"], 1.0)


def test_multiclass_scores_name_every_class():
    cm = np.array([[5, 1, 0], [0, 3, 1], [0, 0, 4]])
    s = scores_from_confusion(cm, ["a", "b", "c"])
    assert set(s["per_class_iou"]) == {"a", "b", "c"}
    assert np.isclose(s["per_class_iou"]["a"], 5 / 6) and "water_iou" not in s
