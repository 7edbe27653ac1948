"""Sample-quality metrics of the paper's experiments (Appendix A), and one that needs no downloaded network.

The paper reports FID-10K against the statistics of the full training set, the Inception Score, and precision/recall
(Kynkänniemi et al. 2019, k = 3 nearest neighbours) with their F-score, all through torch-fidelity. Those need
pretrained Inception-v3 (FID, IS) and VGG16 (precision/recall) weights, downloaded on first use. Where they cannot be
had (an offline machine), `compute_metrics` says so in its "unavailable" entry and still returns the rest, among them
`pca_fd`: the Fréchet distance between Gaussians fitted to the images' projections on the top principal components of
the training pixels (`PixelPCA`), a crude FID whose "network" is a linear map fitted to the data itself, and
`pca_prc`: Kynkänniemi et al.'s precision and recall (`knn_precision_recall`, k = 3) in the same feature space.

Layers: `f_score`, `PixelPCA`, `pca_frechet_distance` and `knn_precision_recall` are math on tensors;
`compute_metrics` adds the file cache (under `cache_dir`), the weight files and torch-fidelity, imported only when a
torch-fidelity metric is asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import socket
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from .gaussian import frechet_distance
from .io import save_safetensors
from .pca import images_of

METRICS = ("fid", "isc", "prc", "pca_fd", "pca_prc")

# torch-fidelity's default feature extractor for each of its metrics, and where their weights come from.
DEFAULT_FEATURE_EXTRACTORS = {"fid": "inception-v3-compat", "isc": "inception-v3-compat", "prc": "vgg16"}
INCEPTION_WEIGHTS_URL = (  # = torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3 (v0.2.0 .. v0.4)
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
VGG16_WEIGHTS_URL = (
    "https://download.pytorch.org/models/vgg16-397923af.pth"  # = torchvision VGG16_Weights.IMAGENET1K_V1
)
_WEIGHTS = {  # extractor: (url, the compute_metrics parameter that overrides it, what the file is)
    "inception-v3-compat": (
        INCEPTION_WEIGHTS_URL,
        "inception_weights",
        "Inception",
        "the pt_inception-2015-12-05 .pth file, weights-inception-2015-12-05-6726825d.pth",
    ),
    "vgg16": (VGG16_WEIGHTS_URL, "vgg_weights", "VGG16", "torchvision's ImageNet VGG16 state dict, vgg16-397923af.pth"),
}
_FIDELITY_KEYS = {  # torch-fidelity's result key: ours
    "frechet_inception_distance": "fid",
    "inception_score_mean": "isc_mean",
    "inception_score_std": "isc_std",
    "precision": "precision",
    "recall": "recall",
}


# ---------------------------------------------------------------------------------------------------------------------
# F-score of precision and recall


def f_score(precision: float, recall: float, beta: float = 1.0) -> float:
    """F_β = (1 + β²) P R / (β² P + R), the harmonic-type mean of precision and recall drawn as contours in Fig. 2f.

    β > 1 weighs recall more. Defined as 0 when P = R = 0. (torch-fidelity's own "f_score" is F_1 with the
    denominator floored at 1e-5, which agrees with this to within 1e-5.)
    """
    for name, value in (("precision", precision), ("recall", recall)):
        if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
            raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if not (isinstance(beta, (int, float)) and beta > 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a positive finite number, got {beta!r}")
    denominator = beta**2 * precision + recall
    return 0.0 if denominator == 0 else (1 + beta**2) * precision * recall / denominator


# ---------------------------------------------------------------------------------------------------------------------
# Pixel PCA and the Fréchet distance in its feature space


def images_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [−1, 1] → uint8 in [0, 255], as diffusers saves samples: round((x + 1) · 127.5), clamped."""
    return ((images.detach().to(torch.float64) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def _check_image_batch(images, name: str, image_shape: tuple[int, ...] | None = None) -> torch.Tensor:
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] != 3:
        got = f"shape {tuple(images.shape)}" if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"{name} must be a (N, 3, H, W) tensor, got {got}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"{name} must be uint8 in [0, 255] or float in [-1, 1], got dtype {images.dtype}")
    if image_shape is not None and tuple(images.shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"{name} must hold images of shape {tuple(image_shape)} (the shape the PCA was fitted on), "
            f"got {tuple(images.shape[1:])}"
        )
    return images


def _flatten_to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) uint8 or float in [−1, 1] → (N, D) float64 in [−1, 1]."""
    x = images.detach().to("cpu", torch.float64).flatten(1)
    return x / 127.5 - 1 if images.dtype == torch.uint8 else x


def _fix_signs(components: torch.Tensor) -> torch.Tensor:
    """Flip each column so that its entries sum to a positive number (first non-zero entry positive on a tie), as
    `sdmlib.pca.principal_axis` does: the same data always gives the same components."""
    totals = components.sum(dim=0)  # (k,)
    first_nonzero = components[(components != 0).to(torch.int8).argmax(dim=0), torch.arange(components.shape[1])]
    signs = torch.where(totals != 0, torch.sign(totals), torch.sign(first_nonzero))
    return components * torch.where(signs == 0, 1.0, signs)


def _nystrom_top_eigenpairs(sketch: torch.Tensor, test_matrix: torch.Tensor, num_components: int):
    """Top eigenpairs of a PSD matrix C known only through Y = C Ω, with Ω (D, ℓ) orthonormal: the Nyström
    approximation C ≈ Y (ΩᵀY)⁺ Yᵀ, shifted by ν for stability (Tropp, Yurtsever, Udell, Cevher 2017, Alg. 3).
    Exact when ℓ = D; otherwise accurate for the leading components when the spectrum decays."""
    dim = sketch.shape[0]
    shift = math.sqrt(dim) * torch.finfo(torch.float64).eps * torch.linalg.matrix_norm(sketch).item()
    shifted = sketch + shift * test_matrix  # (D, ℓ) = (C + νI) Ω
    core = test_matrix.T @ shifted  # (ℓ, ℓ) = Ωᵀ (C + νI) Ω
    core_eigenvalues, core_eigenvectors = torch.linalg.eigh((core + core.T) / 2)
    keep = core_eigenvalues > core_eigenvalues.max() * dim * torch.finfo(torch.float64).eps
    factor = shifted @ (core_eigenvectors[:, keep] / core_eigenvalues[keep].sqrt())  # (D, r), C + νI ≈ F Fᵀ
    left, singular_values, _ = torch.linalg.svd(factor, full_matrices=False)
    eigenvalues = (singular_values[:num_components] ** 2 - shift).clamp(min=0)
    return eigenvalues, left[:, :num_components]


class PixelPCA:
    """Top-k principal components of flattened training images (D = 3·H·W), the feature map of `pca_fd`.

    `features(x)` = (x − mean) @ components, an (N, k) float64 array, for images uint8 in [0, 255] (mapped to
    [−1, 1]) or float in [−1, 1]. Fit with `PixelPCA.fit`; cache with `state_dict` / `from_state_dict`
    (safetensors-compatible: flat, contiguous tensors).
    """

    def __init__(
        self,
        mean: torch.Tensor,
        components: torch.Tensor,
        eigenvalues: torch.Tensor,
        image_shape: Sequence[int],
        num_samples: int = 0,
    ):
        image_shape = tuple(int(size) for size in image_shape)
        if len(image_shape) != 3 or image_shape[0] != 3 or min(image_shape) < 1:
            raise ValueError(f"image_shape must be (3, H, W) with positive H and W, got {image_shape}")
        dim = math.prod(image_shape)
        mean = torch.as_tensor(mean, dtype=torch.float64).flatten()
        components = torch.as_tensor(components, dtype=torch.float64)
        eigenvalues = torch.as_tensor(eigenvalues, dtype=torch.float64).flatten()
        if mean.shape != (dim,):
            raise ValueError(
                f"mean must have D = 3·H·W = {dim} entries for image_shape {image_shape}, got {mean.numel()}"
            )
        if components.ndim != 2 or components.shape[0] != dim or not 1 <= components.shape[1] <= dim:
            raise ValueError(f"components must be (D={dim}, k) with 1 ≤ k ≤ D, got shape {tuple(components.shape)}")
        if eigenvalues.shape != (components.shape[1],):
            raise ValueError(f"eigenvalues must have k = {components.shape[1]} entries, got {eigenvalues.numel()}")
        self.mean = mean.contiguous()  # (D,)
        self.components = components.contiguous()  # (D, k), orthonormal columns, by decreasing eigenvalue
        self.eigenvalues = eigenvalues.contiguous()  # (k,) variance of the data along each component
        self.image_shape = image_shape
        self.num_samples = int(num_samples)

    @property
    def num_components(self) -> int:
        return self.components.shape[1]

    @classmethod
    def fit(
        cls,
        batches: Iterable[torch.Tensor],
        num_components: int = 64,
        *,
        max_dense_dim: int = 4096,
        sketch_size: int | None = None,
        seed: int = 0,
    ) -> "PixelPCA":
        """Fit in one streaming float64 pass over `batches`: (B, 3, H, W) tensors in [−1, 1], uint8 in [0, 255],
        or (images, labels) pairs as a DataLoader over a labelled dataset yields them.

        The pass accumulates the image count, the pixel sums and, for the covariance C = E[xxᵀ] − E[x]E[x]ᵀ
        (normalised by the count):
        - D ≤ max_dense_dim (default 4096, so 32×32×3 = 3072): the full D×D second moment (D = 3072: 75 MB), then an
          exact eigendecomposition;
        - larger D (64×64×3 = 12288, whose D×D float64 would take 1.2 GB): only the sketch Y = E[xxᵀ] Ω for a fixed
          random orthonormal Ω of `sketch_size` columns (default min(D, 16k): D = 12288, k = 64 → 1024 columns,
          100 MB), centred after the pass as C Ω = Y − μ(μᵀΩ); the components are the top eigenvectors of the
          Nyström approximation of C from it (`_nystrom_top_eigenpairs`). Approximate: on 1/f-noise images
          (32×32, slowly decaying spectrum), the 64 sketched components span 99.9% of the exact top-64 subspace
          (mean squared cosine), the first ten align to |cos| > 0.9998 and the eigenvalues are within 2.5%; with
          4k + 64 columns only 94%. `seed` fixes Ω, so the same data always gives the same components.
        Each component's sign is fixed so that its entries sum to a positive number.
        """
        if isinstance(num_components, bool) or not isinstance(num_components, int) or num_components < 1:
            raise ValueError(f"num_components must be a positive int, got {num_components!r}")
        if sketch_size is not None and (not isinstance(sketch_size, int) or sketch_size < num_components):
            raise ValueError(
                f"sketch_size must be None or an int ≥ num_components={num_components}, got {sketch_size!r}"
            )
        count, pixel_sum, accumulator, test_matrix, image_shape = 0, None, None, None, None
        for batch in batches:
            images = _check_image_batch(images_of(batch), "every batch", image_shape)
            x = _flatten_to_unit_range(images)  # (B, D)
            if image_shape is None:
                image_shape, dim = tuple(images.shape[1:]), x.shape[1]
                if num_components > dim:
                    raise ValueError(
                        f"num_components must be at most D = 3·H·W = {dim} for images of shape {image_shape}, "
                        f"got {num_components}"
                    )
                pixel_sum = torch.zeros(dim, dtype=torch.float64)
                if dim <= max_dense_dim:
                    accumulator = torch.zeros(dim, dim, dtype=torch.float64)  # Σ x xᵀ
                else:
                    width = min(dim, sketch_size or 16 * num_components)
                    generator = torch.Generator().manual_seed(seed)
                    gaussian = torch.randn(dim, width, dtype=torch.float64, generator=generator)
                    test_matrix = torch.linalg.qr(gaussian).Q  # (D, ℓ) orthonormal Ω
                    accumulator = torch.zeros(dim, width, dtype=torch.float64)  # Σ x (xᵀ Ω)
            count += x.shape[0]
            pixel_sum += x.sum(dim=0)
            accumulator.addmm_(x.T, x if test_matrix is None else x @ test_matrix)  # in place: no D×D temporary
        if count < 2:
            raise ValueError(f"batches must hold at least 2 images to fit a covariance, got {count}")
        if not (torch.isfinite(pixel_sum).all() and torch.isfinite(accumulator).all()):
            raise ValueError("batches contain non-finite values (NaN or inf); the principal components are undefined")

        mean = pixel_sum / count  # (D,)
        if test_matrix is None:
            covariance = accumulator / count - torch.outer(mean, mean)
            eigenvalues, eigenvectors = torch.linalg.eigh((covariance + covariance.T) / 2)  # ascending
            eigenvalues = eigenvalues.flip(0)[:num_components].clamp(min=0)
            components = eigenvectors.flip(1)[:, :num_components]
        else:
            sketch = accumulator / count - torch.outer(mean, mean @ test_matrix)  # (D, ℓ) = C Ω
            eigenvalues, components = _nystrom_top_eigenpairs(sketch, test_matrix, num_components)
        return cls(mean, _fix_signs(components), eigenvalues, image_shape, num_samples=count)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) images, uint8 in [0, 255] or float in [−1, 1] → (N, k) float64 principal coordinates."""
        images = _check_image_batch(images, "images", self.image_shape)
        return (_flatten_to_unit_range(images) - self.mean) @ self.components

    def fingerprint(self) -> str:
        """A short hash of the fitted mean and components, naming cache entries that depend on them."""
        digest = hashlib.sha256()
        for tensor in (self.mean, self.components):
            digest.update(tensor.numpy().tobytes())
        return digest.hexdigest()[:12]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "mean": self.mean,
            "components": self.components,
            "eigenvalues": self.eigenvalues,
            "image_shape": torch.tensor(self.image_shape, dtype=torch.int64),
            "num_samples": torch.tensor(self.num_samples, dtype=torch.int64),
        }

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor]) -> "PixelPCA":
        required = ("mean", "components", "eigenvalues", "image_shape")
        missing = [key for key in required if key not in state_dict]
        if missing:
            raise ValueError(f"state_dict lacks {missing}; a PixelPCA state_dict has keys {required} (+ num_samples)")
        return cls(
            state_dict["mean"],
            state_dict["components"],
            state_dict["eigenvalues"],
            state_dict["image_shape"].tolist(),
            num_samples=int(state_dict.get("num_samples", torch.tensor(0))),
        )


def feature_statistics(features: torch.Tensor, name: str = "features") -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (k,) and unbiased covariance (k, k) of an (N, k) feature set in float64, N ≥ 2 (as FID uses)."""
    if not torch.is_tensor(features) or features.ndim != 2 or features.shape[0] < 2 or features.shape[1] < 1:
        got = f"shape {tuple(features.shape)}" if torch.is_tensor(features) else type(features).__name__
        raise ValueError(f"{name} must be an (N, k) tensor with N ≥ 2 and k ≥ 1, got {got}")
    features = features.detach().to("cpu", torch.float64)
    if not torch.isfinite(features).all():
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    mean = features.mean(dim=0)
    centred = features - mean
    return mean, centred.T @ centred / (features.shape[0] - 1)


def pca_frechet_distance(real_features: torch.Tensor, fake_features: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two (N, k) feature sets: ‖μ_r − μ_f‖² + tr(C_r + C_f −
    2 (C_r^{½} C_f C_r^{½})^{½}) (`sdmlib.gaussian.frechet_distance`), with unbiased covariances as in FID."""
    real_mean, real_covariance = feature_statistics(real_features, "real_features")
    fake_mean, fake_covariance = feature_statistics(fake_features, "fake_features")
    if real_mean.shape != fake_mean.shape:
        raise ValueError(
            f"real_features and fake_features must have the same number of columns k, "
            f"got {real_mean.shape[0]} and {fake_mean.shape[0]}"
        )
    return float(frechet_distance(real_mean, real_covariance, fake_mean, fake_covariance))


# ---------------------------------------------------------------------------------------------------------------------
# Improved precision and recall (Kynkänniemi et al. 2019): k-NN balls in a feature space


def _pairwise_distances(rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """(B, d), (N, d) → (B, N) Euclidean distances from exact coordinate differences.

    Not cdist's matrix-product path ‖x‖² + ‖y‖² − 2xᵀy (torch-fidelity's): that gives a point's distance to itself
    or to a copy as ~10⁻⁶ instead of 0 even in float64, so duplicated samples and ties at a ball's edge would be
    decided by rounding. At d = 64 the exact path costs about as much as the k-NN selection after it.
    """
    return torch.cdist(rows, columns, compute_mode="donot_use_mm_for_euclid_dist")


def knn_radii(features: torch.Tensor, k: int = 3, block_size: int = 1024) -> torch.Tensor:
    """(N, d) → (N,) distance of each point to its k-th nearest neighbour in the set, itself excluded: the radius
    of its ball in Kynkänniemi et al.'s manifold estimate. A copy of the point counts as a neighbour at distance 0."""
    radii = []
    for block in features.split(block_size):  # (B, d)
        distances = _pairwise_distances(block, features)  # (B, N), the point itself at exactly 0
        radii.append(distances.topk(k + 1, dim=1, largest=False).values[:, k])  # the (k+1)-th smallest, self first
    return torch.cat(radii)


def _check_feature_set(features, name: str, k: int) -> torch.Tensor:
    if not torch.is_tensor(features) or features.ndim != 2 or features.shape[1] < 1:
        got = f"shape {tuple(features.shape)}" if torch.is_tensor(features) else type(features).__name__
        raise ValueError(f"{name} must be an (N, d) tensor with d ≥ 1, got {got}")
    if features.shape[0] <= k:
        raise ValueError(
            f"{name} must hold more than k = {k} points (each needs k neighbours besides itself), "
            f"got {features.shape[0]}"
        )
    features = features.detach().to("cpu", torch.float64)
    if not torch.isfinite(features).all():
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return features


def knn_precision_recall(
    real_features: torch.Tensor, fake_features: torch.Tensor, k: int = 3, block_size: int = 1024
) -> tuple[float, float]:
    """Improved precision and recall of Kynkänniemi et al. 2019 (eqs. 1–2): (precision, recall) of fake samples
    against real ones, given their (N_r, d) and (N_f, d) features.

    Each set's manifold is the union of balls around its points, a point's radius r_k(φ) being its distance to its
    k-th nearest neighbour in its own set, itself excluded (`knn_radii`). A sample φ is covered by a set Φ when
    ‖φ − φ'‖ ≤ r_k(φ') for some φ' ∈ Φ; then
        precision = fraction of fake samples covered by the real set,
        recall = fraction of real samples covered by the fake set.
    This is torch-fidelity's definition (`metric_prc.calculate_precision_recall_full` and `_part`, v0.4: radius
    = kthvalue(k + 1) of a row of distances that includes the point's own 0, and ≤), with the paper's k = 3 as
    default. Only rounding differs: torch-fidelity takes cdist's matrix-product path in the features' dtype and
    averages in float32; here distances are exact differences in float64 (`_pairwise_distances`) and the fractions
    are counts over set sizes.

    Distances are taken in row blocks of `block_size` points, each against a whole set: memory is
    block_size × max(N_r, N_f) float64 (1024 × 10 000: 82 MB), never N_r × N_f. Three passes: the real radii, the
    fake radii, and one over blocks of fake rows against the real set that decides precision (per row) and recall
    (per column) from the same distances.
    """
    k = _check_positive_int(k, "k")
    block_size = _check_positive_int(block_size, "block_size")
    real_features = _check_feature_set(real_features, "real_features", k)  # (N_r, d)
    fake_features = _check_feature_set(fake_features, "fake_features", k)  # (N_f, d)
    if real_features.shape[1] != fake_features.shape[1]:
        raise ValueError(
            f"real_features and fake_features must have the same feature dimension d, "
            f"got {real_features.shape[1]} and {fake_features.shape[1]}"
        )
    # 1. Each set's ball radii.
    real_radii = knn_radii(real_features, k, block_size)  # (N_r,)
    fake_radii = knn_radii(fake_features, k, block_size)  # (N_f,)
    # 2. Coverage, from one pass over the fake-to-real distances.
    fake_covered = []
    real_covered = torch.zeros(real_features.shape[0], dtype=torch.bool)  # (N_r,)
    for fake_block, fake_block_radii in zip(fake_features.split(block_size), fake_radii.split(block_size)):
        distances = _pairwise_distances(fake_block, real_features)  # (B, N_r)
        fake_covered.append((distances <= real_radii).any(dim=1))  # inside some real ball
        real_covered |= (distances <= fake_block_radii[:, None]).any(dim=0)  # inside some ball of this fake block
    # 3. Fractions of covered samples.
    precision = torch.cat(fake_covered).sum().item() / fake_features.shape[0]
    recall = real_covered.sum().item() / real_features.shape[0]
    return precision, recall


# ---------------------------------------------------------------------------------------------------------------------
# Datasets as torch-fidelity reads them: uint8 (3, H, W) tensors


class _TensorImages(Dataset):
    """A (N, 3, H, W) uint8 tensor as a Dataset of its images (torch-fidelity wants bare tensors, not tuples)."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


class _Uint8Images(Dataset):
    """The training Dataset (float (3, H, W) items in [−1, 1], or (image, label) pairs) as uint8 images, optionally
    restricted to `indices`."""

    def __init__(self, dataset: Dataset, indices: Sequence[int] | None = None):
        self.dataset = dataset
        self.indices = None if indices is None else [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.dataset) if self.indices is None else len(self.indices)

    def __getitem__(self, index: int) -> torch.Tensor:
        item = self.dataset[index if self.indices is None else self.indices[index]]
        return images_to_uint8(item[0] if isinstance(item, (tuple, list)) else item)


def _first_item(dataset, name: str):
    try:
        length = len(dataset)
    except TypeError:
        raise ValueError(f"{name} must be a torch Dataset with a length, got {type(dataset).__name__}") from None
    if length < 2:
        raise ValueError(f"{name} must hold at least 2 images, got {length}")
    return dataset[0]


def _check_fake(fake) -> tuple[Dataset, tuple[int, ...]]:
    if torch.is_tensor(fake):
        if fake.dtype != torch.uint8 or fake.ndim != 4 or fake.shape[1] != 3 or fake.shape[0] < 2:
            raise ValueError(
                f"fake must be a uint8 (N, 3, H, W) tensor with N ≥ 2 (or a Dataset of uint8 (3, H, W) tensors), "
                f"got dtype {fake.dtype} and shape {tuple(fake.shape)}"
            )
        return _TensorImages(fake.detach().cpu()), tuple(fake.shape[1:])
    first = _first_item(fake, "fake")
    if not torch.is_tensor(first) or first.dtype != torch.uint8 or first.ndim != 3 or first.shape[0] != 3:
        got = f"dtype {first.dtype}, shape {tuple(first.shape)}" if torch.is_tensor(first) else type(first).__name__
        raise ValueError(f"fake Dataset items must be uint8 (3, H, W) tensors, got {got}")
    return fake, tuple(first.shape)


def _check_real(real) -> tuple[int, ...]:
    first = _first_item(real, "real")
    first = first[0] if isinstance(first, (tuple, list)) else first  # an (image, label) pair
    if not torch.is_tensor(first) or not first.is_floating_point() or first.ndim != 3 or first.shape[0] != 3:
        got = f"dtype {first.dtype}, shape {tuple(first.shape)}" if torch.is_tensor(first) else type(first).__name__
        raise ValueError(
            f"real Dataset items must be float (3, H, W) tensors in [-1, 1] (or (image, label)), got {got}"
        )
    low, high = first.min().item(), first.max().item()
    if low < -1.01 or high > 1.01:
        raise ValueError(f"real Dataset items must lie in [-1, 1]; its first image spans [{low:.3g}, {high:.3g}]")
    return tuple(first.shape)


def _uint8_batches(dataset: Dataset, batch_size: int) -> DataLoader:
    """(B, 3, H, W) uint8 batches of a Dataset of uint8 images, in order, loaded in this process."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)


# ---------------------------------------------------------------------------------------------------------------------
# Feature-extractor weights: a local file, torch hub's cache, or one download that fails fast offline


class WeightsUnavailable(RuntimeError):
    """The weights of a torch-fidelity feature extractor are neither given, nor cached, nor downloadable."""


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    # urllib, under torch.hub.download_url_to_file, blocks without a timeout; offline, a dropped connection would
    # hang. The default timeout bounds every connect and read (not name resolution, which fails at once offline).
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def resolve_weights(extractor: str, path: str | os.PathLike | None, download_timeout: float = 20.0) -> str | None:
    """Path of the weight file of a torch-fidelity feature extractor, downloading it once into torch hub's cache.

    `path` given: it must exist (else ValueError). Otherwise torch hub's checkpoint cache
    (`torch.hub.get_dir()/checkpoints/`, where torch-fidelity and torchvision would save it) is tried, then one
    download with a `download_timeout`-second socket timeout; failing that, `WeightsUnavailable` says what to pass.
    Extractors other than Inception and VGG16 (e.g. one registered by a test) return `path` unchanged.
    """
    if extractor not in _WEIGHTS:
        return None if path is None else str(path)
    url, parameter, label, description = _WEIGHTS[extractor]
    if path is not None:
        if not Path(path).is_file():
            raise ValueError(f"{parameter} must be the path of an existing file ({description}), got {str(path)!r}")
        return str(path)
    filename = url.rsplit("/", 1)[1]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return str(cached)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        hash_prefix = torch.hub.HASH_REGEX.search(filename).group(1)
        with _socket_timeout(download_timeout):
            torch.hub.download_url_to_file(url, str(cached), hash_prefix=hash_prefix, progress=False)
    except Exception as error:  # URLError, timeouts, HTTP and hash errors, a read-only cache: all mean "not here"
        raise WeightsUnavailable(
            f"{label} weights not found at {cached} and could not be downloaded from {url}: "
            f"{type(error).__name__}: {error}; pass {parameter}=PATH ({description})"
        ) from error
    return str(cached)


# ---------------------------------------------------------------------------------------------------------------------
# All metrics of one set of generated images


def prc_reference_indices(num_real: int, num_reference: int) -> list[int]:
    """The training images of the precision/recall reference set: `num_reference` evenly spaced indices
    ⌊i · num_real / num_reference⌋, spread over a dataset even when it is sorted by class, and with no RNG whose
    algorithm could change between versions under an unchanged cache name."""
    return [i * num_real // num_reference for i in range(num_reference)]


def _check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int ≥ {minimum}, got {value!r}")
    return value


def _check_metrics(metrics) -> tuple[str, ...]:
    if isinstance(metrics, str) or not isinstance(metrics, Iterable):
        raise ValueError(f"metrics must be a sequence of names from {METRICS}, got {metrics!r}")
    metrics = tuple(metrics)
    unknown = [name for name in metrics if name not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"metrics must be a non-empty sequence of names from {METRICS}, got {metrics!r}")
    return tuple(name for name in METRICS if name in metrics)  # canonical order, duplicates dropped


def _check_device(device) -> tuple[bool, contextlib.AbstractContextManager]:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if device.type == "cpu":
        return False, contextlib.nullcontext()
    if device.type == "cuda":
        # torch-fidelity moves its extractor with .cuda(), i.e. to the current CUDA device.
        return True, torch.cuda.device(device) if device.index is not None else contextlib.nullcontext()
    raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N' (torch-fidelity supports no other), got {device!r}")


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _pixel_pca(real: Dataset, pca: PixelPCA | None, cache_dir: Path, reference_name: str, batch_size: int) -> PixelPCA:
    """`pca`, or when None the 64-component PixelPCA of `real`, fitted once and cached under cache_dir."""
    if pca is not None:
        return pca
    pca_path = cache_dir / f"{reference_name}-pixelpca-k64.safetensors"
    if pca_path.is_file():
        return PixelPCA.from_state_dict(_load_safetensors(pca_path))
    loader = DataLoader(real, batch_size=batch_size, shuffle=False, num_workers=0)
    pca = PixelPCA.fit(loader, num_components=64)
    save_safetensors(pca_path, pca.state_dict())
    return pca


def _real_pca_features(
    real: Dataset, pca: PixelPCA, batch_size: int, indices: Sequence[int] | None = None
) -> torch.Tensor:
    """(N, k) PixelPCA features of the real images (those at `indices`, or all). They are quantised to uint8 like
    the generated ones, so that real images given as fakes give pca_fd = 0 and precision = recall = 1."""
    images = _Uint8Images(real, indices)
    return torch.cat([pca.features(batch) for batch in _uint8_batches(images, batch_size)])


def _real_pca_statistics(
    real: Dataset, pca: PixelPCA, cache_dir: Path, reference_name: str, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian statistics of the real images' PixelPCA features (pca_fd), cached as safetensors under
    cache_dir, keyed by reference_name and the PCA's fingerprint."""
    statistics_path = cache_dir / f"{reference_name}-pixelpca-{pca.fingerprint()}-stat.safetensors"
    if statistics_path.is_file():
        statistics = _load_safetensors(statistics_path)
        return statistics["mean"], statistics["covariance"]
    mean, covariance = feature_statistics(_real_pca_features(real, pca, batch_size), "real features")
    save_safetensors(statistics_path, {"mean": mean, "covariance": covariance})
    return mean, covariance


def _real_pca_reference_features(
    real: Dataset, pca: PixelPCA, cache_dir: Path, reference_name: str, num_reference: int, batch_size: int
) -> torch.Tensor:
    """The PixelPCA features of the `num_reference` real images of the precision/recall reference set
    (`prc_reference_indices`, as for prc), cached like `_real_pca_statistics`."""
    features_path = cache_dir / f"{reference_name}-prc{num_reference}-pixelpca-{pca.fingerprint()}-features.safetensors"
    if features_path.is_file():
        return _load_safetensors(features_path)["features"]
    indices = prc_reference_indices(len(real), num_reference)
    features = _real_pca_features(real, pca, batch_size, indices)  # (num_reference, k)
    save_safetensors(features_path, {"features": features})
    return features


def compute_metrics(
    fake: torch.Tensor | Dataset,
    real: Dataset,
    *,
    metrics: Sequence[str] = METRICS,
    cache_dir: str | os.PathLike,
    reference_name: str,
    pca: PixelPCA | None = None,
    inception_weights: str | os.PathLike | None = None,
    vgg_weights: str | os.PathLike | None = None,
    batch_size: int = 100,
    device: str | torch.device = "cpu",
    feature_extractor: str | None = None,
    prc_neighborhood: int = 3,
    prc_num_real: int | None = None,
    download_timeout: float = 20.0,
    save_cpu_ram: bool = False,
    verbose: bool = False,
) -> dict:
    """FID, Inception Score, precision/recall/F-score (torch-fidelity), pca_fd and pca_prc of generated images.

    Args:
        fake: generated images, a uint8 (N, 3, H, W) tensor or a Dataset of uint8 (3, H, W) tensors.
        real: the training Dataset: float (3, H, W) items in [−1, 1] (or (image, label) pairs), converted to uint8
            with `images_to_uint8` for torch-fidelity.
        metrics: a subset of METRICS = ("fid", "isc", "prc", "pca_fd", "pca_prc").
        cache_dir: torch-fidelity's cache_root, and where the PixelPCA and its statistics are cached; created.
        reference_name: names the cache entries of `real`; must identify the dataset and resolution (e.g.
            "cifar10-train-32"), since a cache hit is trusted without looking at `real`.
        pca: the PixelPCA of pca_fd and pca_prc; None fits 64 components on `real` once and caches them.
        inception_weights / vgg_weights: local weight files of torch-fidelity's Inception-v3 (FID, IS) and VGG16
            (precision/recall); None looks in torch hub's cache, then downloads once (see `resolve_weights`).
        batch_size: images per forward pass (torch-fidelity's batch_size) and per PCA batch.
        device: "cpu", "cuda" or "cuda:N" for torch-fidelity's feature extractor (the PCA runs on the CPU).
        feature_extractor: a torch-fidelity extractor name to use for all of fid, isc and prc instead of the defaults
            (Inception-v3 for fid and isc, VGG16 for prc); its default feature layer for each metric is used.
        prc_neighborhood: k of the k-NN balls of precision/recall, prc and pca_prc (the paper: 3).
        prc_num_real: how many training images form the precision/recall reference set of prc and pca_prc; None =
            as many as there are generated images (Kynkänniemi et al. compare equal-sized sets; the radii depend on
            the set sizes). The subset is `prc_reference_indices`: fixed, so that its features are cached once.
        download_timeout: socket timeout in seconds of a weight download.
        save_cpu_ram: torch-fidelity's flag: load images in this process instead of 4 DataLoader workers, and
            compute the precision/recall distance matrices in blocks of 10 000 rows. Slower on big sets, faster on
            small ones (no worker start-up).
        verbose: torch-fidelity's progress output on stderr.

    Returns:
        A flat dict: "fid", "isc_mean", "isc_std", "precision", "recall", "f_score", "pca_fd", "pca_precision",
        "pca_recall", "pca_f_score" for the requested metrics that could be computed, "num_fake", "num_real", and
        "unavailable": {metric: reason} for those whose extractor weights could not be had (their keys are then
        absent). pca_prc's three are `knn_precision_recall` and `f_score` (F_1) on PixelPCA features.

    Cache files under cache_dir (torch-fidelity's names are "{cache name}-{extractor}-..."):
        FID: "{reference_name}-{extractor}-stat-fid-{layer}.pt" (μ, Σ of the full real set; with it present the real
        set is not read again) and "{reference_name}-{extractor}-features-{layer}.pt" (its features, written once).
        prc: "{reference_name}-prc{n}-{extractor}-features-{layer}.pt" (features of the n-image reference subset).
        pca_fd: "{reference_name}-pixelpca-k64.safetensors" (the PCA, when not given),
        "{reference_name}-pixelpca-{fingerprint}-stat.safetensors" (μ, Σ of the full real set's features).
        pca_prc: the same PCA, "{reference_name}-prc{n}-pixelpca-{fingerprint}-features.safetensors".
    """
    # 1. Validate everything before any long computation.
    metrics = _check_metrics(metrics)
    fake_dataset, fake_shape = _check_fake(fake)
    real_shape = _check_real(real)
    if fake_shape != real_shape:
        raise ValueError(f"fake and real images must have the same shape, got {fake_shape} and {real_shape}")
    if (
        not isinstance(reference_name, str)
        or not reference_name.strip()
        or "/" in reference_name
        or os.sep in reference_name
    ):
        raise ValueError(f"reference_name must be a non-empty str without path separators, got {reference_name!r}")
    if pca is not None and not isinstance(pca, PixelPCA):
        raise ValueError(f"pca must be a PixelPCA or None, got {type(pca).__name__}")
    if pca is not None and pca.image_shape != real_shape:
        raise ValueError(f"pca was fitted on images of shape {pca.image_shape}, but the images have shape {real_shape}")
    if feature_extractor is not None and not isinstance(feature_extractor, str):
        raise ValueError(
            f"feature_extractor must be None or a registered torch-fidelity name, got {feature_extractor!r}"
        )
    batch_size = _check_positive_int(batch_size, "batch_size")
    prc_neighborhood = _check_positive_int(prc_neighborhood, "prc_neighborhood")
    cuda, device_context = _check_device(device)
    num_fake, num_real = len(fake_dataset), len(real)
    if "isc" in metrics and num_fake < 10:
        raise ValueError(
            f"the Inception Score averages over 10 splits of fake, which must hold ≥ 10 images, got {num_fake}"
        )
    if "prc" in metrics or "pca_prc" in metrics:
        if prc_num_real is None:
            prc_num_real = min(num_fake, num_real)
        _check_positive_int(prc_num_real, "prc_num_real", prc_neighborhood + 1)
        if prc_num_real > num_real:
            raise ValueError(f"prc_num_real must be at most len(real) = {num_real}, got {prc_num_real}")
        if num_fake <= prc_neighborhood:
            raise ValueError(
                f"precision/recall with prc_neighborhood={prc_neighborhood} needs more fake images, got {num_fake}"
            )
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)

    results: dict = {}
    unavailable: dict[str, str] = {}

    # 2. torch-fidelity metrics, one call each: FID alone takes torch-fidelity's shortcut that reads the cached real
    #    statistics without touching the real set; IS needs no real images; precision/recall its own reference subset.
    fidelity_metrics = [name for name in ("fid", "isc", "prc") if name in metrics]
    weights: dict[str, str | None | WeightsUnavailable] = {}  # per extractor, resolved once
    for name in fidelity_metrics:
        extractor = feature_extractor or DEFAULT_FEATURE_EXTRACTORS[name]
        if extractor not in weights:
            given = {"inception-v3-compat": inception_weights, "vgg16": vgg_weights}.get(extractor)
            try:
                weights[extractor] = resolve_weights(extractor, given, download_timeout)
            except WeightsUnavailable as error:
                weights[extractor] = error
        if isinstance(weights[extractor], WeightsUnavailable):
            unavailable[name] = str(weights[extractor])
            continue
        import torch_fidelity  # deferred: it imports torchvision and takes seconds

        arguments = dict(
            input1=fake_dataset,
            cuda=cuda,
            batch_size=batch_size,
            feature_extractor=extractor,
            feature_extractor_weights_path=weights[extractor],
            cache_root=str(cache_dir),
            save_cpu_ram=save_cpu_ram,
            verbose=verbose,
        )
        if name == "fid":
            arguments.update(fid=True, input2=_Uint8Images(real), input2_cache_name=reference_name)
        elif name == "isc":
            arguments.update(isc=True)
        else:
            subset = prc_reference_indices(num_real, prc_num_real)
            arguments.update(
                prc=True,
                input2=_Uint8Images(real, subset),
                input2_cache_name=f"{reference_name}-prc{prc_num_real}",
                prc_neighborhood=prc_neighborhood,
            )
        with device_context:
            output = torch_fidelity.calculate_metrics(**arguments)
        results.update({ours: float(output[theirs]) for theirs, ours in _FIDELITY_KEYS.items() if theirs in output})
        if name == "prc":
            results["f_score"] = f_score(results["precision"], results["recall"])

    # 3. The offline metrics, on PixelPCA features: pca_fd, the Fréchet distance to the full real set's cached
    #    statistics; pca_prc, k-NN precision/recall against the same reference subset as prc.
    if "pca_fd" in metrics or "pca_prc" in metrics:
        pca = _pixel_pca(real, pca, cache_dir, reference_name, batch_size)
        fake_features = torch.cat([pca.features(batch) for batch in _uint8_batches(fake_dataset, batch_size)])
    if "pca_fd" in metrics:
        real_mean, real_covariance = _real_pca_statistics(real, pca, cache_dir, reference_name, batch_size)
        fake_mean, fake_covariance = feature_statistics(fake_features, "fake features")
        results["pca_fd"] = float(frechet_distance(real_mean, real_covariance, fake_mean, fake_covariance))
    if "pca_prc" in metrics:
        real_features = _real_pca_reference_features(real, pca, cache_dir, reference_name, prc_num_real, batch_size)
        precision, recall = knn_precision_recall(real_features, fake_features, k=prc_neighborhood)
        results.update(pca_precision=precision, pca_recall=recall, pca_f_score=f_score(precision, recall))

    order = ("fid", "isc_mean", "isc_std", "precision", "recall", "f_score")  # torch-fidelity's
    order += ("pca_fd", "pca_precision", "pca_recall", "pca_f_score")  # the offline ones
    return {
        **{key: results[key] for key in order if key in results},
        "num_fake": num_fake,
        "num_real": num_real,
        "unavailable": unavailable,
    }
