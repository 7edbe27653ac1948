"""The principal axis v̂ of eq. (9): PCA of the data at the level of single pixels.

The paper squeezes along "the first principal component of the per-pixel channel covariance": every pixel of
every image is one sample of an n-vector (n = 3 for RGB), and v̂ is the top eigenvector of their n×n covariance.
For natural images it is close to luminance, (1, 1, 1)/√3.

This module imports torch and nothing else.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

import torch


class PrincipalAxis(NamedTuple):
    """Result of `principal_axis`: v̂ and the spectrum of the per-pixel channel covariance it came from."""

    axis: torch.Tensor  # (n,) unit vector, float64, components summing to a positive number
    eigenvalues: torch.Tensor  # (n,) descending, float64
    eigenvectors: torch.Tensor  # (n, n), column k belongs to eigenvalues[k]; column 0 is `axis`
    mean: torch.Tensor  # (n,) per-channel mean
    covariance: torch.Tensor  # (n, n) per-pixel channel covariance (normalised by the pixel count)
    num_pixels: int


def images_of(batch) -> torch.Tensor:
    # A DataLoader over a labelled dataset yields (images, labels); take the images.
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if not torch.is_tensor(batch) or batch.ndim < 2:
        raise ValueError(
            f"batches must yield tensors of shape (B, n, ...) (or (images, labels) pairs), got {type(batch).__name__}"
            + (f" of shape {tuple(batch.shape)}" if torch.is_tensor(batch) else "")
        )
    return batch


def principal_axis(batches: Iterable[torch.Tensor]) -> PrincipalAxis:
    """v̂ of eq. (9): the unit first principal component of the per-pixel channel covariance.

    One streaming pass over `batches` (an iterable of (B, n, H, W) tensors, or (images, labels) pairs),
    accumulating the pixel count, the channel sums and the n×n second moment in float64; the covariance is
    E[xxᵀ] − E[x]E[x]ᵀ. The sign of v̂ is fixed so that its components sum to a positive number (for a sum of
    exactly zero, its first non-zero component is positive), so the same data always gives the same axis.
    """
    count = 0
    channel_sum = second_moment = None
    n = None
    for batch in batches:
        images = images_of(batch)
        if n is None:
            n = images.shape[1]
            channel_sum = torch.zeros(n, dtype=torch.float64)
            second_moment = torch.zeros(n, n, dtype=torch.float64)
        elif images.shape[1] != n:
            raise ValueError(f"every batch must have n={n} channels, got a batch of shape {tuple(images.shape)}")
        pixels = images.detach().to("cpu", torch.float64).transpose(0, 1).reshape(n, -1)  # (n, B·H·W)
        count += pixels.shape[1]
        channel_sum += pixels.sum(dim=1)
        second_moment += pixels @ pixels.T
    if n is None or count == 0:
        raise ValueError("batches must hold at least one pixel; the iterable was empty")
    if not (torch.isfinite(channel_sum).all() and torch.isfinite(second_moment).all()):
        raise ValueError("batches contain non-finite values (NaN or inf); the principal axis is undefined")

    mean = channel_sum / count
    covariance = second_moment / count - torch.outer(mean, mean)
    covariance = (covariance + covariance.T) / 2  # exact symmetry for eigh
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)

    axis = eigenvectors[:, 0]
    total = axis.sum()
    sign = torch.sign(total) if total != 0 else torch.sign(axis[axis != 0][0])
    axis = axis * sign
    eigenvectors = eigenvectors.clone()
    eigenvectors[:, 0] = axis
    return PrincipalAxis(axis, eigenvalues, eigenvectors, mean, covariance, count)
