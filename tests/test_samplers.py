"""One trained run, many samplers: the registry, the evaluation settings, and where each evaluation is written."""

import json

import pytest
import torch
from safetensors.torch import load_file

import sdmlib.train as training
from sdmlib.config import TrainConfig
from sdmlib.samplers import SAMPLER_NAMES, build_scheduler, evaluation_label, resolve_eta, step_kwargs


def test_each_sampler_resolves_its_own_eta_and_labels_its_folder():
    assert resolve_eta("ddpm", None) is None and resolve_eta("ddpm", -1) is None
    assert resolve_eta("ddim", -1) == 0.0 and resolve_eta("exact", None) == 1.0 and resolve_eta("exact_ddim", -1) == 0
    assert resolve_eta("ddim", 0.5) == 0.5
    assert step_kwargs("ddpm") == {} and step_kwargs("ddim", 0.3) == {"eta": 0.3}
    assert evaluation_label("ddpm", 50) == "ddpm-steps50"
    assert evaluation_label("ddim", 20) == "ddim-steps20"  # its own η: not in the name
    assert evaluation_label("ddim", 20, 0.0) == "ddim-steps20"
    assert evaluation_label("ddim", 20, 0.5) == "ddim-steps20-eta0.5"
    assert evaluation_label("exact", 10, 0) == "exact-steps10-eta0"
    assert len({evaluation_label(name, 10) for name in SAMPLER_NAMES}) == len(SAMPLER_NAMES)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"sampler": "dpm++"}, r"sampler must be one of \('ddpm', 'ddim', 'exact', 'exact_ddim'\), got 'dpm\+\+'"),
        ({"sampler": "ddim", "eta": -0.5}, r"eta must be a finite number ≥ 0 \(or -1: the sampler's own\), got -0.5"),
        ({"sampler": "ddpm", "eta": 0.5}, r"eta=0.5 was asked of sampler 'ddpm', which takes no eta"),
        ({"sampler": "exact_ddim", "eta": 1.0}, r"'exact_ddim', which has eta = 0 by definition"),
        ({"sampler": "exact", "eta": 1.5}, r"eta must lie in \[0, 1\] for sampler 'exact' .*got 1.5"),
        ({"sampler": "ddim", "num_inference_steps": 0}, r"num_inference_steps must be .*got 0"),
        ({"sampler": "ddim", "num_inference_steps": 1001}, r"num_inference_steps must be at most"),
    ],
)
def test_bad_sampling_settings_are_clear_errors(values, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_mapping(values)


def test_pipeline_refuses_an_eta_its_scheduler_cannot_take():
    from diffusers import UNet2DModel

    from sdmlib.pipeline import SqueezedDDPMPipeline
    from sdmlib.scheduler import SqueezedDDPMScheduler

    unet = UNet2DModel(sample_size=8, block_out_channels=(8, 8), norm_num_groups=4, layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    pipe = SqueezedDDPMPipeline(unet, SqueezedDDPMScheduler(s0=-0.4))
    with pytest.raises(ValueError, match=r"eta=0.5 was given, but SqueezedDDPMScheduler.step takes no eta"):
        pipe(batch_size=1, num_inference_steps=2, eta=0.5)
    assert isinstance(build_scheduler("ddpm", pipe.scheduler.config), SqueezedDDPMScheduler)
    assert build_scheduler("ddpm", pipe.scheduler.config).config.s0 == -0.4


def test_an_untrained_run_is_refused_before_any_work(tmp_path, tiny_run):
    from sdmlib.evaluate import evaluate_run

    config = TrainConfig.from_mapping({**tiny_run, "output_dir": str(tmp_path / "never"), "sampler": "ddim"})
    with pytest.raises(RuntimeError, match="holds no finished training run"):
        evaluate_run(config, progress=False)
    assert not (tmp_path / "never").exists()


def test_one_run_evaluated_under_several_samplers_keeps_each_evaluation(tmp_path, tiny_run):
    """The paper's sampler writes into the run folder; a separate ddpm evaluation and every other sampler write
    into evaluations/<label>, each with its own scheduler and η; each is skipped when asked again, and none
    overwrites another. (One trained run for all of it: training is the slow part.)"""
    from sdmlib.evaluate import evaluate_run, evaluation_dir

    config = TrainConfig.from_mapping(
        {**tiny_run, "s0": -0.4, "train_steps": 2, "metrics": ["pca_fd"], "num_eval_samples": 4,
         "num_grid_samples": 4, "output_dir": str(tmp_path / "run")}
    )
    run_dir = training.train(config, progress=False)
    first = evaluate_run(config, progress=False)
    assert (run_dir / "metrics.json").exists() and "sampler" not in first["evaluation"]  # as before samplers

    separate = evaluate_run(config.replace(num_inference_steps=2), progress=False, separate=True)
    folder = run_dir / "evaluations" / "ddpm-steps2"
    assert evaluation_dir(config.replace(num_inference_steps=2), separate=True) == folder
    assert json.loads((folder / "metrics.json").read_text())["evaluation"] == separate["evaluation"]
    assert (folder / "samples_grid.png").exists() and list((folder / "samples").rglob("*.safetensors"))
    assert json.loads((run_dir / "metrics.json").read_text())["evaluation"] == first["evaluation"]  # untouched

    stamp = (folder / "metrics.json").stat().st_mtime_ns
    evaluate_run(config.replace(num_inference_steps=2), progress=False, separate=True)
    assert (folder / "metrics.json").stat().st_mtime_ns == stamp  # finished: skipped
    images = torch.cat([load_file(p)["images"] for p in sorted((folder / "samples").rglob("*.safetensors"))])
    assert images.dtype == torch.uint8 and len(images) == config.num_eval_samples

    # The other samplers, on the same trained run.
    config = config.replace(num_inference_steps=2)
    expected = {
        ("ddim", -1.0): ("ddim-steps2", "SqueezedDDIMScheduler", {"eta": 0.0}),
        ("exact", -1.0): ("exact-steps2", "SqueezedExactScheduler", {"eta": 1.0}),
        ("exact_ddim", -1.0): ("exact_ddim-steps2", "SqueezedExactScheduler", {"eta": 0.0}),
        ("ddim", 1.0): ("ddim-steps2-eta1", "SqueezedDDIMScheduler", {"eta": 1.0}),
    }
    grids = {"ddpm-steps2": (folder / "samples_grid.png").read_bytes()}
    for (sampler, eta), (label, scheduler, kwargs) in expected.items():
        result = evaluate_run(config.replace(sampler=sampler, eta=eta), progress=False)
        assert evaluation_dir(config.replace(sampler=sampler, eta=eta)) == run_dir / "evaluations" / label
        recorded = json.loads((run_dir / "evaluations" / label / "metrics.json").read_text())
        assert recorded["sampling"]["scheduler"] == scheduler and recorded["sampling"]["step_kwargs"] == kwargs
        assert result["metrics"]["pca_fd"] > 0
        grids[label] = (run_dir / "evaluations" / label / "samples_grid.png").read_bytes()
    assert len(set(grids.values())) == len(grids)  # five samplers, five different grids from the same noise


@pytest.mark.parametrize("forward", ["paper", "exact"])
def test_every_sampler_is_built_from_the_runs_scheduler_config(forward):
    from sdmlib.ddim import SqueezedDDIMScheduler
    from sdmlib.exact import SqueezedExactScheduler
    from sdmlib.scheduler import SqueezedDDPMScheduler

    run = SqueezedDDPMScheduler(s0=-0.4, variant="hdm", prediction_type="v_prediction", forward=forward)
    expected = {"ddpm": SqueezedDDPMScheduler, "ddim": SqueezedDDIMScheduler, "exact": SqueezedExactScheduler,
                "exact_ddim": SqueezedExactScheduler}
    for name in SAMPLER_NAMES:
        built = build_scheduler(name, run.config)
        assert type(built) is expected[name]
        for key in ("s0", "variant", "prediction_type", "forward", "principal_axis", "resqueeze"):
            assert built.config[key] == run.config[key], (name, key)


def test_a_run_recorded_before_samplers_existed_is_still_the_same_run(tmp_path, tiny_run):
    """config.json of an older run lacks sampler, eta and forward: it was made with their defaults, so neither
    resuming it nor asking it for another sampler is a run-folder conflict; a real difference still is."""
    config = TrainConfig.from_mapping({**tiny_run, "output_dir": str(tmp_path / "run")})
    run_dir = training.prepare_run_dir(config)
    old = json.loads((run_dir / "config.json").read_text())
    for key in ("sampler", "eta", "forward"):
        del old[key]
    (run_dir / "config.json").write_text(json.dumps(old))
    training.prepare_run_dir(config)
    training.prepare_run_dir(config.replace(sampler="ddim", eta=0.5))  # evaluating it otherwise: same run
    training.prepare_run_dir(config.replace(num_inference_steps=7, num_eval_samples=3, metrics=["pca_fd"]))
    with pytest.raises(training.RunFolderConflictError, match=r"forward: 'paper' \(recorded\) vs 'exact' \(now\)"):
        training.prepare_run_dir(config.replace(s0=-0.5, forward="exact"))
