"""sdmlib.quant.study: the study file checked before any work, a tiny study end to end (tables, figure, re-run
skips), and a setting folder never reused for other parameters."""

import csv
import json

import pytest
import torch

from sdmlib.quant.config import QuantConfig
from sdmlib.quant.study import QuantStudy, run_study

QUICK = {"calibration_size": 8, "batch_size": 8, "num_inference_steps": 3, "uniform_interval": 1,
         "num_eval_samples": 4, "mse_candidates": 10}


def _study(tmp_path, tiny_run, settings=None, runs=None):
    return {
        "output_dir": str(tmp_path / "study"),
        "train": tiny_run,
        "runs": runs or {"ddpm": {"s0": 0.0}},
        "quant": QUICK,
        "settings": settings or [{"method": "minmax", "weight_bits": 8}, {"method": "minmax", "weight_bits": 4}],
    }


@pytest.mark.parametrize("path", ["params/quant-study.yaml", "params/quant-cifar10.yaml"])
def test_shipped_study_files_are_valid(path):
    study = QuantStudy.load(path)
    assert set(study.runs) == {"ddpm", "sdm-0.4", "sdm+0.4"}
    assert [c.s0 for c in study.runs.values()] == [0.0, -0.4, 0.4]
    names = [c.setting_name() for c in study.quant_configs("ddpm")]
    assert len(set(names)) == len(names)
    if "cifar10" in path:  # the papers' sampler and sizes, on the paper's CIFAR-10 runs
        assert all(c.dataset == "cifar10" and c.model_size == "paper" for c in study.runs.values())
        assert all(c.sampler == "ddim" and c.num_inference_steps == 100 and c.num_eval_samples == 10000
                   for c in study.quant_configs("ddpm"))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"runz": {}}, r"unknown key\(s\) \['runz'\]"),
        ({"runs": {}}, "runs must be a non-empty dict"),
        ({"runs": {"a": {"s0": "big"}}}, "s0"),
        ({"settings": [{"method": "brecq"}]}, "method must be one of"),
        ({"settings": [{"weight_bits": 8}, {"weight_bits": 8, "calibration": "auto"}]}, "are the same setting"),
        ({"settings": [{"run_dir": "x"}]}, "the study sets them per run"),
    ],
)
def test_bad_study_files_are_refused_before_any_work(tmp_path, tiny_run, change, message):
    with pytest.raises(ValueError, match=message):
        QuantStudy.from_mapping({**_study(tmp_path, tiny_run), **change})
    assert not (tmp_path / "study").exists()


def test_tiny_study_end_to_end_and_rerun_skips(tmp_path, tiny_run, monkeypatch):
    study = QuantStudy.from_mapping(_study(tmp_path, tiny_run, runs={"ddpm": {"s0": 0.0}, "sdm": {"s0": -0.4}}))
    rows = run_study(study, progress=False)
    assert [(r["run"], r["weight_bits"]) for r in rows] == [("ddpm", 8), ("ddpm", 4), ("sdm", 8), ("sdm", 4)]
    for row in rows:
        assert 0 < row["mean_relative_error"] < 1 and row["sample_rms"] > 0 and row["pca_fd_fp"] > 0
    by = {(r["run"], r["weight_bits"]): r for r in rows}
    assert by[("ddpm", 8)]["mean_relative_error"] < by[("ddpm", 4)]["mean_relative_error"]
    assert by[("sdm", 8)]["s0"] == -0.4
    folder = tmp_path / "study"
    with open(folder / "study.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [row["setting"] for row in table] == [r["setting"] for r in rows]
    assert float(table[1]["mean_relative_error"]) == pytest.approx(rows[1]["mean_relative_error"])
    markdown = (folder / "study.md").read_text()
    assert "ddpm (s0 = 0)" in markdown and "sdm (s0 = -0.4)" in markdown and rows[0]["setting"] in markdown
    assert (folder / "study.png").stat().st_size > 0 and (folder / "study_timesteps.png").stat().st_size > 0
    assert "timestep_relative_error" not in table[0]  # a figure's data, not a column
    assert len(rows[0]["timestep_relative_error"]) == 3 and min(rows[0]["timestep_relative_error"].values()) > 0

    # A re-run trains nothing and quantizes nothing: every run and setting is finished.
    import sdmlib.quant.run as run_module
    import sdmlib.train as train_module

    monkeypatch.setattr(run_module, "quantize_unet", lambda *a, **k: pytest.fail("a finished setting was redone"))
    monkeypatch.setattr(train_module, "build_dataset", lambda *a, **k: pytest.fail("a trained run was retrained"))
    assert run_study(study, progress=False) == rows


def test_setting_folder_with_other_parameters_is_refused(tmp_path, tiny_run):
    from sdmlib.config import TrainConfig
    from sdmlib.quant.run import quantize_run, setting_folder
    from sdmlib.train import train

    run_dir = train(TrainConfig.from_mapping({**tiny_run, "output_dir": str(tmp_path / "run")}), progress=False)
    config = QuantConfig(run_dir=str(run_dir), method="minmax", **QUICK)
    quantize_run(config)
    recorded = json.loads((setting_folder(config) / "metrics.json").read_text())["parameters"]
    assert recorded["num_eval_samples"] == 4
    # Same folder name, other measurement or calibration: refused, naming the field; nothing is overwritten.
    for change in ({"num_eval_samples": 8}, {"seed": 1}, {"batch_size": 4}):
        with pytest.raises(ValueError, match=f"{next(iter(change))}=.* there, .* now"):
            quantize_run(config.replace(**change))
    # Where it runs is not part of the setting.
    assert quantize_run(config.replace(device="cpu"))["parameters"]["num_eval_samples"] == 4
    # A saved but unmeasured quantizer is checked the same way before it is loaded.
    (setting_folder(config) / "metrics.json").unlink()
    with pytest.raises(ValueError, match="seed=0 there, 1 now"):
        quantize_run(config.replace(seed=1))
    # Another sampler or step count is another folder, so it never meets the first one's results.
    assert config.replace(sampler="ddim", num_inference_steps=4).setting_name().endswith("-ddim4")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda' was asked for, but torch sees no CUDA device"):
            quantize_run(config.replace(device="cuda"))
