"""Fixtures shared by the test modules: an isolated cache, and a folder of small real image files."""

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
