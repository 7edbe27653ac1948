"""The command line and parameter files: numbers however written, a run reproduced from its own config.json,
`--help` generated from the typed config without importing torch, one-line errors with exit status 2."""

import dataclasses
import subprocess
import sys

import pytest
import yaml

from sdmlib.cli import field_docs
from sdmlib.config import PROJECT_ROOT, TrainConfig
from sdmlib.sweep import SweepConfig

PARAMS = PROJECT_ROOT / "params"


def run_module(*args, code=None, timeout=300):
    command = [sys.executable, "-m", "sdmlib.train", *args] if code is None else [sys.executable, "-c", code]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT)


@pytest.mark.parametrize(
    "text, name, expected",
    [
        ("1e-4", "learning_rate", 1e-4),  # YAML 1.1 reads this as a string
        ("1E-08", "adam_epsilon", 1e-8),
        ("'0.5'", "grad_clip", 0.5),  # quoted in a file
        ("-.3", "s0", -0.3),
        ("2e3", "train_steps", 2000),  # an integer written in scientific notation
        ("+7", "seed", 7),
    ],
)
def test_numbers_are_numbers_however_written(text, name, expected):
    value = yaml.safe_load(text)
    config = TrainConfig.from_mapping({name: value})
    assert getattr(config, name) == expected and type(getattr(config, name)) is type(expected)


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("learning_rate", "nan", "learning_rate must be a number, got 'nan'"),
        ("train_steps", "2.5e0", "train_steps must be an integer"),
        ("seed", "1_000", "seed must be an integer, got '1_000'"),
    ],
)
def test_text_that_is_not_a_number_is_still_refused(name, text, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_mapping({name: text})
    with pytest.raises(ValueError, match="variant must be a string, got 0.0001"):  # nor a number a string
        TrainConfig.from_mapping({"variant": 1e-4})


def test_the_converter_is_shared_by_every_typed_config():
    assert SweepConfig.from_mapping({"poll_seconds": "5e-1"}).poll_seconds == 0.5


def test_command_line_reads_scientific_notation():
    from sdmlib.train import parse_args

    config, _ = parse_args(["-f", str(PARAMS / "quick.yaml"), "-p", "learning_rate", "1e-4", "-p", "s0", "-3e-1"])
    assert (config.learning_rate, config.s0) == (1e-4, -0.3)


def test_a_config_json_reads_back_as_the_same_config(tmp_path):
    """Every field, including the float defaults JSON writes as 1e-06 and 1e-08, survives config.json."""
    import json

    from sdmlib.train import parse_args

    original = TrainConfig.load(PARAMS / "quick.yaml", s0=-0.3, learning_rate=3e-5)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(original.to_dict(), indent=2, sort_keys=True))
    assert "1e-06" in path.read_text() and "1e-08" in path.read_text()
    config, _ = parse_args(["-f", str(path)])
    assert config == original


def test_help_lists_every_parameter_with_its_default_and_meaning_without_importing_torch():
    code = (
        "import runpy, sys\n"
        "sys.argv = ['sdmlib.train', '--help']\n"
        "try:\n"
        "    runpy.run_module('sdmlib.train', run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, None), exit.code\n"
        "print('IMPORTED', sorted(m for m in ('torch', 'diffusers', 'accelerate') if m in sys.modules))\n"
    )
    result = run_module(code=code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "IMPORTED []" in result.stdout
    lines = result.stdout.splitlines()
    for field in dataclasses.fields(TrainConfig):  # the declared default ("" = the protocol's), as --help says
        line = next((line for line in lines if line.strip().startswith(f"{field.name} = ")), None)
        assert line is not None, f"--help does not list {field.name}"
        assert line.split(" = ", 1)[1].split("  ")[0].strip("'") == str(field.default) or field.name == "metrics", line


def test_help_is_generated_from_the_typed_config():
    """The parameters --help reads from the source are exactly the dataclass's fields, each with a meaning."""
    docs = field_docs("TrainConfig")
    assert [d.name for d in docs] == [f.name for f in dataclasses.fields(TrainConfig)]
    assert [d.name for d in docs if not d.comment] == []  # every parameter says what it means
    assert field_docs("SweepConfig", PROJECT_ROOT / "sdmlib" / "sweep.py")[0].name == "grid"


@pytest.mark.parametrize(
    "args, message",
    [
        (["-p", "so", "0.3"], "unknown parameter(s) 'so' (did you mean `s0`?)"),
        (["-p", "learning_rat", "1e-4"], "(did you mean `learning_rate`?)"),
        (["-p", "s0", "strong"], "s0 must be a number, got 'strong'"),
        (["-f", "params/no-such-file.yaml"], "no-such-file.yaml"),
        (["--epochs", "3"], "unrecognized arguments: --epochs 3"),
    ],
)
def test_a_bad_parameter_is_one_line_and_exit_status_2(args, message, capsys):
    from sdmlib.cli import train_main

    with pytest.raises(SystemExit) as exit:
        train_main(args)
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error, error


def test_a_bad_parameter_from_the_shell_has_no_traceback():
    result = run_module("-p", "so", "0.3")
    assert (result.returncode, result.stderr) == (
        2,
        "python -m sdmlib.train: error: unknown parameter(s) 'so' (did you mean `s0`?) (see --help)\n",
    )
