"""The committed version of files that `make reproduce` and the notebooks rewrite in a checkout.

README and docs document the committed run. Right after `make reproduce` (the first step before `make test`), the
checkout's figures/ hold this machine's run instead, whose last digits can differ (another CPU) and whose wall times
do. Tests that compare docs with their sources read the committed files (``git archive HEAD`` / ``git show``), and
accept the working-tree files too (docs re-rendered after a new run, before it is committed)."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from .conftest import ROOT


def _git(*args: str) -> subprocess.CompletedProcess | str:
    """``git args`` in the repository, or why it could not run (git missing)."""
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True)
    except OSError as e:
        return f"git is not available ({e})"


def committed_tree(dest: Path, *paths: str, or_working_tree: bool = False) -> Path:
    """``git archive HEAD paths`` extracted under ``dest`` (returned). Where this is not a git checkout with a HEAD
    commit (an unpacked archive, or no git), nothing tells the committed files apart: skips the test, saying why, or
    with ``or_working_tree`` copies the working tree's files instead."""
    import shutil

    r = _git("archive", "--format=tar", "HEAD", *paths)
    if isinstance(r, str) or r.returncode != 0:
        why = r if isinstance(r, str) else f"git archive: {r.stderr.decode().strip()}"
        if or_working_tree:
            for p in paths:
                (dest / p).parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if (ROOT / p).is_dir() else shutil.copy2)(ROOT / p, dest / p)
            return dest
        pytest.skip(f"{ROOT} is not a git checkout with a HEAD commit ({why}): the committed {', '.join(paths)} "
                    "cannot be read")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def committed_figures(dest: Path) -> Path:
    """The committed ``figures/`` (:func:`committed_tree`), extracted under ``dest``; returns its path."""
    return committed_tree(dest, "figures") / "figures"


def versions(path: str) -> list[str]:
    """The texts of a repository file (relative path): the committed one (``git show HEAD:path``) where git has it,
    then the working tree's if it differs. Without git (an unpacked archive), the working tree's alone."""
    texts = []
    r = _git("show", f"HEAD:{path}")
    if not isinstance(r, str) and r.returncode == 0:
        texts.append(r.stdout.decode("utf-8"))
    if (ROOT / path).exists():
        text = (ROOT / path).read_text(encoding="utf-8")
        if text not in texts:
            texts.append(text)
    if not texts:
        raise FileNotFoundError(f"{path}: neither committed nor in the working tree")
    return texts
