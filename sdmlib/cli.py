"""The command line of a run, papermill style: `-f FILE` (YAML, or a run's own config.json) and `-p NAME VALUE`.

`--help` lists every parameter of the typed config with its default and its meaning, read from the config class's
source (its fields, their defaults and their trailing comments), so it stays the one description of the parameters
and answers at once: this module imports neither torch nor diffusers, and neither does `sdmlib`'s `__init__`.
A bad parameter is one line on stderr (with the closest valid name for a misspelt one) and exit status 2, as
argparse does for its own options; errors of the run that say what to do (a missing dataset, a run folder holding
other parameters, a diverged loss) are one line and exit status 1.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
import tokenize
from pathlib import Path
from typing import NamedTuple

CONFIG_SOURCE = Path(__file__).with_name("config.py")


class FieldDoc(NamedTuple):
    name: str
    annotation: str
    default: str
    comment: str
    section: str  # the comment line above a group of fields ("data", "squeezing (eq. 9 and Section 2)", …)


def field_docs(class_name: str = "TrainConfig", source_path: Path = CONFIG_SOURCE) -> list[FieldDoc]:
    """The fields of a dataclass as its source declares them: name, type, default and trailing comment, in order."""
    source = source_path.read_text()
    comments: dict[int, str] = {}  # line -> comment text
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    tree = ast.parse(source)
    # A default may name a module constant (`protocol: str = DEFAULT_PROTOCOL`): show the constant's value.
    constants = {
        target.id: ast.unparse(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name).body
    lines = source.splitlines()
    docs, section = [], ""
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above = node.lineno - 1  # a comment alone on the line above starts a section
        if above in comments and lines[above - 1].strip().startswith("#") and not comments[above].startswith("--"):
            section = comments[above]
        default = ast.unparse(node.value) if node.value is not None else ""
        if isinstance(node.value, ast.Name):
            default = constants.get(default, default)
        docs.append(
            FieldDoc(node.target.id, ast.unparse(node.annotation), default, comments.get(node.end_lineno, ""), section)
        )
    return docs


def parameters_help(docs: list[FieldDoc]) -> str:
    """The parameters as an indented list under their section headings: `name (type) = default   meaning`."""
    out, section = [], None
    width = min(36, max(len(f"{d.name} = {d.default}") for d in docs))
    for doc in docs:
        if doc.section != section:
            section = doc.section
            out.append(f"  {section}:" if section else "")
        entry = f"{doc.name} = {doc.default}"
        if len(entry) > width:  # a long default: the meaning goes on the next line
            entry += "\n    " + " " * width
        out.append(f"    {entry:<{width}}  {doc.comment}".rstrip())
    return "\n".join(out)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage block): `prog: error: message`, exit status 2; and a value
    such as `-1e-4` is a negative number, not an option (argparse's own pattern knows only `-1` and `-0.5`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def train_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="python -m sdmlib.train",
        description="Train, sample and evaluate one squeezed-diffusion run (the work of notebooks/train.ipynb).",
        epilog=(
            "parameters (-p NAME VALUE; VALUE is read as YAML, so 1e-4 is a number and [fid, isc] a list; "
            "defaults are the paper's CIFAR-10 run):\n" + parameters_help(field_docs("TrainConfig"))
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-f",
        "--parameters-file",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML parameter file(s), applied in order; a run's config.json reproduces that run",
    )
    parser.add_argument(
        "-p",
        "--parameter",
        action="append",
        nargs=2,
        default=[],
        metavar=("NAME", "VALUE"),
        help="set one parameter, after the files (e.g. -p s0 -0.3)",
    )
    parser.add_argument("--no-eval", action="store_true", help="train only; skip sampling and metrics")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def parse_train_args(argv: list[str] | None = None):
    """(TrainConfig, argparse namespace) from the command line; a bad parameter exits with status 2 and one line."""
    import yaml

    parser = train_parser()
    args = parser.parse_args(argv)
    from .config import TrainConfig, UnknownParameterError  # after --help: this brings torch and diffusers

    overrides = {name: yaml.safe_load(value) for name, value in args.parameter}
    try:
        return TrainConfig.load(*args.parameters_file, **overrides), args
    except UnknownParameterError as error:  # the full list of names is --help's job
        parser.error(f"unknown parameter(s) {', '.join(map(repr, error.unknown))}{error.hint}")
    except (ValueError, FileNotFoundError, yaml.YAMLError) as error:
        parser.error(" ".join(str(error).split()))


def train_main(argv: list[str] | None = None) -> int:
    """`python -m sdmlib.train`: train, then sample and evaluate; returns the exit status."""
    config, args = parse_train_args(argv)
    from .data import DatasetNotFoundError
    from .train import NonFiniteLossError, RunFolderConflictError, train

    try:
        run_dir = train(config, progress=not args.no_progress)
        if not args.no_eval:
            from .evaluate import evaluate_run

            evaluate_run(config, progress=not args.no_progress)
    except (DatasetNotFoundError, RunFolderConflictError, NonFiniteLossError) as error:
        print(f"python -m sdmlib.train: {type(error).__name__}: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    print(f"run folder: {run_dir}")
    return 0
