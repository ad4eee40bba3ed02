"""Config dataclasses from YAML: one loader, strict about unknown keys, wrong types, missing keys and bad numbers.

Each stage has one dataclass (``WorldConfig``, ``BasePretrainConfig``, …); a YAML file holds its fields, nested
dataclasses as nested mappings. Everything below is checked when the file is loaded, before anything runs, and a
problem raises :class:`ConfigError` as ``FILE: dotted.key: problem``:

* unknown keys and wrongly typed values (a bool is not a number, a float is not an int);
* keys a class lists in ``REQUIRED`` (dotted, e.g. ``selection.model``): keys whose default would only be right when
  run from the repository root, where a wrong guess would be looked up on the model hub;
* numbers: every int and float field must be finite and inside the range its class declares in ``RANGES``
  (``{"learning_rate": "> 0", "lam": "[0, 1]"}``; see :func:`number_problem`). The class's ``__post_init__`` calls
  :func:`check_numbers`, so a config built in code or with ``dataclasses.replace`` is held to the same rule; the
  loader checks finiteness again for classes that declare no ranges.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import typing
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A config file or value that cannot be used; the message names the file and the key."""


class FieldValueError(ValueError):
    """A bad value of one field, raised by a dataclass's ``__post_init__``. It carries the field's name apart from the
    problem so that the loader can report the full dotted key (``sft.learning_rate``), which the field cannot know."""

    def __init__(self, key: str, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")


# -- numbers -----------------------------------------------------------------------------------------------------------
# A range: a comparison with one bound (">= 1", "> 0") or an interval ("[0, 1]", "(0, 1)", "[0, 1)").
_RULE = re.compile(r"^\s*(?:(?P<op>>=|>|<=|<)\s*(?P<bound>\S+)|(?P<open>[\[(])\s*(?P<lo>[^,]+?)\s*,\s*(?P<hi>[^\])]+?)"
                   r"\s*(?P<close>[\])]))\s*$")


@functools.lru_cache(maxsize=None)
def parse_rule(rule: str) -> tuple[float | None, bool, float | None, bool]:
    """``(low, low_inclusive, high, high_inclusive)`` of a range written as in ``RANGES``; ``None`` = unbounded."""
    m = _RULE.match(rule)
    if not m:
        raise ValueError(f"not a range: {rule!r} (write e.g. '> 0', '>= 1' or '[0, 1)')")
    if m["op"]:
        bound = float(m["bound"])
        if m["op"].startswith(">"):
            return bound, m["op"] == ">=", None, False
        return None, False, bound, m["op"] == "<="
    return float(m["lo"]), m["open"] == "[", float(m["hi"]), m["close"] == "]"


def is_number(value) -> bool:
    """An int or a float, and not a bool (``True`` is an int to Python, never a number to a config)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number_problem(value, rule: str | None = None, integer: bool | None = None) -> str | None:
    """What is wrong with the number ``value`` under ``rule`` (a range as in ``RANGES``; ``None`` = finite only), as
    ``"must be a finite number > 0, got nan"``; ``None`` if nothing is. ``integer``: whether the field is an int
    (default: whether ``value`` is). Comparisons with NaN are all false, so every check is written as "inside the
    range" and NaN fails it instead of slipping past an ``x <= 0``."""
    if integer is None:
        integer = isinstance(value, int) and not isinstance(value, bool)
    inside = is_number(value) and math.isfinite(value)
    if inside and rule is not None:
        low, low_in, high, high_in = parse_rule(rule)
        inside = ((low is None or (value >= low if low_in else value > low)) and
                  (high is None or (value <= high if high_in else value < high)))
    if inside:
        return None
    expected = "an integer" if integer else "a finite number"
    if rule is not None:
        expected += (" in " if rule.strip()[0] in "[(" else " ") + rule.strip()
    return f"must be {expected}, got {value!r}"


def check_number(value, key: str, rule: str | None = None, integer: bool | None = None) -> None:
    """:class:`FieldValueError` for field ``key`` if ``value`` is not finite or outside ``rule`` (see above)."""
    if (problem := number_problem(value, rule, integer)) is not None:
        raise FieldValueError(key, problem)


@functools.lru_cache(maxsize=None)
def _int_fields(cls) -> frozenset[str]:
    """The fields of ``cls`` declared ``int`` (or ``int | None``): their messages say "an integer"."""
    hints = typing.get_type_hints(cls)
    return frozenset(f.name for f in dataclasses.fields(cls) if hints[f.name] is int or
                     (int in typing.get_args(hints[f.name]) and float not in typing.get_args(hints[f.name])))


def check_numbers(obj) -> None:
    """Check every numeric field of dataclass ``obj`` (ints and floats; bools and ``None`` are not numbers) against
    its class's ``RANGES`` (finite only for a field without one). Call it from ``__post_init__``."""
    rules = getattr(obj, "RANGES", {})
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if is_number(value):
            check_number(value, f.name, rules.get(f.name), f.name in _int_fields(type(obj)))


def check_seeds(obj, names) -> None:
    """Every seed in the list fields ``names`` of ``obj`` must be an integer >= 0 (numpy refuses negative seeds)."""
    for name in names:
        for i, seed in enumerate(getattr(obj, name)):
            check_number(seed, f"{name}[{i}]", ">= 0")


def check_choice(value, key: str, choices) -> None:
    """:class:`FieldValueError` for field ``key`` unless ``value`` is one of ``choices`` (an enumeration)."""
    if value not in choices:
        raise FieldValueError(key, f"must be one of {list(choices)}, got {value!r}")


# -- the loader --------------------------------------------------------------------------------------------------------
def _at(where: str, key: str) -> str:
    """``FILE: dotted.key`` (or just ``FILE`` at the top level): the start of every message."""
    return f"{where}: {key}" if key else where


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _coerce(value, tp, where: str, key: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{_at(where, key)}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where, key)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, key)
            except ConfigError as e:
                errors.append(e)
        # one member: its own message (e.g. a section's bad value) is more useful than "not a valid X | None"
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"{_at(where, key)}: {value!r} is not a valid {tp}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{_at(where, key)}: expected a list, got {type(value).__name__}")
        (inner, *_) = typing.get_args(tp) or (object,)
        return origin(_finite(_coerce(v, inner, where, f"{key}[{i}]"), where, f"{key}[{i}]")
                      for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{_at(where, key)}: expected a mapping, got {type(value).__name__}")
        key_tp, val_tp = typing.get_args(tp) or (object, object)
        return {_coerce(k, key_tp, where, key): _finite(_coerce(v, val_tp, where, _join(key, str(k))), where,
                                                        _join(key, str(k))) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and (type(value) is not tp):
        raise ConfigError(f"{_at(where, key)}: expected {tp.__name__}, got {value!r} ({type(value).__name__})")
    return value


def _finite(value, where: str, key: str):
    """A number inside a list or mapping (sweep values, search grids, overrides), however deep, must be finite too:
    no ``RANGES`` entry covers it, and a NaN there would reach training unchecked. Returns ``value``."""
    if isinstance(value, dict):
        for k, v in value.items():
            _finite(v, where, _join(key, str(k)))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _finite(v, where, f"{key}[{i}]")
    elif is_number(value) and not math.isfinite(value):
        raise ConfigError(f"{_at(where, key)}: {number_problem(value)}")
    return value


def _missing(data: dict, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data or data[part] is None:
            return True
        data = data[part]
    return False


def from_dict(cls, data: dict, where: str = "config", key: str = ""):
    """Build dataclass ``cls`` from a mapping. Unknown keys, wrong types, missing ``REQUIRED`` keys and numbers that
    are not finite or outside ``RANGES`` raise :class:`ConfigError` as ``WHERE: dotted.key: problem``; ``key`` is
    where ``data`` sits in the file (the dotted prefix of a nested section)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{_at(where, key)}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    for required in getattr(cls, "REQUIRED", ()):
        if _missing(data, required):
            raise ConfigError(f"{where}: {_join(key, required)}: missing; a config file must give it "
                              f"(required keys: {', '.join(cls.REQUIRED)})")
    kwargs = {k: _coerce(v, hints[k], where, _join(key, k)) for k, v in data.items()}
    try:
        obj = cls(**kwargs)
        check_numbers(obj)  # again, for classes whose __post_init__ does not (finite at least)
    except FieldValueError as e:
        raise ConfigError(f"{where}: {_join(key, e.key)}: {e.problem}") from None
    except ValueError as e:  # other checks in __post_init__: their messages name the field
        raise ConfigError(f"{_at(where, key)}: {e}") from None
    return obj


def read_yaml(path: str | Path) -> dict:
    """The top-level mapping of a YAML file; :class:`ConfigError` if it is missing, invalid or not a mapping."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return data


def load_config(cls, path: str | Path):
    """Read a YAML file into dataclass ``cls`` (see :func:`from_dict`)."""
    return from_dict(cls, read_yaml(path), where=str(path))


def to_dict(obj) -> dict:
    """A dataclass as a plain (YAML/JSON-ready) dict."""
    return dataclasses.asdict(obj)
