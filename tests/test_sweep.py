"""Sweeps: grid files, the results table under crashes, skip / resume / retry, failures recorded, the executors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

import sdmlib.io
import sdmlib.sweep as sweep
import sdmlib.train as training
from sdmlib.config import PROJECT_ROOT, TrainConfig, run_name
from sdmlib.sweep import ResultsTable, SweepConfig, SweepGrid, grid_runs, run_one, run_sweep, sweep_status

PARAMS = PROJECT_ROOT / "params"
TINY = {"train_steps": 4, "lr_warmup_steps": 1, "eval_batch_size": 8}  # on top of conftest's tiny_run


def write_grid(tmp_path, tiny_run, name="tiny", **axes) -> Path:
    """A grid file whose base is a tiny-run YAML file, as a researcher would write them."""
    base = tmp_path / "tiny.yaml"
    base.write_text(yaml.safe_dump({**tiny_run, **TINY}))
    grid = {"name": name, "base": [str(base)], "variant": ["sdm"], "s0": [-0.5, 0.0, 0.5], "seed": [0], **axes}
    grid.setdefault("dataset", ["folder"])
    path = tmp_path / f"sweep-{name}.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def sweep_config(grid: Path, sweep_dir: Path, **changes) -> SweepConfig:
    values = {"grid": str(grid), "output_dir": str(sweep_dir), "executor": "debug", "runner": "python"}
    return SweepConfig.from_mapping({**values, "poll_seconds": 0.2, **changes})


# -- grid files ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(PARAMS.glob("sweep-*.yaml")), ids=lambda p: p.name)
def test_every_grid_in_params_loads_and_its_runs_validate(path):
    grid = SweepGrid.read(path)
    runs = grid_runs(grid, "outputs/sweeps/check")
    assert 0.0 in grid.s0, "every grid carries the DDPM baseline s0 = 0"
    assert all(-1 <= s0 <= 1 for s0 in grid.s0)
    assert len({run.run_id for run in runs}) == len(runs)
    assert all(run.config.run_dir == PROJECT_ROOT / "outputs/sweeps/check/runs" / run.run_id for run in runs)


def test_paper_grids_cover_the_figure_panels():
    fig2a = SweepGrid.read(PARAMS / "sweep-fig2a.yaml")
    assert fig2a.dataset == ("cifar10",) and fig2a.variant == ("sdm",) and len(fig2a.seed) >= 3
    fig2bc = SweepGrid.read(PARAMS / "sweep-fig2bc.yaml")
    assert set(fig2bc.variant) == {"sdm", "hdm"} and len(fig2bc.seed) == 1
    assert SweepGrid.read(PARAMS / "sweep-fig2d.yaml").dataset == ("cifar100",)
    fig2e = SweepGrid.read(PARAMS / "sweep-fig2e.yaml")
    assert fig2e.dataset == ("celeba64",) and grid_runs(fig2e, "x")[0].config.image_size == 64
    smoke = SweepGrid.read(PARAMS / "sweep-smoke.yaml")
    assert len(smoke.s0) == 3 and len(smoke.seed) == 1
    assert {run.config.model_size for run in grid_runs(smoke, "x")} == {"tiny"}


PAPER_GRIDS = ("fig2a", "fig2bc", "fig2d", "fig2e")


@pytest.mark.parametrize("name", PAPER_GRIDS)
def test_paper_grids_state_the_authors_protocol(name):
    """The grids that reproduce the paper's numbers say so in the file, and their runs carry it in their names."""
    path = PARAMS / f"sweep-{name}.yaml"
    assert yaml.safe_load(path.read_text())["overrides"]["protocol"] == "authors"
    runs = grid_runs(SweepGrid.read(path), "x")
    assert all(run.config.resqueeze == "current" and run.config.clip_box == "whitened" for run in runs)
    assert all(run.run_id.endswith("-authors") for run in runs)


def test_the_paper_text_ablation_runs_the_same_points_under_other_names():
    authors = SweepGrid.read(PARAMS / "sweep-fig2a.yaml")
    ablation = SweepGrid.read(PARAMS / "sweep-fig2a-papertext.yaml")
    assert yaml.safe_load((PARAMS / "sweep-fig2a-papertext.yaml").read_text())["overrides"]["protocol"] == "paper-text"
    assert (ablation.dataset, ablation.variant, ablation.s0, ablation.seed) == (
        authors.dataset, authors.variant, authors.s0, authors.seed
    )
    authors_runs, ablation_runs = grid_runs(authors, "x"), grid_runs(ablation, "x")
    assert len(authors_runs) == len(ablation_runs)
    assert not {r.run_id for r in authors_runs} & {r.run_id for r in ablation_runs}  # one sweep folder holds both
    assert all(r.config.resqueeze == "previous" and r.config.clip_box == "data" for r in ablation_runs)


def test_s0_zero_is_one_shared_baseline_run():
    grid = SweepGrid.from_mapping({"variant": ["sdm", "hdm"], "s0": [-0.5, 0.0, 0.5], "seed": [0, 1]})
    ids = [run.run_id for run in grid_runs(grid, "x")]
    assert len(ids) == 2 * 5
    assert "cifar10-sdm-s0_0-seed1" in ids and not any("hdm-s0_0-" in i for i in ids)
    assert run_name("cifar10", "sdm", -0.0, 0) == run_name("cifar10", "sdm", 0.0, 0)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"s0s": [0.0]}, "unknown parameter(s) ['s0s']"),
        ({"s0": ["strong"]}, "s0[0] must be a number, got 'strong'"),
        ({"seed": [0, 0]}, "seed lists a value twice"),
        ({"variant": []}, "variant must list at least one value"),
        ({"overrides": {"s0": 0.3}}, "overrides must not set ['s0']"),
        ({"overrides": {"output_dir": "x"}}, "overrides must not set ['output_dir']"),
        ({"base": ["params/nonexistent.yaml"]}, "base file 'params/nonexistent.yaml' does not exist"),
        ({"overrides": 3}, "overrides must be a mapping"),
    ],
)
def test_bad_grid_is_refused_with_a_message_naming_it(values, message):
    with pytest.raises(ValueError) as error:
        SweepGrid.from_mapping(values)
    assert message in str(error.value)


def test_a_run_the_grid_makes_invalid_is_refused_before_anything_runs():
    grid = SweepGrid.from_mapping({"name": "bad", "dataset": ["imagenet"]})
    with pytest.raises(ValueError, match=r"grid 'bad', run imagenet-sdm-s0_0-seed0: dataset must be one of"):
        grid_runs(grid, "x")
    with pytest.raises(FileNotFoundError, match="sweep-fig2a.yaml"):  # lists the grids there are
        SweepGrid.read("params/sweep-typo.yaml")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"executor": "kubernetes"}, "executor must be one of ('local', 'slurm', 'debug'), got 'kubernetes'"),
        ({"runner": "bash"}, "runner must be one of"),
        ({"max_parallel": -1}, "max_parallel must be 0"),
        ({"retry_failed": "yes"}, "retry_failed must be true or false, got 'yes'"),
        ({"poll_seconds": 0}, "poll_seconds must be a positive number"),
    ],
)
def test_bad_sweep_parameters_are_refused(values, message):
    with pytest.raises(ValueError) as error:
        SweepConfig.from_mapping(values)
    assert message in str(error.value)


# -- the results table -----------------------------------------------------------------------------------------


def test_table_keeps_one_row_per_run_and_all_columns(tmp_path):
    table = ResultsTable(tmp_path / "results.csv")
    table.record({"run_id": "a", "status": "failed", "error": "ValueError: boom, with a comma\nand a newline"})
    table.record({"run_id": "b", "status": "finished", "pca_fd": 1.25, "unavailable": {"fid": "offline"}})
    table.record({"run_id": "a", "status": "finished", "pca_fd": 0.1 + 0.2, "extra_metric": 7})
    rows = table.by_run_id()
    assert list(rows) == ["b", "a"]
    assert rows["a"]["status"] == "finished" and float(rows["a"]["pca_fd"]) == 0.1 + 0.2  # full precision
    assert json.loads(rows["b"]["unavailable"]) == {"fid": "offline"}
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert header[: len(sweep.RESULT_COLUMNS)] == list(sweep.RESULT_COLUMNS) and header[-1] == "extra_metric"
    frame = sweep.read_results(tmp_path)
    assert frame.pca_fd.tolist() == [1.25, 0.1 + 0.2] and frame.fid.isna().all()
    with pytest.raises(ValueError, match="needs a run_id"):
        table.record({"status": "finished"})


def test_table_is_unchanged_by_a_crash_in_the_middle_of_a_write(tmp_path, monkeypatch):
    table = ResultsTable(tmp_path / "results.csv")
    table.record({"run_id": "a", "status": "finished", "pca_fd": 1.0})
    before = (tmp_path / "results.csv").read_bytes()

    def crash(descriptor):  # the new table is half on disk when the process "dies"
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(sdmlib.io.os, "fsync", crash)
    with pytest.raises(OSError, match="simulated crash"):
        table.record({"run_id": "b", "status": "finished", "pca_fd": 2.0})
    assert (tmp_path / "results.csv").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".results.csv.lock", "results.csv"]


WRITER = """
import sys
from sdmlib.sweep import ResultsTable
table = ResultsTable(sys.argv[1])
for i in range(100000):
    table.record({"run_id": f"run-{i}", "status": "finished", "pca_fd": i, "error": "x" * 100000})
"""


def test_table_survives_a_process_killed_while_writing(tmp_path):
    """SIGKILL a process that records big rows as fast as it can; every read, before and after, sees whole rows."""
    path = tmp_path / "results.csv"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
    try:
        deadline = time.monotonic() + 120
        seen = 0
        while seen < 4 and time.monotonic() < deadline:
            rows = ResultsTable(path).rows()
            assert [r["run_id"] for r in rows] == [f"run-{i}" for i in range(len(rows))]
            seen = len(rows)
        assert seen >= 4, "the writer did not get going"
        os.kill(writer.pid, signal.SIGKILL)  # lands, with overwhelming odds, in the middle of a write
        writer.wait(timeout=30)
    finally:
        writer.kill()
    rows = ResultsTable(path).rows()
    assert len(rows) >= 4
    assert [r["run_id"] for r in rows] == [f"run-{i}" for i in range(len(rows))]
    assert all(len(r["error"]) == 100000 and r["status"] == "finished" for r in rows)
    table = ResultsTable(path)  # and the table takes new rows afterwards (the dead writer's lock is gone)
    table.record({"run_id": "after", "status": "failed"})
    assert table.rows()[-1]["run_id"] == "after"


# -- running a grid --------------------------------------------------------------------------------------------


def test_sweep_records_failures_skips_finished_resumes_interrupted_and_retries(tmp_path, tiny_run, monkeypatch):
    grid = write_grid(tmp_path, tiny_run)
    sweep_dir = tmp_path / "sweep"
    config = sweep_config(grid, sweep_dir)
    runs = {run.run_id: run for run in grid_runs(SweepGrid.read(grid), sweep_dir)}
    interrupted, conflicting = runs["folder-sdm-s0_-0.5-seed0"], runs["folder-sdm-s0_0.5-seed0"]

    # One run interrupted after its first checkpoint; one run folder holding a run with other parameters.
    training.train(interrupted.config, progress=False, stop_after_step=2)
    training.prepare_run_dir(conflicting.config.replace(train_steps=99))
    states = sweep_status(list(runs.values()), sweep_dir).set_index("run_id").state
    assert states.to_dict() == {
        "folder-sdm-s0_-0.5-seed0": "interrupted",
        "folder-sdm-s0_0-seed0": "pending",
        "folder-sdm-s0_0.5-seed0": "interrupted",
    }

    report = run_sweep(config, progress=False)
    assert sorted(report.finished) == ["folder-sdm-s0_-0.5-seed0", "folder-sdm-s0_0-seed0"]
    assert report.failed == ["folder-sdm-s0_0.5-seed0"] and report.skipped == []
    rows = ResultsTable(sweep_dir / "results.csv").by_run_id()
    failed = rows["folder-sdm-s0_0.5-seed0"]
    assert failed["status"] == "failed" and failed["error"].startswith("RunFolderConflictError: run folder")
    assert "train_steps: 99 (recorded) vs 4 (now)" in failed["error"]
    assert "Traceback" in (sweep_dir / failed["error_log"]).read_text()
    finished = rows["folder-sdm-s0_-0.5-seed0"]
    assert finished["status"] == "finished" and float(finished["pca_fd"]) > 0 and finished["error"] == ""
    assert (sweep_dir / finished["samples_grid"]).is_file() and (sweep_dir / finished["metrics_json"]).is_file()
    training_record = json.loads((interrupted.config.run_dir / "training.json").read_text())
    assert training_record["steps"] == 4  # resumed at step 2 and finished, not restarted in a fresh folder
    assert (sweep_dir / "grids" / "tiny.yaml").is_file()
    progress = json.loads((sweep_dir / "progress.json").read_text())
    assert (progress["finished"], progress["failed"], progress["pending"], progress["running"]) == (2, 1, 0, 0)

    # Again, failed runs not retried: nothing trains.
    def no_training(*args, **kwargs):
        raise AssertionError("a finished or skipped run was trained again")

    monkeypatch.setattr(training, "train", no_training)
    report = run_sweep(sweep_config(grid, sweep_dir, retry_failed=False), progress=False)
    assert len(report.skipped) == 3 and report.finished == report.failed == []
    monkeypatch.undo()

    # The conflict resolved, a retry runs only that run and replaces its row.
    import shutil

    shutil.rmtree(conflicting.config.run_dir)
    report = run_sweep(config, progress=False)
    assert report.finished == ["folder-sdm-s0_0.5-seed0"] and len(report.skipped) == 2
    row = ResultsTable(sweep_dir / "results.csv").by_run_id()["folder-sdm-s0_0.5-seed0"]
    assert (row["status"], row["attempt"], row["error"]) == ("finished", "2", "")
    assert not (conflicting.config.run_dir / "error.log").exists()


def test_a_dataset_that_cannot_be_had_fails_its_runs_only(tmp_path, tiny_run):
    grid = write_grid(tmp_path, tiny_run, s0=[0.0])
    spec = yaml.safe_load(grid.read_text())
    spec["dataset"] = ["folder", "cifar100"]  # no CIFAR-100 here, and no network
    spec.setdefault("overrides", {})
    grid.write_text(yaml.safe_dump(spec))
    report = run_sweep(sweep_config(grid, tmp_path / "sweep"), progress=False)
    assert report.finished == ["folder-sdm-s0_0-seed0"] and report.failed == ["cifar100-sdm-s0_0-seed0"]
    error = ResultsTable(tmp_path / "sweep" / "results.csv").by_run_id()["cifar100-sdm-s0_0-seed0"]["error"]
    assert error.startswith("DatasetNotFoundError: CIFAR-100 not found")


def test_local_executor_runs_the_grid_in_parallel_jobs(tmp_path, tiny_run):
    """The launcher path: submitit's LocalExecutor, two CPU jobs at once, each a separate process."""
    grid = write_grid(tmp_path, tiny_run, s0=[-0.5, 0.0])
    sweep_dir = tmp_path / "sweep"
    report = run_sweep(sweep_config(grid, sweep_dir, executor="local", max_parallel=2), progress=False)
    assert sorted(report.finished) == ["folder-sdm-s0_-0.5-seed0", "folder-sdm-s0_0-seed0"], report
    rows = ResultsTable(sweep_dir / "results.csv").rows()
    assert {row["status"] for row in rows} == {"finished"}
    assert len({row["host"] for row in rows}) == 1
    job_logs = list((sweep_dir / "submitit").glob("*/*_log.out"))
    assert len(job_logs) == 2  # one submitit job per run


def test_a_job_that_dies_without_a_result_is_recorded_as_failed(tmp_path):
    class DeadJob:
        job_id = "4242"

        def result(self):
            raise RuntimeError("Job 4242 was killed (out of memory)")

    run = grid_runs(SweepGrid.from_mapping({"s0": [0.3]}), tmp_path)[0]
    row = sweep._job_row(run, DeadJob(), tmp_path, "g")
    assert row["status"] == "failed" and "killed (out of memory)" in row["error"] and "job 4242" in row["error"]
    assert ResultsTable(tmp_path / "results.csv").by_run_id()[run.run_id]["error"] == row["error"]


def test_notebook_runner_executes_train_notebook_into_the_run_folder(tmp_path, tiny_run):
    config = TrainConfig.from_mapping({**tiny_run, **TINY, "s0": -0.3, "output_dir": str(tmp_path / "sweep/runs/one")})
    row = run_one(config.to_dict(), str(tmp_path / "sweep"), runner="notebook", grid_name="nb")
    assert row["status"] == "finished", row.get("error")
    assert row["notebook"] == "runs/one/train.ipynb"
    executed = json.loads((tmp_path / "sweep" / row["notebook"]).read_text())
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert "s0 = -0.3" in "".join(injected[0]["source"])


def test_slurm_executor_gets_one_gpu_per_run(tmp_path, monkeypatch):
    """No cluster here: a stand-in `srun` on PATH lets submitit build the sbatch file, which is checked."""
    import submitit

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = SweepConfig.from_mapping({"executor": "slurm", "slurm_partition": "gpu", "timeout_minutes": 90})
    executor = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm")
    executor.update_parameters(**sweep.slurm_parameters(config))
    script = executor._executor._make_submission_file_text("python -m job", "uid")
    for line in ("--gpus-per-node=1", "--partition=gpu", "--time=90", "--cpus-per-task=8", "--mem=64GB"):
        assert f"#SBATCH {line}" in script


# -- progress --------------------------------------------------------------------------------------------------


def test_time_left_estimate():
    assert sweep.estimate_seconds_left([], pending=3, running=1, parallel=2) is None
    assert sweep.estimate_seconds_left([], pending=0, running=0, parallel=2) == 0.0
    # 100 s per run; 3 waiting + one half done, two at a time: 3.5 × 100 / 2
    assert sweep.estimate_seconds_left([90.0, 110.0], pending=3, running=1, parallel=2) == pytest.approx(175.0)
    assert sweep.estimate_seconds_left([100.0], pending=1, running=0, parallel=8) == pytest.approx(100.0)
    assert sweep.format_duration(3725) == "1h02m" and sweep.format_duration(65) == "1m05s"


# -- interruption, failures, what counts as finished ---------------------------------------------------------------


def test_an_interrupted_sweep_leaves_a_true_progress_file_and_no_debris(tmp_path, tiny_run):
    """kill -INT of a sweep while a run trains in a local job: progress.json says nothing runs, and submitit's
    literal `%j` folder does not remain. (The python runner: a notebook kernel's start-up takes minutes on a loaded
    CPU; the partial notebook's fate is tested by test_a_notebook_cut_short_is_not_kept.)"""
    grid = write_grid(tmp_path, tiny_run, s0=[0.0])
    spec = yaml.safe_load(grid.read_text())
    spec["overrides"] = {"train_steps": 100000, "checkpoint_every": 100000}  # it runs until interrupted
    grid.write_text(yaml.safe_dump(spec))
    sweep_dir = tmp_path / "sweep"
    code = (
        "from sdmlib.sweep import SweepConfig, run_sweep\n"
        f"config = SweepConfig.from_mapping({{'grid': {str(grid)!r}, 'output_dir': {str(sweep_dir)!r}, "
        "'executor': 'local', 'runner': 'python', 'poll_seconds': 0.2})\n"
        "run_sweep(config, progress=False)\n"
    )
    # SIGINT's default action in the sweep, whatever this test run inherited: a test run started in the background
    # by a non-interactive shell ignores SIGINT, and a Python process started with it ignored never raises
    # KeyboardInterrupt, so the sweep would go on (and this test time out) for a reason outside the code under test.
    sweeping = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    run_dir = sweep_dir / "runs" / "folder-sdm-s0_0-seed0"
    try:
        deadline = time.monotonic() + 600
        while not (run_dir / "principal_axis.json").exists() and time.monotonic() < deadline:  # training began
            assert sweeping.poll() is None, sweeping.stdout.read().decode()[-3000:]
            time.sleep(0.2)
        progress = json.loads((sweep_dir / "progress.json").read_text())
        assert progress["running"] == 1
        job_processes = psutil.Process(sweeping.pid).children(recursive=True)  # submitit's controller and its task
        assert job_processes
        sweeping.send_signal(signal.SIGINT)
        sweeping.wait(timeout=300)
    finally:
        if sweeping.poll() is None:
            sweeping.kill()
    assert sweeping.returncode != 0  # the interruption is not swallowed
    alive = [p for p in job_processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for process in alive:  # leave nothing running, even when the check below fails
        process.kill()
    assert not alive, f"the interrupted sweep left its job running: {[p.cmdline()[:4] for p in alive]}"
    progress = json.loads((sweep_dir / "progress.json").read_text())
    assert (progress["running"], progress["state"]) == (0, "interrupted")
    assert not (sweep_dir / "submitit" / "%j").exists()
    assert not (run_dir / sweep.PARTIAL_NOTEBOOK).exists()
    notebook = run_dir / "train.ipynb"
    if notebook.exists():
        import nbformat

        nbformat.read(notebook, as_version=4)  # whole, readable


def test_a_notebook_cut_short_is_not_kept(tmp_path):
    partial, target = tmp_path / sweep.PARTIAL_NOTEBOOK, tmp_path / "train.ipynb"
    partial.write_bytes(b"")  # papermill truncates before each rewrite
    sweep._keep_notebook(partial, target)
    assert not partial.exists() and not target.exists()
    partial.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    sweep._keep_notebook(partial, target)
    assert not partial.exists() and target.exists()


def test_a_sweep_with_failed_runs_ends_with_an_error_that_lists_them(tmp_path):
    import pandas as pd

    status = pd.DataFrame(
        [
            {"run_id": "a", "state": "finished", "error": ""},
            {"run_id": "b", "state": "failed", "error": "DatasetNotFoundError: CIFAR-10 not found"},
            {"run_id": "c", "state": "interrupted", "error": ""},
        ]
    )
    with pytest.raises(sweep.SweepFailedError, match="2 of 3 runs did not finish") as error:
        sweep.raise_for_unfinished(status)
    assert "b (failed): DatasetNotFoundError: CIFAR-10 not found" in str(error.value)
    assert "c (interrupted)" in str(error.value) and "a (" not in str(error.value)
    sweep.raise_for_unfinished(status, allow_failed=True)  # a partial grid, accepted explicitly
    sweep.raise_for_unfinished(status[status.state == "finished"])


def test_the_sweep_notebook_exits_non_zero_when_every_run_fails(tmp_path, tiny_run):
    """The observed case: every run fails (a missing dataset); papermill must fail, and say why."""
    import papermill

    grid = write_grid(tmp_path, tiny_run, s0=[0.0], dataset=["cifar100"])
    spec = yaml.safe_load(grid.read_text())
    spec["overrides"] = {"data_root": str(tmp_path / "no-data")}
    grid.write_text(yaml.safe_dump(spec))
    parameters = {"grid": str(grid), "output_dir": str(tmp_path / "sweep"), "executor": "debug", "runner": "python"}
    with pytest.raises(papermill.PapermillExecutionError) as error:
        papermill.execute_notebook(
            str(PROJECT_ROOT / "notebooks" / "sweep.ipynb"),
            str(tmp_path / "sweep.ipynb"),
            parameters=parameters,
            cwd=str(PROJECT_ROOT / "notebooks"),
            progress_bar=False,
        )
    assert error.value.ename == "SweepFailedError"
    assert "1 of 1 runs did not finish" in error.value.evalue and "DatasetNotFoundError" in error.value.evalue


def test_a_run_counts_as_finished_only_when_its_metrics_file_exists(tmp_path):
    run = grid_runs(SweepGrid.from_mapping({"s0": [0.3]}), tmp_path)[0]
    row = {"run_id": run.run_id, "status": "finished"}
    assert sweep.run_state(run, row) == "pending"
    training.prepare_run_dir(run.config)
    assert sweep.run_state(run, row) == "interrupted"  # the row says finished, but metrics.json is gone
    (run.config.run_dir / "metrics.json").write_text("{}")
    assert sweep.run_state(run, row) == "finished"
    assert sweep.run_state(run, {**row, "status": "failed"}) == "failed"


def test_evaluation_axes_train_once_and_record_a_row_per_sampler_setting(tmp_path, tiny_run):
    """num_inference_steps (and sampler, η) as grid axes: one training run, its own evaluation, and one row and
    one evaluations/<label> folder per point; a second launch skips all of it."""
    grid = write_grid(tmp_path, tiny_run, s0=[-0.5], sampler=["ddpm", "ddim"], num_inference_steps=[2], eta=[-1, 0.5])
    sweep_dir = tmp_path / "sweep"
    (run,) = grid_runs(SweepGrid.read(grid), sweep_dir)
    # η = 0.5 pairs with ddim only: ddpm takes no η
    assert [(p.sampler, p.num_inference_steps, p.eta) for p in run.evaluations] == [
        ("ddpm", 2, -1), ("ddim", 2, -1), ("ddim", 2, 0.5)
    ]
    report = run_sweep(sweep_config(grid, sweep_dir), progress=False)
    assert report.finished == [run.run_id] and not report.failed
    rows = ResultsTable(sweep_dir / "results.csv").by_run_id()
    labels = ("ddpm-steps2", "ddim-steps2", "ddim-steps2-eta0.5")
    assert set(rows) == {run.run_id, *(f"{run.run_id}@{label}" for label in labels)}
    point = rows[f"{run.run_id}@ddim-steps2-eta0.5"]
    assert point["status"] == "finished" and point["num_inference_steps"] == "2" and point["sampler"] == "ddim"
    assert point["evaluation"] == "evaluations/ddim-steps2-eta0.5" and float(point["pca_fd"]) > 0
    assert (sweep_dir / point["metrics_json"]).parent == run.config.run_dir / "evaluations" / "ddim-steps2-eta0.5"
    assert json.loads((sweep_dir / point["metrics_json"]).read_text())["sampling"]["step_kwargs"] == {"eta": 0.5}
    trained = (run.config.run_dir / "training.json").stat().st_mtime_ns
    again = run_sweep(sweep_config(grid, sweep_dir), progress=False)
    assert again.skipped == [run.run_id] and (run.config.run_dir / "training.json").stat().st_mtime_ns == trained

    # A lost point makes the run unfinished; the next launch evaluates only that point (no retraining).
    (run.config.run_dir / "evaluations" / "ddim-steps2" / "metrics.json").unlink()
    assert sweep_status([run], sweep_dir).state.tolist() == ["interrupted"]
    assert run_sweep(sweep_config(grid, sweep_dir), progress=False).finished == [run.run_id]
    assert (run.config.run_dir / "training.json").stat().st_mtime_ns == trained


def test_evaluation_axes_refuse_bad_values_before_anything_runs(tmp_path, tiny_run):
    # Without evaluation axes a run is evaluated once, its own way, and records one row (as before samplers).
    assert all(run.evaluations == () for run in grid_runs(SweepGrid.read(write_grid(tmp_path, tiny_run)), tmp_path))
    with pytest.raises(ValueError, match=r"sampler must be one of .*got 'plms'"):
        grid_runs(SweepGrid.read(write_grid(tmp_path, tiny_run, sampler=["plms"])), tmp_path / "s")
    with pytest.raises(ValueError, match=r"overrides must not set \['sampler'\]"):
        SweepGrid.from_mapping({"overrides": {"sampler": "ddim"}})
