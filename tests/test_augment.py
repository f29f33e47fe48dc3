import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unetseg.augment import Augment
from unetseg.config import AugmentConfig
from unetseg.data.synth import smooth_noise
from unetseg.inference import _unview, _view, predict_probs, tta_views
from unetseg.runtime import select_runtime

GEOMETRIC_ONLY = dict(brightness=0, contrast=0, saturation=0, hue=0)


def blobs(n=8, size=48, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.stack([smooth_noise(rng, size, size, 16) > 0.5 for _ in range(n)])).long()


def test_flips_and_rot90_move_masks_exactly_with_images():
    torch.manual_seed(0)
    y = blobs()
    x = y[:, None].float().repeat(1, 3, 1, 1)
    xa, ya = Augment(AugmentConfig(scale=None, **GEOMETRIC_ONLY))(x, y)
    assert (ya != y).any(), "the augmentation should have changed something"
    assert torch.equal((xa[:, 0] > 0.5).long(), ya)
    assert torch.equal(xa[:, 0], xa[:, 2])


def test_resized_crop_moves_masks_with_images():
    torch.manual_seed(1)
    y = blobs(seed=1)
    x = y[:, None].float().repeat(1, 3, 1, 1)
    xa, ya = Augment(AugmentConfig(crop_p=1.0, **GEOMETRIC_ONLY))(x, y)
    agree = ((xa[:, 0] > 0.5).long() == ya).float().mean().item()
    assert agree > 0.98, agree  # bilinear image vs nearest mask differ only along edges
    assert set(ya.unique().tolist()) <= {0, 1} and ya.dtype == y.dtype


def test_colour_jitter_changes_images_but_never_masks():
    torch.manual_seed(2)
    y = blobs()
    x = torch.rand(8, 3, 48, 48)
    aug = Augment(AugmentConfig(flips=False, rot90=False, scale=None, jitter_p=1.0, noise_std=0.05, blur_p=0.5))
    xa, ya = aug(x, y)
    assert torch.equal(ya, y) and not torch.allclose(xa, x)
    assert xa.min() >= 0 and xa.max() <= 1


@pytest.mark.parametrize("channels", [1, 4, 6])
def test_any_channel_count(channels):
    y = blobs(4)
    x = torch.rand(4, channels, 48, 48)
    xa, ya = Augment(AugmentConfig(jitter_p=1.0), channels)(x, y)
    assert xa.shape == x.shape and ya.shape == y.shape


@settings(max_examples=8, deadline=None)
@given(k=st.integers(0, 3), flip=st.booleans())
def test_tta_views_invert(k, flip):
    x = torch.rand(2, 3, 8, 12)
    assert torch.equal(_unview(_view(x, k, flip), k, flip), x)


def test_d4_tta_is_equivariant_and_unknown_modes_are_refused():
    from unetseg.config import ModelConfig
    from unetseg.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(base_width=4, depth=3)).eval()
    rt = select_runtime("fp32")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        p = predict_probs(model, x, rt, "d4")
        p_rot = predict_probs(model, torch.rot90(x, 1, (-2, -1)), rt, "d4")
        plain = predict_probs(model, x, rt, "none")
    assert torch.allclose(torch.rot90(p, 1, (-2, -1)), p_rot, atol=1e-5)
    assert not torch.allclose(p, plain)
    assert len(tta_views("d4")) == 8 and len(tta_views("flips")) == 4
    with pytest.raises(ValueError, match="unknown test-time augmentation 'x'"):
        tta_views("x")


def test_chips_and_scene_crops_get_their_own_augmentation():
    from types import SimpleNamespace

    from unetseg.training import augment_batch

    torch.manual_seed(2)
    none = AugmentConfig(flips=False, rot90=False, scale=None, **GEOMETRIC_ONLY)
    veil = AugmentConfig(flips=False, rot90=False, scale=None, haze=0.9, haze_p=1.0, **GEOMETRIC_ONLY)
    ctx = SimpleNamespace(augment=Augment(veil), chip_augment=Augment(none), n_chips=10)
    x = torch.rand(6, 3, 16, 16) * 0.2  # dark images: the veil brightens every pixel it touches
    y = torch.arange(6)[:, None, None].expand(6, 16, 16).contiguous()  # each image's label = its row
    idx = torch.tensor([12, 3, 15, 7, 11, 0])  # rows 1, 3, 5 are chips (index < 10)
    xa, ya, w = augment_batch(ctx, x, y, None, idx)
    assert w is None and xa.shape == x.shape
    assert ya[:, 0, 0].tolist() == [1, 3, 5, 0, 2, 4]  # chips first, then the crops, each with its own label
    assert torch.equal(xa[:3], x[[1, 3, 5]])  # the chips' augmentation changes nothing here
    assert (xa[3:] > x[[0, 2, 4]]).all()  # the crops got the veil
    ctx.chip_augment = None  # no chip augmentation: everything gets the recipe's, in order
    xa, ya, _ = augment_batch(ctx, x, y, None, idx)
    assert ya[:, 0, 0].tolist() == list(range(6)) and (xa > x).all()
