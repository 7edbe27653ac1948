"""A smoke run of notebooks/train.ipynb through papermill, as `make demo` runs it, on a tiny profile."""

import json

import papermill
import pytest

from sdmlib.config import PROJECT_ROOT


def test_train_notebook_runs_end_to_end_through_papermill(tmp_path, monkeypatch):
    monkeypatch.setenv("SDM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    run_dir = tmp_path / "run"
    parameters = dict(
        dataset="photos",
        model_size="tiny",
        s0=-0.3,
        train_steps=4,
        batch_size=8,
        lr_warmup_steps=1,
        checkpoint_every=2,
        num_workers=0,
        num_inference_steps=4,
        num_eval_samples=16,
        eval_batch_size=8,
        num_grid_samples=4,
        pca_components=4,
        metrics=["pca_fd"],
        output_dir=str(run_dir),
    )
    papermill.execute_notebook(
        str(PROJECT_ROOT / "notebooks" / "train.ipynb"),
        str(tmp_path / "executed.ipynb"),
        parameters=parameters,
        cwd=str(PROJECT_ROOT / "notebooks"),
        kernel_name="python3",
        progress_bar=False,
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["parameters"]["s0"] == -0.3 and metrics["parameters"]["dataset"] == "photos"
    assert metrics["metrics"]["pca_fd"] > 0
    assert (run_dir / "samples_grid.png").exists() and (run_dir / "loss.png").exists()


def test_misspelt_notebook_parameter_fails_the_run(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError, match="unknown parameter"):
        papermill.execute_notebook(
            str(PROJECT_ROOT / "notebooks" / "train.ipynb"),
            str(tmp_path / "executed.ipynb"),
            parameters={"s00": -0.3, "output_dir": str(tmp_path / "run")},
            cwd=str(PROJECT_ROOT / "notebooks"),
            kernel_name="python3",
            progress_bar=False,
        )
