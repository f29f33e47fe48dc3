"""On the real water-bodies chips: a small U-Net trained briefly beats the all-background answer."""

import json

import numpy as np
import pytest

from unetseg.data import load_chips, scan_folder
from unetseg.metrics import scores_from_confusion
from unetseg.runtime import select_runtime
from unetseg.workflow import run_evaluate

pytestmark = pytest.mark.realdata


def test_small_unet_clearly_beats_all_background_on_real_chips(real_data, real_run):
    # real_run (conftest): unet-bn width 8, depth 4, 4 epochs at 64 px on the first 800 pairs
    out = real_run
    m = run_evaluate(out, select_runtime("auto"), progress=False)

    # the all-background prediction on the same test masks: one confusion matrix, computed not typed
    test = json.loads((out / "split.json").read_text())["test"]
    pairs = [p for p in scan_folder(real_data).pairs if p.stem in set(test)]
    masks = np.asarray(load_chips(pairs, 64, progress=False).masks)
    water, total = int(masks.sum()), masks.size
    baseline = scores_from_confusion(np.array([[total - water, 0], [water, 0]]))["mean_iou"]
    print(f"test mean IoU {m['mean_iou']:.4f} vs all-background {baseline:.4f} on {len(test)} real chips")
    assert m["test_images"] == len(test) and 50 <= len(test) <= 120  # about 10.6% of 800 by the hash split
    assert m["mean_iou"] > baseline + 0.15
    assert m["water_iou"] > 0.3
