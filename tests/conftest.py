"""Fixtures shared by the test modules: an isolated cache, a folder of small real image files, and the
parameters of a training run of seconds on it."""

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SDM_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def image_folder(tmp_path):
    """24 small real image files (PNG) with structure: coloured gradients and blocks."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        y, x = np.mgrid[0:32, 0:32]
        base = rng.uniform(0, 255, 3)
        image = (base + 3 * x[..., None] * rng.uniform(-1, 1, 3) + 2 * y[..., None] * rng.uniform(-1, 1, 3)) % 256
        Image.fromarray(image.astype(np.uint8)).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture
def tiny_run(image_folder):
    """TrainConfig parameters of a run of seconds on the CPU (tiny UNet, a few steps) on `image_folder`."""
    return {
        "dataset": "folder",
        "data_root": str(image_folder),
        "image_size": 32,
        "model_size": "tiny",
        "train_steps": 6,
        "batch_size": 4,
        "lr_warmup_steps": 2,
        "checkpoint_every": 2,
        "log_every": 1,
        "num_workers": 0,
        "num_inference_steps": 3,
        "num_eval_samples": 8,
        "eval_batch_size": 4,
        "num_grid_samples": 4,
        "pca_components": 4,
        "metrics": ["pca_fd"],
    }
