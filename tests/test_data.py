import json
import time

import numpy as np
import pytest
from PIL import Image

from unetseg.config import SplitConfig
from unetseg.data import DataError, load_chips, make_split, scan_folder
from unetseg.data import cache as cache_mod
from unetseg.data.folder import read_image
from unetseg.data.spec import DatasetSpec


def rgb(h=20, w=30, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def mask(h=20, w=30):
    m = np.zeros((h, w), np.uint8)
    m[: h // 2] = 255
    return m


def make_folder(root, n=4, size=(20, 30), ext=".png"):
    (root / "Images").mkdir(parents=True)
    (root / "Masks").mkdir()
    for i in range(n):
        Image.fromarray(rgb(*size, seed=i)).save(root / "Images" / f"chip_{i}{ext}")
        Image.fromarray(mask(*size)).save(root / "Masks" / f"chip_{i}{ext}")
    return root


def test_pairs_by_stem_across_extensions_and_reports_unpaired(tmp_path):
    root = make_folder(tmp_path / "d", n=3)
    Image.fromarray(rgb()).save(root / "Images" / "lonely_image.jpg")
    Image.fromarray(mask()).save(root / "Masks" / "lonely_mask.tif")
    Image.fromarray(rgb()).save(root / "Images" / "mixed.jpeg")
    Image.fromarray(mask()).convert("RGB").save(root / "Masks" / "mixed.png")
    scan = scan_folder(root)
    assert [p.stem for p in scan.pairs] == ["chip_0", "chip_1", "chip_2", "mixed"]
    msg = scan.unpaired_message()
    assert "1 image(s) without a mask skipped: lonely_image" in msg
    assert "1 mask(s) without an image skipped: lonely_mask" in msg


def test_names_with_a_suffix_on_each_side_are_paired_and_said_so(tmp_path):
    """DeepGlobe-style names (12_sat.jpg with 12_mask.png; or x.jpg with x_mask.png): paired without the suffix
    every name of a side shares, under the image's name, with a note; a lone file is still reported."""
    root = tmp_path / "d"
    (root / "Images").mkdir(parents=True)
    (root / "Masks").mkdir()
    for i in (3, 12, 104):
        Image.fromarray(rgb(seed=i)).save(root / "Images" / f"{i}_sat.jpg")
        Image.fromarray(mask()).save(root / "Masks" / f"{i}_mask.png")
    Image.fromarray(rgb()).save(root / "Images" / "7_sat.jpg")
    scan = scan_folder(root)
    assert [(p.stem, p.mask.name) for p in scan.pairs] == \
        [("3_sat", "3_mask.png"), ("12_sat", "12_mask.png"), ("104_sat", "104_mask.png")]
    msg = scan.unpaired_message()
    assert "paired by name without the images' '_sat' and masks' '_mask' suffix" in msg
    assert "1 image(s) without a mask skipped: 7_sat" in msg
    exact = make_folder(tmp_path / "e", n=2)  # the same names on both sides: no suffix is looked for
    assert scan_folder(exact).unpaired_message() is None


@pytest.mark.parametrize("layout,expected", [
    (None, "data folder does not exist"),
    ("no-images", "no Images/ folder"),
    ("empty", "no image/mask pairs found (0 images, 0 masks"),
])
def test_missing_or_empty_folders_are_clear_errors(tmp_path, layout, expected):
    root = tmp_path / "d"
    if layout == "no-images":
        (root / "Masks").mkdir(parents=True)
    elif layout == "empty":
        (root / "Images").mkdir(parents=True)
        (root / "Masks").mkdir()
    with pytest.raises(DataError) as e:
        scan_folder(root)
    assert expected in str(e.value) and str(root) in str(e.value) and "\n" not in str(e.value)


def _break(root, how):
    target = root / "Images" / "chip_1.png"
    if how == "zero-byte":
        target.write_bytes(b"")
    elif how == "truncated":
        Image.fromarray(rgb(64, 64)).save(root / "Images" / "chip_1.jpg", quality=95)
        target.unlink()
        data = (root / "Images" / "chip_1.jpg").read_bytes()
        (root / "Images" / "chip_1.jpg").write_bytes(data[: len(data) // 3])
        Image.fromarray(mask(64, 64)).save(root / "Masks" / "chip_1.png")
        return root / "Images" / "chip_1.jpg"
    elif how == "text":
        target.unlink()
        target = root / "Images" / "chip_1.jpg"
        target.write_text("this is not an image\n")
    elif how == "tiny":
        Image.fromarray(rgb(1, 1)).save(target)
        Image.fromarray(mask(1, 1)).save(root / "Masks" / "chip_1.png")
    elif how == "size-mismatch":
        target = root / "Masks" / "chip_1.png"
        Image.fromarray(mask(10, 10)).save(target)
    return target


@pytest.mark.parametrize("how,expected", [
    ("zero-byte", "empty file (0 bytes)"),
    ("truncated", "corrupt or truncated image"),
    ("text", "not a readable image"),
    ("tiny", "image is 1x1 px, smaller than 2 px"),
    ("size-mismatch", "mask is 10x10 px but its image chip_1.png is 30x20 px"),
])
def test_bad_files_stop_with_their_name_unless_skip_bad(tmp_path, how, expected):
    root = make_folder(tmp_path / "d")
    bad = _break(root, how)
    pairs = scan_folder(root).pairs
    with pytest.raises(DataError) as e:
        load_chips(pairs, 16, cache_dir=tmp_path / "c", progress=False)
    assert str(bad) in str(e.value) and expected in str(e.value) and "--skip-bad" in str(e.value)
    chips = load_chips(pairs, 16, cache_dir=tmp_path / "c", skip_bad=True, progress=False)
    assert chips.stems == ["chip_0", "chip_2", "chip_3"] and list(chips.bad) == ["chip_1"]


def test_cmyk_and_grey_and_16bit_images_are_converted_with_a_note(tmp_path):
    Image.fromarray(rgb()).convert("CMYK").save(tmp_path / "c.jpg")
    img, note = read_image(tmp_path / "c.jpg")
    assert img.shape == (20, 30, 3) and img.dtype == np.uint8 and "CMYK converted to RGB" in note
    Image.fromarray(mask()).save(tmp_path / "g.png")
    img, note = read_image(tmp_path / "g.png")
    assert img.shape == (20, 30, 3) and note is None
    Image.fromarray((np.arange(600, dtype=np.uint16).reshape(20, 30) * 100)).save(tmp_path / "w.png")
    img, note = read_image(tmp_path / "w.png")
    assert img.shape == (20, 30, 3) and img.max() > 200 and "8-bit" in note


def test_masks_are_thresholded_and_resized_nearest(tmp_path):
    root = make_folder(tmp_path / "d", n=1, size=(40, 40))
    m = np.zeros((40, 40), np.uint8)
    m[:, :20] = 129  # just above the threshold -> water
    m[:, 20:] = 128  # at the threshold -> background
    Image.fromarray(m).save(root / "Masks" / "chip_0.png")
    chips = load_chips(scan_folder(root).pairs, 8, cache_dir=tmp_path / "c", progress=False)
    assert chips.images.shape == (1, 8, 8, 3) and chips.masks.shape == (1, 8, 8)
    assert set(np.unique(chips.masks)) == {0, 1}
    assert chips.masks[0, :, :4].all() and not chips.masks[0, :, 4:].any()


def test_masks_of_zeros_and_ones_are_water_where_one_and_said_so(tmp_path):
    """A PNG mask holding 0 and 1 (class indices, not grey) would be all land by the grey threshold: it is read
    as water where 1, with a note; a JPEG mask whose compression noise reaches 1 stays land."""
    from unetseg.data.folder import decode_pair

    root = make_folder(tmp_path / "d", n=2, size=(40, 40))
    m = np.zeros((40, 40), np.uint8)
    m[:, :20] = 1
    Image.fromarray(m).save(root / "Masks" / "chip_0.png")
    Image.fromarray(m).save(root / "Masks" / "chip_1.jpg", quality=95)
    (root / "Masks" / "chip_1.png").unlink()
    pairs = {p.stem: p for p in scan_folder(root).pairs}
    _, mask, note = decode_pair(pairs["chip_0"], 0)
    assert mask[:, :20].all() and not mask[:, 20:].any()
    assert note == "masks with the values 0 and 1 only: read as water where 1 (not grey above 128)"
    _, jpeg, note = decode_pair(pairs["chip_1"], 0)
    assert not jpeg.any() and note is None
    Image.fromarray(np.ones((40, 40), np.uint8)).save(root / "Masks" / "chip_0.png")  # a chip all water
    assert decode_pair(pairs["chip_0"], 0)[1].all()


def test_cache_is_reused_memory_mapped_and_keyed_by_content(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "d", n=40)
    pairs = scan_folder(root).pairs
    first = load_chips(pairs, 16, cache_dir=tmp_path / "c", progress=False, workers=2)
    calls = []
    monkeypatch.setattr(cache_mod, "build_chips", lambda *a, **k: calls.append(1) or first)
    second = load_chips(pairs, 16, cache_dir=tmp_path / "c", progress=False)
    assert not calls and isinstance(second.images, np.memmap)
    assert np.array_equal(first.images, second.images) and first.stems == second.stems
    # another size, or a changed file, is another cache entry
    load_chips(pairs, 24, cache_dir=tmp_path / "c", progress=False)
    Image.fromarray(rgb(seed=99)).save(root / "Images" / "chip_0.png")
    load_chips(pairs, 16, cache_dir=tmp_path / "c", progress=False)
    assert len(calls) == 2


def test_parallel_and_serial_decoding_agree(tmp_path):
    pairs = scan_folder(make_folder(tmp_path / "d", n=40)).pairs
    a = cache_mod.build_chips(pairs, 16, DatasetSpec(), workers=2, progress=False)
    b = cache_mod.build_chips(pairs, 16, DatasetSpec(), workers=1, progress=False)
    assert a.stems == b.stems and np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)


def test_split_is_seeded_disjoint_and_near_the_seed_counts():
    stems = [f"water_body_{i}" for i in range(2841)]
    a, b = make_split(stems, SplitConfig()), make_split(stems, SplitConfig())
    assert a == b
    assert sorted(sum(a.values(), [])) == sorted(stems)  # each file in exactly one part
    assert abs(len(a["test"]) - 300) <= 50 and abs(len(a["val"]) - 250) <= 50  # binomial sd ~16
    assert make_split(stems, SplitConfig(seed=1))["test"] != a["test"]


def test_split_fills_empty_parts_of_tiny_sets_and_refuses_too_few():
    for n in range(3, 12):
        parts = make_split([f"f{i}" for i in range(n)], SplitConfig())
        assert all(parts.values()) and sum(map(len, parts.values())) == n
    with pytest.raises(DataError, match="too few"):
        make_split(["a", "b"], SplitConfig())


def test_real_dataset_pairs_and_reports_the_missing_mask(real_data):
    t = time.perf_counter()
    scan = scan_folder(real_data)
    assert len(scan.pairs) == 2840 and scan.images_only == ["water_body_7316"] and not scan.masks_only
    assert "water_body_7316" in scan.unpaired_message()
    assert time.perf_counter() - t < 30
    assert json.dumps([p.stem for p in scan.pairs[:3]]) == '["water_body_1", "water_body_2", "water_body_3"]'
