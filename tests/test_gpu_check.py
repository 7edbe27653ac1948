"""The prepared GPU check's arithmetic (benchmarks/gpu/): what it reports must follow from what it measured.

The GPU run itself is `bash benchmarks/gpu/check.sh OUT` on the GPU machine; `make gpu-dry-run` runs the whole
script on the CPU. Here: the FLOP/s formulas against hand values, throughput.py's --tiny JSON against its own
timings and an independent FLOP count, and project.py's projection of a hand-made measurement onto the paper's runs.
"""

import json
import math
import sys

import pytest

from sdmlib.config import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
sys.path.insert(0, str(PROJECT_ROOT / "benchmarks" / "gpu"))
import estimate_gpu_time  # noqa: E402
import project  # noqa: E402
import summary  # noqa: E402
import throughput  # noqa: E402


def test_flops_formulas_against_hand_values():
    # 3 forward-equivalents × 1 GFLOP × 128 images in 0.5 s = 768 GFLOP/s
    assert throughput.training_tflops(1e9, 128, 0.5) == pytest.approx(0.768)
    # 1 GFLOP × 100 images × 50 steps in 2 s = 2.5 TFLOP/s
    assert throughput.sampling_tflops(1e9, 100, 50, 2.0) == pytest.approx(2.5)
    # 10 products of 8192² matrices, 2·8192³ FLOPs each, in 1 s
    assert throughput.matmul_tflops(8192, 10, 1.0) == pytest.approx(2 * 8192**3 * 10 / 1e12)


def test_tiny_throughput_json_follows_from_its_timings(tmp_path, monkeypatch):
    """--tiny on the CPU: every TFLOP/s in the JSON is its formula applied to the JSON's own F, batch and seconds,
    and F is the tiny UNet's forward pass as estimate_gpu_time counts it."""
    tiny_flops = estimate_gpu_time.forward_flops("tiny", 32)
    # The paper UNet's FLOPs only feed the projection (tested below); counting them costs seconds, so stand-ins.
    monkeypatch.setattr(
        throughput, "forward_flops", lambda size, image: tiny_flops if size == "tiny" else 1e10 * (image / 32) ** 2
    )
    out = tmp_path / "throughput.json"
    result = throughput.main(["--tiny", "--device", "cpu", "--out", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["errors"] == []
    assert result["forward_flops"]["tiny@32"] == tiny_flops
    assert any("fp16" in s for s in result["skipped"]) and any("compile" in s for s in result["skipped"])
    assert {(r["precision"], r["channels_last"], r["compile"]) for r in result["training"]} == {
        ("bf16", False, False),
        ("bf16", True, False),
    }
    for run in result["training"]:
        assert run["images_per_second"] == pytest.approx(run["batch_size"] / run["step_seconds"])
        assert run["tflops"] == pytest.approx(3 * tiny_flops * run["batch_size"] / run["step_seconds"] / 1e12)
    ratio = result["ratio"]
    assert ratio["sdm_over_ddpm"] == pytest.approx(ratio["step_seconds"] / ratio["ddpm_step_seconds"])
    sampling = result["sampling"]
    assert sampling["tflops"] == pytest.approx(
        tiny_flops * sampling["batch_size"] * sampling["steps"] / sampling["seconds"] / 1e12
    )
    matmul = result["matmul"]
    assert matmul["tflops"] == pytest.approx(2 * matmul["n"] ** 3 * matmul["iterations"] / matmul["seconds"] / 1e12)
    best = max(result["training"], key=lambda r: r["images_per_second"])
    assert result["best_training"] == best
    assert result["fraction_of_ceiling"] == pytest.approx(best["tflops"] / matmul["tflops"])
    # The profile: operators by self time, shares of the total, the table beside the JSON.
    profile = result["profile"]
    assert profile["clock"] == "cpu" and profile["steps"] == 1 and len(profile["top"]) == 12
    shares = [row["share"] for row in profile["top"]]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9
    assert sum(row["ms"] for row in profile["top"]) <= profile["total_ms"] * (1 + 1e-9)
    assert any("convolution" in row["op"] for row in profile["top"][:5])  # a UNet's step is mostly convolutions
    assert "Self CPU" in (tmp_path / "profile.txt").read_text()


def hand_measurement():
    """A made-up throughput.json: F = 10 GFLOP at 32×32 and 40 at 64×64, training at 100 (and a slower 80) TFLOP/s,
    sampling at 50."""
    return {
        "info": {"name": "hand-made"},
        "tiny": False,
        "forward_flops": {"paper@32": 1e10, "paper@64": 4e10},
        "training": [
            {"precision": "fp16", "channels_last": False, "compile": False, "tflops": 80.0, "images_per_second": 1},
            {"precision": "bf16", "channels_last": True, "compile": True, "tflops": 100.0, "images_per_second": 2},
        ],
        "sampling": {"tflops": 50.0},
    }


def test_projection_of_a_hand_made_measurement():
    projection = project.project(hand_measurement())
    assert projection["rates"]["training_tflops"] == 100.0  # the fastest configuration
    assert projection["rates"]["training_config"] == {"precision": "bf16", "channels_last": True, "compile": True}
    # One CIFAR-10 run: 3910 steps × 128 images × 3 × 10 GFLOP at 100 TFLOP/s; (10 000 + 36 grid) samples × 50 steps
    run = projection["cifar10_run_seconds"]
    assert run["train"] == pytest.approx(3910 * 128 * 3 * 1e10 / 100e12)
    assert run["sample"] == pytest.approx(10036 * 50 * 1e10 / 50e12)
    assert run["total"] == pytest.approx(run["train"] + run["sample"])
    assert projection["target_met"] == (run["total"] <= 300)
    rows = {row["grid"]: row for row in projection["grids"]}
    # 2a: 14 s × 3 seeds; 2bc: its 14 HDM runs less s0 = 0 (the SDM seed-0 runs are 2a's); 2d, 2e: 14 each
    assert {name: row["runs"] for name, row in rows.items()} == {"fig2a": 42, "fig2bc": 13, "fig2d": 14, "fig2e": 14}
    assert rows["fig2a"]["seconds_per_run"] == pytest.approx(run["total"])
    # CelebA-64: 12 710 steps of 64×64 images (40 GFLOP each)
    celeba = 12710 * 128 * 3 * 4e10 / 100e12 + 10036 * 50 * 4e10 / 50e12
    assert rows["fig2e"]["seconds_per_run"] == pytest.approx(celeba)
    assert rows["fig2e"]["hours"] == pytest.approx(14 * celeba / 3600)
    assert projection["total_hours"] == pytest.approx(sum(row["hours"] for row in rows.values()))
    assert math.isclose(rows["fig2d"]["hours"], 14 * run["total"] / 3600)


def test_projection_refuses_a_measurement_without_rates():
    measurement = hand_measurement()
    measurement["training"] = []
    with pytest.raises(ValueError, match="no training measurement"):
        project.project(measurement, grids=[])


def test_summary_table_reports_each_step(tmp_path):
    (tmp_path / "steps.tsv").write_text(
        "step\tstatus\tseconds\tnote\ninstall\tok\t12\tfrom wheels\nproject\tTIMEOUT\t60\tprojection.json\n"
    )
    (tmp_path / "installed.txt").write_text("diffusers==0.42.1\nbrevitas==0.13.4\n")
    table = summary.summary(tmp_path)
    assert "| install | ok | 12 | from wheels; 2 added: diffusers, brevitas |" in table
    assert "| project | TIMEOUT | 60 | projection.json |" in table
