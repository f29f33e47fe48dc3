"""TernausNet, pretrained encoder files, losses and schedules."""

import pickle

import pytest
import torch

from unetseg.config import ModelConfig, Recipe, get_recipe
from unetseg.data import DataError
from unetseg.models import build_model, count_parameters
from unetseg.models.ternausnet import VGG11_CONVS
from unetseg.training import loss_fn, make_scheduler


def vgg11_state(in_channels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for group in VGG11_CONVS:
        for idx, c_in, c_out in group:
            state[f"features.{idx}.weight"] = torch.randn(c_out, in_channels if idx == 0 else c_in, 3, 3, generator=g)
            state[f"features.{idx}.bias"] = torch.randn(c_out, generator=g)
    state["classifier.0.weight"] = torch.zeros(1)  # torchvision files carry the classifier too
    return state


def test_ternausnet_size_and_any_input_size():
    model = build_model(ModelConfig(name="ternausnet")).eval()
    assert 22_000_000 < count_parameters(model) < 24_000_000  # TernausNet11: about 22.9 M
    with torch.no_grad():
        assert model(torch.rand(1, 3, 45, 70)).shape == (1, 1, 45, 70)
        assert build_model(ModelConfig(name="ternausnet", in_channels=4, num_classes=3))(
            torch.rand(1, 4, 32, 32)).shape == (1, 3, 32, 32)


def test_pretrained_vgg11_file_is_copied_into_the_encoder(tmp_path):
    path = tmp_path / "vgg11.pth"
    state = vgg11_state()
    torch.save(state, path)
    model = build_model(ModelConfig(name="ternausnet"))
    assert model.load_vgg11(path) == 16
    assert torch.equal(model.encoder[0][0][0].weight, state["features.0.weight"])
    assert torch.equal(model.encoder[4][1][0].bias, state["features.18.bias"])


def test_wrong_shape_pretrained_file_is_a_clear_error(tmp_path):
    path = tmp_path / "vgg11.pth"
    torch.save(vgg11_state(), path)
    model = build_model(ModelConfig(name="ternausnet", in_channels=4))
    with pytest.raises(DataError, match=r"features.0.weight has shape \(64, 3, 3, 3\), the encoder needs \(64, 4, 3, 3\)"):
        model.load_vgg11(path)
    bad = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(DataError, match="features.0.weight missing: not a torchvision VGG11"):
        build_model(ModelConfig(name="ternausnet")).load_vgg11(bad)


class Boom:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_pickle_that_would_run_code_is_refused_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"features.0.weight": Boom()}, f)
    with pytest.raises(DataError, match="not a plain PyTorch state dict; refused"):
        build_model(ModelConfig(name="ternausnet")).load_vgg11(path)
    assert not (tmp_path / "PWNED").exists()


def test_dice_losses_are_small_for_perfect_predictions_and_large_for_wrong_ones():
    y = torch.zeros(2, 8, 8, dtype=torch.long)
    y[:, :4] = 1
    good = (y.float() * 2 - 1)[:, None] * 20
    assert loss_fn(good, y, "bce+dice") < 0.01 < loss_fn(-good, y, "bce+dice")
    logits3 = torch.nn.functional.one_hot(y, 3).permute(0, 3, 1, 2).float() * 20
    assert loss_fn(logits3, y, "ce+dice") < 0.01 < loss_fn(-logits3, y, "ce+dice")


def test_schedules_step_as_promised():
    model = torch.nn.Linear(2, 2)
    r = get_recipe("improved")
    opt = torch.optim.AdamW(model.parameters(), lr=r.lr)
    sched = make_scheduler(opt, r, steps_per_epoch=10, mode="max")
    lrs = []
    for _ in range(r.epochs * 10):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert max(lrs) == pytest.approx(r.lr, rel=0.02) and lrs[-1] < r.lr / 100
    with pytest.raises(ValueError, match="unknown schedule"):
        make_scheduler(opt, Recipe(schedule="zigzag"), 10, "min")


def test_improved_recipe_is_what_the_readme_says():
    r = get_recipe("improved")
    assert r.model.batch_norm and r.loss == "bce+dice" and r.optimizer == "adamw" and r.schedule == "onecycle"
    assert r.monitor == "val_miou" and r.augment is not None and r.epochs > 18
    assert Recipe.from_dict(r.to_dict()) == r
