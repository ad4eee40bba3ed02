"""Shared fixtures. Offline first: a stray hub call must fail at once, not hang for ~40 s."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def sample_world():
    from mixcpt_core.world import WORLD_PRESETS, generate_world

    return generate_world(WORLD_PRESETS["sample"])


@pytest.fixture(scope="session")
def tiny_world():
    from mixcpt_core.world import WORLD_PRESETS, generate_world

    return generate_world(WORLD_PRESETS["tiny"])


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_world):
    from mixcpt_core.tokenizer import train_tokenizer

    return train_tokenizer(tiny_world.all_texts(), vocab_size=1536)


@pytest.fixture()
def tiny_model(tiny_tokenizer):
    from mixcpt_core.models import build_model

    return build_model("tiny", tiny_tokenizer, seed=0).eval()


def run_notebook_fast(path, monkeypatch, tmp_path, needs_smollm2: bool = False, timeout: int = 600):
    """Execute a notebook top to bottom in FAST mode (MIXCPT_FAST=1) in its own folder; returns the executed
    notebook. Skips when it needs the optional SmolLM2 packages and they are not installed.

    The kernel's temporary files (FAST figures, checkpoints; over 1 GB for the SmolLM2 notebook) go under ``tmp_path``
    (TMPDIR), which pytest removes, instead of the machine's /tmp, where they would pile up run after run."""
    import nbformat
    from nbclient import NotebookClient

    from mixcpt_core import smollm2

    if needs_smollm2 and not smollm2.is_available():
        pytest.skip(f"SmolLM2 packages not installed: {smollm2.INSTALL_COMMAND}")
    monkeypatch.setenv("MIXCPT_FAST", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=timeout, resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb
