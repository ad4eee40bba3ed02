"""Reading record files exactly: JSON Lines (one JSON object per line) and JSON arrays of objects, each record with
the line it starts on. Every problem is a :class:`DataError` whose message starts with ``file:line:``, e.g.
``data/x.jsonl:3: expected a JSON object (one record per line), got a number: 42``.

These readers are pure Python, so they are the slow, exact path: :mod:`mixcpt_core.sources` reads large files
through ``datasets`` (Arrow) and comes here to say what is wrong, or to refuse what ``datasets`` would take
silently (a ``.jsonl`` file that is one JSON array). No other module of the package is imported, so any reader
(the world files too) can use them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

_BOM = "\ufeff"  # some editors start UTF-8 files with it; datasets skips it, so the exact path must too


class DataError(ValueError):
    """Input data that cannot be used. The message names the file, the line (or row) and the field."""


def read_text(path: str | Path) -> str:
    """The file as UTF-8 (a leading byte-order mark dropped); bad bytes raise :class:`DataError` with their line."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte 0x{data[e.start]:02x}); "
                        "save the file as UTF-8") from None
    return text[1:] if text.startswith(_BOM) else text


def _what(value) -> str:
    """``a number: 42``, ``an array: [1, 2]``: what a JSON value is, for a message (shortened)."""
    kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)
    return kind if value is None else f"{kind}: {json.dumps(value)[:40]}"


def array_message(path, lineno: int) -> str:
    return (f"{path}:{lineno}: the file is a JSON array, but a .jsonl file holds one JSON object per line "
            "(rename it to .json to read it as an array of records)")


def first_line(path: str | Path) -> tuple[int, bytes]:
    """``(line number, bytes)`` of the first non-blank line (``(0, b"")`` for a blank file), reading no further.
    Cheap: this is what decides, before ``datasets`` reads a ``.jsonl`` file, whether it is one JSON array."""
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if line.strip():
                return lineno, line.strip()
    return 0, b""


def check_not_array(path: str | Path) -> None:
    """Refuse a ``.jsonl`` file whose first record starts with ``[``: ``datasets`` would read a whole-file JSON
    array without a word, against the one-object-per-line format (and name no line for its bad records)."""
    lineno, line = first_line(path)
    if line.startswith(b"["):
        raise DataError(array_message(path, lineno))


def check_array_of_objects(path: str | Path) -> None:
    """Refuse a ``.json`` file that is not an array of objects: ``datasets`` would also read a single object as one
    record, and an array of strings as a ``text`` column, without a word. Cheap: it looks at the first two
    non-blank characters, and only when they are not ``[{`` or ``[]`` reads the file exactly to name the problem."""
    with open(path, "rb") as f:
        head = f.read(4096)
    lead = head.removeprefix(b"\xef\xbb\xbf").translate(None, b" \t\r\n")[:2]
    if lead not in (b"[{", b"[]"):
        for _ in iter_json_array(path):  # raises at the first element that is not an object
            pass


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """``(line number, record)`` for every non-blank line of a JSON Lines file. Each line must be a JSON object."""
    seen_record = False
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        if not seen_record and line.lstrip().startswith("["):  # a whole-file array, on one line or many
            raise DataError(array_message(path, lineno))
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(value, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object (one record per line), got {_what(value)}")
        seen_record = True
        yield lineno, value


def iter_json_array(path: str | Path) -> Iterator[tuple[int, dict]]:
    """``(line number, record)`` for every element of a file holding one JSON array of objects, each located at
    the line where it starts."""
    text = read_text(path)
    try:
        records = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(records, list):
        lineno = text.count("\n", 0, len(text) - len(text.lstrip())) + 1  # where the value starts
        raise DataError(f"{path}:{lineno}: expected a JSON array of records (or use .jsonl, one record per line)")
    decoder, pos = json.JSONDecoder(), text.index("[") + 1
    for record in records:  # find where each element starts: raw_decode from just after the previous one
        while text[pos] in " \t\r\n,":
            pos += 1
        _, end = decoder.raw_decode(text, pos)
        lineno = text.count("\n", 0, pos) + 1
        if not isinstance(record, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object (a record), got {_what(record)}")
        yield lineno, record
        pos = end
