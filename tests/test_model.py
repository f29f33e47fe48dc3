import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unetseg.config import ModelConfig
from unetseg.models import MODELS, build_model, count_parameters


def test_seed_unet_has_the_seed_parameter_count():
    # SEED.md: 8,639,745 with one output channel, 8,639,811 with the reference's three
    assert count_parameters(build_model(ModelConfig())) == 8_639_745
    assert count_parameters(build_model(ModelConfig(num_classes=3))) == 8_639_811


def test_seed_unet_has_no_batch_norm_and_unet_bn_has():
    kinds = lambda m: {type(x).__name__ for x in m.modules()}  # noqa: E731
    assert "BatchNorm2d" not in kinds(build_model(ModelConfig()))
    assert "BatchNorm2d" in kinds(build_model(ModelConfig(name="unet-bn")))


@settings(max_examples=15, deadline=None)
@given(h=st.integers(1, 70), w=st.integers(1, 70), depth=st.integers(2, 5))
def test_any_input_size_gives_output_of_the_same_size(h, w, depth):
    model = build_model(ModelConfig(base_width=4, depth=depth)).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, h, w))
    assert y.shape == (1, 1, h, w)


def test_configurable_channels_classes_width_depth():
    cfg = ModelConfig(in_channels=4, num_classes=5, base_width=8, depth=3, batch_norm=True, dropout=0.1)
    model = build_model(cfg).eval()
    assert model(torch.rand(2, 4, 20, 24)).shape == (2, 5, 20, 24)
    # three levels: widths 8, 16, 32
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert max(c.out_channels for c in convs) == 32


def test_padding_does_not_change_interior_predictions_of_aligned_inputs():
    model = build_model(ModelConfig(base_width=4)).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # deterministic in eval mode
        assert model(x).shape == (1, 1, 32, 32)


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'vgg99'.*unet"):
        build_model(ModelConfig(name="vgg99"))
    assert {"unet", "unet-bn"} <= set(MODELS)


def test_folding_batch_norm_keeps_the_outputs_and_leaves_no_batch_norm():
    from torch import nn

    from unetseg.inference import fold_batch_norm

    torch.manual_seed(0)
    model = build_model(ModelConfig(name="unet-bn", base_width=8, depth=3, batch_norm=True))
    for m in model.modules():  # running statistics and affine parameters far from the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.2, 3.0)
            m.weight.data.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.3, 0.3)
    with pytest.raises(ValueError, match="training mode"):
        fold_batch_norm(model)
    model.eval()
    x = torch.rand(2, 3, 40, 24)
    with torch.no_grad():
        before = model(x)
        fold_batch_norm(model)
        after = model(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert before.abs().max() > 0.1  # not a trivial output
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)
    plain = build_model(ModelConfig(name="unet")).eval()  # the seed U-Net has no batch norm: nothing changes
    n = len(list(plain.modules()))
    assert len(list(fold_batch_norm(plain).modules())) == n


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")
@pytest.mark.parametrize("name", ["unet-bn", "ternausnet"])
def test_convolutions_packed_for_onednn_give_the_same_outputs(name):
    import copy

    from torch import nn

    from unetseg.inference import OneDNNConv, autocast_weights, fold_batch_norm, prepack_convolutions
    from unetseg.runtime import Runtime

    torch.manual_seed(2)
    model = build_model(ModelConfig(name=name, base_width=8, batch_norm=True, num_classes=3))
    with pytest.raises(ValueError, match="training mode"):
        prepack_convolutions(model)
    model.eval()
    convs = sum(type(m) in (nn.Conv2d, nn.ConvTranspose2d) for m in model.modules())
    precisions = ["fp32"] + (["bf16"] if torch.ops.mkldnn._is_mkldnn_bf16_supported() else [])
    for precision in precisions:
        rt = Runtime(torch.device("cpu"), precision)
        eager = autocast_weights(fold_batch_norm(copy.deepcopy(model)), rt)
        packed = prepack_convolutions(autocast_weights(fold_batch_norm(copy.deepcopy(model)), rt))
        fused = [m for m in packed.modules() if isinstance(m, OneDNNConv)]
        assert len(fused) == convs  # every convolution, transposed ones too
        assert not any(isinstance(m, nn.ReLU) for m in packed.modules())  # each ReLU went into its convolution
        assert sum(m.attr == "relu" for m in fused) == sum(isinstance(m, nn.ReLU) for m in eager.modules())
        x = torch.rand(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), rt.autocast():
            a, b = eager(x), packed(x)
            odd = torch.rand(1, 3, 37, 53)  # padded inside the model, and not channels_last
            c, d = eager(odd), packed(odd)
        assert a.abs().max() > 0.1 and b.dtype == a.dtype
        if precision == "bf16":  # the same kernels' arithmetic: to the bit
            assert torch.equal(b, a) and torch.equal(d, c)
        else:  # fp32: at most rounding (eager may pick another algorithm for some shapes)
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(d, c, rtol=1e-5, atol=1e-5)
    same = nn.Sequential(nn.Conv2d(3, 4, 3, padding="same"), nn.ReLU()).eval()  # 'same' padding: left eager
    assert isinstance(prepack_convolutions(same)[0], nn.Conv2d)


def test_weights_stored_in_the_autocast_dtype_give_the_same_outputs_to_the_bit():
    from unetseg.inference import autocast_weights
    from unetseg.runtime import Runtime

    torch.manual_seed(1)
    model = build_model(ModelConfig(name="unet-bn", base_width=8, depth=3, batch_norm=True)).eval()
    x = torch.rand(2, 3, 32, 48)
    bf16 = Runtime(torch.device("cpu"), "bf16")
    with torch.no_grad(), bf16.autocast():
        before = model(x)
        autocast_weights(model, bf16)
        after = model(x)
    assert torch.equal(after, before)
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert convs and all(m.weight.dtype == torch.bfloat16 for m in convs)
    assert all(m.weight.dtype == torch.float32 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    plain = build_model(ModelConfig(name="unet-bn", base_width=8, depth=3, batch_norm=True)).eval()
    autocast_weights(plain, Runtime(torch.device("cpu"), "fp32"))  # no autocast: nothing changes
    assert all(p.dtype == torch.float32 for p in plain.parameters())
