"""Electron microscopy groundwork (issue 17): the field's metrics on real ISBI labels, elastic augmentation that
keeps image and mask aligned."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import shared_dataset


@pytest.fixture(scope="module")
def isbi_mask():
    from PIL import Image

    root = shared_dataset("isbi2012-em", "UNETSEG_ISBI")
    return np.asarray(Image.open(root / "Masks" / "slice_00.png").convert("L")) > 127  # cell interior


@pytest.mark.realdata
def test_membrane_scores_on_real_isbi_labels(isbi_mask):
    from scipy.ndimage import binary_dilation, binary_erosion

    from unetseg.metrics import membrane_scores

    same = membrane_scores(isbi_mask, isbi_mask)
    assert same["pixel_error"] == 0 and same["rand_error"] == 0 and same["true_cells"] > 50
    thick = membrane_scores(binary_erosion(isbi_mask, iterations=2), isbi_mask)  # membranes 4 px thicker
    gaps = membrane_scores(binary_dilation(isbi_mask, iterations=2), isbi_mask)  # thin membranes vanish
    blank = membrane_scores(np.ones_like(isbi_mask), isbi_mask)  # the all-interior baseline
    assert thick["pixel_error"] == pytest.approx(np.mean(binary_erosion(isbi_mask, iterations=2) != isbi_mask))
    # Rand error punishes merged cells, not thick borders: the reason the field uses it beside pixel error
    assert thick["rand_error"] < 0.05 < gaps["rand_error"] and gaps["vi_merge"] > thick["vi_merge"]
    assert blank["rand_error"] > 0.9 and blank["predicted_cells"] == 1
    with pytest.raises(ValueError, match="differ in shape"):
        membrane_scores(isbi_mask[:10], isbi_mask)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.sampled_from([48, 64, 96]), channels=st.sampled_from([1, 3]))
def test_elastic_augmentation_moves_image_and_mask_together(seed, size, channels):
    from unetseg.augment import Augment
    from unetseg.config import AugmentConfig

    cfg = AugmentConfig(flips=False, rot90=False, scale=None, brightness=0, contrast=0, saturation=0, hue=0,
                        elastic_p=1.0, elastic_alpha=4.0, elastic_sigma=6.0)
    gen = np.random.default_rng(seed)
    y = np.zeros((2, size, size), np.int64)
    for _ in range(4):  # a few blobs and bars
        r, c = gen.integers(0, size - 12, 2)
        y[:, r:r + gen.integers(6, 12), c:c + gen.integers(6, 24)] = 1
    y = torch.from_numpy(y)
    x = y[:, None].float().repeat(1, channels, 1, 1)  # the image is the mask: alignment is checkable
    torch.manual_seed(seed)
    xa, ya = Augment(cfg, channels)(x, y)
    assert xa.shape == x.shape and ya.shape == y.shape and set(ya.unique().tolist()) <= {0, 1}
    sure = (xa[:, 0] > 0.95) | (xa[:, 0] < 0.05)  # pixels away from an edge after the warp
    assert ((xa[:, 0] > 0.5).long() == ya)[sure].float().mean() >= 0.99
    assert (xa != x).any()  # it did deform
