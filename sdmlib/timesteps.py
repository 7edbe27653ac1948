"""Custom sampling schedules: the check every scheduler's `set_timesteps(timesteps=[…])` applies, and the quadratic
spacing of DDIM's CIFAR-10 experiments that Q-Diffusion samples with. Lists of Python ints in and out."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from numbers import Integral

import numpy as np


def check_timesteps(timesteps: Sequence[int], num_train_timesteps: int) -> list[int]:
    """`timesteps` as a list of Python ints, if it is a non-empty sequence of integers, strictly decreasing (the
    sampler runs from the noisy end), each in [0, num_train_timesteps); else a ValueError naming `timesteps`."""
    if hasattr(timesteps, "tolist"):  # a tensor or an array: check its entries, whatever their integer type
        timesteps = timesteps.tolist()
    allowed = f"a non-empty, strictly decreasing list of integers in [0, {num_train_timesteps})"
    if isinstance(timesteps, (str, bytes)) or not isinstance(timesteps, Sequence) or len(timesteps) == 0:
        raise ValueError(f"timesteps must be {allowed}, got {timesteps!r}")
    for t in timesteps:
        if isinstance(t, bool) or not isinstance(t, Integral):
            raise ValueError(f"timesteps must be {allowed}, got {timesteps!r} (entry {t!r} is not an integer)")
        if not 0 <= t < num_train_timesteps:
            raise ValueError(f"timesteps must be {allowed}, got {timesteps!r} (entry {t!r} is out of range)")
    for earlier, later in pairwise(timesteps):
        if later >= earlier:
            raise ValueError(f"timesteps must be {allowed}, got {timesteps!r} ({earlier} is followed by {later})")
    return [int(t) for t in timesteps]


def quadratic_timesteps(num_inference_steps: int, num_train_timesteps: int = 1000, offset: int = 0) -> list[int]:
    """The "quad" schedule of DDIM (Song et al., CIFAR-10), which Q-Diffusion's CIFAR-10 runs use, descending:

        t_i = ⌊(i·√(0.8·T) / (n − 1))²⌋ + offset,   i = 0, …, n − 1

    the DDIM repository's `(np.linspace(0, np.sqrt(T * 0.8), n) ** 2)` cast to int (so t_i ≤ 0.8·T: the steps crowd
    at low noise, where samples gain their detail). Its timesteps index ᾱ as diffusers' do (its `compute_alpha(β, t)`
    pads β with a leading 0 and reads index t + 1), so `offset=0` reproduces it; `offset=1` is latent diffusion's
    `make_ddim_timesteps`, which adds one "to get the final alpha values right".

    Near t = 0 consecutive t_i collide (n = 100, T = 1000 gives 0, 0, 0, 0, 1, …). The DDIM code runs the repeats
    as zero-length steps, each costing a network evaluation and changing nothing at η = 0; here they are dropped,
    so the list can be shorter than n (96 entries for n = 100, T = 1000).
    """
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be an integer at least 1, got {num_inference_steps!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a non-negative integer, got {offset!r}")
    # The DDIM code's own expression, so that int() floors on the same floats.
    raw = (np.linspace(0, np.sqrt(num_train_timesteps * 0.8), num_inference_steps) ** 2).astype(int)
    unique = sorted({int(t) + offset for t in raw}, reverse=True)
    return check_timesteps(unique, num_train_timesteps)
