"""Evaluation metrics: F-score, PixelPCA, pca_fd and pca_prc against brute-force and closed-form references (and
pca_prc's precision/recall against torch-fidelity's own code on the same features), and
compute_metrics end to end through torch-fidelity with a small registered feature extractor (the real Inception and
VGG16 weights cannot be downloaded in CI)."""

import math
import socket
import time
import urllib.error

import pytest
import torch
import torch.nn.functional as F
import torch_fidelity
from safetensors.torch import load_file, save_file
from torch.testing import assert_close
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

import sdmlib.metrics
from sdmlib.metrics import (
    METRICS,
    PixelPCA,
    WeightsUnavailable,
    compute_metrics,
    f_score,
    images_to_uint8,
    knn_precision_recall,
    pca_frechet_distance,
    prc_reference_indices,
    resolve_weights,
)

F64 = torch.float64
EXTRACTOR = "sdm-test-pooled-pixels"


class PooledPixels(FeatureExtractorBase):
    """Deterministic stand-in for Inception/VGG16: "pooled" = 2×2 average-pooled pixels (12 numbers), for FID and
    precision/recall; "logits" = a fixed random linear map of them to 10 classes, for the Inception Score."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        classifier = torch.randn(12, 10, generator=torch.Generator().manual_seed(0))
        self.register_buffer("classifier", 3 * classifier)

    def forward(self, x):
        assert x.dtype == torch.uint8 and x.ndim == 4 and x.shape[1] == 3
        pooled = F.adaptive_avg_pool2d(x.float() / 127.5 - 1, 2).flatten(1)  # (B, 12)
        features = {"pooled": pooled, "logits": pooled @ self.classifier}
        return tuple(features[name] for name in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return "pooled", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "pooled", "kid": "pooled", "prc": "pooled"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 4, 4, dtype=torch.uint8)


if EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    torch_fidelity.register_feature_extractor(EXTRACTOR, PooledPixels)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Every computation here is small: one thread is about as fast as two on an idle machine, and several times
    faster on a busy one, where OpenMP threads wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Images(Dataset):
    """Float images in [−1, 1], as the training Dataset yields them."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index]


def structured_images(num_images, seed, size=8):
    """Each image: a smooth gradient times a random amplitude, plus a random colour and pixel noise, in [−1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(-1, 1, size)
    gradient = (ramp[:, None] + ramp[None, :]) / 2  # (H, W)
    amplitude = 0.4 * torch.rand(num_images, 1, 1, 1, generator=generator)
    colour = 0.3 * torch.randn(num_images, 3, 1, 1, generator=generator)
    noise = 0.1 * torch.randn(num_images, 3, size, size, generator=generator)
    return (amplitude * gradient + colour + noise).clamp(-1, 1)


# ---------------------------------------------------------------------------------------------------------------------
# F-score


def test_f_score_is_the_weighted_harmonic_mean():
    for precision, recall, beta in [(0.5, 1.0, 1.0), (0.7, 0.2, 1.0), (0.7, 0.2, 2.0), (0.9, 0.6, 0.5)]:
        harmonic = 1 / ((1 / (1 + beta**2)) * (1 / precision + beta**2 / recall))
        assert math.isclose(f_score(precision, recall, beta), harmonic, rel_tol=1e-12)
    assert f_score(1.0, 1.0) == 1.0 and f_score(0.0, 0.0) == 0.0 and f_score(0.0, 0.8) == 0.0
    with pytest.raises(ValueError, match=r"precision must be a number in \[0, 1\], got 1.5"):
        f_score(1.5, 0.5)
    with pytest.raises(ValueError, match="beta must be a positive"):
        f_score(0.5, 0.5, beta=0)


# ---------------------------------------------------------------------------------------------------------------------
# PixelPCA


def test_pixel_pca_matches_brute_force_eigendecomposition():
    images = structured_images(300, seed=1, size=4)  # D = 48
    pca = PixelPCA.fit(images.split(64), num_components=5)  # streamed in 5 uneven batches
    flat = images.flatten(1).to(F64)
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(flat.T, correction=0))
    expected_components = eigenvectors.flip(1)[:, :5]
    expected_components = expected_components * torch.sign(expected_components.sum(0))  # the sign convention
    assert_close(pca.eigenvalues, eigenvalues.flip(0)[:5])
    assert_close(pca.components, expected_components)
    assert_close(pca.mean, flat.mean(0))
    assert_close(pca.features(images), (flat - flat.mean(0)) @ expected_components)
    assert pca.image_shape == (3, 4, 4) and pca.num_samples == 300


def test_pixel_pca_recovers_known_components():
    """Data x = μ + Σᵢ σᵢ zᵢ uᵢ + 0.01 ε with orthonormal uᵢ: the eigenvalues are σᵢ² + 10⁻⁴, within 5 standard
    errors λ√(2/N), and the components align with uᵢ."""
    generator = torch.Generator().manual_seed(2)
    dim, num_images = 48, 20_000
    axes = torch.linalg.qr(torch.randn(dim, 4, dtype=F64, generator=generator)).Q  # (D, 4)
    scales = torch.tensor([0.3, 0.2, 0.1, 0.05], dtype=F64)
    latent = torch.randn(num_images, 4, dtype=F64, generator=generator)
    flat = 0.1 + latent * scales @ axes.T + 0.01 * torch.randn(num_images, dim, dtype=F64, generator=generator)
    pca = PixelPCA.fit(flat.view(num_images, 3, 4, 4).split(1000), num_components=4)
    expected = scales**2 + 1e-4
    assert ((pca.eigenvalues - expected).abs() / (expected * math.sqrt(2 / num_images))).max() < 5
    alignment = (pca.components * axes).sum(0).abs()  # |cos| between each component and its true axis
    assert alignment.min() > 0.999, alignment


def test_pixel_pca_sketch_for_large_images():
    """Above max_dense_dim the fit keeps only a Nyström sketch: exact when it has D columns, and close to the dense
    fit on data with a decaying spectrum when it has few."""
    generator = torch.Generator().manual_seed(3)
    dim, num_images = 3 * 8 * 8, 1000  # D = 192
    axes = torch.linalg.qr(torch.randn(dim, 10, dtype=F64, generator=generator)).Q
    scales = 0.3 * 0.7 ** torch.arange(10, dtype=F64)
    latent = torch.randn(num_images, 10, dtype=F64, generator=generator) * scales
    flat = 0.2 + latent @ axes.T + 0.005 * torch.randn(num_images, dim, dtype=F64, generator=generator)
    batches = flat.view(num_images, 3, 8, 8).split(300)
    dense = PixelPCA.fit(batches, num_components=4)
    full_sketch = PixelPCA.fit(batches, num_components=4, max_dense_dim=100, sketch_size=dim)
    assert_close(full_sketch.eigenvalues, dense.eigenvalues, rtol=1e-9, atol=1e-12)
    assert_close(full_sketch.components, dense.components, rtol=0, atol=1e-6)
    sketch = PixelPCA.fit(batches, num_components=4, max_dense_dim=100)  # default 16k = 64 columns
    assert_close(sketch.eigenvalues, dense.eigenvalues, rtol=1e-2, atol=0)
    assert (sketch.components * dense.components).sum(0).min() > 0.999


def test_pixel_pca_state_dict_round_trip_through_safetensors(tmp_path):
    images = structured_images(100, seed=4, size=4)
    pca = PixelPCA.fit([images], num_components=3)
    save_file(pca.state_dict(), tmp_path / "pca.safetensors")
    restored = PixelPCA.from_state_dict(load_file(tmp_path / "pca.safetensors"))
    assert_close(restored.features(images), pca.features(images), rtol=0, atol=0)
    assert restored.image_shape == pca.image_shape and restored.num_samples == 100
    assert restored.fingerprint() == pca.fingerprint()


def test_pixel_pca_features_of_uint8_images_are_those_of_their_values():
    images = structured_images(50, seed=5, size=4)
    pca = PixelPCA.fit([images], num_components=3)
    quantised = images_to_uint8(images)
    assert_close(pca.features(quantised), pca.features(quantised.to(F64) / 127.5 - 1), rtol=0, atol=1e-12)
    # Quantisation moves each pixel by at most half a level, 1/255; k unit components move features by ≤ √D/255.
    assert (pca.features(quantised) - pca.features(images)).abs().max() < math.sqrt(48) / 255


def test_pixel_pca_rejects_bad_input():
    images = structured_images(10, seed=6, size=4)
    with pytest.raises(ValueError, match=r"num_components must be at most D = 3·H·W = 48 .* got 49"):
        PixelPCA.fit([images], num_components=49)
    with pytest.raises(ValueError, match="num_components must be a positive int, got 0"):
        PixelPCA.fit([images], num_components=0)
    with pytest.raises(ValueError, match=r"must be a \(N, 3, H, W\) tensor, got shape \(10, 48\)"):
        PixelPCA.fit([images.flatten(1)], num_components=2)
    with pytest.raises(ValueError, match="at least 2 images"):
        PixelPCA.fit([images[:1]], num_components=2)
    pca = PixelPCA.fit([images], num_components=2)
    with pytest.raises(ValueError, match=r"images of shape \(3, 4, 4\) .* got \(3, 8, 8\)"):
        pca.features(structured_images(2, seed=0))
    with pytest.raises(ValueError, match="got dtype torch.int64"):
        pca.features(images.long())


# ---------------------------------------------------------------------------------------------------------------------
# pca_frechet_distance


def test_pca_frechet_distance_matches_the_closed_form_on_gaussians():
    """Features from N(μ_a, C_a), N(μ_b, C_b) with C_a, C_b sharing eigenvectors, where the Fréchet distance is
    ‖μ_a − μ_b‖² + Σᵢ (√aᵢ − √bᵢ)². Over R = 10 replicates of N = 20 000 the mean estimate lies within 4 standard
    errors of it (the plug-in bias, O(k/N) ≈ 10⁻⁴, is far below one standard error, ≈ 2·10⁻³)."""
    generator = torch.Generator().manual_seed(7)
    rotation = torch.linalg.qr(torch.randn(3, 3, dtype=F64, generator=generator)).Q
    a, b = torch.tensor([1.0, 0.5, 0.1], dtype=F64), torch.tensor([0.6, 0.5, 0.3], dtype=F64)
    mean_a, mean_b = torch.zeros(3, dtype=F64), torch.tensor([0.3, 0.0, -0.2], dtype=F64)
    closed_form = (mean_a - mean_b).square().sum() + (a.sqrt() - b.sqrt()).square().sum()
    num_samples, replicates = 20_000, 10
    estimates = torch.tensor(
        [
            pca_frechet_distance(
                mean_a + torch.randn(num_samples, 3, dtype=F64, generator=generator) * a.sqrt() @ rotation.T,
                mean_b + torch.randn(num_samples, 3, dtype=F64, generator=generator) * b.sqrt() @ rotation.T,
            )
            for _ in range(replicates)
        ]
    )
    standard_error = estimates.std() / math.sqrt(replicates)
    assert (estimates.mean() - closed_form).abs() < 4 * standard_error, (estimates, closed_form)


def test_pca_frechet_distance_identity_symmetry_and_errors():
    features = torch.randn(500, 4, dtype=F64, generator=torch.Generator().manual_seed(8))
    assert abs(pca_frechet_distance(features, features)) < 1e-10
    shifted = features * 1.5 + 0.2
    assert math.isclose(pca_frechet_distance(features, shifted), pca_frechet_distance(shifted, features), rel_tol=1e-9)
    with pytest.raises(ValueError, match="same number of columns k, got 4 and 3"):
        pca_frechet_distance(features, features[:, :3])
    with pytest.raises(ValueError, match=r"fake_features must be an \(N, k\) tensor with N ≥ 2"):
        pca_frechet_distance(features, features[:1])


# ---------------------------------------------------------------------------------------------------------------------
# knn_precision_recall


def dense_precision_recall(real_features, fake_features, k):
    """Reference for Kynkänniemi et al.'s precision and recall: full distance matrices from coordinate differences,
    each point's own entry dropped, rows sorted."""

    def radii(points):  # (N, d) → (N,)
        distances = (points[:, None] - points[None]).square().sum(-1).sqrt()  # (N, N)
        others = distances[~torch.eye(len(points), dtype=torch.bool)].view(len(points), -1)  # (N, N − 1)
        return others.sort(dim=1).values[:, k - 1]

    cross = (fake_features[:, None] - real_features[None]).square().sum(-1).sqrt()  # (N_f, N_r)
    precision = (cross <= radii(real_features)).any(dim=1).sum().item() / len(fake_features)
    recall = (cross.T <= radii(fake_features)).any(dim=1).sum().item() / len(real_features)
    return precision, recall


def random_feature_sets(seed, num_real=50, num_fake=37, dim=5):
    generator = torch.Generator().manual_seed(seed)
    real = torch.randn(num_real, dim, dtype=F64, generator=generator)
    fake = 1.3 * torch.randn(num_fake, dim, dtype=F64, generator=generator) + 0.4
    return real, fake


@pytest.mark.parametrize("block_size", [1, 7, 37, 50, 1024])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_knn_precision_recall_matches_dense_reference(k, block_size):
    real, fake = random_feature_sets(seed=20 + k)
    expected = dense_precision_recall(real, fake, k)
    assert knn_precision_recall(real, fake, k=k, block_size=block_size) == expected
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1  # neither trivial end
    # float32 features give the same fractions: they are cast to float64 before any distance.
    assert knn_precision_recall(real.float(), fake.float(), k=k, block_size=block_size) == dense_precision_recall(
        real.float().to(F64), fake.float().to(F64), k
    )


@pytest.mark.parametrize("block_size", [1, 16, 1024])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_knn_precision_recall_with_duplicates_and_ties(k, block_size):
    """Integer lattice points: many duplicates (neighbours at distance 0) and many samples exactly on a ball's edge,
    where ≤ decides; the distances are exact in float64, so the counts must agree exactly, also with the loop
    reference used for torch-fidelity's prc below."""
    generator = torch.Generator().manual_seed(30 + k)
    real = torch.randint(0, 4, (60, 2), generator=generator).to(F64)
    fake = torch.randint(1, 6, (45, 2), generator=generator).to(F64)
    expected = dense_precision_recall(real, fake, k)
    assert knn_precision_recall(real, fake, k=k, block_size=block_size) == expected
    loop_precision, loop_recall = brute_force_precision_recall(fake, real, k)
    assert expected == (pytest.approx(loop_precision, abs=1e-12), pytest.approx(loop_recall, abs=1e-12))
    assert 0 < expected[0] < 1 and 0 < expected[1] <= 1


def test_knn_precision_recall_counts_the_edge_of_a_ball_as_inside():
    """Real points 0, 1, 2, 3 on a line, k = 1: every ball has radius 1. A fake point at 4 lies on the edge of 3's
    ball (inside, by ≤); one at 4.5 lies outside all. Fake points 0, 0.5 and 4, k = 1: radii 0.5, 0.5, 3.5."""
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]], dtype=F64)
    assert knn_precision_recall(real, torch.tensor([[4.0], [4.5]], dtype=F64), k=1)[0] == 0.5
    fake = torch.tensor([[0.0], [0.5], [4.0]], dtype=F64)
    # Real 0 and 1 lie in 0's and 0.5's balls; 1, 2 and 3 in 4's ball of radius 3.5; all fakes in real balls.
    assert knn_precision_recall(real, fake, k=1) == (1.0, 1.0)
    assert knn_precision_recall(real, fake[:2], k=1) == (1.0, 0.5)  # radii 0.5: real 0 and 1 only


def test_knn_precision_recall_geometric_cases():
    real, _ = random_feature_sets(seed=40, num_real=100)
    assert knn_precision_recall(real, real.clone()) == (1.0, 1.0)  # identical sets
    assert knn_precision_recall(real, real + 100.0) == (0.0, 0.0)  # fake far away
    # Fake collapsed onto 5 real points, 20 copies each: all inside the real balls, and, with k = 3 < 19 copies,
    # every fake ball has radius 0, so only the 5 real points themselves are covered.
    collapsed = real[:5].repeat(20, 1)
    assert knn_precision_recall(real, collapsed, k=3) == (1.0, 0.05)
    # Fake spread over the same distribution but half the size of the cloud: high precision, lower recall.
    generator = torch.Generator().manual_seed(41)
    narrow = 0.3 * torch.randn(100, 5, dtype=F64, generator=generator)
    precision, recall = knn_precision_recall(real, narrow, k=3)
    assert precision > 0.9 and recall < 0.5 * precision


def test_knn_precision_recall_equals_torch_fidelity():
    """torch-fidelity's own prc code on the same feature tensors (features_1 = generated, features_2 = real), both
    its algorithms: full distance matrices, and the blocks of save_cpu_ram. It averages in float32, to within 1e-7
    here, far below 1/N."""
    from torch_fidelity.metric_prc import calculate_precision_recall_full, calculate_precision_recall_part

    real, fake = random_feature_sets(seed=50, num_real=120, num_fake=90, dim=8)
    lattice_real = torch.randint(0, 4, (60, 2), generator=torch.Generator().manual_seed(51)).to(F64)
    lattice_fake = torch.randint(1, 6, (45, 2), generator=torch.Generator().manual_seed(52)).to(F64)
    for real_features, fake_features in [(real, fake), (lattice_real, lattice_fake)]:
        for k in (1, 3, 5):
            ours = knn_precision_recall(real_features, fake_features, k=k, block_size=16)
            full = calculate_precision_recall_full(fake_features, real_features, neighborhood=k, batch_size=10000)
            blocked = calculate_precision_recall_part(fake_features, real_features, neighborhood=k, batch_size=16)
            assert ours == (pytest.approx(full[0], abs=1e-7), pytest.approx(full[1], abs=1e-7))
            assert ours == (pytest.approx(blocked[0], abs=1e-7), pytest.approx(blocked[1], abs=1e-7))


def test_knn_precision_recall_rejects_bad_input():
    real, fake = random_feature_sets(seed=60)
    cases = [
        ({"real_features": real[:, 0]}, r"real_features must be an \(N, d\) tensor with d ≥ 1, got shape \(50,\)"),
        ({"fake_features": fake.tolist()}, r"fake_features must be an \(N, d\) tensor .* got list"),
        ({"fake_features": fake[:, :3]}, "same feature dimension d, got 5 and 3"),
        ({"real_features": real[:3]}, "real_features must hold more than k = 3 points .* got 3"),
        ({"fake_features": fake[:2], "k": 2}, "fake_features must hold more than k = 2 points .* got 2"),
        ({"real_features": torch.cat([real, torch.full((1, 5), math.nan)])}, "real_features contains non-finite"),
        ({"k": 0}, "k must be an int ≥ 1, got 0"),
        ({"k": 2.5}, "k must be an int ≥ 1, got 2.5"),
        ({"block_size": 0}, "block_size must be an int ≥ 1, got 0"),
    ]
    for overrides, message in cases:
        arguments = {"real_features": real, "fake_features": fake}
        arguments.update(overrides)
        with pytest.raises(ValueError, match=message):
            knn_precision_recall(**arguments)


# ---------------------------------------------------------------------------------------------------------------------
# compute_metrics end to end, through torch-fidelity with the registered extractor


def brute_force_precision_recall(fake_features, real_features, k):
    """Kynkänniemi et al.: a sample is covered when it lies within some other set's sample's distance to that
    sample's k-th nearest neighbour (itself excluded), by explicit loops over pairs."""

    def radii(points):
        return [sorted(torch.dist(p, q).item() for q in points)[k] for p in points]  # index 0 is the point itself

    def coverage(points, centres):
        centre_radii = radii(centres)
        return sum(any(torch.dist(p, c).item() <= r for c, r in zip(centres, centre_radii)) for p in points) / len(
            points
        )

    return coverage(fake_features, real_features), coverage(real_features, fake_features)


def extractor_features(images_uint8, layer="pooled"):
    return PooledPixels(EXTRACTOR, [layer])(images_uint8)[0]


SMALL = dict(save_cpu_ram=True)  # no DataLoader worker processes: their start-up would dominate on 100 images


@pytest.fixture(scope="module")
def real_images():
    return structured_images(100, seed=10)  # (100, 3, 8, 8) float in [−1, 1]


def test_compute_metrics_on_its_own_training_set_gives_zero_distances(real_images, tmp_path):
    fake = images_to_uint8(real_images)
    out = compute_metrics(
        fake, Images(real_images), cache_dir=tmp_path, reference_name="toy", feature_extractor=EXTRACTOR, **SMALL
    )
    assert out["unavailable"] == {} and out["num_fake"] == out["num_real"] == 100
    assert abs(out["fid"]) < 1e-6 and abs(out["pca_fd"]) < 1e-9
    assert out["precision"] == out["recall"] == out["f_score"] == 1.0
    assert out["pca_precision"] == out["pca_recall"] == out["pca_f_score"] == 1.0
    assert 1.0 <= out["isc_mean"] <= 10.0 and out["isc_std"] >= 0  # an IS lies between 1 and the class count
    metric_keys = ["fid", "isc_mean", "isc_std", "precision", "recall", "f_score", "pca_fd"]
    metric_keys += ["pca_precision", "pca_recall", "pca_f_score"]
    assert list(out) == [*metric_keys, "num_fake", "num_real", "unavailable"]
    # torch-fidelity's cache of the real statistics, and ours.
    assert (tmp_path / f"toy-{EXTRACTOR}-stat-fid-pooled.pt").is_file()
    assert (tmp_path / f"toy-prc100-{EXTRACTOR}-features-pooled.pt").is_file()
    pca = PixelPCA.from_state_dict(load_file(tmp_path / "toy-pixelpca-k64.safetensors"))
    assert (tmp_path / f"toy-pixelpca-{pca.fingerprint()}-stat.safetensors").is_file()
    assert (tmp_path / f"toy-prc100-pixelpca-{pca.fingerprint()}-features.safetensors").is_file()


def test_compute_metrics_distances_grow_with_a_shift(real_images, tmp_path):
    real = Images(real_images)
    results = [
        compute_metrics(
            images_to_uint8(real_images + shift),
            real,
            metrics=("fid", "prc", "pca_fd"),
            cache_dir=tmp_path,
            reference_name="toy",
            feature_extractor=EXTRACTOR,
            **SMALL,
        )
        for shift in (0.05, 0.2, 0.5)
    ]
    fids, pca_fds = [r["fid"] for r in results], [r["pca_fd"] for r in results]
    assert 0 < fids[0] < fids[1] < fids[2] and 0 < pca_fds[0] < pca_fds[1] < pca_fds[2]
    for r in results:
        assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1
        assert math.isclose(r["f_score"], f_score(r["precision"], r["recall"]), rel_tol=1e-12)
    assert results[2]["precision"] < results[0]["precision"]
    # pca_fd by hand: the Fréchet distance of the cached PCA's features.
    pca = PixelPCA.from_state_dict(load_file(tmp_path / "toy-pixelpca-k64.safetensors"))
    by_hand = pca_frechet_distance(
        pca.features(images_to_uint8(real_images)), pca.features(images_to_uint8(real_images + 0.2))
    )
    assert math.isclose(pca_fds[1], by_hand, rel_tol=1e-9)


@pytest.mark.filterwarnings("ignore:This DataLoader will create 4 worker processes")
@pytest.mark.parametrize("save_cpu_ram", [False, True], ids=["full", "blocked"])
def test_compute_metrics_precision_recall_against_brute_force(real_images, tmp_path, save_cpu_ram):
    """60 generated images (half copies of training images, half shifted) against the 60-image reference subset,
    with both of torch-fidelity's algorithms (full distance matrices, and blocks with save_cpu_ram)."""
    fake_float = torch.cat([real_images[:30], real_images[30:60] + 0.3])
    fake = images_to_uint8(fake_float)
    out = compute_metrics(
        fake,
        Images(real_images),
        metrics=("prc",),
        cache_dir=tmp_path,
        reference_name="toy",
        feature_extractor=EXTRACTOR,
        prc_neighborhood=3,
        save_cpu_ram=save_cpu_ram,
    )
    subset = [i * 100 // 60 for i in range(60)]  # evenly spaced: 0, 1, 3, 5, 6, 8, ...
    assert prc_reference_indices(100, 60) == subset
    precision, recall = brute_force_precision_recall(
        extractor_features(fake), extractor_features(images_to_uint8(real_images[subset])), k=3
    )
    assert out["precision"] == pytest.approx(precision, abs=1e-6)  # torch-fidelity averages in float32
    assert out["recall"] == pytest.approx(recall, abs=1e-6)
    assert 0 < out["precision"] < 1 and 0 < out["recall"] < 1


@pytest.mark.parametrize("num_fake", [60, 100])
def test_compute_metrics_pca_prc_is_knn_precision_recall_of_pixel_pca_features(real_images, tmp_path, num_fake):
    """pca_prc end to end with a given PixelPCA: half copies of training images, half shifted, against the reference
    subset of as many training images (`prc_reference_indices`); the same numbers from knn_precision_recall by
    hand, and from the cached real features on a second call."""
    pca = PixelPCA.fit([real_images], num_components=8)
    half = num_fake // 2
    fake = images_to_uint8(torch.cat([real_images[:half], real_images[half:num_fake] + 0.3]))
    kwargs = {"metrics": ["pca_prc"], "cache_dir": tmp_path, "reference_name": "toy", "pca": pca, "batch_size": 32}
    out = compute_metrics(fake, Images(real_images), **kwargs)
    assert list(out) == ["pca_precision", "pca_recall", "pca_f_score", "num_fake", "num_real", "unavailable"]
    assert 0 < out["pca_precision"] < 1 and 0 < out["pca_recall"] < 1 and out["unavailable"] == {}
    assert out["pca_f_score"] == f_score(out["pca_precision"], out["pca_recall"])
    subset = prc_reference_indices(100, num_fake)
    by_hand = knn_precision_recall(pca.features(images_to_uint8(real_images[subset])), pca.features(fake), k=3)
    assert (out["pca_precision"], out["pca_recall"]) == by_hand
    cached = tmp_path / f"toy-prc{num_fake}-pixelpca-{pca.fingerprint()}-features.safetensors"
    assert cached.is_file() and not (tmp_path / "toy-pixelpca-k64.safetensors").exists()  # pca given: not fitted
    assert compute_metrics(fake, Images(structured_images(100, seed=13)), **kwargs) == out  # a cache hit is trusted
    # prc_num_real and prc_neighborhood apply to pca_prc as to prc.
    other = compute_metrics(fake, Images(real_images), prc_num_real=40, prc_neighborhood=5, **kwargs)
    real_features = pca.features(images_to_uint8(real_images[prc_reference_indices(100, 40)]))
    assert (other["pca_precision"], other["pca_recall"]) == knn_precision_recall(real_features, pca.features(fake), 5)


def test_compute_metrics_reads_real_statistics_from_the_cache(real_images, tmp_path):
    """A cache hit is trusted: with the same reference_name, a different `real` gives the same FID and pca_fd."""
    fake = images_to_uint8(real_images + 0.1)
    kwargs = dict(metrics=("fid", "pca_fd"), cache_dir=tmp_path, feature_extractor=EXTRACTOR, **SMALL)
    first = compute_metrics(fake, Images(real_images), reference_name="toy", **kwargs)
    other_real = Images(structured_images(100, seed=11))
    again = compute_metrics(fake, other_real, reference_name="toy", **kwargs)
    fresh = compute_metrics(fake, other_real, reference_name="other", **kwargs)
    assert again["fid"] == first["fid"] and again["pca_fd"] == first["pca_fd"]
    assert fresh["fid"] != first["fid"]


def test_compute_metrics_accepts_a_dataset_of_fakes_and_labelled_real_items(real_images, tmp_path):
    class Labelled(Images):
        def __getitem__(self, index):
            return self.images[index], 0

    fake = images_to_uint8(real_images + 0.1)
    kwargs = dict(metrics=("fid", "pca_fd"), reference_name="toy", feature_extractor=EXTRACTOR, **SMALL)
    from_tensor = compute_metrics(fake, Images(real_images), cache_dir=tmp_path / "a", **kwargs)
    from_datasets = compute_metrics(Images(fake), Labelled(real_images), cache_dir=tmp_path / "b", **kwargs)
    assert from_datasets["fid"] == pytest.approx(from_tensor["fid"], rel=1e-9)
    assert from_datasets["pca_fd"] == pytest.approx(from_tensor["pca_fd"], rel=1e-9)


def test_compute_metrics_without_weights_offline_reports_unavailable(real_images, tmp_path, monkeypatch):
    """No weight files and no network: fid, isc and prc are reported unavailable with what to pass, fast, and
    pca_fd and pca_prc are still computed."""

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))  # an empty hub cache
    start = time.perf_counter()
    out = compute_metrics(
        images_to_uint8(real_images + 0.1), Images(real_images), cache_dir=tmp_path, reference_name="toy"
    )
    assert time.perf_counter() - start < 10
    assert set(out["unavailable"]) == {"fid", "isc", "prc"}
    assert {"fid", "isc_mean", "precision"}.isdisjoint(out) and out["pca_fd"] > 0
    assert 0 < out["pca_precision"] <= 1 and 0 < out["pca_recall"] <= 1
    message = out["unavailable"]["fid"]
    assert message.startswith(f"Inception weights not found at {tmp_path / 'hub' / 'checkpoints'}")
    assert "could not be downloaded" in message and "Name or service not known" in message
    assert "pass inception_weights=PATH" in message and "pt_inception-2015-12-05" in message
    assert out["unavailable"]["isc"] == message
    assert (
        "VGG16 weights not found" in out["unavailable"]["prc"] and "pass vgg_weights=PATH" in out["unavailable"]["prc"]
    )


def test_weight_download_from_a_silent_server_times_out(tmp_path, monkeypatch):
    """A network that accepts the connection and then says nothing must not hang the evaluation: the download
    gives up after download_timeout seconds."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    url = f"http://127.0.0.1:{server.getsockname()[1]}/weights-inception-2015-12-05-6726825d.pth"
    _, *rest = sdmlib.metrics._WEIGHTS["inception-v3-compat"]
    monkeypatch.setitem(sdmlib.metrics._WEIGHTS, "inception-v3-compat", (url, *rest))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    start = time.perf_counter()
    try:
        with pytest.raises(WeightsUnavailable, match="TimeoutError: timed out; pass inception_weights=PATH"):
            resolve_weights("inception-v3-compat", None, download_timeout=0.5)
    finally:
        server.close()
    assert time.perf_counter() - start < 5


def assert_arguments(call, **expected):
    assert {key: call.get(key) for key in expected} == expected


def test_compute_metrics_passes_weights_and_cache_names_to_torch_fidelity(real_images, tmp_path, monkeypatch):
    """With weight files given, one torch-fidelity call per metric: Inception for fid and isc, VGG16 for prc."""
    calls = []

    def fake_calculate_metrics(**kwargs):
        calls.append(kwargs)
        return {
            "frechet_inception_distance": 1.0,
            "inception_score_mean": 2.0,
            "inception_score_std": 0.1,
            "precision": 0.5,
            "recall": 0.25,
            "f_score": 0.0,
        }

    monkeypatch.setattr(torch_fidelity, "calculate_metrics", fake_calculate_metrics)
    inception, vgg = tmp_path / "inception.pth", tmp_path / "vgg16.pth"
    inception.touch()
    vgg.touch()
    out = compute_metrics(
        images_to_uint8(real_images[:40]),
        Images(real_images),
        metrics=("fid", "isc", "prc"),
        cache_dir=tmp_path,
        reference_name="toy",
        inception_weights=inception,
        vgg_weights=vgg,
        batch_size=25,
    )
    fid, isc, prc = calls
    common = dict(cuda=False, batch_size=25, cache_root=str(tmp_path), save_cpu_ram=False, verbose=False)
    inception_arguments = dict(
        common, feature_extractor="inception-v3-compat", feature_extractor_weights_path=str(inception)
    )
    assert_arguments(fid, fid=True, input2_cache_name="toy", **inception_arguments)
    assert_arguments(isc, isc=True, input2=None, **inception_arguments)
    vgg_arguments = dict(common, feature_extractor="vgg16", feature_extractor_weights_path=str(vgg))
    assert_arguments(prc, prc=True, input2_cache_name="toy-prc40", prc_neighborhood=3, **vgg_arguments)
    assert len(prc["input2"]) == 40 and len(fid["input2"]) == 100 and fid["input2"][0].dtype == torch.uint8
    assert out["f_score"] == pytest.approx(1 / 3)  # ours, from precision and recall
    assert out["fid"] == 1.0 and out["isc_mean"] == 2.0 and out["unavailable"] == {}


def test_compute_metrics_runs_torch_fidelity_inception_from_a_weights_file(tmp_path, monkeypatch):
    """The default Inception path with a real FeatureExtractorInceptionV3, its weights (random here: the pretrained
    ones cannot be downloaded in CI) read from inception_weights. The Inception Score of ten 8×8 images: Inception
    runs at 299×299, and FID would add an eigendecomposition of a 2048×2048 matrix, seconds on a CPU."""
    import torch_fidelity.feature_extractor_inceptionv3 as inception_module

    with monkeypatch.context() as patch, torch.random.fork_rng():  # no download: keep a random initialisation
        torch.manual_seed(0)
        patch.setattr(inception_module, "load_state_dict_from_url", lambda *args, **kwargs: None)
        patch.setattr(inception_module.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        network = inception_module.FeatureExtractorInceptionV3("inception-v3-compat", ["logits_unbiased"])
    torch.save(network.state_dict(), tmp_path / "inception.pth")
    images = structured_images(12, seed=12)
    out = compute_metrics(
        images_to_uint8(images[:10]),
        Images(images[10:]),
        metrics=("isc",),
        cache_dir=tmp_path,
        reference_name="toy",
        inception_weights=tmp_path / "inception.pth",
        **SMALL,
    )
    # Randomly initialised, the network's logits are all ≈ 0, so its IS is 1 up to rounding.
    assert out["isc_mean"] >= 1 - 1e-9 and math.isfinite(out["isc_std"]) and out["unavailable"] == {}


def test_compute_metrics_rejects_bad_input(real_images, tmp_path):
    real, fake = Images(real_images), images_to_uint8(real_images)
    kwargs = dict(cache_dir=tmp_path, reference_name="toy", feature_extractor=EXTRACTOR)
    cases = [
        (
            dict(metrics=("fid", "kid")),
            r"metrics must be a non-empty sequence of names from \('fid', 'isc', 'prc', "
            r"'pca_fd', 'pca_prc'\), got \('fid', 'kid'\)",
        ),
        (dict(metrics="fid"), "metrics must be a sequence of names"),
        (dict(fake=real_images), r"fake must be a uint8 \(N, 3, H, W\) tensor .* got dtype torch.float32"),
        (dict(fake=fake[:, :1]), r"got dtype torch.uint8 and shape \(100, 1, 8, 8\)"),
        (
            dict(fake=Images(real_images)),
            r"fake Dataset items must be uint8 \(3, H, W\) tensors, got dtype torch.float32",
        ),
        (dict(real=Images(fake)), r"real Dataset items must be float \(3, H, W\) tensors"),
        (dict(real=Images(real_images * 127.5 + 127.5)), r"real Dataset items must lie in \[-1, 1\]"),
        (
            dict(fake=images_to_uint8(structured_images(20, seed=0, size=4))),
            r"same shape, got \(3, 4, 4\) and \(3, 8, 8\)",
        ),
        (dict(reference_name="a/b"), "reference_name must be a non-empty str without path separators"),
        (
            dict(feature_extractor=None, inception_weights=tmp_path / "missing.pth"),
            "inception_weights must be the path of an existing file .* got '.*missing.pth'",
        ),
        (dict(metrics=("prc",), prc_num_real=101), r"prc_num_real must be at most len\(real\) = 100, got 101"),
        (dict(metrics=("pca_prc",), prc_num_real=101), r"prc_num_real must be at most len\(real\) = 100, got 101"),
        (dict(metrics=("pca_prc",), prc_num_real=3), "prc_num_real must be an int ≥ 4, got 3"),
        (
            dict(metrics=("pca_prc",), fake=fake[:3], prc_num_real=10),
            "precision/recall with prc_neighborhood=3 needs more fake images, got 3",
        ),
        (dict(metrics=("isc",), fake=fake[:5]), "fake, which must hold ≥ 10 images, got 5"),
        (dict(device="mps"), "device must be 'cpu', 'cuda' or 'cuda:N'"),
        (dict(batch_size=0), "batch_size must be an int ≥ 1, got 0"),
    ]
    for overrides, message in cases:
        arguments = dict(kwargs, fake=fake, real=real)
        arguments.update(overrides)
        with pytest.raises(ValueError, match=message):
            compute_metrics(arguments.pop("fake"), arguments.pop("real"), **arguments)
    assert METRICS == ("fid", "isc", "prc", "pca_fd", "pca_prc")


def test_frechet_statistics_use_the_unbiased_covariance():
    """With N = 6 samples the unbiased covariance (÷ (N − 1)) and the biased one (÷ N) differ by 20%: the
    statistics and the distance must follow the unbiased one, as FID does (numpy's np.cov, ddof = 1)."""
    import numpy as np
    import scipy.linalg

    from sdmlib.metrics import feature_statistics, pca_frechet_distance

    generator = torch.Generator().manual_seed(0)
    real = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    fake = 2 * torch.randn(6, 3, generator=generator, dtype=torch.float64) + 0.5
    mean, covariance = feature_statistics(real)
    np.testing.assert_allclose(covariance.numpy(), np.cov(real.numpy(), rowvar=False, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(mean.numpy(), real.numpy().mean(axis=0), rtol=1e-12)

    c_r, c_f = np.cov(real.numpy(), rowvar=False), np.cov(fake.numpy(), rowvar=False)
    mu_r, mu_f = real.numpy().mean(axis=0), fake.numpy().mean(axis=0)
    root = scipy.linalg.sqrtm(scipy.linalg.sqrtm(c_r) @ c_f @ scipy.linalg.sqrtm(c_r)).real
    expected = float(np.sum((mu_r - mu_f) ** 2) + np.trace(c_r + c_f - 2 * root))
    assert pca_frechet_distance(real, fake) == pytest.approx(expected, rel=1e-8)
