"""JiT's toy (sdmlib.toy): the embedding, the stacked MLPs against separate ones, the scores, the paired z."""

import pandas as pd
import pytest
import torch
from torch.testing import assert_close

from sdmlib import toy


def test_embedding_is_orthonormal_and_spiral_is_standardised():
    generator = torch.Generator().manual_seed(0)
    embedding = toy.random_embedding(16, generator)
    assert_close(embedding.T @ embedding, torch.eye(2), atol=1e-6, rtol=0)
    points = toy.spiral(5000, generator)
    assert_close(points.std(0), torch.ones(2), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="dim must be at least 2, got 1"):
        toy.random_embedding(1, generator)


def test_stacked_mlp_is_independent_mlps():
    """Model m of the stack equals an ordinary MLP with model m's weights (brute force, one model at a time)."""
    torch.manual_seed(0)
    stack = toy.StackedMLP(num_models=3, dim=5, hidden=7)
    x = torch.randn(3, 4, 5)
    t = torch.randint(0, 1000, (3, 4))
    out = stack(x, t)
    for m in range(3):
        angles = t[m].unsqueeze(-1).float() * stack.frequencies
        h = torch.cat([x[m], angles.sin(), angles.cos()], dim=-1)
        for i, (w, b) in enumerate(zip(stack.weights, stack.biases)):
            h = h @ w[m] + b[m, 0]
            if i < len(stack.weights) - 1:
                h = torch.nn.functional.silu(h)
        assert_close(out[m], h)
    # A gradient through model 0 reaches model 0's weights only.
    stack(x, t)[0].sum().backward()
    assert stack.weights[0].grad[1:].abs().max() == 0 and stack.weights[0].grad[0].abs().max() > 0


def test_chamfer_distance_brute_force():
    samples = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])
    reference = torch.tensor([[0.0, 1.0], [1.0, 0.0], [3.0, 0.0]])
    # samples → reference: min(1, 1, 3) = 1 and 0; reference → samples: 1, 0, 2.
    assert_close(toy.chamfer_distance(samples, reference), torch.tensor([0.5 + 1.0]))


def test_run_toy_scores_every_combination():
    result = toy.run_toy(4, hidden=8, seeds=2, train_steps=3, batch_size=16, num_samples=20, num_inference_steps=3)
    assert result.distance.shape == result.off_plane.shape == (9, 2)
    assert torch.isfinite(result.distance).all() and (result.off_plane >= 0).all()
    frame = toy.toy_frame({4: result})
    assert len(frame) == 18 and set(frame.prediction_type) == {"epsilon", "sample", "v_prediction"}
    with pytest.raises(ValueError, match="seeds must be at least 2"):
        toy.run_toy(4, seeds=1)


def test_paired_z():
    rows = []
    for seed, (x_score, e_score) in enumerate([(1.0, 3.0), (2.0, 3.0), (1.5, 4.5)]):
        for loss in ("epsilon", "sample", "v_prediction"):
            rows.append(dict(dim=8, prediction_type="sample", loss_space=loss, seed=seed, distance=x_score))
            rows.append(dict(dim=8, prediction_type="epsilon", loss_space=loss, seed=seed, distance=e_score))
    z = toy.paired_z(pd.DataFrame(rows), 8, "distance", better="sample", worse="epsilon")
    differences = torch.tensor([2.0, 1.0, 3.0], dtype=torch.float64)
    expected = differences.mean() / (differences.std() / 3**0.5)
    assert z.z.tolist() == pytest.approx([float(expected)] * 3)
