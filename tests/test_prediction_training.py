"""Training with any prediction × loss, and the JiT-style denoiser: config, loss, save/load, bad input."""

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import sdmlib.evaluate as evaluation
import sdmlib.train as training
from sdmlib import prediction as P
from sdmlib.config import TrainConfig
from sdmlib.jit import JiTDenoiser
from sdmlib.models import build_jit
from sdmlib.pipeline import SqueezedDDPMPipeline
from sdmlib.scheduler import SqueezedDDPMScheduler


def tiny_config(tmp_path, tiny_run, **changes):
    values = {**tiny_run, "s0": -0.4, "output_dir": str(tmp_path / "run"), **changes}
    return TrainConfig.from_mapping(values)


def batch(seed=0):
    scheduler = SqueezedDDPMScheduler(s0=-0.4)
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.rand(8, 3, 8, 8, generator=generator) * 2 - 1
    noise = torch.randn(8, 3, 8, 8, generator=generator)
    timesteps = torch.randint(0, 1000, (8,), generator=generator)
    noisy, eps_sq = scheduler.add_noise_and_target(x0, noise, timesteps)
    a, b = P.scales_at(scheduler.alphas_cumprod, timesteps)
    return x0, eps_sq, noisy, a, b


def test_epsilon_epsilon_loss_is_the_papers_bit_for_bit():
    x0, eps_sq, _, a, b = batch()
    output = torch.randn_like(x0)
    assert torch.equal(P.training_loss(output, x0, eps_sq, a, b), F.mse_loss(output, eps_sq))


@pytest.mark.parametrize("prediction_type", P.PREDICTION_TYPES)
@pytest.mark.parametrize("loss_space", P.PREDICTION_TYPES)
def test_loss_is_the_error_after_converting_the_output(prediction_type, loss_space):
    """With a bound that never acts, the loss is the MSE between the converted output and the true quantity."""
    x0, eps_sq, noisy, a, b = (t.double() for t in batch(1))
    output = P.target_of(prediction_type, x0, eps_sq, a, b) + 0.05 * torch.randn_like(x0, dtype=torch.float64)
    converted = P.convert(output, prediction_type, loss_space, noisy, a, b)
    expected = (converted - P.target_of(loss_space, x0, eps_sq, a, b)).square().mean()
    loss = P.training_loss(output, x0, eps_sq, a, b, prediction_type, loss_space, max_weight=1e9)
    torch.testing.assert_close(loss, expected.float(), rtol=1e-5, atol=0)
    bounded = P.training_loss(output, x0, eps_sq, a, b, prediction_type, loss_space, max_weight=20.0)
    assert bounded <= loss * (1 + 1e-6)


# -- the JiT-style model -----------------------------------------------------------------------------------------


def test_jit_shapes_and_bottleneck():
    model = build_jit("tiny", 16, patch_size=4, bottleneck_dim=8)
    x = torch.randn(3, 3, 16, 16)
    assert model(x, torch.tensor([1, 500, 999])).sample.shape == x.shape
    assert model(x, 7).sample.shape == x.shape  # a scalar timestep, as the pipeline passes it
    projection = model.patch_embed.patches.proj.weight
    assert projection.shape == (8, 3, 4, 4)  # patch dimension 48 → d′ = 8
    assert model.patch_embed.expand.weight.shape == (96, 8)


def test_jit_output_depends_on_every_patch_and_on_time():
    """Unpatchify puts each patch back where it came from: a change in one patch changes that patch's output."""
    torch.manual_seed(0)
    model = build_jit("tiny", 8, patch_size=4)
    torch.nn.init.normal_(model.proj_out.weight, std=0.1)  # the zero-initialised head would output 0
    x = torch.randn(1, 3, 8, 8)
    base = model(x, 10).sample
    assert not torch.allclose(model(x, 900).sample, base)
    moved = x.clone()
    moved[..., :4, 4:] += 1.0  # the top-right patch (off the diagonal, so a row/column swap shows)
    difference = (model(moved, 10).sample - base).abs().sum(dim=1)[0]  # (8, 8)
    # Attention mixes patches, but the changed patch's own output moves most.
    others = [difference[:4, :4].mean(), difference[4:, :4].mean(), difference[4:, 4:].mean()]
    assert difference[:4, 4:].mean() > max(others)


@pytest.mark.parametrize(
    "values, match",
    [
        ({"prediction_type": "x"}, r"prediction_type must be one of \('epsilon', 'sample', 'v_prediction'\), got 'x'"),
        ({"loss_space": "score"}, r"loss_space must be one of \('epsilon', 'sample', 'v_prediction'\), got 'score'"),
        ({"model": "vit"}, r"model must be one of \('unet', 'jit'\), got 'vit'"),
        ({"model": "jit", "patch_size": 5}, "patch_size must be a positive divisor of image_size=32, got 5"),
        ({"model": "jit", "bottleneck_dim": 49}, r"bottleneck_dim must lie in \[0, patch dimension 48"),
        ({"max_loss_weight": 0.0}, "max_loss_weight must be a positive finite number"),
    ],
)
def test_bad_parameters_are_clear_errors(values, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_mapping(values)


def test_jit_run_trains_saves_and_loads_with_its_prediction_type(tmp_path, tiny_run):
    config = tiny_config(
        tmp_path,
        tiny_run,
        model="jit",
        patch_size=8,
        bottleneck_dim=16,
        prediction_type="sample",
        loss_space="v_prediction",
        train_steps=3,
    )
    run_dir = training.train(config, progress=False)
    scheduler_config = json.loads((run_dir / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler_config["prediction_type"] == "sample"
    assert json.loads((run_dir / "config.json").read_text())["loss_space"] == "v_prediction"
    assert json.loads((run_dir / "unet" / "config.json").read_text())["bottleneck_dim"] == 16
    pipeline = evaluation.load_pipeline(run_dir, torch.device("cpu"))
    assert isinstance(pipeline.unet, JiTDenoiser)
    images = pipeline(batch_size=2, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert images.images.shape == (2, 3, 32, 32)
    assert torch.isfinite(images.images).all()

    # A config that asks this run for another prediction type is refused before any work starts.
    with pytest.raises(training.RunFolderConflictError, match=r"prediction_type: 'sample' \(recorded\) vs 'epsilon'"):
        training.train(config.replace(prediction_type="epsilon"), progress=False)
    with pytest.raises(ValueError, match=r"prediction_type='v_prediction' was asked for.*trained with .*'sample'"):
        evaluation.evaluate_run(config.replace(prediction_type="v_prediction"), progress=False)


def test_jit_pipeline_round_trip_in_a_fresh_process(tmp_path):
    torch.manual_seed(0)
    model = JiTDenoiser(sample_size=8, patch_size=4, width=32, depth=1, num_heads=2, bottleneck_dim=4)
    torch.nn.init.normal_(model.proj_out.weight, std=0.1)
    pipeline = SqueezedDDPMPipeline(unet=model, scheduler=SqueezedDDPMScheduler(s0=-0.4, prediction_type="v_prediction"))
    pipeline.save_pretrained(tmp_path)
    expected = pipeline(batch_size=2, num_inference_steps=3, generator=torch.Generator().manual_seed(1), output_type="pt")
    code = (
        "import torch\n"
        "from diffusers import DiffusionPipeline\n"
        f"pipe = DiffusionPipeline.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)\n"
        "out = pipe(batch_size=2, num_inference_steps=3, generator=torch.Generator().manual_seed(1), output_type='pt')\n"
        f"torch.save(out.images, {str(tmp_path / 'images.pt')!r})\n"
        "print(type(pipe.unet).__name__, pipe.scheduler.config.prediction_type)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "JiTDenoiser v_prediction" in result.stdout
    assert torch.equal(torch.load(tmp_path / "images.pt", weights_only=True), expected.images)


# -- sweeps and the figure panel ---------------------------------------------------------------------------------


def test_prediction_grid_spans_the_study_and_keeps_old_run_names():
    from sdmlib.config import PROJECT_ROOT
    from sdmlib.sweep import SweepGrid, grid_runs

    runs = grid_runs(SweepGrid.read(PROJECT_ROOT / "params" / "sweep-prediction.yaml"), "x")
    assert len(runs) == 3 * 3 * 2 * 2 and len({r.run_id for r in runs}) == 36
    combos = {(r.config.prediction_type, r.config.loss_space, r.config.model, r.config.s0) for r in runs}
    assert len(combos) == 36
    paper = [r for r in runs if (r.config.prediction_type, r.config.loss_space, r.config.model) == ("epsilon",) * 2 + ("unet",)]
    assert {r.run_id for r in paper} == {"cifar10-sdm-s0_0-seed0", "cifar10-sdm-s0_-0.4-seed0"}
    assert "cifar10-sdm-s0_-0.4-seed0-jit-sample-v_prediction" in {r.run_id for r in runs}
    jit = next(r for r in runs if r.config.model == "jit")
    assert (jit.config.patch_size, jit.config.bottleneck_dim) == (8, 16)


def test_grid_refuses_an_unknown_prediction_type():
    from sdmlib.sweep import SweepGrid, grid_runs

    with pytest.raises(ValueError, match=r"prediction_type must be one of .*got 'eps'"):
        grid_runs(SweepGrid.from_mapping({"prediction_type": ["eps"]}), "x")


def test_heatmap_panel_reads_a_results_table():
    import pandas as pd

    from sdmlib.prediction_study import combination_table, plot_combination_heatmaps

    rows = [
        {"model": m, "s0": s0, "prediction_type": p, "loss_space": q, "seed": seed, "pca_fd": i + 10 * seed}
        for m in ("unet", "jit")
        for s0 in (0.0, -0.4)
        for i, (p, q) in enumerate((p, q) for p in P.PREDICTION_TYPES for q in P.PREDICTION_TYPES)
        for seed in (0, 1)
    ]
    frame = pd.DataFrame(rows)
    table = combination_table(frame, "pca_fd", model="jit", s0=-0.4)
    assert list(table.index) == list(P.PREDICTION_TYPES) and list(table.columns) == list(P.PREDICTION_TYPES)
    assert table.loc["sample", "v_prediction"] == 5 + 5  # index 5, mean over seeds 0 and 1 (+0, +10)
    fig = plot_combination_heatmaps(frame, "pca_fd", [{"model": "unet", "s0": 0.0}, {"model": "jit", "s0": -0.4}])
    assert len(fig.axes) >= 2
    with pytest.raises(ValueError, match="metric 'fid' is not a column"):
        combination_table(frame, "fid", model="jit")
    sem = combination_table(frame, "pca_fd", aggregate="sem", model="jit", s0=-0.4)
    assert sem.loc["sample", "v_prediction"] == pytest.approx(5.0)  # values 5 and 15: std 7.07, / sqrt(2)
    with pytest.raises(ValueError, match="aggregate must be 'mean' or 'sem'"):
        combination_table(frame, "pca_fd", aggregate="median")


def test_image_study_has_a_seed_axis(tmp_path):
    from sdmlib.config import TrainConfig
    from sdmlib.prediction_study import image_study_runs

    base = TrainConfig(dataset="photos", image_size=16, seed=3)
    runs = image_study_runs(base, {"unet": {}}, [0.0, -0.4], tmp_path, seeds=[0, 1])
    assert len(runs) == 2 * 2 * 9
    assert {r.seed for r in runs} == {0, 1} and all(r.config.seed == r.seed for r in runs)
    assert len({r.config.output_dir for r in runs}) == len(runs)  # no two runs share a folder
    assert {r.seed for r in image_study_runs(base, {"unet": {}}, [0.0], tmp_path)} == {3}  # default: base.seed
    with pytest.raises(ValueError, match="seeds must be a non-empty list of distinct integers"):
        image_study_runs(base, {"unet": {}}, [0.0], tmp_path, seeds=[1, 1])
