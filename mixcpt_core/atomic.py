"""Writing a file or a directory atomically: nothing half-written is ever left at the destination."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_directory(out_dir: str | Path, marker: str):
    """Yield a fresh temporary directory next to ``out_dir``; when the block ends without error it replaces
    ``out_dir`` in one rename, and on any error it is deleted.

    ``marker`` is a file name the block writes (``world.json``, ``composition.json``): an existing non-empty
    ``out_dir`` without it is not ours, and is refused rather than replaced.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / marker).exists():
        raise FileExistsError(f"{out}: exists, is not empty and has no {marker}; refusing to overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; these are ordinary data directories
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(path: str | Path):
    """Yield a temporary path next to ``path`` (its parent directory created) for the block to write; when the block
    ends without error it replaces ``path`` in one rename, and on any error it is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` (UTF-8) through :func:`atomic_file`."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def remove_directory(path: str | Path) -> None:
    """Delete the directory ``path`` so that no partly deleted copy is ever left under its name: it is renamed
    first (one step), then deleted. A process killed while deleting leaves only a hidden ``.<name>.removing``
    next to it, which the next call for the same ``path`` deletes.

    Why: a Trainer checkpoint directory deleted file by file could be left with its ``trainer_state.json`` but
    without its weights, and a rerun would try to resume from it."""
    path = Path(path)
    trash = path.with_name(f".{path.name}.removing")
    if trash.exists():
        shutil.rmtree(trash)
    if path.exists():
        os.replace(path, trash)
        shutil.rmtree(trash)
