"""torch.compile on the inference paths: same outputs as eager, warm-up paid once per shape and reported,
a clean fallback to eager when compiling fails, and the predict / evaluate options."""

import json

import numpy as np
import pytest
import torch

from unetseg.checkpoint import load_checkpoint, resolve_checkpoint
from unetseg.compiled import CompiledModel, maybe_compile, warmup_seconds
from unetseg.config import ModelConfig, PredictConfig
from unetseg.models import build_model


def _tiny():
    torch.manual_seed(0)
    return build_model(ModelConfig(name="unet", base_width=4, depth=3)).eval()


def _x(n, size=32, seed=0):
    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return x.contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_inductor_matches_eager_pads_small_batches_and_counts_warmup_once_per_shape():
    model, lines = _tiny(), []
    compiled = CompiledModel(model, lines.append)
    with torch.inference_mode():
        for n, size in [(4, 32), (3, 32), (1, 32), (4, 48)]:
            x = _x(n, size, seed=n)
            got, ref = compiled(x), model(x)
            assert got.shape == ref.shape == (n, 1, size, size)
            assert (got - ref).abs().max() <= 1e-4
    assert not compiled.failed
    # batch 4 at 32 px (3 and 1 were padded to it and reused the graph), then 4 at 48 px
    assert compiled.shapes == {(3, 32, 32), (3, 48, 48)}
    assert len([m for m in lines if m.startswith("compiled for 4 x 3 x")]) == 2
    assert warmup_seconds(compiled) > 0 and warmup_seconds(model) is None


def test_a_failing_compiler_falls_back_to_eager_with_one_message():
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no C compiler found")

    model, lines = _tiny(), []
    compiled = CompiledModel(model, lines.append, backend=broken_backend)
    with torch.inference_mode():
        for seed in range(3):
            x = _x(2, seed=seed)
            assert torch.equal(compiled(x), model(x))
    assert "no C compiler found" in compiled.failed
    assert len(lines) == 1 and lines[0].startswith("torch.compile failed") and lines[0].endswith("running eager")
    assert maybe_compile(model, False) is model


def test_compile_is_for_the_torch_engine_only():
    with pytest.raises(ValueError, match="--compile applies to --engine torch"):
        PredictConfig(engine="onnxruntime", compile=True).check()
    PredictConfig(compile=True).check()


@pytest.mark.slow
def test_evaluate_and_predict_with_compile_agree_with_eager_and_report_the_warmup(tiny_run, synth_data, tmp_path):
    from PIL import Image

    from unetseg.predict.pipeline import predict
    from unetseg.runtime import select_runtime
    from unetseg.workflow import run_evaluate

    rt = select_runtime("fp32")
    eager = run_evaluate(tiny_run, rt, progress=False)
    compiled = run_evaluate(tiny_run, rt, progress=False, compile=True)
    assert eager["compile_seconds"] is None and compiled["compile_seconds"] > 0
    assert compiled["confusion_matrix"] == eager["confusion_matrix"]

    img = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 130, 3), dtype=np.uint8)).save(img)
    masks, lines = {}, []
    for flag in (False, True):
        out = tmp_path / f"out-{flag}"
        predict(tiny_run, [img], out, PredictConfig(compile=flag, tile=32, overlap=8), rt, progress=False,
                log=lines.append)
        masks[flag] = np.asarray(Image.open(out / "scene_mask.png"))
        summary = json.loads((out / "predictions.json").read_text())
        assert (summary["compile_seconds"] or 0) > 0 if flag else summary["compile_seconds"] is None
    assert (masks[True] == masks[False]).mean() >= 0.999
    assert any("s compiling" in m for m in lines)
    model, _ = load_checkpoint(resolve_checkpoint(tiny_run))
    assert isinstance(maybe_compile(model, True, lines.append), CompiledModel)
