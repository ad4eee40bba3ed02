"""Colab: the install plan (pure functions), the badges and first cells of the notebooks, and a simulated Colab runtime.

The simulation (``-m colab``, one of the slow tests: ``make test-slow``) builds what a Colab runtime has before the
first cell runs: a fresh virtual environment (no system site-packages) with its own torch and Jupyter kernel
preinstalled, and a stand-in ``google.colab`` module imported when the kernel starts. ``MIXCPT_REPO`` points at a
local repository holding this working tree. The first cell of notebook 00 then clones it, installs the pins through
the Colab branch, and the whole notebook runs in FAST mode in that kernel.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import nbformat
import pytest

from mixcpt_core import colab
from mixcpt_core.notebook import _SETUP_CALL, first_cell

from .conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PINS = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines() if ln.split("#")[0].strip()]


# -- the plan ------------------------------------------------------------------------------------------------------
def test_a_supported_torch_is_kept_and_pinned_as_a_constraint():
    reqs, constraints, messages = colab.plan(PINS, {"torch": "2.13.0+cu126", "ipykernel": "6.17.1", "ipywidgets": None})
    assert "torch==2.13.0" not in reqs and "ipykernel==7.4.0" not in reqs
    assert "ipywidgets==8.1.9" in reqs and "transformers==5.24.0" in reqs  # absent front-end packages are installed
    assert len(reqs) == len(PINS) - 2
    assert constraints == ["torch==2.13.0+cu126", "ipykernel==6.17.1"]  # the present versions, local label included
    assert "keeping Colab's torch 2.13.0+cu126 (supported: >=2.6,<2.14; tested: 2.13.0)" in messages


@pytest.mark.parametrize("version, kept", [("2.6.0", True), ("2.5.1+cu121", False), ("2.14.0", False),
                                           ("2.13.1", True), ("2.10.0a0+git", True), (None, False)])
def test_torch_range_edges(version, kept):
    reqs, constraints, _ = colab.plan(PINS, {"torch": version})
    assert ("torch==2.13.0" not in reqs) == kept
    assert constraints == ([f"torch=={version}"] if kept else [])


def test_changed_names_each_replaced_package():
    now = {"numpy": "2.4.6", "torch": "2.13.0"}
    assert colab.changed({"numpy": "2.0.2", "torch": "2.13.0"}, now.__getitem__) == ["numpy 2.0.2 -> 2.4.6"]


def test_install_once_asks_for_a_restart_then_does_not_reinstall(tmp_path, monkeypatch, capsys):
    shutil.copy(ROOT / "requirements.txt", tmp_path / "requirements.txt")
    calls = []
    monkeypatch.setattr(colab, "_pip", lambda *args: calls.append(args))
    monkeypatch.setattr(colab, "_version", lambda name: {"torch": "2.8.0+cu126"}.get(name))
    monkeypatch.setattr(colab, "imported_versions", lambda: {"numpy": "2.0.2"})
    monkeypatch.setattr(colab, "changed", lambda before: ["numpy 2.0.2 -> 2.4.6"])
    with pytest.raises(colab.RestartRequired, match="numpy 2.0.2 -> 2.4.6"):
        colab.install_once(tmp_path)
    out = capsys.readouterr().out
    assert "RESTART NEEDED" in out and "Runtime > Restart session, then run this cell again" in out
    assert [c[:2] for c in calls] == [("-r", calls[0][1]), ("--no-deps", "-e"), ("--no-deps", *colab.SMOLLM2[:1])]
    colab.install_once(tmp_path)  # after the restart: the stamp says the install is done
    assert len(calls) == 3 and "already installed" in capsys.readouterr().out


# -- the notebooks -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_notebook_has_the_colab_badge_and_the_current_first_cell(path):
    nb = nbformat.read(path, as_version=4)
    md = next(c for c in nb.cells if c.cell_type == "markdown")
    assert md.source.splitlines()[0] == colab.badge(path.name), "run mixcpt_core.notebook.sync_first_cells"
    assert f"https://colab.research.google.com/github/mixcpt/mixcpt/blob/main/notebooks/{path.name})" in md.source
    code = next(c for c in nb.cells if c.cell_type == "code")
    m = re.search(_SETUP_CALL, code.source)
    assert code.source == first_cell(json.loads(m[1]), json.loads(m[2])), "run mixcpt_core.notebook.sync_first_cells"


# -- the simulated runtime -----------------------------------------------------------------------------------------
def _repository_of_the_working_tree(dest):
    """A git repository at ``dest`` whose default branch holds this working tree (committed or not), as the clone on
    Colab would see it once pushed. The commit is made in ``dest`` only."""
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    files = subprocess.run(["git", "ls-files", "-z", "-c", "-o", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src, dst = ROOT / name, dest / name
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        elif dst.exists():
            dst.unlink()  # deleted in the working tree
    git = ["git", "-C", str(dest), "-c", "user.name=test", "-c", "user.email=test@example.org"]
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", "working tree"], check=True)


@pytest.mark.colab
@pytest.mark.slow  # about 3 minutes, most of it pip installing torch and the pins: `make test-slow`, not `make test`
def test_simulated_colab_runtime_installs_keeps_its_torch_and_runs_a_notebook(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    t0 = time.time()
    pins = {r.split("==")[0]: r for r in PINS}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # no system site-packages
    py = str(venv / "bin" / "python")
    # what Colab has before the first cell: its own torch and a Jupyter kernel
    subprocess.run([py, "-m", "pip", "install", "-q", pins["torch"], pins["ipykernel"]], check=True)
    torch_meta = next((venv / "lib").glob("python3*/site-packages/torch-*.dist-info"))
    torch_installed = (torch_meta / "RECORD").stat().st_mtime_ns
    stub = tmp_path / "stub" / "google" / "colab"  # `google` stays a namespace package (protobuf lives there too)
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('"""Stand-in for Colab\'s module: the notebooks only test that it is imported."""\n')
    start = (f"import sys; sys.path.insert(0, {str(tmp_path / 'stub')!r}); import google.colab; "
             "from ipykernel.kernelapp import launch_new_instance; launch_new_instance()")
    spec = tmp_path / "jupyter" / "kernels" / "colab-sim"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": [py, "-c", start, "-f", "{connection_file}"],
                                                  "display_name": "simulated Colab", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    _repository_of_the_working_tree(tmp_path / "origin")
    content = tmp_path / "content"  # Colab's working directory
    content.mkdir()
    env = {**os.environ, "MIXCPT_REPO": str(tmp_path / "origin"), "MIXCPT_DIR": str(content / "mixcpt"),
           "MIXCPT_FAST": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf-datasets"),
           "TMPDIR": str(tmp_path)}  # the notebook's FAST-mode model and figures go where pytest removes them
    env.pop("VIRTUAL_ENV", None)
    setup_s = time.time() - t0

    nb = nbformat.read(ROOT / "notebooks" / "00_world_and_base_model.ipynb", as_version=4)
    client = NotebookClient(nb, kernel_name="colab-sim", timeout=600, resources={"metadata": {"path": str(content)}})
    client.execute(env=env)
    run_s = time.time() - t0 - setup_s

    code = [c for c in nb.cells if c.cell_type == "code"]
    first = "".join(o.get("text", "") for o in code[0].outputs)
    assert "mixcpt: keeping Colab's torch 2.13.0" in first and "no restart needed" in first, first
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert (torch_meta / "RECORD").stat().st_mtime_ns == torch_installed  # torch was not reinstalled
    versions = subprocess.run([py, "-c", "import importlib.metadata as m; print(m.version('transformers'), "
                               "m.version('mixcpt_core'))"], capture_output=True, text=True, check=True).stdout
    assert versions.split() == [pins["transformers"].split("==")[1], "0.1.0"]  # the project's pins, and the clone
    print(f"simulated Colab: set-up {setup_s:.0f} s, first cell + notebook 00 (FAST) {run_s:.0f} s")
