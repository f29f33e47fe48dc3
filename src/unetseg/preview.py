"""augment-preview: chips and augmented copies side by side, to check augmentation by eye."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .augment import Augment  # noqa: E402
from .config import AugmentConfig  # noqa: E402
from .config import Recipe  # noqa: E402
from .data.cache import load_chips  # noqa: E402
from .data.folder import scan_folder  # noqa: E402
from .data.spec import load_spec  # noqa: E402
from .figures import bare, mask_style, save_figure  # noqa: E402
from .inference import to_input  # noqa: E402


def augment_preview(data: Path, recipe: Recipe, out: Path, n: int = 4, views: int = 3, seed: int = 0) -> Path:
    """A grid: for each of n chips, the original and `views` augmented copies, each image above its mask."""
    spec = load_spec(data, recipe.mask_threshold)
    pairs = scan_folder(data).pairs
    pick = np.sort(np.random.default_rng(seed).choice(len(pairs), size=min(n, len(pairs)), replace=False))
    chips = load_chips([pairs[i] for i in pick], recipe.image_size, spec, progress=False, skip_bad=True)
    aug = Augment(recipe.augment or AugmentConfig(), len(spec.channels))
    torch.manual_seed(seed)
    x = to_input(np.asarray(chips.images), torch.device("cpu"))
    y = torch.from_numpy(np.asarray(chips.masks)).long()
    columns = [(x, y, "original")] + [(*aug(x, y), f"augmented {v + 1}") for v in range(views)]
    rows = len(chips.stems)
    fig, axes = plt.subplots(2 * rows, len(columns), figsize=(2.2 * len(columns), 4.4 * rows), squeeze=False)
    for c, (xi, yi, title) in enumerate(columns):
        for r in range(rows):
            img = xi[r, :3].permute(1, 2, 0).numpy() if xi.shape[1] >= 3 else xi[r, 0].numpy()
            axes[2 * r, c].imshow(img.clip(0, 1), cmap=None if img.ndim == 3 else "gray")
            axes[2 * r + 1, c].imshow(yi[r].numpy(), **mask_style(len(spec.class_names)))
            axes[2 * r, c].set_title(f"{chips.stems[r]}\n{title}" if c == 0 else title, fontsize=8)
            for ax in (axes[2 * r, c], axes[2 * r + 1, c]):
                bare(ax)
    fig.tight_layout()
    save_figure(fig, Path(out))
    return Path(out)
