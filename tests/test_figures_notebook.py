"""The figures notebook runs to the end on a sweep that lacks panels, each absent panel naming the grid to run."""

import json

import pandas as pd
import papermill

from sdmlib.config import PROJECT_ROOT

NOTEBOOK = PROJECT_ROOT / "notebooks" / "figures.ipynb"


def result_row(dataset, s0, protocol, seed=0, variant="sdm"):
    return {
        "run_id": f"{dataset}-{variant}-s0_{s0:g}-seed{seed}-{protocol}",
        "status": "finished",
        "dataset": dataset,
        "variant": variant,
        "s0": s0,
        "seed": seed,
        "protocol": protocol,
        "num_eval_samples": 100,
        "pca_fd": 1.0 + (s0 + 0.3) ** 2,
        "pca_precision": 0.5 - 0.1 * s0,
        "pca_recall": 0.5 + 0.1 * s0,
        "pca_f_score": 0.5,
    }


def test_figures_notebook_finishes_on_a_sweep_without_the_main_dataset(tmp_path):
    """CIFAR-100 runs of the authors' protocol only (seed 1, SDM), plus CIFAR-10 runs of the other protocol, which
    the notebook must leave out: panels 2a, 2b, 2c, 2f, Figure 3 and 2e have no runs and say what to run."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    rows = [result_row("cifar100", s0, "authors", seed=1) for s0 in (-0.6, -0.3, 0.0, 0.3, 0.6)]
    rows += [result_row("cifar10", s0, "paper-text") for s0 in (-0.4, 0.0, 0.4)]
    pd.DataFrame(rows).to_csv(sweep / "results.csv", index=False)
    output = tmp_path / "figures"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(tmp_path / "figures.ipynb"),
        parameters={"sweep_dir": str(sweep), "output_dir": str(output)},
        cwd=str(NOTEBOOK.parent),
        progress_bar=False,
    )
    produced = json.loads((output / "figures.json").read_text())["figures"]
    assert produced["fig2a"]["missing"] == "no runs of cifar10 in this sweep: run params/sweep-fig2a.yaml"
    assert produced["fig2e"]["missing"] == "no runs of celeba64 in this sweep: run params/sweep-fig2e.yaml"
    assert all("run params/sweep-fig2a.yaml" in grid["missing"] for grid in produced["fig3"]["grids"])
    assert "run params/sweep-fig2a.yaml" in produced["fig2f"]["missing"]
    assert produced["fig2d"]["num_runs"] == 5  # the panel that has runs is drawn
    table = pd.read_csv(output / "comparison.csv")
    assert table[table["panel"] == "2a"]["num_runs"].iloc[0] == 0  # the paper-text CIFAR-10 runs are left out
