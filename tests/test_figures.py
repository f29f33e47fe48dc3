"""Figures a user reads: a mask that is all water (white) must not vanish into the white page."""

from __future__ import annotations

import numpy as np
from PIL import Image


def longest_grey_run(path) -> int:
    """The longest horizontal run of mid-grey pixels in a saved figure: a panel's frame, not text."""
    px = np.asarray(Image.open(path).convert("L")).astype(int)
    grey = (px > 100) & (px < 220)
    best = 0
    for row in grey:
        edges = np.flatnonzero(np.diff(np.r_[0, row.astype(int), 0]))
        if edges.size:
            best = max(best, int((edges[1::2] - edges[::2]).max()))
    return best


def test_all_water_masks_and_white_images_keep_a_visible_frame(tmp_path):
    from unetseg.figures import plot_predictions, plot_scene

    white = np.full((2, 40, 40, 3), 255, np.uint8)
    water = np.ones((2, 40, 40), np.uint8)
    plot_predictions(white, water, water, ["a", "b"], ["", ""], tmp_path / "chips.png")
    assert longest_grey_run(tmp_path / "chips.png") > 100
    everywhere = np.ones((40, 40), bool)
    plot_scene(white[0], everywhere, everywhere, everywhere, "all water", tmp_path / "scene.png")
    assert longest_grey_run(tmp_path / "scene.png") > 100
