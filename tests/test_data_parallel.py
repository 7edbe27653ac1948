"""Data-parallel training verified on the CPU: `accelerate launch --num_processes 2 --cpu` (gloo) of a tiny run.

Each process must train on its own half of every step's global batch (the batch a one-process run would take at
that step), the processes must end with identical weights, only the main process writes checkpoints, and a 2-process
run interrupted after a step and resumed must end bit for bit where an uninterrupted 2-process run ends.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sdmlib.train import batch_indices

HERE = Path(__file__).resolve().parent
STEPS, BATCH, PROCESSES = 4, 4, 2


def read_log(folder: Path, rank: int) -> list[dict]:
    return [json.loads(line) for line in (folder / f"rank{rank}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    """One launch of two processes: an uninterrupted run ("whole"), and the same run stopped after step 2 and
    resumed ("split"). Returns the folder holding both runs and their batch logs."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if accelerate is None:
        pytest.skip("accelerate's launcher is not installed")
    root = tmp_path_factory.mktemp("data_parallel")
    images = root / "images"
    images.mkdir()
    generator = torch.Generator().manual_seed(0)
    from PIL import Image

    for i in range(12):  # small real image files; 12 images = 3 steps per epoch, so the run crosses an epoch
        pixels = torch.randint(0, 256, (16, 16, 3), generator=generator, dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).save(images / f"{i:03d}.png")
    base = {
        "dataset": "folder",
        "data_root": str(images),
        "image_size": 16,
        "model_size": "tiny",
        "s0": -0.5,
        "train_steps": STEPS,
        "batch_size": BATCH,
        "lr_warmup_steps": 1,
        "checkpoint_every": 2,
        "log_every": 1,
        "num_workers": 0,
    }
    jobs = [
        {
            "config": {**base, "output_dir": str(root / name)},
            "stop_after_step": stop,
            "batch_log": str(root / f"{name}-log"),
        }
        for name, stop in (("whole", None), ("split", 2))
    ]
    (root / "jobs.json").write_text(json.dumps(jobs))
    command = [
        # `--cpu` alone starts one process (accelerate leaves several CPU processes to mpirun); torchrun's launcher
        # (`--multi_gpu`) with ACCELERATE_USE_CPU starts two, which accelerate joins with gloo.
        accelerate, "launch", "--multi_gpu", "--num_processes", str(PROCESSES), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
        str(HERE / "data_parallel_run.py"), str(root / "jobs.json"),
    ]  # fmt: skip
    environment = {
        **os.environ,
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        "SDM_CACHE_DIR": str(root / "cache"),
    }
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root


def test_each_process_trains_on_its_own_half_of_every_global_batch(two_process_runs):
    for name in ("whole", "split"):
        logs = [read_log(two_process_runs / f"{name}-log", rank) for rank in range(PROCESSES)]
        for rank, log in enumerate(logs):
            seen = {record["step"]: record["indices"] for record in log if "step" in record}
            assert sorted(seen) == list(range(STEPS)), (name, rank)
            for step, indices in seen.items():
                share = BATCH // PROCESSES
                global_batch = batch_indices(12, BATCH, 0, step).tolist()  # what one process would take
                assert indices == global_batch[rank * share : (rank + 1) * share], (name, rank, step)


def test_processes_end_with_identical_weights(two_process_runs):
    for name in ("whole", "split"):
        digests = {
            rank: [
                r["weights_sha256"] for r in read_log(two_process_runs / f"{name}-log", rank) if "weights_sha256" in r
            ]
            for rank in range(PROCESSES)
        }
        assert digests[0][-1] == digests[1][-1], name


def test_logged_loss_is_the_global_batch_mean_on_every_process(two_process_runs):
    for name in ("whole", "split"):
        records = [[r for r in read_log(two_process_runs / f"{name}-log", rank) if "logged" in r]
                   for rank in range(PROCESSES)]
        assert [r["loss_steps"] for r in records[0]] == [r["loss_steps"] for r in records[1]]
        assert len(records[0]) == STEPS  # log_every 1: a log point per step (the split run appends after resuming)
        for first, second in zip(*records):
            assert first["logged"] == second["logged"]  # one history on every process
            assert first["own"] != second["own"]  # each process's half of the batch has its own loss
            expected = [(a + b) / 2 for a, b in zip(first["own"], second["own"])]
            assert first["logged"] == pytest.approx(expected, rel=1e-6)


def test_checkpoints_are_written_once_by_the_main_process(two_process_runs):
    for name, expected in (("whole", [2, 4]), ("split", [2, 4])):
        written = {
            rank: [r["checkpoint"] for r in read_log(two_process_runs / f"{name}-log", rank) if "checkpoint" in r]
            for rank in range(PROCESSES)
        }
        assert written == {0: expected, 1: []}, name
        assert sorted(p.name for p in (two_process_runs / name / "checkpoints").iterdir()) == [
            f"step-{s:08d}" for s in expected
        ]


def test_resumed_two_process_run_equals_uninterrupted(two_process_runs):
    whole, split = (
        load_file(two_process_runs / n / "unet" / "diffusion_pytorch_model.safetensors") for n in ("whole", "split")
    )
    assert whole.keys() == split.keys()
    for key in whole:
        assert torch.equal(whole[key], split[key]), key
    state = [json.loads((two_process_runs / n / "training.json").read_text()) for n in ("whole", "split")]
    assert [s["num_processes"] for s in state] == [PROCESSES, PROCESSES]
