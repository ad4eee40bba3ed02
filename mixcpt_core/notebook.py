"""The first cell of every notebook: offline settings, FAST mode, device, precision and sizes per profile.

Each notebook starts with the same few lines (Colab install, then :func:`setup_notebook`)::

    import os, sys
    if "google.colab" in sys.modules:  # Colab: clone the repository, install its pins once, work in its notebooks/
        ...  # see COLAB_INSTALL below
    from mixcpt_core.notebook import setup_notebook
    NB = setup_notebook("tiny", packages=["torch", "transformers"])

**Colab.** The notebooks read files from the repository (the shipped base model, configs), so on Colab the first
cell clones the repository (:data:`mixcpt_core.colab.REPO_URL`, or ``$MIXCPT_REPO``; ``$MIXCPT_REF`` picks a branch,
tag or commit) and installs its pins once with :func:`mixcpt_core.colab.install_once`: Colab's own torch is kept
when its version is supported, and the cell says when the runtime must be restarted. Each notebook's first markdown
cell carries an "Open in Colab" badge built from the same address. :func:`sync_first_cells` rewrites both (badge and
first code cell) from this module, leaving outputs alone. ``tests/test_colab.py`` runs the Colab branch in a
simulated runtime (a fresh virtual environment with a stand-in ``google.colab``); it has not been run on Colab.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from .colab import REPO_URL, badge

# The Colab branch of the first cell, kept here so it is written once; notebooks inline it (the package is not
# installed yet when the first cell starts on Colab). mixcpt_core.colab needs only the standard library, so it can be
# imported from the fresh clone before anything is installed.
COLAB_INSTALL = f"""\
if "google.colab" in sys.modules:  # Colab: clone the repository, install its pins once, work in its notebooks/
    import subprocess
    MIXCPT_DIR = os.environ.get("MIXCPT_DIR", "/content/mixcpt")
    if not os.path.isdir(MIXCPT_DIR):
        repo = os.environ.get("MIXCPT_REPO", "{REPO_URL}")
        subprocess.run(["git", "clone", "-q", repo, MIXCPT_DIR], check=True)
        if os.environ.get("MIXCPT_REF"):  # a branch, tag or commit (default: the repository's default branch)
            subprocess.run(["git", "-C", MIXCPT_DIR, "checkout", "-q", os.environ["MIXCPT_REF"]], check=True)
    if MIXCPT_DIR not in sys.path:
        sys.path.insert(0, MIXCPT_DIR)  # this kernel started before the editable install
    from mixcpt_core.colab import install_once

    install_once(MIXCPT_DIR)  # keeps a supported torch; stops with a message if the runtime must be restarted
    os.chdir(os.path.join(MIXCPT_DIR, "notebooks"))"""

# Sizes per profile: what a notebook may scale by. FAST (the test suite) shrinks the CPU profiles to seconds.
PROFILES: dict[str, dict] = {
    "tiny": {"model": "checkpoints/base-tiny", "block_length": 128, "batch_size": 16},
    "smollm2": {"model": "smollm2:135m-instruct", "block_length": 256, "batch_size": 2, "cpu_steps": 10,
                "gpu_steps": 400, "eval_domain": 32},
    "gpu": {"model": "Qwen/Qwen2.5-0.5B", "block_length": 2048, "batch_size": 8},
}
FAST_SIZES: dict[str, dict] = {"tiny": {}, "smollm2": {"cpu_steps": 2, "eval_domain": 8}, "gpu": {}}


def setup_notebook(profile: str = "tiny", packages: tuple[str, ...] | list[str] = ("torch", "transformers")) -> dict:
    """Offline settings, FAST mode, device and precision, and the profile's sizes. Prints the package versions and
    the mode (as every notebook's first cell did before). Returns ``{"root", "fast", "figures", "device", "dtype",
    "bf16", "in_colab", "profile", "sizes"}``.

    * ``root``: the repository (the parent of ``notebooks/`` when run from there);
    * ``fast``: ``MIXCPT_FAST=1`` (the test suite); ``figures`` is then a temporary directory, so FAST runs leave
      the repository untouched;
    * ``device``, ``dtype``: :func:`mixcpt_core.device.select_device` (``cuda``, then Apple's ``mps`` with the CPU
      fallback for ops it lacks, then ``cpu``); ``bf16``: whether ``dtype`` is bfloat16 (on a GPU that supports it).
    """
    from .device import enable_mps_fallback, select_device

    enable_mps_fallback()  # before torch is imported: it reads the setting then
    import torch
    from importlib.metadata import version

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is offline: a stray hub call fails at once
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' loading/saving bars: see mixcpt_core.cli
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    root = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
    fast = os.environ.get("MIXCPT_FAST") == "1"
    device, dtype = select_device()
    sizes = {**PROFILES[profile], **(FAST_SIZES[profile] if fast else {})}
    for pkg in ["mixcpt_core", *packages]:
        print(f"{pkg:13s} {version(pkg)}")
    print("FAST mode" if fast else "full mode")
    return {"root": root, "fast": fast, "figures": Path(tempfile.mkdtemp()) if fast else root / "figures",
            "device": device, "dtype": dtype, "bf16": dtype == torch.bfloat16,
            "in_colab": "google.colab" in sys.modules, "profile": profile, "sizes": sizes}


def first_cell(profile: str, packages: list[str]) -> str:
    """The source of a notebook's first cell (used to write the first cell of every notebook)."""
    import json

    return ("import os\nimport sys\nimport tempfile  # noqa: F401 (later cells use it)\n"
            "from pathlib import Path  # noqa: F401\n\n"
            'os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is offline: a stray hub call fails at once\n'
            'os.environ.setdefault("HF_DATASETS_OFFLINE", "1")\n'
            f"{COLAB_INSTALL}\n\n"
            "from mixcpt_core.notebook import setup_notebook\n\n"
            f"NB = setup_notebook({json.dumps(profile)}, packages={json.dumps(packages)})  # offline, FAST, device, sizes\n"
            'ROOT, FAST, FIGURES = NB["root"], NB["fast"], NB["figures"]')


_SETUP_CALL = r'setup_notebook\(("[a-z0-9]+"), packages=(\[.*?\])\)'


def sync_first_cells(paths: list[str | Path]) -> list[str]:
    """Rewrite each notebook's first code cell (:func:`first_cell`, same profile and packages) and the "Open in
    Colab" badge at the top of its first markdown cell (from :data:`mixcpt_core.colab.REPO_URL`). Outputs and other
    cells stay as they are. Returns the names of the notebooks that changed."""
    import json
    import re

    import nbformat

    from .atomic import write_text_atomic

    changed = []
    for path in map(Path, paths):
        nb = nbformat.read(path, as_version=4)
        code = next(c for c in nb.cells if c.cell_type == "code")
        m = re.search(_SETUP_CALL, code.source)
        if m is None:
            raise ValueError(f"{path}: the first code cell does not call setup_notebook(PROFILE, packages=[...])")
        code.source = first_cell(json.loads(m[1]), json.loads(m[2]))
        md = next(c for c in nb.cells if c.cell_type == "markdown")
        lines = md.source.split("\n")
        if lines and lines[0].startswith("[![Open In Colab]"):
            lines = lines[2:] if len(lines) > 1 and not lines[1].strip() else lines[1:]
        md.source = "\n".join([badge(path.name), "", *lines])
        text = nbformat.writes(nb) + "\n"
        if text != path.read_text(encoding="utf-8"):
            write_text_atomic(path, text)
            changed.append(path.name)
    return changed


class NotebookError(RuntimeError):
    """A notebook cell failed (the message names the notebook and carries the cell's traceback)."""


def execute_notebooks(paths: list[str | Path], fast: bool = False, timeout: int = 3600,
                      record: bool = False) -> list[tuple[str, float]]:
    """Run each notebook top to bottom in its own folder, as Jupyter's "Run All" does, and save it with its outputs.

    ``fast`` sets ``MIXCPT_FAST=1`` for the kernels (the test suite's small sizes) and then saves nothing, so the
    committed outputs stay those of a full run. A notebook whose cell fails is not saved: :class:`NotebookError`
    names it, and the notebooks after it are not run. Returns ``[(name, seconds), ...]`` of those executed.

    Progress bars are switched off in the kernels (tqdm, Hugging Face Hub and datasets), and any left over are
    removed before saving (:func:`strip_progress_outputs`): a saved notebook shows no frozen "0%" bar. ``record``
    (full mode; ``mixcpt notebooks``) stores each wall time in ``docs/runtimes.json`` and re-renders the README's
    course table, ``docs/runtimes.md`` and the notebook's runtime cell from it (:mod:`mixcpt_core.runtimes`)."""
    import time

    import nbformat
    from nbclient import NotebookClient

    from .atomic import write_text_atomic

    env = {k: v for k, v in os.environ.items() if k != "MIXCPT_FAST"} | ({"MIXCPT_FAST": "1"} if fast else {})
    env |= NO_PROGRESS_BARS
    times = []
    for path in map(Path, paths):
        print(f"{path.name} ...", end=" ", flush=True)
        nb = nbformat.read(path, as_version=4)
        load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        t0 = time.time()
        client = NotebookClient(nb, kernel_name="python3", timeout=timeout,
                                resources={"metadata": {"path": str(path.parent.resolve())}},
                                # the kernel's own log (TCP transport notice, shutdown chatter) is noise here;
                                # a failing cell is reported through the notebook, not this log
                                extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
        try:
            client.execute(env=env)  # the kernel's environment: this process's, FAST mode set or not
        except Exception as e:  # nbclient's CellExecutionError carries the cell's traceback
            print("failed")
            raise NotebookError(f"{path}: a cell failed; the notebook was not saved.\n{e}") from None
        times.append((path.name, time.time() - t0))
        print(f"{times[-1][1]:.0f} s", flush=True)
        if not fast:
            strip_progress_outputs(nb)
            if record:
                from . import runtimes

                data = runtimes.record(path.name, times[-1][1], load_average=load_average)
                runtimes.refresh_runtime_cells(nb, path.name, data)
                runtimes.sync_docs(data)
            write_text_atomic(path, nbformat.writes(nb) + "\n")
    return times


# The kernels of execute_notebooks run without progress bars: in a saved notebook a tqdm bar is a frozen widget
# whose text fallback reads "0%" (its state is not kept).
NO_PROGRESS_BARS = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}


def _is_progress_bar(output) -> bool:
    import re

    data = output.get("data", {})
    if "application/vnd.jupyter.widget-view+json" not in data:
        return False
    return re.search(r"\d+%\|.*\|", data.get("text/plain", "")) is not None  # tqdm's "desc:  0%|    | 0/38 [...]"


def strip_progress_outputs(nb) -> int:
    """Remove tqdm progress-bar widgets from the outputs, and the saved widget state (a static notebook cannot run
    a slider anyway). Returns how many outputs were removed."""
    removed = 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            kept = [o for o in cell.get("outputs", []) if not _is_progress_bar(o)]
            removed += len(cell.get("outputs", [])) - len(kept)
            cell.outputs = kept
    nb.metadata.pop("widgets", None)
    return removed
