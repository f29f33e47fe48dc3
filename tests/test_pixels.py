"""One pixel reader: the same file gives the model the same input in training, evaluation, predict, serve
and the API, and the run's own value range (dataset.yaml) is what predict uses by default."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import rasterio
from PIL import Image

from unetseg.config import PredictConfig
from unetseg.data.folder import read_image
from unetseg.data.sources import ArraySource, open_source
from unetseg.data.spec import DatasetSpec
from unetseg.pixels import to_model_range


def files(tmp_path):
    """The same 16-bit reflectance-like values as a GeoTIFF, a .npy, a grey 16-bit PNG; and an 8-bit JPEG."""
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 6000, (40, 50, 3)).astype(np.uint16)
    with rasterio.open(tmp_path / "a.tif", "w", driver="GTiff", width=50, height=40, count=3, dtype="uint16") as ds:
        ds.write(np.moveaxis(raw, -1, 0))
    np.save(tmp_path / "a.npy", raw)
    Image.fromarray(raw[..., 0]).save(tmp_path / "g.png")
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "c.jpg", quality=95)
    return raw


@pytest.mark.parametrize("value_range", [None, (1000.0, 5000.0)])
def test_training_and_predict_read_a_file_to_the_same_model_input(tmp_path, value_range):
    raw = files(tmp_path)
    spec = DatasetSpec(value_range=value_range)
    rule = value_range or "auto"
    expected = to_model_range(raw, *(value_range or (0.0, 4000.0)))
    for name in ("a.tif", "a.npy", "g.png", "c.jpg"):
        trained, _ = read_image(tmp_path / name, spec)
        source = open_source(tmp_path / name, 3, value_range=rule, names=spec.channels)
        predicted = source.to_uint8(source.read(0, 0, source.height, source.width)[0])
        source.close()
        assert trained.dtype == np.uint8 and (trained == predicted).all(), name
        if name in ("a.tif", "a.npy"):
            assert (trained == expected).all()
        if name == "g.png":
            assert (trained == expected[..., :1]).all()  # grey: the same values in red, green and blue
    api = ArraySource(raw, 3, rule)
    assert (api.to_uint8(api.read(0, 0, 40, 50)[0]) == expected).all()


@pytest.mark.slow
def test_a_runs_value_range_is_recorded_and_used_by_predict_serve_and_the_api(synth_data, tmp_path):
    import shutil

    import unetseg as package
    from unetseg.config import ModelConfig, Recipe
    from unetseg.predict.pipeline import Predictor
    from unetseg.runtime import select_runtime
    from unetseg.workflow import run_train

    data = tmp_path / "data"
    shutil.copytree(synth_data, data)
    (data / "dataset.yaml").write_text("channels: [red, green, blue]\nvalue_range: [0, 255]\n")
    recipe = Recipe(name="t", model=ModelConfig(name="unet-bn", base_width=4, depth=2, batch_norm=True), epochs=1,
                    batch_size=16, image_size=32, early_stopping_patience=0)
    run_train(data, tmp_path / "run", recipe, select_runtime("auto"), progress=False, log=lambda m: None, limit=30)
    raw = files(tmp_path)
    predictor = Predictor(tmp_path / "run", PredictConfig(), select_runtime("auto"), progress=False,
                          log=lambda m: None)
    assert predictor.value_range == (0.0, 255.0)
    source = predictor.open(tmp_path / "a.tif")
    assert (source.to_uint8(source.read(0, 0, 40, 50)[0]) == to_model_range(raw, 0, 255)).all()
    source.close()
    explicit = Predictor(tmp_path / "run", PredictConfig(value_range=(0.0, 4000.0)), select_runtime("auto"),
                         progress=False, log=lambda m: None)
    assert explicit.value_range == (0.0, 4000.0)
    model = package.load(tmp_path / "run", scale=1.0)  # the API: an array, and the same values as a file
    probs_array, _ = model.predict(raw)
    keep = model._predictor.segment(model._predictor.open(tmp_path / "a.npy")).keep
    assert np.array_equal(probs_array, keep.probs[0])


@settings(max_examples=25, deadline=None)
@given(h=st.integers(2, 70), w=st.integers(2, 70), quality=st.integers(20, 100),
       subsampling=st.sampled_from([0, 1, 2]), progressive=st.booleans(), seed=st.integers(0, 2**16))
def test_colour_jpegs_decode_to_pillows_pixels(tmp_path_factory, h, w, quality, subsampling, progressive, seed):
    """Colour JPEGs skip Pillow (simplejpeg: faster, and without Python's lock) with exactly Pillow's pixels,
    whatever the size, quality, chroma subsampling (4:4:4, 4:2:2, 4:2:0) or progressive coding."""
    from unetseg.data.files import read_rgb_jpeg
    from unetseg.data.sources import ImageSource

    path = tmp_path_factory.mktemp("jpg") / "x.jpg"
    rng = np.random.default_rng(seed)
    smooth = np.cumsum(rng.integers(-20, 21, (h, w, 3)), axis=1) % 256  # photo-like gradients, not only noise
    Image.fromarray(smooth.astype(np.uint8)).save(path, quality=quality, subsampling=subsampling,
                                                  progressive=progressive)
    fast = read_rgb_jpeg(path)
    assert fast is not None and np.array_equal(fast, np.asarray(Image.open(path).convert("RGB")))
    assert np.array_equal(ImageSource(path, 3).pixels, fast)


def test_other_jpegs_and_broken_ones_are_left_to_pillow(tmp_path):
    from unetseg.data.files import read_rgb_jpeg
    from unetseg.data.sources import ImageSource
    from unetseg.errors import DataError

    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (20, 30), dtype=np.uint8)).save(tmp_path / "grey.jpg")
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "png.jpg", format="PNG")
    whole = tmp_path / "whole.jpg"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(whole, quality=90)
    (tmp_path / "cut.jpg").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    for name in ("grey.jpg", "cmyk.jpg", "png.jpg", "cut.jpg"):
        assert read_rgb_jpeg(tmp_path / name) is None, name
    assert ImageSource(tmp_path / "grey.jpg", 3).pixels.shape == (20, 30, 3)  # Pillow: grey to RGB
    assert np.array_equal(ImageSource(tmp_path / "cmyk.jpg", 3).pixels,
                          np.asarray(Image.open(tmp_path / "cmyk.jpg").convert("RGB")))
    with pytest.raises(DataError, match="cut.jpg: corrupt or truncated image"):
        ImageSource(tmp_path / "cut.jpg", 3)


def test_a_picture_for_a_model_of_more_channels_says_what_it_lacks(tmp_path):
    """A JPEG or PNG (grey, RGB or RGBA) given to a 4-band model: one line naming the file, the three channels
    a picture can have and the four the model needs, not Pillow's mode names."""
    from unetseg.errors import DataError

    rng = np.random.default_rng(2)
    for name, shape in (("photo.jpg", (20, 30, 3)), ("grey.png", (20, 30)), ("alpha.png", (20, 30, 4))):
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(tmp_path / name)
        with pytest.raises(DataError) as e:
            open_source(tmp_path / name, 4)
        assert str(e.value) == (f"{tmp_path / name}: a {name.split('.')[1].upper()} picture has at most 3 channels "
                                "(red, green, blue) but the model needs 4: give it a GeoTIFF or .npy with them")


def test_a_turned_photo_keeps_its_stored_pixels_and_says_so(tmp_path):
    """A JPEG with an EXIF orientation other than upright: the stored pixels (as GDAL and NumPy read them, so
    masks line up with them), and a note naming the tag; EXIF without a turn stays on the fast path."""
    from unetseg.data.files import read_rgb_jpeg
    from unetseg.data.sources import ImageSource

    rng = np.random.default_rng(2)
    img = Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    for name, turn in (("turned.jpg", 6), ("upright.jpg", 1)):
        exif = img.getexif()
        exif[0x0112] = turn
        img.save(tmp_path / name, exif=exif)
    src = ImageSource(tmp_path / "turned.jpg", 3)
    assert src.pixels.shape == (20, 30, 3)
    assert np.array_equal(src.pixels, np.asarray(Image.open(tmp_path / "turned.jpg").convert("RGB")))
    assert any("EXIF orientation 6 not applied" in n for n in src.notes)
    assert read_rgb_jpeg(tmp_path / "turned.jpg") is None  # turned: Pillow's path, which writes the note
    assert read_rgb_jpeg(tmp_path / "upright.jpg") is not None
    assert not any("EXIF" in n for n in ImageSource(tmp_path / "upright.jpg", 3).notes)


@pytest.mark.parametrize("top, factor, dtype, expected, why", [
    (3500, 1 / 10000, np.float32, (0.0, 0.4), ""), (3500, 1.0, np.float32, (0.0, 4000.0), "reflectance x 10000"),
    (255, 1.0, np.float32, (0.0, 255.0), "an 8-bit picture"), (3500, 1.0, np.uint16, (0.0, 4000.0), ""),
    (14000, 1.0, np.uint16, (0.0, 4000.0), ""),  # bright clouds and snow are still reflectance x 10000
    (65535, 1.0, np.uint16, (0.0, 65535.0), "a 16-bit picture")])
def test_arrays_that_are_not_8_bit_get_the_range_their_values_show(top, factor, dtype, expected, why):
    """Float reflectance 0..1, reflectance x 10000 as floats, an 8-bit picture as floats, 16-bit reflectance and a
    16-bit picture: each read as what it is (auto), from its central window; NaN (no-data) left out."""
    rng = np.random.default_rng(0)
    a = (rng.integers(0, top + 1, (700, 600, 3)) * factor).astype(dtype)
    if dtype == np.float32:
        a[:5] = np.nan
    src = ArraySource(a, 3)
    assert (src.lo, src.hi) == pytest.approx(expected)
    assert (why in " ".join(src.notes)) if why else not src.notes
