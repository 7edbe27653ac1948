"""Every notebook is a jupytext pair (.py percent source + .ipynb), in sync, committed without outputs."""

from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("*.py"))


def test_there_are_notebooks_and_every_file_has_its_pair():
    assert SOURCES, "no notebooks found"
    stems_py = {p.stem for p in SOURCES}
    stems_ipynb = {p.stem for p in NOTEBOOKS.glob("*.ipynb")}
    assert stems_py == stems_ipynb, f"unpaired: {sorted(stems_py ^ stems_ipynb)} (run `make sync`)"


def cells(notebook):
    return [(cell.cell_type, cell.source.strip(), sorted(cell.metadata.get("tags", []))) for cell in notebook.cells]


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_pair_in_sync_and_without_outputs(source):
    ipynb = source.with_suffix(".ipynb")
    from_py = jupytext.read(source)
    from_ipynb = nbformat.read(ipynb, as_version=4)
    assert cells(from_py) == cells(from_ipynb), f"{ipynb.name} is out of sync with {source.name} (run `make sync`)"
    for cell in from_ipynb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{ipynb.name} is committed with outputs"


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_papermill_parameters_cell(source):
    """One cell tagged `parameters`, holding literal assignments only (nothing papermill would leave stale)."""
    notebook = jupytext.read(source)
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{source.name}: expected exactly one cell tagged 'parameters'"
    import ast

    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign), f"{source.name}: parameters cell holds a non-assignment"
        ast.literal_eval(node.value)  # raises for anything derived
    names = {target.id for node in ast.parse(tagged[0].source).body for target in node.targets}
    assert "output_dir" in names, f"{source.name}: the parameters cell must define output_dir"
