"""The notebooks' measured runtimes: one table (``docs/runtimes.json``) that the README, ``docs/runtimes.md`` and
every notebook's runtime cell are rendered from, so no runtime is typed twice.

``mixcpt notebooks`` (full mode) records each notebook's wall time there (:func:`record`), with the date, the CPU
count and the load average when it started, and then re-renders the README's course table, ``docs/runtimes.md``
and the notebook's own runtime cell (:func:`sync_docs`, :func:`refresh_runtime_cells`). The ``reference`` entry of
each notebook is the fresh-clone measurement on an idle machine; ``latest`` is the newest recorded run.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIMES = ROOT / "docs" / "runtimes.json"
README = ROOT / "README.md"
RUNTIMES_MD = ROOT / "docs" / "runtimes.md"
COURSE_BEGIN = "<!-- course:begin (rendered by `mixcpt notebooks` from docs/runtimes.json; do not edit by hand) -->"
COURSE_END = "<!-- course:end -->"
TABLE_BEGIN = "<!-- runtimes:begin (rendered from docs/runtimes.json; do not edit by hand) -->"
TABLE_END = "<!-- runtimes:end -->"
RUNTIME_TAG = "runtime"  # the tag of each notebook's runtime cell


def load(path: str | Path = RUNTIMES) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def duration(seconds: float) -> str:
    """``8 s``, ``2 min 23 s``, ``1 h 2 min``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _entry(nb: dict, name: str, key: str) -> dict:
    try:
        return nb[key]
    except KeyError:
        raise KeyError(f"{name}: no {key!r} runtime in docs/runtimes.json") from None


def _conditions(run: dict) -> str:
    load_avg = run.get("load_average")
    text = f"{run['cpus']} CPU cores" if "cpus" in run else "2 CPU cores"
    if load_avg is not None:
        text += f", load average {load_avg:.1f} at the start"
    return text + (f"; {run['conditions']}" if run.get("conditions") else "")


def note(name: str, data: dict | None = None) -> str:
    """The Markdown a notebook's runtime cell shows: the idle reference and the latest recorded run."""
    data = data or load()
    nb = data["notebooks"][name]
    ref, latest = _entry(nb, name, "reference"), nb.get("latest")
    text = (f"**Runtime** of this notebook, full mode, as measured by `mixcpt notebooks`: "
            f"**{duration(ref['seconds'])}** on an idle machine ({_conditions(ref)})")
    if latest:
        text += f"; **{duration(latest['seconds'])}** in the latest run ({latest['date']}, {_conditions(latest)})"
    text += "."
    if nb.get("note"):
        text += f" {nb['note']}"
    return text + " All runtimes: `docs/runtimes.md`."


def show(name: str) -> None:
    """Display :func:`note` in a notebook (its runtime cell)."""
    from IPython.display import Markdown, display

    display(Markdown(note(name)))


def course_table(data: dict | None = None) -> str:
    """The README's course table: notebook, learning goal, runtime (idle reference)."""
    data = data or load()
    lines = ["| notebook | you will learn to | runtime, idle 2-core CPU |", "|---|---|---|"]
    for name, nb in data["notebooks"].items():
        title = name.removesuffix(".ipynb")
        runtime = duration(nb["reference"]["seconds"])
        if nb.get("short_note"):
            runtime += f" ({nb['short_note']})"
        lines.append(f"| [`{title}`](notebooks/{name}) | {nb['goal']} | {runtime} |")
    return "\n".join(lines)


def runtimes_table(data: dict | None = None) -> str:
    """``docs/runtimes.md``'s table: both measurements of every notebook, with their conditions."""
    data = data or load()
    lines = ["| notebook | idle reference | conditions | latest run | date, conditions |", "|---|---|---|---|---|"]
    for name, nb in data["notebooks"].items():
        ref, latest = nb["reference"], nb.get("latest")
        lines.append(f"| [`{name}`](../notebooks/{name}) | {duration(ref['seconds'])} | {_conditions(ref)} | "
                     + (f"{duration(latest['seconds'])} | {latest['date']}, {_conditions(latest)} |" if latest
                        else "— | — |"))
    return "\n".join(lines)


def replace_block(text: str, begin: str, end: str, block: str, where: str = "") -> str:
    """``text`` with the part between the ``begin`` and ``end`` lines replaced by ``block``."""
    try:
        head, rest = text.split(begin + "\n", 1)
        _, tail = rest.split(end, 1)
    except ValueError:
        raise ValueError(f"{where}: markers {begin!r} ... {end!r} not found") from None
    return f"{head}{begin}\n{block}\n{end}{tail}"


def block(text: str, begin: str, end: str) -> str:
    """The part of ``text`` between the markers (stripped)."""
    return text.split(begin, 1)[1].split(end, 1)[0].strip()


def sync_docs(data: dict | None = None, readme: Path = README, runtimes_md: Path = RUNTIMES_MD) -> None:
    """Re-render the README's course table and the table of ``docs/runtimes.md`` from the JSON."""
    from .atomic import write_text_atomic

    data = data or load()
    for path, begin, end, rendered in [(readme, COURSE_BEGIN, COURSE_END, course_table(data)),
                                       (runtimes_md, TABLE_BEGIN, TABLE_END, runtimes_table(data))]:
        text = path.read_text(encoding="utf-8")
        new = replace_block(text, begin, end, rendered, str(path))
        if new != text:
            write_text_atomic(path, new)


def record(name: str, seconds: float, path: str | Path = RUNTIMES, load_average: float | None = None) -> dict:
    """Store ``seconds`` as the ``latest`` full-mode run of notebook ``name`` (date, CPUs, load average at the
    start, threads) and return the updated table. Notebooks not in the table are ignored."""
    from .atomic import write_text_atomic

    path = Path(path)
    data = load(path)
    if name not in data["notebooks"]:
        return data
    run = {"seconds": round(float(seconds), 1), "date": _dt.date.today().isoformat(), "cpus": os.cpu_count()}
    if load_average is not None:
        run["load_average"] = round(float(load_average), 2)
    if os.environ.get("OMP_NUM_THREADS"):
        run["conditions"] = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
    data["notebooks"][name]["latest"] = run
    write_text_atomic(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return data


def refresh_runtime_cells(nb, name: str, data: dict | None = None) -> int:
    """Set the output of the notebook's runtime cell(s) (tag :data:`RUNTIME_TAG`) to :func:`note` as rendered from
    ``data`` now, so a notebook saved right after its run shows that run. Returns the number of cells updated."""
    import nbformat

    data = data or load()
    n = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and RUNTIME_TAG in cell.get("metadata", {}).get("tags", []):
            md = note(name, data)
            cell.outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": md,
                                                                          "text/plain": "<IPython.core.display.Markdown object>"})]
            n += 1
    return n
