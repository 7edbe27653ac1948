"""Training runs: config validation, exact resume, refusal of mixed runs, non-finite loss, the saved pipeline."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest
import torch
from safetensors.torch import load_file

import sdmlib.train as training
from sdmlib.config import PROJECT_ROOT, TrainConfig

PARAMS = PROJECT_ROOT / "params"


def tiny_config(tmp_path, tiny_run, **changes):
    values = {**tiny_run, "s0": -0.5, "output_dir": str(tmp_path / "run"), **changes}
    return TrainConfig.from_mapping(values)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "unet" / "diffusion_pytorch_model.safetensors")


# -- configuration ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "celeba64", "quick"])
def test_parameter_files_are_valid(name):
    config = TrainConfig.load(PARAMS / f"{name}.yaml", s0=-0.3)
    assert config.s0 == -0.3


def test_notebook_defaults_are_the_config_defaults():
    """The training notebook's parameters cell and TrainConfig's defaults must not drift apart."""
    notebook = jupytext.read(PROJECT_ROOT / "notebooks" / "train.py")
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    values = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body}
    assert TrainConfig.from_mapping(values) == TrainConfig()


def test_cifar10_file_is_the_default_run():
    assert TrainConfig.load(PARAMS / "cifar10.yaml") == TrainConfig()


@pytest.mark.parametrize(
    "values, match",
    [
        ({"s00": 0.1}, r"unknown parameter\(s\) \['s00'\] \(did you mean `s0`\?\); allowed: .*'s0'"),
        ({"s0": "strong"}, "s0 must be a number, got 'strong'"),
        ({"s0": float("nan")}, "s0 must be a finite number"),
        ({"train_steps": 2.5}, "train_steps must be an integer"),
        ({"train_steps": 0}, "train_steps must be a positive integer, got 0"),
        ({"dataset": "imagenet"}, r"dataset must be one of \('cifar10'"),
        ({"variant": "qdm"}, r"variant must be one of \('sdm', 'hdm'\)"),
        (
            {"metrics": ["fid", "kid"]},
            r"metrics must be one of \('fid', 'isc', 'prc', 'pca_fd', 'pca_prc'\), got 'kid'",
        ),
        ({"beta_start": 0.03}, "need 0 < beta_start < beta_end < 1"),
        ({"num_inference_steps": 2000}, "num_inference_steps must be at most"),
        ({"ema_decay": 1.0}, r"ema_decay must lie in \[0, 1\)"),
        ({"mixed_precision": "fp8"}, "mixed_precision must be one of"),
        ({"protocol": "paper"}, r"protocol must be one of \('paper-text', 'authors'\), got 'paper'"),
        ({"clip_box": "image"}, r"clip_box must be one of \('data', 'whitened', 'none'\)"),
        ({"initial_squeeze": "T"}, r"initial_squeeze must be one of \('first_step', 't_max'\)"),
        ({"prc_num_real": -2}, "prc_num_real must be 0 .*got -2"),
    ],
)
def test_bad_parameters_are_clear_errors(values, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_mapping(values)


def test_protocol_sets_its_four_fields_and_each_can_be_overridden():
    text, authors = TrainConfig(), TrainConfig.from_mapping({"protocol": "authors"})
    assert (text.protocol, text.resqueeze, text.clip_box, text.initial_squeeze, text.prc_num_real) == (
        "paper-text", "previous", "data", "first_step", 0
    )
    assert (authors.resqueeze, authors.clip_box, authors.initial_squeeze, authors.prc_num_real) == (
        "current", "whitened", "t_max", 50000
    )
    mixed = TrainConfig.from_mapping({"protocol": "authors", "resqueeze": "previous"})
    assert (mixed.resqueeze, mixed.clip_box) == ("previous", "whitened")
    assert TrainConfig.from_mapping(mixed.to_dict()) == mixed  # config.json round-trips
    assert text.replace(protocol="authors") == authors  # a new protocol brings its own fields ...
    assert mixed.replace(s0=0.2).resqueeze == "previous"  # ... other changes keep the overrides


def test_run_names_separate_protocols_and_keep_the_default_names():
    names = {
        TrainConfig.from_mapping(values).run_dir.name
        for values in (
            {},
            {"protocol": "authors"},
            {"protocol": "authors", "resqueeze": "previous"},
            {"clip_box": "whitened"},
            {"initial_squeeze": "t_max"},
            {"prc_num_real": 50000},
        )
    }
    assert len(names) == 6
    assert TrainConfig(s0=-0.4).run_dir.name == "cifar10-sdm-s0_-0.4-seed0"  # the name it had before protocols
    assert TrainConfig.from_mapping({"protocol": "authors"}).run_dir.name == "cifar10-sdm-s0_0-seed0-authors"
    label = TrainConfig.from_mapping({"protocol": "authors", "clip_box": "none"}).protocol_label
    assert label == "authors-clip_box_none"


@pytest.mark.parametrize("protocol", ["paper-text", "authors"])
def test_scheduler_follows_the_protocol(protocol):
    config = TrainConfig.from_mapping({"protocol": protocol, "s0": -0.4})
    scheduler = training.build_scheduler(config, [1.0, 1.0, 1.0])
    expected = {
        "paper-text": ("previous", True, "data", "first_step"),
        "authors": ("current", True, "whitened", "t_max"),
    }
    got = (scheduler.config.resqueeze, scheduler.config.clip_sample, scheduler.config.clip_space,
           scheduler.config.initial_squeeze)
    assert got == expected[protocol]
    unclipped = training.build_scheduler(config.replace(clip_box="none"), [1.0, 1.0, 1.0])
    assert unclipped.config.clip_sample is False


def test_precision_recall_reference_size():
    from sdmlib.evaluate import prc_reference_size

    assert prc_reference_size(TrainConfig(), 50000) is None  # paper-text: as many real images as generated
    authors = TrainConfig.from_mapping({"protocol": "authors"})
    assert prc_reference_size(authors, 50000) == 50000
    assert prc_reference_size(authors, 3000) == 3000  # a smaller set is taken whole, as the authors' loop does


def test_notebook_namespace_refuses_misspelt_parameter():
    before = {"json"}
    with pytest.raises(ValueError, match="unknown parameter"):
        TrainConfig.from_namespace({"json": None, "s0": 0.1, "sO": 0.2}, before)


def test_command_line_parses_papermill_style_arguments():
    config, args = training.parse_args(["-f", str(PARAMS / "quick.yaml"), "-p", "s0", "-0.3", "-p", "variant", "hdm"])
    assert (config.s0, config.variant, config.dataset) == (-0.3, "hdm", "photos")


# -- training ------------------------------------------------------------------------------------------------


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, tiny_run):
    straight = tiny_config(tmp_path, tiny_run, output_dir=str(tmp_path / "straight"))
    training.train(straight, progress=False)

    interrupted = tiny_config(tmp_path, tiny_run, output_dir=str(tmp_path / "interrupted"))
    training.train(interrupted, progress=False, stop_after_step=2)
    assert not training.is_trained(interrupted.run_dir)
    assert training.latest_checkpoint(interrupted.run_dir).name == "step-00000002"
    training.train(interrupted, progress=False)  # the same call again resumes

    a, b = weights(straight.run_dir), weights(interrupted.run_dir)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    losses_a = (straight.run_dir / "loss.csv").read_text()
    assert losses_a == (interrupted.run_dir / "loss.csv").read_text()
    assert len(losses_a.splitlines()) == 1 + 6
    for name in ("config.json", "principal_axis.json", "training.json", "loss.png", "model_index.json"):
        assert (straight.run_dir / name).exists(), name


def test_finished_run_is_not_retrained(tmp_path, tiny_run, capsys):
    config = tiny_config(tmp_path, tiny_run, train_steps=2)
    training.train(config, progress=False)
    stamp = (config.run_dir / "training.json").stat().st_mtime_ns
    training.train(config, progress=False)
    assert "already trained" in capsys.readouterr().out
    assert (config.run_dir / "training.json").stat().st_mtime_ns == stamp


def test_run_folder_with_other_parameters_is_refused(tmp_path, tiny_run):
    training.train(tiny_config(tmp_path, tiny_run, train_steps=2), progress=False)
    with pytest.raises(training.RunFolderConflictError, match=r"s0: -0.5 \(recorded\) vs 0.3 \(now\)"):
        training.train(tiny_config(tmp_path, tiny_run, train_steps=2, s0=0.3), progress=False)
    # Harmless changes (workers, evaluation batch size) are not conflicts.
    training.prepare_run_dir(tiny_config(tmp_path, tiny_run, train_steps=2, eval_batch_size=2))


def poison_unet(monkeypatch, good_steps: int) -> None:
    """Make the UNet that train() builds output NaN from training step good_steps + 1 on."""
    build = training.build_unet

    def poisoned_unet(*args, **kwargs):
        model = build(*args, **kwargs)
        forward, calls = model.forward, {"n": 0}

        def forward_with_nan(sample, timestep, *a, **k):
            calls["n"] += 1
            out = forward(sample, timestep, *a, **k)
            if calls["n"] > good_steps:
                out.sample = out.sample * float("nan")
            return out

        model.forward = forward_with_nan
        return model

    monkeypatch.setattr(training, "build_unet", poisoned_unet)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, tiny_run, monkeypatch):
    poison_unet(monkeypatch, good_steps=3)  # steps 1–3 are fine, step 4 produces NaN
    config = tiny_config(tmp_path, tiny_run)
    with pytest.raises(training.NonFiniteLossError, match="at step 4.*step-00000002"):
        training.train(config, progress=False)
    checkpoint = training.latest_checkpoint(config.run_dir)
    assert checkpoint.name == "step-00000002"
    assert all(torch.isfinite(t).all() for t in load_file(checkpoint / "model.safetensors").values())


def test_saved_pipeline_loads_in_a_fresh_process_and_samples(tmp_path, tiny_run):
    config = tiny_config(tmp_path, tiny_run, train_steps=2)
    run_dir = training.train(config, progress=False)
    code = (
        "import torch\n"
        "from diffusers import DiffusionPipeline\n"
        f"pipe = DiffusionPipeline.from_pretrained({str(run_dir)!r}, trust_remote_code=True)\n"
        "generator = torch.Generator().manual_seed(0)\n"
        "out = pipe(batch_size=2, num_inference_steps=3, generator=generator, output_type='np')\n"
        "print(type(pipe).__name__, type(pipe.scheduler).__name__, pipe.scheduler.config.s0, out.images.shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SqueezedDDPMPipeline SqueezedDDPMScheduler -0.5 (2, 32, 32, 3)" in result.stdout
    axis = json.loads((run_dir / "principal_axis.json").read_text())["axis"]
    scheduler_config = json.loads((run_dir / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler_config["principal_axis"] == pytest.approx(axis)


# -- sampling and evaluation ---------------------------------------------------------------------------------


def test_evaluation_writes_grid_samples_and_metrics_and_is_resumable(tmp_path, tiny_run, monkeypatch):
    from sdmlib.evaluate import evaluate_run

    config = tiny_config(tmp_path, tiny_run, train_steps=2, metrics=["pca_fd", "fid"])
    run_dir = training.train(config, progress=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no Inception weights there
    result = evaluate_run(config, progress=False)

    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk["metrics"]["pca_fd"] == pytest.approx(result["metrics"]["pca_fd"])
    assert on_disk["metrics"]["pca_fd"] > 0
    if "fid" not in on_disk["metrics"]:  # offline: said clearly, and the run still finished
        assert "Inception weights" in on_disk["metrics"]["unavailable"]["fid"]
    assert on_disk["parameters"]["s0"] == -0.5
    assert len(on_disk["principal_axis"]["axis"]) == 3
    assert {"torch", "diffusers", "sdmlib"} <= set(on_disk["versions"])
    assert on_disk["sampling"]["images_per_second"] > 0
    assert (run_dir / "samples_grid.png").exists()
    chunks = sorted((run_dir / "samples").rglob("*.safetensors"))
    assert len(chunks) == 2 and load_file(chunks[0])["images"].dtype == torch.uint8

    # Same parameters: nothing is recomputed. A lost chunk is regenerated identically (seeded per batch).
    stamp = (run_dir / "metrics.json").stat().st_mtime_ns
    evaluate_run(config, progress=False)
    assert (run_dir / "metrics.json").stat().st_mtime_ns == stamp
    first = load_file(chunks[0])["images"]
    chunks[0].unlink()
    (run_dir / "metrics.json").unlink()
    evaluate_run(config, progress=False)
    assert torch.equal(load_file(chunks[0])["images"], first)

    # The README's run-folder table names everything a finished run writes.
    written = {p.name for p in run_dir.iterdir() if not p.name.startswith(".")}
    undocumented = written - readme_run_folder_entries()
    assert not undocumented, f"the README's run-folder table leaves out {sorted(undocumented)}"


def readme_run_folder_entries() -> set[str]:
    """The first path component of every name in the first column of the README's run-folder table."""
    text = (PROJECT_ROOT / "README.md").read_text()
    table = text[text.index("Each run writes everything into its **run folder**") :].split("\n\n")[1]
    names = set()
    for row in table.splitlines()[2:]:
        first_column = row.split("|")[1]
        names |= {name.strip("/").split("/")[0] for name in re.findall(r"`([^`]+)`", first_column)}
    return names


# -- what a new user meets: a missing dataset, an early NaN, reproducing a run from its record ------------------


def test_a_missing_dataset_fails_before_creating_the_run_folder(tmp_path, tiny_run):
    from sdmlib.data import DatasetNotFoundError

    config = tiny_config(tmp_path, tiny_run, data_root=str(tmp_path / "nowhere"))
    with pytest.raises(DatasetNotFoundError, match="data_root"):
        training.train(config, progress=False)
    assert not config.run_dir.exists()  # no config.json of a run that never trained


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "celeba64"])
def test_missing_dataset_hint_names_what_actually_works(tmp_path, name):
    """The hint names the data_root parameter and running where the network is; no `download` parameter exists."""
    from sdmlib.data import DatasetNotFoundError, build_dataset

    with pytest.raises(DatasetNotFoundError) as error:
        build_dataset(name, tmp_path, 32, train=True, download=False)
    message = str(error.value)
    assert "-p data_root" in message and "network is reachable" in message
    assert "download=" not in message and "download" not in TrainConfig.__dataclass_fields__


def test_non_finite_loss_before_any_checkpoint_says_so(tmp_path, tiny_run, monkeypatch):
    poison_unet(monkeypatch, good_steps=0)
    config = tiny_config(tmp_path, tiny_run)
    with pytest.raises(training.NonFiniteLossError, match="at step 1; no checkpoint was written before it") as error:
        training.train(config, progress=False)
    assert "None" not in str(error.value)


def test_a_run_is_reproduced_from_its_own_config_json(tmp_path, tiny_run):
    config = tiny_config(tmp_path, tiny_run, train_steps=2, learning_rate=3e-4, adam_epsilon=1e-8)
    first = training.train(config, progress=False)
    again, _ = training.parse_args(
        ["-f", str(first / "config.json"), "-p", "output_dir", str(tmp_path / "again"), "--no-eval"]
    )
    assert again == config.replace(output_dir=str(tmp_path / "again"))
    second = training.train(again, progress=False)
    a, b = weights(first), weights(second)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- behaviours the saved results rest on -------------------------------------------------------------------------


def test_saved_unet_holds_the_ema_weights_with_the_configured_decay(tmp_path, tiny_run):
    """The pipeline's UNet is the EMA, not the last weights; the EMA's last update used ema_decay exactly.

    With checkpoint_every=1 the last two checkpoints hold EMA_5, EMA_6 and the weights θ_6. At step 6 the warm-up
    term 1 − (1 + 5)^(−3/4) = 0.74 exceeds ema_decay = 0.6, so EMA_6 = 0.6 EMA_5 + 0.4 θ_6.
    """
    from sdmlib.models import build_unet

    decay = 0.6
    config = tiny_config(tmp_path, tiny_run, ema_decay=decay, checkpoint_every=1)
    run_dir = training.train(config, progress=False)
    names = [name for name, _ in build_unet("tiny", 32).named_parameters()]
    step5, step6 = (run_dir / "checkpoints" / f"step-0000000{k}" for k in (5, 6))
    ema5, ema6 = (load_file(step / "ema.safetensors") for step in (step5, step6))
    model6 = load_file(step6 / "model.safetensors")
    saved = weights(run_dir)
    differs = False
    for index, name in enumerate(names):
        key = str(index)
        torch.testing.assert_close(saved[name], ema6[key], rtol=0, atol=0)
        torch.testing.assert_close(ema6[key], decay * ema5[key] + (1 - decay) * model6[name], rtol=1e-5, atol=1e-6)
        differs |= not torch.allclose(saved[name], model6[name])
    assert differs, "the saved UNet equals the last raw weights: the EMA was not copied in"


def test_pruning_keeps_the_newest_checkpoints(tmp_path):
    for step in (2, 10, 4, 8, 6):
        (tmp_path / "checkpoints" / f"step-{step:08d}").mkdir(parents=True)
    training._prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000008", "step-00000010"]
    assert training.latest_checkpoint(tmp_path).name == "step-00000010"


def test_each_evaluation_chunk_draws_its_own_noise(tmp_path):
    """Chunks are seeded by (seed, chunk index): different from each other, the same on a re-run."""
    from types import SimpleNamespace

    from sdmlib.evaluate import generate_samples

    def pipeline(batch_size, generator, num_inference_steps, output_type):
        return SimpleNamespace(images=torch.rand(batch_size, 3, 4, 4, generator=generator))

    pipeline.device = torch.device("cpu")
    config = TrainConfig.from_mapping(
        {"num_eval_samples": 10, "eval_batch_size": 4, "num_inference_steps": 3, "seed": 7}
    )
    images, _ = generate_samples(pipeline, config, tmp_path / "a", progress=False)
    assert images.shape == (10, 3, 4, 4)
    assert not torch.equal(images[:4], images[4:8])
    assert len({tuple(image.flatten().tolist()) for image in images}) == 10
    again, _ = generate_samples(pipeline, config, tmp_path / "b", progress=False)
    assert torch.equal(images, again)
    other_seed, _ = generate_samples(pipeline, config.replace(seed=8), tmp_path / "c", progress=False)
    assert not torch.equal(images, other_seed)
