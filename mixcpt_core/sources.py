"""Reading the inputs of the mix: local files, Hugging Face datasets and the world, flattened to ``Dataset{text}``.

Local files (``.jsonl``, ``.json`` = a list of records, ``.parquet``, ``.csv``) and hub ids are loaded with
``datasets.load_dataset`` (Arrow, memory-mapped, cached) and flattened with a batched ``map``. Precise error messages
come from a second, slow path that runs only when something is wrong: it re-reads the file record by record to
name the line (``.jsonl``, ``.json``, ``.csv``) or row (``.parquet``) of the problem, e.g.
``data_samples/x.jsonl:3: field 'messages'[1].role: unknown role 'robot'``.
A ``.jsonl`` file holds one JSON object per line: one that is a single JSON array (which ``datasets`` would read
without a word) is refused before it is read, and a line holding another JSON value is named by its number; a
``.json`` file must be an array of objects (``datasets`` would also take one object, or an array of strings).
"""

from __future__ import annotations

import contextlib
import csv
import functools
from collections.abc import Iterator
from pathlib import Path

from .data import FILE_KINDS, WORLD_KINDS, DataError, FieldError, MixConfig, SourceConfig, record_texts
from .jsonl import check_array_of_objects, check_not_array, iter_json_array, iter_jsonl, read_text
from .world import generate_world

_world = functools.lru_cache(maxsize=2)(generate_world)  # the three world sources share one generated world

BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


@contextlib.contextmanager
def quiet_datasets():
    """No progress bars or log lines from ``datasets`` inside: they would drown the one-line errors of the CLI."""
    import datasets
    from datasets.utils import logging as dlog

    bars, level = datasets.is_progress_bar_enabled(), dlog.get_verbosity()
    datasets.disable_progress_bars()
    dlog.set_verbosity(dlog.CRITICAL + 10)
    try:
        yield
    finally:
        dlog.set_verbosity(level)
        if bars:
            datasets.enable_progress_bars()


# -- the slow, exact path: records with their line numbers (mixcpt_core.jsonl) ----------------------------------
def _jsonl_records(path: Path) -> Iterator[tuple[str, dict]]:
    for lineno, record in iter_jsonl(path):
        yield f"{path}:{lineno}", record


def _json_records(path: Path) -> Iterator[tuple[str, dict]]:
    for lineno, record in iter_json_array(path):
        yield f"{path}:{lineno}", record


def _csv_records(path: Path) -> Iterator[tuple[str, dict]]:
    reader = csv.DictReader(read_text(path).splitlines(keepends=True))
    start = 2  # line 1 is the header; a quoted field can span lines, so track where each row starts
    for row in reader:
        yield f"{path}:{start}", row
        start = reader.line_num + 1


def _parquet_records(path: Path) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # noqa: BLE001 - any reader failure is the same user error
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    for i, row in enumerate(rows, 1):
        yield f"{path}: row {i}", row


SCANNERS = {".jsonl": _jsonl_records, ".json": _json_records, ".csv": _csv_records, ".parquet": _parquet_records}


# -- the fast path: datasets ----------------------------------------------------------------------------------------
def _resolve(src: SourceConfig, root: str | Path | None) -> Path:
    path = Path(root or ".") / src.path
    if path.suffix not in BUILDERS:
        raise DataError(f"{src.path}: unsupported file type {path.suffix!r}; use one of {sorted(BUILDERS)}")
    if not path.is_file():
        raise DataError(f"{src.path}: file not found (source {src.name!r}, looked at {path.resolve()})")
    return path


def load_records(src: SourceConfig, cfg: MixConfig, root: str | Path | None = None):
    """The raw records of a source as a ``Dataset`` (columns as in the file). Unreadable input: :class:`DataError`."""
    from datasets import Dataset, load_dataset

    if src.kind == "world_domain_docs":
        return Dataset.from_dict({"text": _world(cfg.world).docs("domain", "train")})
    if src.kind in ("world_instructions", "world_preferences"):
        world = _world(cfg.world)
        part = world.instructions if src.kind == "world_instructions" else world.preferences
        return Dataset.from_list([{k: v for k, v in r.items() if k not in ("id", "kind")} for r in part])
    if src.hub is not None:
        try:
            with quiet_datasets():
                return load_dataset(src.hub, src.subset, split=src.split)
        except Exception as e:  # noqa: BLE001 - offline, unknown id, unknown split: all "cannot load"
            subset = f", subset {src.subset!r}" if src.subset else ""
            raise DataError(f"hub dataset {src.hub!r} (split {src.split!r}{subset}, source {src.name!r}): cannot load "
                            f"({type(e).__name__}: {str(e)[:200]})") from None
    path = _resolve(src, root)
    if path.suffix == ".jsonl":  # datasets would read a whole-file JSON array here without a word
        check_not_array(path)
    elif path.suffix == ".json":  # ... and a single object, or an array of strings, here
        check_array_of_objects(path)
    extra = {"keep_default_na": False} if path.suffix == ".csv" else {}  # an empty CSV cell is "", not NaN
    try:
        with quiet_datasets():
            return load_dataset(BUILDERS[path.suffix], data_files=str(path), split="train", **extra)
    except Exception as e:  # noqa: BLE001 - find the exact line with the slow path
        _diagnose(src, path, e)


def _diagnose(src: SourceConfig, path: Path, error: Exception):
    """``datasets`` failed on ``path``: re-read it record by record to raise a :class:`DataError` naming the line;
    if every record parses, report the empty file or what ``datasets`` said."""
    n_records = sum(1 for _ in SCANNERS[path.suffix](path))  # the whole file: raises at the first bad line
    if n_records == 0:
        raise DataError(f"{path}: no records (source {src.name!r} is empty)") from None
    raise DataError(f"{path}: cannot be read ({type(error).__name__}: {str(error)[:200]})") from None


def _locate(src: SourceConfig, root, index: int) -> str:
    """Where record ``index`` (0-based) is: ``file:line`` / ``file: row n`` for files, the row for the rest."""
    if src.path is not None:
        path = _resolve(src, root)
        for i, (where, _) in enumerate(SCANNERS[path.suffix](path)):
            if i == index:
                return where
        return f"{path}: record {index + 1}"  # datasets saw more records than the exact reader: still name the file
    if src.hub is not None:
        return f"hub dataset {src.hub!r} [{src.split}]: row {index + 1}"
    return f"world part {src.kind!r}: record {index + 1}"


def source_texts(src: SourceConfig, cfg: MixConfig, root: str | Path | None = None):
    """The plain texts of one source as ``Dataset{text}`` (one row per text; a preference pair can give two)."""
    records = load_records(src, cfg, root)
    if len(records) == 0:
        raise DataError(f"{src.path or src.hub or src.kind}: no records (source {src.name!r} is empty)")
    kind = WORLD_KINDS.get(src.kind, src.kind)  # world parts are read like the file kind they resemble
    columns = {k: src.columns.get(k, k) for k in FILE_KINDS[kind]}  # record field -> column in the file

    def flatten(batch, indices):
        texts = []
        for j, index in enumerate(indices):
            record = {k: batch[col][j] if col in batch else None for k, col in columns.items()}
            try:
                texts += record_texts(record, kind, cfg.layout, cfg.preference_mode)
            except FieldError as e:  # name the file's own column, then the line
                raise DataError(f"{_locate(src, root, index)}: field '{columns[e.key]}'{e.rest}: {e.problem}") from None
        return {"text": texts}

    try:
        with quiet_datasets():
            return records.map(flatten, batched=True, with_indices=True, remove_columns=records.column_names)
    except (UnicodeDecodeError, ValueError) as e:  # Arrow read bytes it could not decode (non-UTF-8 JSON strings)
        if isinstance(e, DataError) or src.path is None:
            raise
        _diagnose(src, _resolve(src, root), e)
