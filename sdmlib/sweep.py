"""Sweeps: a grid of training runs (s0 × variant × seed × dataset), launched through submitit, one results table.

Every grid point is exactly the run `notebooks/train.ipynb` does with those parameters: the sweep executes that
notebook with papermill (`runner="notebook"`; the executed copy is kept in the run folder as `train.ipynb`), or calls
the two library functions the notebook calls, `train` and `evaluate_run` (`runner="python"`, no Jupyter kernel).
Either way a run folder of a sweep has the layout of any other run, and re-running resumes it from its checkpoints.

Execution goes through submitit, whose executors cover a researcher's machines without a scheduler of our own:
- "local": `submitit.LocalExecutor`, one job per GPU of this machine (CUDA_VISIBLE_DEVICES pinned per job), or
  `max_parallel` CPU jobs on a machine without GPUs;
- "slurm": `submitit.AutoExecutor(cluster="slurm")`, one job array with one GPU per run;
- "debug": `submitit.DebugExecutor`, every run in this process, one after the other (for pdb).

A sweep folder (`output_dir`):

    results.csv           one row per run that ended (finished or failed): parameters, every metric, wall times,
                          paths relative to the sweep folder, the error of a failed run; rewritten whole and
                          atomically under a file lock by the job that ends, so a crash never leaves half a table
    runs/<run_id>/        the run folders (config.json, checkpoints/, train.ipynb, metrics.json, samples_grid.png …)
    grids/<name>.yaml     a copy of every grid file launched into this folder
    progress.json         counts and the estimated time left, rewritten while the sweep runs
    submitit/             each job's pickled call, stdout and stderr

Re-running a sweep skips runs whose row says "finished" and whose metrics.json exists, resumes interrupted runs from
their last checkpoint (the training loop does that by itself), and retries failed ones (`retry_failed`).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import itertools
import json
import math
import os
import platform
import shutil
import signal
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .config import DEFAULT_TARGETS, PROJECT_ROOT, TrainConfig, TypedConfig, project_path, run_name
from .io import save_json, save_text

EXECUTORS = ("local", "slurm", "debug")
RUNNERS = ("notebook", "python")
GRID_AXES = ("dataset", "variant", "s0", "seed", "prediction_type", "loss_space", "model", "forward")
# Evaluation axes: every point is an evaluation of the same trained run (sdmlib.samplers), not a run of its own.
EVALUATION_AXES = ("sampler", "num_inference_steps", "eta")
TRAIN_NOTEBOOK = PROJECT_ROOT / "notebooks" / "train.ipynb"

# The results table's columns, in order; a row may carry more (a metric added later), appended after these.
RESULT_COLUMNS = (
    "run_id",
    "status",  # finished | failed
    "dataset",
    "variant",
    "s0",
    "seed",
    "protocol",  # TrainConfig.protocol_label: the protocol and any field that overrides it
    "resqueeze",
    "clip_box",
    "initial_squeeze",
    "prc_num_real",
    "model_size",
    "train_steps",
    "forward",  # the training marginal: paper | exact
    "sampler",  # the sampler of the evaluation (sdmlib.samplers), its steps and its η (-1: the sampler's own)
    "num_inference_steps",
    "eta",
    "evaluation",  # "" for the run's own evaluation, else the evaluations/<label> folder of an evaluation axis point
    "num_eval_samples",
    "fid",
    "isc_mean",
    "isc_std",
    "precision",
    "recall",
    "f_score",
    "pca_fd",
    "pca_precision",
    "pca_recall",
    "pca_f_score",
    "unavailable",  # JSON {metric: why it could not be computed}
    "train_seconds",  # training time summed over all attempts (training.json)
    "evaluation_seconds",
    "wall_seconds",  # this attempt, start to end, kernel start-up included
    "sampling_images_per_second",
    "device",
    "run_dir",  # paths relative to the sweep folder
    "samples_grid",
    "metrics_json",
    "notebook",
    "error",
    "error_log",
    "attempt",
    "finished_at",
    "host",
    "grid",
)
METRIC_COLUMNS = RESULT_COLUMNS[RESULT_COLUMNS.index("fid") : RESULT_COLUMNS.index("unavailable")]


# ----------------------------------------------------------------------------------------------------------------
# The grid file and the sweep's own parameters.


@dataclass(frozen=True)
class SweepGrid(TypedConfig):
    """A grid file in params/: the runs of one figure panel (or one dataset). Each run is the training config of
    `base` (TrainConfig YAML files, applied in order), updated by `overrides`, at one point of the grid axes."""

    name: str = ""  # names the grid in the results table; "" = the file's stem
    description: str = ""
    base: tuple[str, ...] = ()  # TrainConfig YAML files (relative to the repository root), applied in order
    overrides: dict = field(default_factory=dict)  # TrainConfig fields shared by every run, on top of base
    dataset: tuple[str, ...] = ("cifar10",)
    variant: tuple[str, ...] = ("sdm",)
    s0: tuple[float, ...] = (0.0,)
    seed: tuple[int, ...] = (0,)
    prediction_type: tuple[str, ...] = ("epsilon",)  # what the network outputs (sdmlib.prediction)
    loss_space: tuple[str, ...] = ("epsilon",)  # where the loss is taken
    model: tuple[str, ...] = ("unet",)  # unet | jit (its patch_size and bottleneck_dim go in overrides)
    forward: tuple[str, ...] = ("paper",)  # the training marginal: paper (the authors') | exact (eq. 3's Σ_t)
    # evaluation axes: each trained run is evaluated at every point (sdmlib.samplers), trained once
    sampler: tuple[str, ...] = ("ddpm",)  # ddpm | ddim | exact | exact_ddim
    num_inference_steps: tuple[int, ...] = ()  # empty: the base config's (overrides may set it then)
    eta: tuple[float, ...] = (-1.0,)  # -1: each sampler's own; other values apply to the samplers that take one

    @classmethod
    def read(cls, path: str | os.PathLike) -> SweepGrid:
        """Load a grid file (yaml.safe_load); unknown keys, wrong types and invalid runs are errors."""
        path = project_path(path)
        if not path.is_file():
            grids = sorted(p.name for p in (PROJECT_ROOT / "params").glob("sweep-*.yaml"))
            raise FileNotFoundError(f"grid file {str(path)!r} does not exist; the grids in params/: {grids}")
        grid = cls.load(path)
        return grid if grid.name else dataclasses.replace(grid, name=path.stem)

    def validate(self) -> None:
        if os.sep in self.name or "/" in self.name:
            raise ValueError(f"name must not contain path separators, got {self.name!r}")
        for axis in GRID_AXES:
            values = getattr(self, axis)
            if not values:
                raise ValueError(f"{axis} must list at least one value, got {list(values)!r}")
            if len(set(values)) != len(values):
                raise ValueError(f"{axis} lists a value twice: {list(values)!r}")
        for axis in EVALUATION_AXES:
            values = getattr(self, axis)
            if len(set(values)) != len(values):
                raise ValueError(f"{axis} lists a value twice: {list(values)!r}")
        if not self.sampler or not self.eta:
            raise ValueError(f"sampler and eta must each list a value, got {list(self.sampler)}, {list(self.eta)}")
        axes = {*GRID_AXES, "sampler", "eta", "output_dir"}
        if self.num_inference_steps:
            axes.add("num_inference_steps")
        clashing = sorted(set(self.overrides) & axes)
        if clashing:
            raise ValueError(
                f"overrides must not set {clashing}: the grid axes are set per run and output_dir by the sweep"
            )
        for path in self.base:
            if not project_path(path).is_file():
                raise ValueError(f"base file {path!r} does not exist (paths are relative to the repository root)")


@dataclass(frozen=True)
class SweepConfig(TypedConfig):
    """The sweep notebook's parameters: which grid, where, and on what hardware."""

    grid: str = "params/sweep-fig2a.yaml"  # a grid file
    output_dir: str = "outputs/sweeps/paper"  # the sweep folder, shared by the grids of one study
    executor: str = "local"  # local | slurm | debug
    max_parallel: int = 0  # runs at once with the local executor; 0 = one per GPU (1 without a GPU)
    runner: str = "notebook"  # notebook: papermill notebooks/train.ipynb | python: the library calls it makes
    retry_failed: bool = True  # run again the runs whose last attempt failed
    timeout_minutes: int = 1440  # per run; submitit stops a job after this long
    poll_seconds: float = 10.0  # how often the progress view is refreshed
    slurm_partition: str = ""  # "" = the cluster's default partition
    slurm_gpus_per_run: int = 1
    slurm_cpus_per_run: int = 8
    slurm_mem_gb: int = 64
    slurm_array_parallelism: int = 64  # at most this many runs of the job array at once
    allow_failed: bool = False  # accept a partial grid: without it the notebook ends with an error if a run failed

    def validate(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")
        if self.runner not in RUNNERS:
            raise ValueError(f"runner must be one of {RUNNERS}, got {self.runner!r}")
        if not self.output_dir:
            raise ValueError("output_dir must name the sweep folder, got ''")
        if self.max_parallel < 0:
            raise ValueError(f"max_parallel must be 0 (one per GPU) or a positive integer, got {self.max_parallel}")
        for name in ("timeout_minutes", "slurm_cpus_per_run", "slurm_mem_gb", "slurm_array_parallelism"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.slurm_gpus_per_run < 0:
            raise ValueError(f"slurm_gpus_per_run must be a non-negative integer, got {self.slurm_gpus_per_run}")
        if not (math.isfinite(self.poll_seconds) and self.poll_seconds > 0):
            raise ValueError(f"poll_seconds must be a positive number, got {self.poll_seconds!r}")

    @property
    def sweep_dir(self) -> Path:
        return project_path(self.output_dir)


def _for_config(path: Path) -> str:
    """A path as a config stores it: relative to the repository root when inside it (the folder can move)."""
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(PROJECT_ROOT))
    return str(path)


# ----------------------------------------------------------------------------------------------------------------
# The runs of a grid.


@dataclass(frozen=True)
class Run:
    """One training run of a grid. `evaluations`: the points of the grid's evaluation axes, each a config of the same
    training run with its own sampler settings, evaluated into `evaluations/<label>` and recorded as row
    `<run_id>@<label>`; empty when the grid has none (the run's own evaluation is then its only row)."""

    run_id: str
    config: TrainConfig
    evaluations: tuple[TrainConfig, ...] = ()


def evaluation_id(run_id: str, config: TrainConfig) -> str:
    """The results-table row of one evaluation point of a run."""
    from .samplers import evaluation_label

    return f"{run_id}@{evaluation_label(config.sampler, config.num_inference_steps, config.eta)}"


def evaluation_points(grid: SweepGrid, config: TrainConfig) -> tuple[TrainConfig, ...]:
    """The configs of the grid's evaluation axes for one trained run; () when the axes hold only the run's own
    evaluation (ddpm at the base's steps). An η other than −1 is combined only with samplers that take one."""
    from .samplers import get_sampler

    steps = grid.num_inference_steps or (config.num_inference_steps,)
    points: dict[tuple, TrainConfig] = {}
    for sampler, num_inference_steps, eta in itertools.product(grid.sampler, steps, grid.eta):
        if eta != -1 and not get_sampler(sampler).eta_settable:
            continue
        point = config.replace(sampler=sampler, num_inference_steps=num_inference_steps, eta=eta)
        points.setdefault((sampler, num_inference_steps, point.eta), point)
    own = (config.sampler, config.num_inference_steps, config.eta)
    return () if list(points) == [own] else tuple(points.values())


def grid_runs(grid: SweepGrid, sweep_dir: str | os.PathLike) -> list[Run]:
    """Every run of `grid`, each config validated before anything starts.

    s0 = 0 is one run, with variant "sdm", whatever the variants: S(0) = I for SDM and HDM alike (eq. 9), so both
    curves share the DDPM baseline instead of training it twice. The protocol (`TrainConfig.protocol_label`) is
    part of every run's name, so grids of different protocols can share a sweep folder.
    """
    base = TrainConfig.load(*grid.base, **grid.overrides)
    runs: dict[str, Run] = {}
    points = itertools.product(
        grid.dataset, grid.variant, grid.s0, grid.seed, grid.prediction_type, grid.loss_space, grid.model, grid.forward
    )
    for dataset, variant, s0, seed, prediction_type, loss_space, model, forward in points:
        variant = "sdm" if s0 == 0 else variant
        forward = "paper" if s0 == 0 else forward  # at s0 = 0 both marginals are plain DDPM's, bit for bit
        targets = {"prediction_type": prediction_type, "loss_space": loss_space, "model": model}
        name = run_name(dataset, variant, s0, seed, base.protocol_label, **targets, forward=forward)
        if name not in runs:
            try:
                config = base.replace(
                    dataset=dataset,
                    variant=variant,
                    s0=s0,
                    seed=seed,
                    **targets,
                    forward=forward,
                    output_dir=_for_config(Path(sweep_dir) / "runs" / name),
                )
            except ValueError as error:
                raise ValueError(f"grid {grid.name!r}, run {name}: {error}") from error
            try:
                evaluations = evaluation_points(grid, config)
            except ValueError as error:
                raise ValueError(f"grid {grid.name!r}, run {name}: {error}") from error
            runs[name] = Run(name, config, evaluations)
    return list(runs.values())


# ----------------------------------------------------------------------------------------------------------------
# The results table.


class ResultsTable:
    """results.csv of a sweep: one row per run id, rewritten whole and atomically under an exclusive lock.

    A reader never sees half a table: each update writes a complete new file beside the old one, fsyncs it and
    renames it over the old one; a process killed mid-write leaves the previous table intact (and a stray
    temporary file, which is ignored). The lock (flock on a file beside the table) serialises concurrent jobs.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")

    def rows(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with open(self.path, newline="") as handle:
            return list(csv.DictReader(handle))

    def by_run_id(self) -> dict[str, dict[str, str]]:
        return {row["run_id"]: row for row in self.rows()}

    def record(self, row: Mapping[str, Any]) -> None:
        """Add `row`, replacing the row of the same run_id if there is one."""
        if not row.get("run_id"):
            raise ValueError(f"a results row needs a run_id, got {dict(row)!r}")
        with self._locked():
            rows = [r for r in self.rows() if r["run_id"] != row["run_id"]]
            rows.append({k: _cell(v) for k, v in row.items()})
            columns = list(RESULT_COLUMNS) + sorted({k for r in rows for k in r} - set(RESULT_COLUMNS))
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            save_text(self.path, text.getvalue())

    @contextlib.contextmanager
    def _locked(self):
        import fcntl

        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float):
        return repr(value)  # full precision; str() would do too, repr says so
    return str(value)


def read_results(sweep_dir: str | os.PathLike):
    """The results table of a sweep folder as a pandas DataFrame (numbers as numbers, empty cells as NaN)."""
    import pandas as pd

    path = project_path(sweep_dir) / "results.csv"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: run a sweep into {project_path(sweep_dir)} first "
            f"(papermill notebooks/sweep.ipynb outputs/sweep.ipynb -p grid params/sweep-….yaml "
            f"-p output_dir {sweep_dir})"
        )
    text_columns = ("run_id", "status", "dataset", "variant", "model_size", "error", "grid", "unavailable")
    text_columns += ("protocol", "resqueeze", "clip_box", "initial_squeeze", "sampler", "evaluation", "forward")
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={c: str for c in text_columns})
    for column in text_columns:
        if column in frame:
            frame[column] = frame[column].fillna("")
    return frame


# ----------------------------------------------------------------------------------------------------------------
# One run: the job a sweep submits.


def run_one(
    parameters: Mapping[str, Any],
    sweep_dir: str,
    runner: str = "notebook",
    grid_name: str = "",
    evaluations: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Train, sample and evaluate one run (resuming it if interrupted) and record its row; returns the row. Then
    evaluate the same trained run at each point of `evaluations` (configs as mappings: the grid's evaluation axes),
    each into its own `evaluations/<label>` folder and its own row `<run_id>@<label>`; finished ones are skipped.

    An exception of the run is recorded as a failed row (its traceback in the run folder's error.log) and not
    raised: the sweep goes on with the other runs. `parameters`: the run's TrainConfig as a mapping (a plain dict
    pickles between submitit's processes without surprises).
    """
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {RUNNERS}, got {runner!r}")
    config = TrainConfig.from_mapping(parameters)
    sweep_dir = Path(sweep_dir)
    table = ResultsTable(sweep_dir / "results.csv")
    name = config.run_dir.name
    previous = table.by_run_id().get(name, {})
    row: dict[str, Any] = {
        "run_id": name,
        **{k: getattr(config, k) for k in ("dataset", "variant", "s0", "seed", "model_size", "train_steps")},
        **{k: getattr(config, k) for k in ("resqueeze", "clip_box", "initial_squeeze", "prc_num_real")},
        "protocol": config.protocol_label,
        **{k: getattr(config, k) for k in DEFAULT_TARGETS},
        "forward": config.forward,
        **{k: getattr(config, k) for k in EVALUATION_AXES},
        "num_eval_samples": config.num_eval_samples,
        "run_dir": _relative(config.run_dir, sweep_dir),
        "attempt": int(previous.get("attempt") or 0) + 1,
        "host": platform.node(),
        "grid": grid_name,
    }
    start = time.perf_counter()
    try:
        if runner == "notebook":
            _execute_train_notebook(config)
        else:
            from .evaluate import evaluate_run
            from .train import train

            train(config, progress=False)
            evaluate_run(config, progress=False)
        row.update(_finished_fields(config, sweep_dir))
        row["status"] = "finished"
        with contextlib.suppress(FileNotFoundError):
            (config.run_dir / "error.log").unlink()  # an earlier attempt's; this one succeeded
    except Exception as error:  # noqa: BLE001 (a failed run is data: it is recorded, and the sweep goes on)
        config.run_dir.mkdir(parents=True, exist_ok=True)
        log = save_text(config.run_dir / "error.log", traceback.format_exc())
        row.update(status="failed", error=describe_error(error), error_log=_relative(log, sweep_dir))
    row["wall_seconds"] = time.perf_counter() - start
    row["finished_at"] = _now()
    if (config.run_dir / "train.ipynb").exists():
        row["notebook"] = _relative(config.run_dir / "train.ipynb", sweep_dir)
    table.record(row)
    if row["status"] == "finished":
        for point in evaluations:
            _evaluate_point(TrainConfig.from_mapping(point), row, sweep_dir, table)
    return row


def _evaluate_point(config: TrainConfig, run_row: Mapping[str, Any], sweep_dir: Path, table: ResultsTable) -> None:
    """One evaluation point of a trained run, recorded as its own row (failed, with the error, if it fails)."""
    from .evaluate import evaluate_run, evaluation_dir

    name = evaluation_id(run_row["run_id"], config)
    label = _relative(evaluation_dir(config, separate=True), config.run_dir)
    previous = table.by_run_id().get(name, {})
    row: dict[str, Any] = {
        **{k: v for k, v in run_row.items() if k not in ("notebook", "error", "error_log")},
        "run_id": name,
        **{k: getattr(config, k) for k in EVALUATION_AXES},
        "evaluation": label,
        "attempt": int(previous.get("attempt") or 0) + 1,
    }
    start = time.perf_counter()
    try:
        evaluate_run(config, progress=False, separate=True)
        row.update(_finished_fields(config, sweep_dir, separate=True))
        row["status"] = "finished"
    except Exception as error:  # noqa: BLE001 (recorded like a failed run; the other points go on)
        log = save_text(evaluation_dir(config, separate=True) / "error.log", traceback.format_exc())
        row.update(status="failed", error=describe_error(error), error_log=_relative(log, sweep_dir))
    row["wall_seconds"] = time.perf_counter() - start
    row["finished_at"] = _now()
    table.record(row)


# papermill rewrites its output notebook after every cell, truncating it first: a run interrupted there would leave
# a 0-byte train.ipynb. It writes to this name instead, and the notebook is renamed into place when papermill ends.
PARTIAL_NOTEBOOK = ".train.partial.ipynb"


def _execute_train_notebook(config: TrainConfig) -> None:
    import papermill

    config.run_dir.mkdir(parents=True, exist_ok=True)
    partial = config.run_dir / PARTIAL_NOTEBOOK
    try:
        papermill.execute_notebook(
            str(TRAIN_NOTEBOOK),
            str(partial),
            parameters=config.to_dict(),
            cwd=str(TRAIN_NOTEBOOK.parent),
            progress_bar=False,
        )
    finally:  # finished, failed or interrupted: keep what ran, if papermill got to write it whole
        _keep_notebook(partial, config.run_dir / "train.ipynb")


def _keep_notebook(partial: Path, target: Path) -> None:
    """Rename `partial` to `target` if it is a whole notebook; delete it otherwise (half written, or empty)."""
    import nbformat

    if not partial.exists():
        return
    try:
        nbformat.read(partial, as_version=4)
    except Exception:  # noqa: BLE001 (not a notebook: debris of a write that was cut short)
        partial.unlink(missing_ok=True)
    else:
        os.replace(partial, target)


def _finished_fields(config: TrainConfig, sweep_dir: Path, separate: bool = False) -> dict[str, Any]:
    from .evaluate import evaluation_dir

    folder = evaluation_dir(config, separate)
    result = json.loads((folder / "metrics.json").read_text())
    metrics = result["metrics"]
    return {
        **{k: metrics.get(k) for k in METRIC_COLUMNS},
        "unavailable": metrics.get("unavailable") or {},
        "train_seconds": result["wall_seconds"]["training"],
        "evaluation_seconds": result["wall_seconds"]["evaluation"],
        "sampling_images_per_second": result["sampling"]["images_per_second"],
        "device": result["sampling"]["device"],
        "samples_grid": _relative(folder / "samples_grid.png", sweep_dir),
        "metrics_json": _relative(folder / "metrics.json", sweep_dir),
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def describe_error(error: BaseException) -> str:
    """One line: the exception's type and message (for a failed notebook, those of the failing cell)."""
    ename, evalue = getattr(error, "ename", None), getattr(error, "evalue", None)
    if ename:  # papermill.PapermillExecutionError: the exception raised inside the notebook
        return f"{ename}: {evalue} (in notebooks/train.ipynb, cell {getattr(error, 'exec_count', '?')})"
    message = " ".join(str(error).split())
    if len(message) > 2000:  # the whole message is in error.log
        message = message[:2000] + " …"
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(Path(path).resolve(), Path(start).resolve())


# ----------------------------------------------------------------------------------------------------------------
# What is done, what is left.

STATES = ("finished", "failed", "interrupted", "pending")


def run_state(run: Run, row: Mapping[str, str] | None, recorded: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """finished (row says so and metrics.json exists, and so for every evaluation point, whose rows `recorded`
    holds) | failed (last attempt) | interrupted (started: a config or a checkpoint in its folder) | pending."""
    from .evaluate import evaluation_dir

    if row and row.get("status") == "finished" and (evaluation_dir(run.config) / "metrics.json").exists():
        if all(_point_finished(run, point, recorded or {}) for point in run.evaluations):
            return "finished"
        return "interrupted"
    if row and row.get("status") == "failed":
        return "failed"
    if (run.config.run_dir / "config.json").exists():
        return "interrupted"
    return "pending"


def _point_finished(run: Run, point: TrainConfig, recorded: Mapping[str, Mapping[str, str]]) -> bool:
    from .evaluate import evaluation_dir

    row = recorded.get(evaluation_id(run.run_id, point), {})
    return row.get("status") == "finished" and (evaluation_dir(point, separate=True) / "metrics.json").exists()


def sweep_status(runs: Sequence[Run], sweep_dir: str | os.PathLike):
    """One row per run of the grid: its state, attempts, last error and metrics (a pandas DataFrame)."""
    import pandas as pd

    recorded = ResultsTable(Path(sweep_dir) / "results.csv").by_run_id()
    rows = []
    for run in runs:
        row = recorded.get(run.run_id, {})
        rows.append(
            {
                "run_id": run.run_id,
                "state": run_state(run, row or None, recorded),
                **{k: getattr(run.config, k) for k in GRID_AXES},
                "attempt": int(row.get("attempt") or 0),
                "wall_seconds": float(row["wall_seconds"]) if row.get("wall_seconds") else math.nan,
                "error": row.get("error", ""),
            }
        )
    return pd.DataFrame(rows, columns=["run_id", "state", *GRID_AXES, "attempt", "wall_seconds", "error"])


def estimate_seconds_left(durations: Iterable[float], pending: int, running: int, parallel: int) -> float | None:
    """Time left: the mean duration of the runs that ended so far, times the work left (a running run counts as
    half done), over the runs that go at once. None until one run has ended."""
    durations = [d for d in durations if math.isfinite(d) and d > 0]
    if not durations:
        return None if pending or running else 0.0
    mean = sum(durations) / len(durations)
    return mean * (pending + 0.5 * running) / max(1, min(parallel, pending + running))


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class _Progress:
    """The progress view: a tqdm bar over ended runs, with running/failed counts and the estimated time left in
    its postfix; the same numbers in progress.json for a terminal or another notebook to watch."""

    def __init__(self, sweep_dir: Path, total: int, done_before: int, parallel: int, show: bool):
        from tqdm.auto import tqdm

        self.path = sweep_dir / "progress.json"
        self.total, self.parallel = total, parallel
        self.counts = {"finished": 0, "failed": 0, "running": 0, "skipped": done_before}
        self.durations: list[float] = []
        self.state = "running"  # running | done | interrupted
        self.bar = tqdm(
            total=total,
            initial=done_before,
            desc="sweep",
            unit="run",
            disable=not show,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} runs [{elapsed}{postfix}]",
        )

    def update(self, *, running: int, ended: Sequence[Mapping[str, Any]] = ()) -> None:
        for row in ended:
            self.counts[row["status"]] += 1
            if row["status"] == "finished":
                self.durations.append(float(row.get("wall_seconds") or math.nan))
        self.counts["running"] = running
        ended_total = self.counts["finished"] + self.counts["failed"] + self.counts["skipped"]
        pending = self.total - ended_total - running
        left = estimate_seconds_left(self.durations, pending, running, self.parallel)
        self.bar.set_postfix_str(
            f"running {running}, failed {self.counts['failed']}, left ≈ {format_duration(left)}", refresh=False
        )
        self.bar.update(len(ended))
        self.bar.refresh()
        save_json(
            self.path,
            {
                "total": self.total,
                **self.counts,
                "pending": pending,
                "seconds_left_estimate": left,
                "state": self.state,
                "updated_at": _now(),
            },
        )

    def interrupted(self) -> None:
        """The sweep was stopped and its jobs cancelled: none is running any more, and the file says so."""
        self.state = "interrupted"
        self.update(running=0)

    def close(self) -> None:
        self.bar.close()


class SweepFailedError(RuntimeError):
    """Runs of a sweep did not finish; the message lists each with its error."""


def raise_for_unfinished(status, allow_failed: bool = False) -> None:
    """End a sweep with an error that summarises its unfinished runs (from `sweep_status`), unless `allow_failed`
    accepts a partial grid explicitly."""
    unfinished = status[status.state != "finished"]
    if unfinished.empty or allow_failed:
        return
    lines = [f"  {row.run_id} ({row.state}): {row.error or 'no error recorded'}" for row in unfinished.itertuples()]
    raise SweepFailedError(
        f"{len(unfinished)} of {len(status)} runs did not finish (allow_failed=True accepts a partial grid):\n"
        + "\n".join(lines)
    )


# ----------------------------------------------------------------------------------------------------------------
# Launching.


@dataclass
class SweepReport:
    """What a call of `run_sweep` did: run ids per outcome, and its wall time."""

    finished: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        return (
            f"{len(self.finished)} finished, {len(self.failed)} failed, {len(self.skipped)} skipped "
            f"(done before) in {format_duration(self.seconds)}"
        )


def run_sweep(config: SweepConfig, *, progress: bool = True) -> SweepReport:
    """Run the grid of `config.grid` into `config.sweep_dir` (see the module docstring); returns what happened."""
    grid = SweepGrid.read(config.grid)
    sweep_dir = config.sweep_dir
    runs = grid_runs(grid, sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(project_path(config.grid), _ensure_dir(sweep_dir / "grids") / f"{grid.name}.yaml")
    return launch(runs, config, grid_name=grid.name, progress=progress)


def _ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def launch(runs: Sequence[Run], config: SweepConfig, *, grid_name: str = "", progress: bool = True) -> SweepReport:
    """Submit the runs of `runs` that are not finished (nor failed, unless `retry_failed`) to the executor of
    `config`, show progress until they end, and return the report. Rows are recorded by the jobs themselves; a job
    that dies without recording (killed, out of memory, timed out) is recorded here as failed."""
    start = time.perf_counter()
    sweep_dir = config.sweep_dir
    recorded = ResultsTable(sweep_dir / "results.csv").by_run_id()
    report = SweepReport()
    todo = []
    for run in runs:
        state = run_state(run, recorded.get(run.run_id), recorded)
        if state == "finished" or (state == "failed" and not config.retry_failed):
            report.skipped.append(run.run_id)
        else:
            todo.append(run)
    todo, ended = _prepare_data(todo, sweep_dir, grid_name)

    slots = _local_slots(config.max_parallel) if config.executor == "local" else []
    parallel = {"local": len(slots), "slurm": config.slurm_array_parallelism, "debug": 1}[config.executor]
    view = _Progress(sweep_dir, len(runs), len(report.skipped), parallel, progress)
    view.update(running=0, ended=ended)
    try:
        if config.executor == "local":
            ended += _launch_local(todo, config, slots, grid_name, view)
        elif config.executor == "slurm":
            ended += _launch_slurm(todo, config, grid_name, view)
        else:
            ended += _launch_debug(todo, config, grid_name, view)
        view.state = "done"
        view.update(running=0)
    except BaseException:  # interrupted (Ctrl-C, a kernel stop): leave a true record and no debris
        if config.executor == "slurm":  # the job array goes on without this process watching it
            view.state = "not watched (the SLURM jobs go on)"
            view.update(running=view.counts["running"])
        else:  # local jobs were cancelled and have ended; debug runs ran in this process
            _remove_partial_notebooks(todo)
            view.interrupted()
        raise
    finally:
        view.close()
        # submitit's local job controller creates the folder pattern itself, unexpanded, as an empty `%j` folder.
        with contextlib.suppress(OSError):
            (sweep_dir / "submitit" / "%j").rmdir()
    for row in ended:
        (report.finished if row["status"] == "finished" else report.failed).append(row["run_id"])
    report.seconds = time.perf_counter() - start
    return report


def _prepare_data(runs: list[Run], sweep_dir: Path, grid_name: str) -> tuple[list[Run], list[dict]]:
    """Build (download) each dataset and cache its principal axis once, here, before parallel jobs would race to
    download it. Returns the runs that can go and the failed rows recorded for those whose dataset cannot be had."""
    from .train import principal_axis_for

    ready, failed = [], []
    errors: dict[tuple, str] = {}
    for run in runs:
        key = (run.config.dataset, run.config.data_root, run.config.image_size)
        if key not in errors:
            try:
                principal_axis_for(run.config, progress=False)
                errors[key] = ""
            except Exception as error:  # noqa: BLE001 (recorded per run below)
                errors[key] = describe_error(error)
        if errors[key]:
            failed.append(_record_failure(run, sweep_dir, grid_name, errors[key]))
        else:
            ready.append(run)
    return ready, failed


def _local_slots(max_parallel: int) -> list[int | None]:
    """The GPU of each concurrent local job (one job per GPU), or None per CPU job when there is no GPU."""
    import torch

    gpus = list(range(torch.cuda.device_count()))
    if gpus:
        if max_parallel > len(gpus):
            raise ValueError(
                f"max_parallel must be at most the number of GPUs ({len(gpus)}) with executor 'local', "
                f"got {max_parallel}; use 0 for one run per GPU"
            )
        return gpus[: max_parallel or len(gpus)]
    return [None] * (max_parallel or 1)


def _launch_local(
    runs: Sequence[Run], config: SweepConfig, slots: list[int | None], grid_name: str, view: _Progress
) -> list[dict]:
    """submitit's LocalExecutor starts every job it is given at once and gives each the same GPUs, so the grid is
    fed to one executor per GPU, a run whenever that GPU's previous run has ended."""
    import submitit

    cpu_threads = max(1, (os.cpu_count() or 1) // len(slots))
    executors = []
    for gpu in slots:
        executor = submitit.LocalExecutor(folder=config.sweep_dir / "submitit" / "%j")
        if gpu is None:
            executor.update_parameters(timeout_min=config.timeout_minutes, setup=[_threads(cpu_threads)])
        else:
            executor.update_parameters(timeout_min=config.timeout_minutes, gpus_per_node=1, visible_gpus=(gpu,))
        executors.append(executor)

    pending = list(runs)
    in_flight: dict[int, tuple[Run, Any]] = {}  # slot -> (run, job)
    ended: list[dict] = []
    try:
        while pending or in_flight:
            just_ended = []
            for slot, (run, job) in list(in_flight.items()):
                if job.done():
                    just_ended.append(_job_row(run, job, config.sweep_dir, grid_name))
                    del in_flight[slot]
            for slot in range(len(slots)):
                if slot not in in_flight and pending:
                    run = pending.pop(0)
                    job = executors[slot].submit(run_one, *_job_arguments([run], config, grid_name)[0])
                    in_flight[slot] = (run, job)
            ended += just_ended
            view.update(running=len(in_flight), ended=just_ended)
            if in_flight:
                time.sleep(config.poll_seconds)
    except BaseException:
        _cancel_and_wait([job for _run, job in in_flight.values()])  # re-running the sweep resumes these runs
        raise
    return ended


def _cancel_and_wait(jobs: Sequence[Any], seconds: float = 15.0) -> None:
    """Stop local jobs and wait until they have ended, so that nothing writes into the sweep folder after the sweep
    has returned. SIGINT goes to every process of each job, not only to the process submitit holds: that one is an
    `sh -c` wrapper that does not pass the signal on, so `job.cancel()` alone left the training task running for
    hours. The task ends as on Ctrl-C (keeping what it finished); whatever still runs after `seconds` is killed."""
    import psutil

    processes = [process for job in jobs for process in _process_tree(job)]
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGINT)
    _gone, alive = psutil.wait_procs(processes, timeout=seconds)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)


def _process_tree(job: Any) -> list:
    """The processes of a local submitit job: its controller and every descendant (the task and its workers)."""
    import psutil

    process = getattr(job, "_process", None)
    if process is None:
        return []
    try:
        controller = psutil.Process(process.pid)
        return [controller, *controller.children(recursive=True)]
    except psutil.Error:
        return []


def _remove_partial_notebooks(runs: Sequence[Run]) -> None:
    """Keep (as train.ipynb) or delete the partial notebooks of runs a cancelled job left behind."""
    for run in runs:
        _keep_notebook(run.config.run_dir / PARTIAL_NOTEBOOK, run.config.run_dir / "train.ipynb")


def _threads(count: int) -> str:
    return f"export OMP_NUM_THREADS={count} MKL_NUM_THREADS={count}"


def _launch_slurm(runs: Sequence[Run], config: SweepConfig, grid_name: str, view: _Progress) -> list[dict]:
    """One SLURM job array, one GPU per run; the jobs' states are polled for the progress view."""
    import submitit

    if not runs:
        return []
    folder = config.sweep_dir / "submitit" / "%j"
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(**slurm_parameters(config))
    jobs = executor.map_array(run_one, *zip(*_job_arguments(runs, config, grid_name)))
    print(f"submitted a SLURM array of {len(jobs)} runs: job {jobs[0].job_id.split('_')[0]}; logs in {folder.parent}")
    waiting = list(zip(runs, jobs))
    ended: list[dict] = []
    while waiting:
        done = [job.done() for _, job in waiting]  # asked once per job: a job may end between two calls
        just_ended = [_job_row(run, job, config.sweep_dir, grid_name) for (run, job), d in zip(waiting, done) if d]
        waiting = [pair for pair, d in zip(waiting, done) if not d]
        ended += just_ended
        view.update(running=sum(job.state == "RUNNING" for _, job in waiting), ended=just_ended)
        if waiting:
            time.sleep(config.poll_seconds)
    return ended


def _launch_debug(runs: Sequence[Run], config: SweepConfig, grid_name: str, view: _Progress) -> list[dict]:
    """submitit's DebugExecutor: each run executes in this process when its result is asked for, one by one."""
    import submitit

    executor = submitit.DebugExecutor(folder=config.sweep_dir / "submitit" / "%j")
    jobs = executor.map_array(run_one, *zip(*_job_arguments(runs, config, grid_name))) if runs else []
    ended: list[dict] = []
    for run, job in zip(runs, jobs):
        ended.append(_job_row(run, job, config.sweep_dir, grid_name))
        view.update(running=0, ended=ended[-1:])
    return ended


def _job_arguments(runs: Sequence[Run], config: SweepConfig, grid_name: str) -> list[tuple]:
    """The arguments of `run_one` for each run (a plain dict of parameters pickles without surprises)."""
    return [
        (run.config.to_dict(), str(config.sweep_dir), config.runner, grid_name, [p.to_dict() for p in run.evaluations])
        for run in runs
    ]


def slurm_parameters(config: SweepConfig) -> dict[str, Any]:
    """submitit AutoExecutor parameters of one run: one task on one node with its GPUs, CPUs and memory."""
    parameters = dict(
        name="sdm-sweep",
        timeout_min=config.timeout_minutes,
        nodes=1,
        tasks_per_node=1,
        gpus_per_node=config.slurm_gpus_per_run,
        cpus_per_task=config.slurm_cpus_per_run,
        mem_gb=config.slurm_mem_gb,
        slurm_array_parallelism=config.slurm_array_parallelism,
    )
    if config.slurm_partition:
        parameters["slurm_partition"] = config.slurm_partition
    return parameters


def _job_row(run: Run, job, sweep_dir: Path, grid_name: str) -> dict:
    """The row a job recorded, or, if the job died before recording one, a failed row recorded here."""
    try:
        return job.result()
    except Exception as error:  # noqa: BLE001 (the job itself failed: killed, timed out, out of memory)
        log = _relative(Path(str(job.paths.stderr)), sweep_dir) if hasattr(job, "paths") else ""
        message = f"job {job.job_id} ended without a result: {describe_error(error)}"
        return _record_failure(run, sweep_dir, grid_name, message, error_log=log)


def _record_failure(run: Run, sweep_dir: Path, grid_name: str, error: str, error_log: str = "") -> dict:
    """Record (and return) the failed row of a run that failed outside `run_one`: before it or with its job."""
    row = {
        "run_id": run.run_id,
        "status": "failed",
        **{k: getattr(run.config, k) for k in GRID_AXES},
        "error": error,
        "error_log": error_log,
        "finished_at": _now(),
        "grid": grid_name,
    }
    ResultsTable(sweep_dir / "results.csv").record(row)
    return row


__all__ = [
    "EXECUTORS",
    "RESULT_COLUMNS",
    "RUNNERS",
    "ResultsTable",
    "Run",
    "SweepConfig",
    "SweepGrid",
    "SweepFailedError",
    "SweepReport",
    "estimate_seconds_left",
    "grid_runs",
    "launch",
    "raise_for_unfinished",
    "read_results",
    "run_one",
    "run_state",
    "run_sweep",
    "slurm_parameters",
    "sweep_status",
]
