"""The derivation notebooks' checks can fail: planted errors (a wrong eq. 9, an off-by-one timestep) fail them.

Notebook 01 checks `marginal_covariance` against the dense sum of eq. (3) over eq. (9) typed out; notebook 03 checks
which s(t) the sampler whitens and re-squeezes with at each of the 50 steps against a reference built from the β
schedule and diffusers' "leading" spacing. These tests run the same checks, with the same references, once on the
library as it is and once with a planted mistake, which must fail them.
"""

import pytest
import torch
from torch.testing import assert_close

import sdmlib
import sdmlib.squeeze
from sdmlib import drift_study
from sdmlib.gaussian import dense_marginal_covariance
from sdmlib.scheduler import SqueezedDDPMScheduler

F64 = torch.float64
AXIS = sdmlib.unit_axis([0.55, 0.60, 0.58])


def typed_eq9(s_schedule, variant):
    """Eq. (9) as notebook 01 types it out, (T, n, n)."""
    n = AXIS.shape[0]
    projector, identity = torch.outer(AXIS, AXIS), torch.eye(n, dtype=F64)
    s = s_schedule[:, None, None]
    if variant == "sdm":
        return identity + projector * (torch.exp(-s) - 1)
    return torch.exp(-s) * projector + torch.exp(s / (n - 1)) * (identity - projector)


def check_marginal_covariance(s0, variant, reference=typed_eq9):
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
    s_schedule = sdmlib.squeeze_schedule(s0, betas, "linear")
    dense = dense_marginal_covariance(reference(s_schedule, variant), betas)
    assert_close(sdmlib.marginal_covariance(AXIS, s_schedule, betas, variant), dense, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("variant", ["sdm", "hdm"])
def test_marginal_covariance_check_passes_and_fails_for_a_wrong_eq9(variant, monkeypatch):
    check_marginal_covariance(-0.3, variant)
    # A wrong reference (S(2s) for S(s)) fails ...
    with pytest.raises(AssertionError):
        check_marginal_covariance(-0.3, variant, lambda s, v: typed_eq9(2 * s, v))
    # ... and so does a wrong eq. (9) in the library, e^{+s} on v̂ instead of e^{−s}.
    correct = sdmlib.squeeze.squeeze_eigenvalues

    def wrong_eigenvalues(s, n, variant="sdm"):
        lam = correct(s, n, variant)
        return lam._replace(parallel=1 / lam.parallel)

    monkeypatch.setattr(sdmlib.squeeze, "squeeze_eigenvalues", wrong_eigenvalues)
    with pytest.raises(AssertionError):
        check_marginal_covariance(-0.3, variant)


def reference_strengths(s0, resqueeze, initial_squeeze, steps=50, num_train_timesteps=1000):
    """Notebook 03's reference: s(t) = s0 β_t/β_max over the linear β schedule, 0 past the end (S_0 = I); diffusers'
    "leading" timesteps T − stride, …, 0; the re-squeeze at the next timestep (eq. 7) or the same (authors')."""
    betas = torch.linspace(1e-4, 0.02, num_train_timesteps, dtype=F64)
    s_ext = torch.cat([s0 * betas / betas.max(), torch.zeros(1, dtype=F64)])  # index −1: past the end
    stride = num_train_timesteps // steps
    timesteps = [num_train_timesteps - stride * (k + 1) for k in range(steps)]
    whiten = s_ext[timesteps]
    resqueezed = whiten if resqueeze == "current" else s_ext[timesteps[1:] + [-1]]
    initial = s_ext[num_train_timesteps - 1] if initial_squeeze == "t_max" else s_ext[timesteps[0]]
    return timesteps, whiten, resqueezed, initial


def check_sampler_strengths(s0, resqueeze, initial_squeeze):
    scheduler = SqueezedDDPMScheduler(s0=s0, resqueeze=resqueeze, initial_squeeze=initial_squeeze)
    recorded = drift_study.sampler_strengths(scheduler, 50)
    timesteps, whiten, resqueezed, initial = reference_strengths(s0, resqueeze, initial_squeeze)
    assert recorded.timesteps == timesteps
    # β in float32 (diffusers) against float64 here: ~1e−8 relative; an off-by-one timestep is ~1e−3 relative.
    assert_close(torch.tensor(recorded.whiten, dtype=F64), whiten, rtol=1e-6, atol=1e-9)
    assert_close(torch.tensor(recorded.resqueeze, dtype=F64), resqueezed, rtol=1e-6, atol=1e-9)
    assert_close(torch.tensor(recorded.initial, dtype=F64), initial, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("resqueeze, initial_squeeze", [("previous", "first_step"), ("current", "t_max")])
def test_sampler_strength_check_passes(resqueeze, initial_squeeze):
    check_sampler_strengths(-0.4, resqueeze, initial_squeeze)


def test_sampler_strength_check_fails_for_an_off_by_one_timestep(monkeypatch):
    original = SqueezedDDPMScheduler.strength_at
    monkeypatch.setattr(SqueezedDDPMScheduler, "strength_at", lambda self, t: original(self, min(int(t) + 1, 999)))
    with pytest.raises(AssertionError):
        check_sampler_strengths(-0.4, "previous", "first_step")


def test_sampler_strength_check_fails_for_a_resqueeze_one_training_step_back(monkeypatch):
    original = SqueezedDDPMScheduler.previous_timestep

    def one_back(self, timestep):
        return original(self, timestep) + 19  # t − 1 instead of t − 20: an off-by-one in the stride

    monkeypatch.setattr(SqueezedDDPMScheduler, "previous_timestep", one_back)
    with pytest.raises(AssertionError):
        check_sampler_strengths(-0.4, "previous", "first_step")


def test_sampler_strength_check_tells_the_protocols_apart():
    with pytest.raises(AssertionError):  # the authors' sampler against eq. (7)'s reference
        scheduler = SqueezedDDPMScheduler(s0=-0.4, resqueeze="current")
        recorded = drift_study.sampler_strengths(scheduler, 50)
        _, _, resqueezed, _ = reference_strengths(-0.4, "previous", "first_step")
        assert_close(torch.tensor(recorded.resqueeze, dtype=F64), resqueezed, rtol=1e-6, atol=1e-9)
    with pytest.raises(AssertionError):  # the authors' starting noise (t = T − 1) against the first sampling step's
        recorded = drift_study.sampler_strengths(SqueezedDDPMScheduler(s0=-0.4, initial_squeeze="t_max"), 50)
        initial = reference_strengths(-0.4, "previous", "first_step")[3]
        assert_close(torch.tensor(recorded.initial, dtype=F64), initial, rtol=1e-6, atol=1e-9)
