"""One table of measured runtimes (docs/runtimes.json): the README, docs/runtimes.md and each notebook's runtime
cell are rendered from it, and `mixcpt notebooks` records into it."""

import json
import re
import shutil

import nbformat
import pytest

from mixcpt_core import runtimes
from mixcpt_core.notebook import strip_progress_outputs

from .conftest import ROOT

WITH_RUNTIME_CELL = ["00_world_and_base_model.ipynb", "01_data_mixing.ipynb", "02_cpt_with_distillation.ipynb",
                     "03_format_alignment.ipynb", "05_scaling_up.ipynb", "06_does_it_scale.ipynb"]


def test_duration():
    assert [runtimes.duration(s) for s in (8, 59.6, 60, 143, 3720)] == ["8 s", "1 min", "1 min", "2 min 23 s",
                                                                      "1 h 2 min"]


def test_every_course_notebook_is_in_the_table():
    names = {p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert set(runtimes.load()["notebooks"]) == names


def test_readme_and_runtimes_md_are_rendered_from_the_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert runtimes.block(readme, runtimes.COURSE_BEGIN, runtimes.COURSE_END) == runtimes.course_table(), \
        "README course table differs from docs/runtimes.json: run `python -c 'from mixcpt_core import runtimes; runtimes.sync_docs()'`"
    md = (ROOT / "docs" / "runtimes.md").read_text(encoding="utf-8")
    assert runtimes.block(md, runtimes.TABLE_BEGIN, runtimes.TABLE_END) == runtimes.runtimes_table()


@pytest.mark.parametrize("name", WITH_RUNTIME_CELL)
def test_notebook_shows_its_runtime_from_the_table_and_types_none(name):
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    cells = [c for c in nb.cells if runtimes.RUNTIME_TAG in c.metadata.get("tags", [])]
    assert len(cells) == 1 and f'show_runtime("{name}")' in cells[0].source
    shown = [o["data"]["text/markdown"] for o in cells[0].outputs if "text/markdown" in o.get("data", {})]
    assert shown == [runtimes.note(name)], "the stored runtime differs from docs/runtimes.json: rerun `mixcpt notebooks`"
    for c in nb.cells:
        if c.cell_type == "markdown":
            assert not re.search(r"\*\*Runtime\*\*[^\n]*\d", c.source), f"a typed runtime in {name}: {c.source[:80]}"


def test_record_stores_a_run_and_refreshes_the_runtime_cell(tmp_path):
    path = tmp_path / "runtimes.json"
    shutil.copy(runtimes.RUNTIMES, path)
    data = runtimes.record("01_data_mixing.ipynb", 12.34, path=path, load_average=3.0)
    assert json.loads(path.read_text())["notebooks"]["01_data_mixing.ipynb"]["latest"]["seconds"] == 12.3
    text = runtimes.note("01_data_mixing.ipynb", data)
    assert "**12 s** in the latest run" in text and "load average 3.0" in text
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("show_runtime(...)", metadata={"tags": ["runtime"]}),
                                         nbformat.v4.new_code_cell("1")])
    assert runtimes.refresh_runtime_cells(nb, "01_data_mixing.ipynb", data) == 1
    assert nb.cells[0].outputs[0]["data"]["text/markdown"] == text and nb.cells[1].get("outputs", []) == []
    assert runtimes.record("99_unknown.ipynb", 1.0, path=path) == data  # not a course notebook: ignored


def test_sync_docs_rewrites_only_the_blocks(tmp_path):
    readme, md = tmp_path / "README.md", tmp_path / "runtimes.md"
    readme.write_text(f"intro\n{runtimes.COURSE_BEGIN}\nstale\n{runtimes.COURSE_END}\nafter\n")
    md.write_text(f"{runtimes.TABLE_BEGIN}\n{runtimes.TABLE_END}\n")
    runtimes.sync_docs(readme=readme, runtimes_md=md)
    assert readme.read_text() == f"intro\n{runtimes.COURSE_BEGIN}\n{runtimes.course_table()}\n{runtimes.COURSE_END}\nafter\n"
    with pytest.raises(ValueError, match="markers"):
        runtimes.replace_block("no markers", runtimes.COURSE_BEGIN, runtimes.COURSE_END, "x")


def test_strip_progress_outputs_removes_tqdm_bars_only():
    bar = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "a", "version_major": 2, "version_minor": 0},
        "text/plain": "Loading weights:   0%|          | 0/38 [00:00<?, ?it/s]"})
    slider = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "b", "version_major": 2, "version_minor": 0},
        "text/plain": "IntSlider(value=6, description='position', max=28)"})
    text = nbformat.v4.new_output("stream", name="stdout", text="100%| done\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[bar, slider, text])])
    nb.metadata["widgets"] = {"state": {}}
    assert strip_progress_outputs(nb) == 1
    assert nb.cells[0].outputs == [slider, text] and "widgets" not in nb.metadata
