"""Execute every notebook headless in FAST mode (MIXCPT_FAST=1): each must run top to bottom without error."""


import nbformat
import pytest

from .conftest import ROOT, run_notebook_fast

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


NEEDS_SMOLLM2 = {"05_scaling_up.ipynb"}  # the optional SmolLM2 packages (the Makefile installs them)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_in_fast_mode(path, monkeypatch, tmp_path):
    nb = run_notebook_fast(path, monkeypatch, tmp_path, needs_smollm2=path.name in NEEDS_SMOLLM2)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors


def test_execute_notebooks_saves_outputs_and_leaves_a_failing_notebook_untouched(tmp_path):
    from mixcpt_core.notebook import execute_notebooks

    ok, bad = tmp_path / "00_ok.ipynb", tmp_path / "01_bad.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os; print(os.environ.get('MIXCPT_FAST'), 6 * 7)")]), ok)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 / 0")]), bad)
    before = bad.read_text()
    [(name, seconds)] = execute_notebooks([ok])
    assert name == "00_ok.ipynb" and seconds > 0
    assert nbformat.read(ok, as_version=4).cells[0].outputs[0]["text"] == "None 42\n"  # full mode, saved
    with pytest.raises(RuntimeError, match="01_bad.ipynb: a cell failed; the notebook was not saved"):
        execute_notebooks([bad])
    assert bad.read_text() == before
    fast_only = tmp_path / "02_fast.ipynb"  # fails unless the kernel runs in FAST mode
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os; assert os.environ.get('MIXCPT_FAST') == '1'")]), fast_only)
    execute_notebooks([fast_only], fast=True)


def test_cli_notebooks_names_an_unknown_notebook(capsys):
    from mixcpt_core.cli import main

    assert main(["notebooks", "99"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mixcpt: error: 99: no such notebook (have: 00_world_and_base_model.ipynb, ")
