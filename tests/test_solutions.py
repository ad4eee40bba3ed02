"""The exercises' worked solutions (notebooks/solutions/) run top to bottom in FAST mode: every prediction they
state is checked by an assert, so a solution that stops being true fails here."""

import time

import nbformat
import pytest

from .conftest import ROOT, run_notebook_fast

SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("[0-9][0-9]_solutions.ipynb"))
COURSE = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NEEDS_SMOLLM2 = {"05_solutions.ipynb"}
WITH_EXERCISES = ["00", "01", "02", "03", "04", "05", "06"]


def test_each_course_notebook_with_exercises_has_a_solution_notebook_and_takeaways():
    for number in WITH_EXERCISES:
        nb = nbformat.read(next(p for p in COURSE if p.name.startswith(number)), as_version=4)
        markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
        assert any(m.startswith("## Exercises") for m in markdown), number
        assert markdown[-1].startswith("## Takeaways"), number
        assert f"solutions/{number}_solutions.ipynb" in "\n".join(markdown), number
        assert (ROOT / "notebooks" / "solutions" / f"{number}_solutions.ipynb").exists(), number


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_solution_notebook_runs_and_its_asserts_hold(path, monkeypatch, tmp_path):
    nb = nbformat.read(path, as_version=4)
    assert sum("assert " in c.source for c in nb.cells if c.cell_type == "code") >= 2
    t0 = time.time()
    run_notebook_fast(path, monkeypatch, tmp_path, needs_smollm2=path.name in NEEDS_SMOLLM2, timeout=300)
    print(f"{path.name}: {time.time() - t0:.1f} s")  # kept under 30 s on an idle 2-core CPU
