"""Tiling and blending: every pixel covered, weights normalised, constant fields preserved, row streaming exact."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unetseg.predict.tiling import BLENDS, RowBlender, axis_windows, taper, tile_grid, tile_starts

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


@settings(max_examples=200, deadline=None)
@given(length=sizes, tile=st.integers(1, 96), frac=st.floats(0, 0.9), kind=st.sampled_from(BLENDS))
def test_axis_weights_sum_to_one_at_every_position(length, tile, frac, kind):
    overlap = min(int(tile * frac), tile - 1)
    axis = axis_windows(length, tile, overlap, kind)
    total = np.zeros(length)
    for s, w in zip(axis.starts, axis.weights):
        assert len(w) == axis.size and (w >= 0).all()
        total[s:s + axis.size] += w
    assert axis.length == length and np.allclose(total, 1.0, atol=1e-5)


def _stream(pred_of, h, w, tile, overlap, kind, channels=1, valid=None):
    rows, cols = axis_windows(h, tile, overlap, kind), axis_windows(w, tile, overlap, kind)
    blend, out = RowBlender(rows, w, channels), np.full((channels, h, w), np.nan, np.float32)
    valid_out = np.zeros((h, w), bool)
    for y0, wy in zip(rows.starts, rows.weights):
        for x0, wx in zip(cols.starts, cols.weights):
            v = None if valid is None else valid[y0:y0 + rows.size, x0:x0 + cols.size]
            blend.add(pred_of(y0, x0, rows.size, cols.size), x0, wy, wx, v)
        r0, done, done_valid = blend.finish_row()
        assert np.isnan(out[:, r0:r0 + done.shape[1]]).all()  # each row is handed back exactly once
        out[:, r0:r0 + done.shape[1]] = done
        valid_out[r0:r0 + done.shape[1]] = done_valid
    assert (valid_out == (True if valid is None else valid)).all()  # validity passes through unblended
    return out


@settings(max_examples=60, deadline=None)
@given(h=sizes, w=sizes, tile=st.integers(4, 96), frac=st.floats(0, 0.75), kind=st.sampled_from(BLENDS),
       seed=st.integers(0, 2**16))
def test_row_streaming_equals_the_whole_image_weighted_mean(h, w, tile, frac, kind, seed):
    overlap = min(int(tile * frac), tile - 1)
    rng = np.random.default_rng(seed)
    preds = {}

    def pred_of(y0, x0, th, tw):
        preds[y0, x0] = rng.random((2, th, tw)).astype(np.float32)
        return preds[y0, x0].copy()  # add() scales its argument in place

    out = _stream(pred_of, h, w, tile, overlap, kind, channels=2, valid=rng.random((h, w)) > 0.3)
    # reference: the weighted mean computed over the whole image at once, with unnormalised 2-D weights
    rows, cols = axis_windows(h, tile, overlap, kind), axis_windows(w, tile, overlap, kind)
    ramp_y = np.ones(rows.size) if kind == "none" else taper(rows.size, overlap, kind)
    ramp_x = np.ones(cols.size) if kind == "none" else taper(cols.size, overlap, kind)
    num, den = np.zeros((2, h, w)), np.zeros((h, w))
    for (y0, x0), p in preds.items():
        wy = rows.weights[rows.starts.index(y0)] > 0 if kind == "none" else ramp_y
        wx = cols.weights[cols.starts.index(x0)] > 0 if kind == "none" else ramp_x
        wgt = np.outer(wy, wx)
        num[:, y0:y0 + rows.size, x0:x0 + cols.size] += p * wgt
        den[y0:y0 + rows.size, x0:x0 + cols.size] += wgt
    assert np.allclose(out, num / den, atol=1e-5)


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


def test_cosine_window_removes_seams_that_a_hard_cut_leaves():
    # tiles that each carry a per-tile offset (like a model's border effects): blending must hide the jumps
    rng = np.random.default_rng(0)

    def seaminess(kind):
        out = _stream(lambda y0, x0, th, tw: np.full((th, tw), rng.normal(), np.float32), 64, 160, 64, 32, kind)
        return np.abs(np.diff(out[0, 0])).max()

    assert seaminess("cosine") < 0.5 * seaminess("none")
    assert seaminess("cosine") < 0.5 * seaminess("average")


def test_bad_tiling_arguments():
    with pytest.raises(ValueError, match="overlap < tile"):
        tile_starts(100, 32, 32)
    with pytest.raises(ValueError, match="unknown blending window 'hann'"):
        axis_windows(50, 8, 2, "hann")
