"""The documentation matches the repository: no reference points outside it, every link resolves, executed notebooks
go under outputs/, and the derivation notebooks resolve their paths against the repository root, per seed."""

import re
from pathlib import Path

import jupytext
import pytest

from sdmlib.config import PROJECT_ROOT, seeded_output_dir

DOCUMENTS = sorted(
    [PROJECT_ROOT / "README.md", PROJECT_ROOT / "outputs" / "README.md", *(PROJECT_ROOT / "docs").glob("*.md")]
    + [*(PROJECT_ROOT / "notebooks").glob("*.py"), *(PROJECT_ROOT / "sdmlib").rglob("*.py")]
    + [*(PROJECT_ROOT / "params").glob("*.yaml"), *(PROJECT_ROOT / "benchmarks").glob("*.py")]
    + [PROJECT_ROOT / "Makefile"]
)
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
PARENT_PATH = re.compile(r"(?<![\w.])((?:\.\./)+[^\s`'\")\]]*)")


def test_the_documents_to_check_are_found():
    names = {path.name for path in DOCUMENTS}
    assert {"README.md", "paper.md", "train.py", "config.py", "paper_results.yaml", "Makefile"} <= names
    commands = [c for p in DOCUMENTS for c in PAPERMILL_COMMAND.findall(p.read_text())]
    assert len(commands) >= 10  # the pattern finds the documented commands


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_no_reference_points_outside_the_repository(path):
    """A clone has only the repository: every relative link resolves inside it, to a file that exists, and no
    path climbs out of it (`../shared/…`) or names this machine's folders."""
    text = path.read_text()
    links = MARKDOWN_LINK.findall(text) if path.suffix == ".md" or path.parent.name == "notebooks" else []
    for target in links:
        if re.match(r"[a-z]+://|#|mailto:", target):
            continue
        resolved = (path.parent / target.split("#")[0]).resolve()
        assert resolved.is_relative_to(PROJECT_ROOT), f"{path.name}: link {target} leaves the repository"
        assert resolved.exists(), f"{path.name}: link {target} points to nothing"
    for reference in PARENT_PATH.findall(text):
        assert (PROJECT_ROOT / reference).resolve().is_relative_to(PROJECT_ROOT), (
            f"{path.name}: {reference} lies outside the repository (relative paths are taken from its root)"
        )
    assert "/work/" not in text and "shared/paper" not in text, path.name


def test_readme_links_the_restatement_of_the_paper():
    assert "](docs/paper.md)" in (PROJECT_ROOT / "README.md").read_text()
    paper = (PROJECT_ROOT / "docs" / "paper.md").read_text()
    for number in range(1, 13):  # every equation, under the paper's number
        assert f"({number})" in paper, number


PAPERMILL_COMMAND = re.compile(r"papermill\s+(?:--?[\w-]+(?:\s+(?!notebooks/)\S+)?\s+)*(\S+\.ipynb)\s+(\S+\.ipynb)")


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_documented_papermill_commands_write_under_outputs(path):
    """An executed notebook belongs under outputs/ (ignored by git), not in the repository root or notebooks/."""
    for source, output in PAPERMILL_COMMAND.findall(path.read_text()):
        if not source.startswith("notebooks/"):
            continue
        assert output.startswith(("outputs/", "$(OUT)", "$(SMOKE)")), f"{path.name}: papermill {source} {output}"


def test_seeded_output_dir_resolves_against_the_repository_root_wherever_started(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = seeded_output_dir(f"outputs/derivations-test-{tmp_path.name}", 2)
    try:
        assert folder == PROJECT_ROOT / "outputs" / f"derivations-test-{tmp_path.name}" / "seed2"
        assert folder.is_dir() and not (tmp_path / "outputs").exists()
    finally:
        folder.rmdir()
        folder.parent.rmdir()
    assert seeded_output_dir(tmp_path / "abs", 0) == tmp_path / "abs" / "seed0"


@pytest.mark.parametrize("notebook", sorted((PROJECT_ROOT / "notebooks").glob("0*_*.py")), ids=lambda p: p.stem)
def test_derivation_notebooks_write_per_seed_under_the_repository_root(notebook):
    cells = jupytext.read(notebook).cells
    index = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    parameters = {}
    exec(cells[index].source, {}, parameters)  # literals only (house style)
    assert not Path(parameters["output_dir"]).is_absolute() and ".." not in parameters["output_dir"]
    assert "seed" in parameters
    following = cells[index + 1].source
    assert "output_dir = seeded_output_dir(output_dir, seed)" in following, notebook.name
