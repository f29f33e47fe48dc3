"""Tiling and blending: every pixel covered, weights normalised, constant fields preserved, no seams."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unetseg.predict.tiling import Blender, tile_grid, tile_starts, window_weights

sizes = st.integers(1, 300)


@settings(max_examples=200, deadline=None)
@given(length=sizes, tile=st.integers(1, 128), frac=st.floats(0, 0.9))
def test_starts_cover_the_line_with_the_promised_overlap(length, tile, frac):
    overlap = min(int(tile * frac), tile - 1)
    starts = tile_starts(length, tile, overlap)
    covered = np.zeros(length, int)
    for s in starts:
        covered[s:s + tile] += 1
    assert covered.min() >= 1 and starts == sorted(set(starts)) and starts[0] == 0
    assert all(0 <= s and (s + tile <= length or length <= tile) for s in starts)
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))  # neighbours share >= overlap px


@settings(max_examples=60, deadline=None)
@given(h=sizes, w=sizes, tile=st.integers(8, 96), frac=st.floats(0, 0.75), kind=st.sampled_from(["cosine", "linear", "none"]))
def test_blending_normalises_weights_so_every_pixel_counts_exactly_once(h, w, tile, frac, kind):
    overlap = min(int(tile * frac), tile - 1)
    weights = window_weights(tile, tile, overlap, kind)
    blend = Blender(h, w)
    for win in tile_grid(h, w, tile, overlap):
        blend.add(np.full((tile, tile), 0.7, np.float32), win, weights)
    out = blend.result()
    assert out.shape == (1, h, w) and np.allclose(out, 0.7, atol=1e-5)
    # the normalised weights of all tiles at a pixel sum to one: a constant field is reproduced exactly


def test_no_overlap_means_each_pixel_from_exactly_one_tile_when_the_tile_divides_the_size():
    count = np.zeros((48, 64), int)
    for y0, x0, y1, x1 in tile_grid(48, 64, 16, 0):
        count[y0:y1, x0:x1] += 1
    assert (count == 1).all()
    # otherwise the end-aligned last tile repeats some pixels, and normalised weights count them once
    count = np.zeros((50, 70), int)
    for y0, x0, y1, x1 in tile_grid(50, 70, 16, 0):
        count[y0:y1, x0:x1] += 1
    assert count.min() == 1 and count.max() == 4


def test_cosine_window_removes_seams_that_plain_averaging_leaves():
    # tiles that each carry a per-tile offset (like a model's border effects): blending must hide the jumps
    h, w, tile, overlap = 64, 160, 64, 32
    rng = np.random.default_rng(0)

    def seaminess(kind):
        blend = Blender(h, w)
        weights = window_weights(tile, tile, overlap, kind)
        for win in tile_grid(h, w, tile, overlap):
            blend.add(np.full((tile, tile), rng.normal(), np.float32), win, weights)
        row = blend.result()[0, 0]
        return np.abs(np.diff(row)).max()

    assert seaminess("cosine") < 0.5 * seaminess("none")


def test_bad_tiling_arguments():
    with pytest.raises(ValueError, match="overlap < tile"):
        tile_starts(100, 32, 32)
    with pytest.raises(ValueError, match="unknown blending window 'hann'"):
        window_weights(8, 8, 2, "hann")
    with pytest.raises(ValueError, match="covered by no tile"):
        Blender(4, 4).result()
