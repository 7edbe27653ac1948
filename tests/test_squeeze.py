"""sdmlib.squeeze and sdmlib.pca against brute-force references: explicit matrices, T-term sums, simulation."""

import math

import pytest
import torch
from torch.testing import assert_close

import sdmlib
from sdmlib.gaussian import covariance_standard_error, simulate_forward_covariance

F64 = torch.float64


def random_axis(n, seed=0):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=F64)


def explicit_squeeze(axis, s, variant):
    """Eq. (9) typed out with matrices, the reference for everything else."""
    v = axis / axis.norm()
    n = v.shape[0]
    projector = torch.outer(v, v)
    identity = torch.eye(n, dtype=F64)
    if variant == "sdm":
        return identity + projector * (math.exp(-s) - 1)
    return math.exp(-s) * projector + math.exp(s / (n - 1)) * (identity - projector)


@pytest.mark.parametrize("variant", ["sdm", "hdm"])
@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("s", [-1.3, -0.3, 0.0, 0.4, 2.0])
def test_squeeze_matrix_is_eq9(variant, n, s):
    axis = random_axis(n, seed=n)
    assert_close(sdmlib.squeeze_matrix(axis, s, variant), explicit_squeeze(axis, s, variant))


def test_squeeze_matrix_normalises_axis_and_batches_over_s():
    axis = torch.tensor([3.0, 0.0, 4.0])
    s = torch.tensor([[0.1, -0.2], [0.7, 1.5]], dtype=F64)
    matrices = sdmlib.squeeze_matrix(axis, s)
    assert matrices.shape == (2, 2, 3, 3)
    assert_close(matrices[1, 0], explicit_squeeze(axis.double(), 0.7, "sdm"))
    # v̂ is an eigenvector with eigenvalue e^{-s}; vectors orthogonal to it are untouched (SDM).
    v = axis.double() / 5
    assert_close(sdmlib.squeeze_matrix(axis, 0.7) @ v, math.exp(-0.7) * v)
    orthogonal = torch.tensor([4.0, 0.0, -3.0], dtype=F64)
    assert_close(sdmlib.squeeze_matrix(axis, 0.7) @ orthogonal, orthogonal)


@pytest.mark.parametrize("variant", ["sdm", "hdm"])
@pytest.mark.parametrize("n", [2, 3, 7])
def test_inverse_is_closed_form_eq11(variant, n):
    axis = random_axis(n, seed=10 + n)
    for s in (-2.0, -0.5, 0.3, 1.7):
        inverse = sdmlib.inverse_squeeze_matrix(axis, s, variant)
        assert_close(inverse, torch.linalg.inv(explicit_squeeze(axis, s, variant)))
        assert_close(inverse, sdmlib.squeeze_matrix(axis, -s, variant))  # S(s)⁻¹ = S(−s)
    if variant == "sdm":  # eq. (11) typed out
        v = axis / axis.norm()
        expected = torch.eye(n, dtype=F64) + torch.outer(v, v) * (math.exp(0.3) - 1)
        assert_close(sdmlib.inverse_squeeze_matrix(axis, 0.3), expected)


def test_determinants():
    for n in (2, 3, 6):
        axis = random_axis(n, seed=n)
        for s in (-1.5, 0.2, 3.0):
            assert_close(torch.linalg.det(sdmlib.squeeze_matrix(axis, s, "hdm")), torch.tensor(1.0, dtype=F64))
            assert_close(torch.linalg.det(sdmlib.squeeze_matrix(axis, s, "sdm")), torch.tensor(math.exp(-s), dtype=F64))


@pytest.mark.parametrize("variant", ["sdm", "hdm"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_apply_squeeze_matches_explicit_matrix_product_per_sample(variant, dtype):
    generator = torch.Generator().manual_seed(0)
    axis = torch.tensor([0.5, 0.7, 0.6])
    x = torch.randn(5, 3, 4, 6, generator=generator, dtype=dtype)
    s = torch.tensor([-1.0, -0.3, 0.0, 0.5, 2.0], dtype=dtype)
    matrices = torch.stack([explicit_squeeze(axis.double(), float(si), variant) for si in s])  # (B, n, n)
    expected = torch.einsum("bij,bjhw->bihw", matrices, x.double()).to(dtype)
    tolerance = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {}
    got = sdmlib.apply_squeeze(x, axis, s, variant)
    assert got.dtype == dtype and got.shape == x.shape
    assert_close(got, expected, **tolerance)
    inverse_matrices = torch.linalg.inv(matrices)
    expected_inverse = torch.einsum("bij,bjhw->bihw", inverse_matrices, x.double()).to(dtype)
    assert_close(sdmlib.apply_squeeze(x, axis, s, variant, inverse=True), expected_inverse, **tolerance)
    # A scalar strength applies one matrix to the whole batch; plain (B, n) vectors work too.
    assert_close(
        sdmlib.apply_squeeze(x, axis, 0.5, variant),
        torch.einsum("ij,bjhw->bihw", explicit_squeeze(axis.double(), 0.5, variant), x.double()).to(dtype),
        **tolerance,
    )
    vectors = x[:, :, 0, 0]
    assert_close(sdmlib.apply_squeeze(vectors, axis, s, variant), expected[:, :, 0, 0], **tolerance)


def test_apply_squeeze_at_zero_strength_is_exactly_identity():
    x = torch.randn(4, 3, 5, 5)
    for variant in ("sdm", "hdm"):
        assert torch.equal(sdmlib.apply_squeeze(x, [1.0, 2.0, 3.0], 0.0, variant), x)
        assert torch.equal(sdmlib.apply_squeeze(x, [1.0, 2.0, 3.0], torch.zeros(4), variant), x)


def test_apply_squeeze_round_trip():
    x = torch.randn(8, 4, 3, 3, dtype=F64)
    s = torch.linspace(-2, 2, 8, dtype=F64)
    axis = random_axis(4)
    for variant in ("sdm", "hdm"):
        back = sdmlib.apply_squeeze(sdmlib.apply_squeeze(x, axis, s, variant), axis, s, variant, inverse=True)
        assert_close(back, x)


def test_squeeze_schedule():
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
    linear = sdmlib.squeeze_schedule(-0.4, betas)
    assert linear.dtype == F64
    assert_close(linear, -0.4 * betas / 0.02)
    assert linear[-1].item() == pytest.approx(-0.4)
    assert_close(sdmlib.squeeze_schedule(0.7, betas, "constant"), torch.full_like(betas, 0.7))
    assert torch.equal(sdmlib.squeeze_schedule(0.0, betas), torch.zeros_like(betas))


def test_drift_is_eq12():
    axis = random_axis(3, seed=4)
    v = axis / axis.norm()
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
    s0 = -0.8
    schedule = sdmlib.squeeze_schedule(s0, betas)
    t = 500
    expected = torch.eye(3, dtype=F64) + torch.outer(v, v) * (math.exp(s0 * (betas[t] - betas[t - 1]) / 0.02) - 1)
    assert_close(sdmlib.drift(axis, schedule[t], schedule[t - 1]), expected)
    for variant in ("sdm", "hdm"):
        brute = sdmlib.inverse_squeeze_matrix(axis, 0.3, variant) @ sdmlib.squeeze_matrix(axis, -0.5, variant)
        assert_close(sdmlib.drift(axis, 0.3, -0.5, variant), brute)


def brute_force_marginal_covariance(axis, s_schedule, betas, variant):
    """Eq. (3) literally: Σ_t = Σ_{i≤t} β_i ∏_{j=i+1..t} α_j S_i S_iᵀ, one T-term sum of matrices per t."""
    alphas = 1 - betas
    out = []
    for t in range(len(betas)):
        total = torch.zeros(len(axis), len(axis), dtype=F64)
        for i in range(t + 1):
            squeeze = explicit_squeeze(axis, float(s_schedule[i]), variant)
            total += betas[i] * torch.prod(alphas[i + 1 : t + 1]) * squeeze @ squeeze.T
        out.append(total)
    return torch.stack(out)


@pytest.mark.parametrize("variant", ["sdm", "hdm"])
def test_marginal_covariance_equals_eq3_sum(variant):
    axis = random_axis(3, seed=7)
    betas = torch.linspace(1e-3, 0.3, 40, dtype=F64)
    s_schedule = sdmlib.squeeze_schedule(-0.9, betas)
    assert_close(
        sdmlib.marginal_covariance(axis, s_schedule, betas, variant),
        brute_force_marginal_covariance(axis, s_schedule, betas, variant),
    )


def test_marginal_covariance_without_squeeze_is_ddpm():
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    covariance = sdmlib.marginal_covariance([1.0, 1.0, 1.0], torch.zeros_like(betas), betas)
    assert_close(covariance, (1 - alphas_cumprod)[:, None, None] * torch.eye(3, dtype=F64))


@pytest.mark.parametrize("variant", ["sdm", "hdm"])
def test_marginal_covariance_matches_simulated_recursion_eq2(variant):
    """Monte Carlo: every entry at every t within 5 standard errors (600 correlated entries per run)."""
    axis = torch.tensor([0.55, 0.60, 0.58])
    betas = torch.linspace(1e-3, 0.1, 100, dtype=F64)
    s_schedule = sdmlib.squeeze_schedule(1.0, betas)
    num_samples = 40_000
    empirical = simulate_forward_covariance(
        num_samples, axis, s_schedule, betas, variant, generator=torch.Generator().manual_seed(1)
    )
    exact = sdmlib.marginal_covariance(axis, s_schedule, betas, variant)
    z = (empirical - exact).abs() / covariance_standard_error(exact, num_samples)
    assert z.max() < 5, f"largest deviation {z.max():.2f} standard errors"
    # The test has power: the add_noise marginal (1−ᾱ_t) S_t² is a different covariance and fails it.
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    squeezes = sdmlib.squeeze_matrix(axis, s_schedule, variant)
    wrong = (1 - alphas_cumprod)[:, None, None] * squeezes @ squeezes
    z_wrong = (empirical - wrong).abs() / covariance_standard_error(wrong, num_samples)
    assert z_wrong.max() > 10


# -- principal_axis ------------------------------------------------------------------------------------------


def images_with_covariance(covariance, mean, num_images, size, seed):
    generator = torch.Generator().manual_seed(seed)
    n = covariance.shape[0]
    cholesky = torch.linalg.cholesky(covariance)
    pixels = torch.randn(num_images * size * size, n, generator=generator, dtype=F64) @ cholesky.T + mean
    return pixels.view(num_images, size, size, n).permute(0, 3, 1, 2).float()  # (B, n, H, W)


def test_principal_axis_recovers_known_covariance():
    direction = torch.tensor([1.0, 0.9, 0.8], dtype=F64)
    direction /= direction.norm()
    covariance = 0.2 * torch.outer(direction, direction) + 0.01 * torch.eye(3, dtype=F64)
    mean = torch.tensor([0.1, -0.2, 0.3], dtype=F64)
    images = images_with_covariance(covariance, mean, 64, 16, seed=0)
    batches = list(images.split(10))  # a streaming pass over uneven batches
    result = sdmlib.principal_axis(batches)
    assert result.num_pixels == 64 * 16 * 16
    assert torch.dot(result.axis, direction) > 0.999
    assert result.axis.sum() > 0
    assert_close(result.axis.norm(), torch.tensor(1.0, dtype=F64))
    assert_close(result.eigenvalues, torch.tensor([0.21, 0.01, 0.01], dtype=F64), atol=3e-3, rtol=0.05)
    assert_close(result.mean, mean, atol=5e-3, rtol=0)
    # Streaming equals one pass over everything, and (images, labels) pairs from a DataLoader are accepted.
    whole = sdmlib.principal_axis([images])
    assert_close(result.covariance, whole.covariance)
    labelled = sdmlib.principal_axis([(b, torch.zeros(len(b))) for b in batches])
    assert_close(labelled.axis, result.axis)


def test_principal_axis_sign_is_fixed():
    direction = torch.tensor([-1.0, -1.0, -0.5], dtype=F64)  # eigh may return either sign
    direction /= direction.norm()
    covariance = 0.3 * torch.outer(direction, direction) + 0.02 * torch.eye(3, dtype=F64)
    result = sdmlib.principal_axis([images_with_covariance(covariance, torch.zeros(3, dtype=F64), 32, 8, seed=1)])
    assert result.axis.sum() > 0
    assert torch.dot(result.axis, -direction) > 0.99
    assert_close(result.eigenvectors[:, 0], result.axis)


def test_principal_axis_is_float64_accurate_for_offset_data():
    direction = torch.tensor([0.6, 0.8], dtype=F64)
    covariance = 1e-4 * torch.outer(direction, direction) + 1e-6 * torch.eye(2, dtype=F64)
    images = images_with_covariance(covariance, torch.tensor([100.0, 100.0], dtype=F64), 16, 16, seed=2).double()
    result = sdmlib.principal_axis(images.split(4))
    assert torch.dot(result.axis, direction) > 0.999


# -- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: sdmlib.squeeze_matrix([1.0, 0.0], float("nan")), r"\bs\b.*finite"),
        (lambda: sdmlib.squeeze_matrix([1.0, 0.0], float("inf")), r"\bs\b.*finite"),
        (lambda: sdmlib.squeeze_matrix([0.0, 0.0, 0.0], 0.1), "axis.*non-zero norm"),
        (lambda: sdmlib.squeeze_matrix([1.0, float("nan")], 0.1), "axis.*finite"),
        (lambda: sdmlib.squeeze_matrix([[1.0, 0.0]], 0.1), "axis.*1-D"),
        (lambda: sdmlib.squeeze_matrix("abc", 0.1), "axis"),
        (lambda: sdmlib.squeeze_matrix([1.0], 0.1, "hdm"), "hdm.*at least 2 channels"),
        (lambda: sdmlib.squeeze_matrix([1.0, 1.0], 0.1, "xdm"), r"variant must be one of \('sdm', 'hdm'\)"),
        (lambda: sdmlib.apply_squeeze(torch.zeros(2, 4, 3, 3), [1.0, 1.0, 1.0], 0.1), "axis has length 3.*n=4"),
        (lambda: sdmlib.apply_squeeze(torch.zeros(2, 3, 3, 3), [1.0, 1.0, 1.0], torch.zeros(3)), r"\(2,\)"),
        (lambda: sdmlib.apply_squeeze(torch.zeros(2, 3), [1.0, 1.0, 1.0], torch.tensor([0.0, float("nan")])), "finite"),
        (lambda: sdmlib.apply_squeeze(torch.zeros(3), [1.0, 1.0, 1.0], 0.1), r"x must have shape \(B, n"),
        (lambda: sdmlib.apply_squeeze(torch.zeros(2, 1, 4, 4), [1.0], 0.1, "hdm"), "hdm.*n=1"),
        (lambda: sdmlib.squeeze_schedule(float("nan"), torch.ones(3)), "s0 must be a finite"),
        (lambda: sdmlib.squeeze_schedule("strong", torch.ones(3)), "s0 must be a finite"),
        (
            lambda: sdmlib.squeeze_schedule(0.1, torch.ones(3), "cosine"),
            r"kind must be one of \('linear', 'constant'\)",
        ),
        (lambda: sdmlib.marginal_covariance([1.0, 0.0], torch.zeros(3), torch.ones(4)), "equal length"),
        (lambda: sdmlib.principal_axis([]), "empty"),
        (lambda: sdmlib.principal_axis([torch.full((1, 3, 2, 2), float("nan"))]), "non-finite"),
        (lambda: sdmlib.principal_axis([torch.zeros(1, 3, 2, 2), torch.zeros(1, 4, 2, 2)]), "n=3 channels"),
        (lambda: sdmlib.principal_axis([torch.zeros(3)]), r"\(B, n, \.\.\.\)"),
    ],
)
def test_bad_input_is_a_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
