"""Every config value is checked when its file is loaded, before a model is touched: each numeric field of each
config dataclass (nested sections included) must be finite and inside its declared range, enumerations must name
an accepted value, required keys must be there, and the model folders ``cpt`` and ``align`` start from must have
readable weights and a config that loads.

Most cases call the loader directly (fast: no model, no torch work); a representative few go through ``cli.main``
and check what a user sees: one line ``mixcpt: error: FILE: key: problem``, exit code 2, nothing written.
"""

import copy
import dataclasses
import math
import re
import shutil
import socket
import types
import typing

import pytest
import yaml

from mixcpt_core.alignment import AlignConfig, SFTSettings
from mixcpt_core.cli import main
from mixcpt_core.config import ConfigError, FieldValueError, from_dict, parse_rule, read_yaml
from mixcpt_core.cpt import LR_SCHEDULERS, CPTConfig, LSSDConfig
from mixcpt_core.data import MixConfig
from mixcpt_core.format_pool import PoolConfig
from mixcpt_core.pipelines import ArmConfig, ReproduceConfig
from mixcpt_core.search import Stage2SearchConfig
from mixcpt_core.training import BasePretrainConfig
from mixcpt_core.world import WorldConfig

from .conftest import ROOT
from .test_configs import TABLE

CONFIGS = ROOT / "configs"
BASE = ROOT / "checkpoints" / "base-tiny"

# Each top-level config class and a valid mapping to spoil one value of: a shipped file, with the optional sections
# (None by default) switched on so that their fields are walked too.
TOP = {
    CPTConfig: (CONFIGS / "cpt-tiny.yaml", {"lora": {}}),
    AlignConfig: (CONFIGS / "align-tiny.yaml", {"lora": {}, "evaluation": {}}),
    MixConfig: (CONFIGS / "mix-tiny.yaml", {}),
    BasePretrainConfig: (CONFIGS / "base-tiny.yaml", {}),
    ReproduceConfig: (CONFIGS / "reproduce-tiny.yaml", {}),
    Stage2SearchConfig: (CONFIGS / "search-stage2-tiny.yaml", {}),
    ArmConfig: (CONFIGS / "arms" / "mixcpt.yaml", {}),
    PoolConfig: (CONFIGS / "smollm2" / "pool.yaml", {}),
}
# PoolConfig checks its ranges in its own __post_init__ (and the loader its finiteness); these mirror them
OWN_RANGES = {PoolConfig: {"max_new_tokens": ">= 1", "rejected_new_tokens": ">= 1", "batch_size": ">= 1",
                           "first_pass_tokens": ">= 0", "no_repeat_ngram_size": ">= 0", "limit": ">= 0",
                           "budget_quantile": "(0, 1]"}}
# where a message names the key its own way (the share check says which source)
KEY_IN_MESSAGE = {(MixConfig, "sources[0].share"): "sources[0]: source 'domain': field 'share'"}


def _members(tp) -> list:
    """The non-None types of ``tp`` (``X | None`` -> ``[X]``)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(tp) if a is not type(None)]
    return [tp]


def numeric_fields(cls, prefix: str = ""):
    """``(owner class, field name, dotted key, int or float)`` for every numeric field of ``cls``, walking nested
    dataclass sections, optional ones and the first element of a list of them."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        (tp, *_) = _members(hints[f.name])
        key = prefix + f.name
        if dataclasses.is_dataclass(tp):
            yield from numeric_fields(tp, key + ".")
        elif typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            yield from numeric_fields(typing.get_args(tp)[0], key + "[0].")
        elif tp in (int, float):
            yield cls, f.name, key, tp


def _rule(owner, name):
    return {**getattr(owner, "RANGES", {}), **OWN_RANGES.get(owner, {})}.get(name)


def _set(data: dict, dotted: str, value) -> dict:
    """A deep copy of ``data`` with the value at ``a.b[0].c`` replaced (sections created as needed)."""
    data = copy.deepcopy(data)
    node = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        name, _, index = part.partition("[")
        node = node.setdefault(name, {}) if not index else node[name][int(index.rstrip("]"))]
    node[leaf] = value
    return data


def _outside(rule: str, tp):
    """A value just outside ``rule``: below its lower bound (on it, if the bound is excluded), else above the upper."""
    low, low_in, high, high_in = parse_rule(rule)
    bad = (low - 1 if low_in else low) if low is not None else (high + 1 if high_in else high)
    return tp(bad)


CASES = [(top, owner, name, key, tp) for top in TOP for owner, name, key, tp in numeric_fields(top)]


def test_every_config_class_is_walked_and_every_numeric_field_has_a_range():
    shipped = {getattr(__import__(k.split(":")[0], fromlist=["_"]), k.split(":")[1]) for _, k in TABLE if ":" in k}
    assert shipped <= set(TOP), f"config classes of shipped files missing from TOP: {shipped - set(TOP)}"
    missing = sorted(f"{owner.__name__}.{name}" for _, owner, name, _, _ in CASES if _rule(owner, name) is None)
    assert not missing, f"numeric fields without a range in their class's RANGES: {missing}"
    assert len(CASES) > 100  # the walk reaches the nested sections (world, lssd, sft, evaluation, sources, ...)


@pytest.mark.parametrize("top, owner, name, key, tp", CASES, ids=[f"{c[0].__name__}:{c[3]}" for c in CASES])
def test_non_finite_and_out_of_range_numbers_are_refused_at_load_time(top, owner, name, key, tp):
    path, extra = TOP[top]
    data = {**read_yaml(path), **extra}
    from_dict(top, data, where="x.yaml")  # the starting point is valid
    named = KEY_IN_MESSAGE.get((top, key), key)
    for value in (math.nan, math.inf, -math.inf, _outside(_rule(owner, name), tp)):
        with pytest.raises(ConfigError) as e:
            from_dict(top, _set(data, key, value), where="x.yaml")
        message = str(e.value)
        assert message.startswith(f"x.yaml: {named}") and "\n" not in message, message
        if tp is int and not math.isfinite(value):  # an int field given a float: the type check speaks first
            assert f"{named}: expected int" in message, message
        elif owner in OWN_RANGES:  # a class that words its own range messages
            assert "must be" in message, message
        else:
            assert re.search(rf"{re.escape(named)}: must be (a finite number|an integer) ", message), message


@pytest.mark.parametrize("value", [True, False])
def test_a_bool_is_not_a_number(value):
    data = {"base_model": "m", "mix": "x.yaml", "learning_rate": value}
    with pytest.raises(ConfigError, match="x.yaml: learning_rate: expected float, got"):
        from_dict(CPTConfig, data, where="x.yaml")


def test_configs_built_in_code_are_held_to_the_same_rule():
    for make in (lambda: dataclasses.replace(SFTSettings(), learning_rate=math.nan),
                 lambda: LSSDConfig(tau=math.inf), lambda: WorldConfig(val_fraction=math.nan),
                 lambda: CPTConfig(weight_decay=math.nan)):
        with pytest.raises(FieldValueError, match="must be a finite number"):
            make()


@pytest.mark.parametrize("cls, data, message", [
    (ReproduceConfig, {"seeds": [0, -1]}, "x.yaml: seeds[1]: must be an integer >= 0, got -1"),
    (ReproduceConfig, {"sweep": {"cpt.lssd.lam": [0.5, math.nan]}},
     "x.yaml: sweep.cpt.lssd.lam[1]: must be a finite number, got nan"),
    (Stage2SearchConfig, {"space": [{"sft.learning_rate": [math.inf]}]},
     "x.yaml: space[0].sft.learning_rate[0]: must be a finite number, got inf"),
])
def test_numbers_inside_lists_and_mappings_are_finite(cls, data, message):
    path, _ = TOP[cls]
    with pytest.raises(ConfigError) as e:
        from_dict(cls, {**read_yaml(path), **data}, where="x.yaml")
    assert str(e.value) == message


@pytest.mark.parametrize("cls, key, value", [
    (CPTConfig, "lr_scheduler", "cosine_annealing"),
    (CPTConfig, "lr_scheduler", "warmup_stable_decay"),  # transformers knows it, but it needs arguments we don't pass
    (CPTConfig, "lssd.teacher", "oracle"),
    (CPTConfig, "lssd.head_matmul", "fp8"),
    (AlignConfig, "selection.score", "loss"),
    (AlignConfig, "dpo.reference", "base"),
    (AlignConfig, "sft_format", "chatml"),
    (AlignConfig, "evaluation.match", "fuzzy"),
    (AlignConfig, "evaluation.general", "web"),
    (MixConfig, "preference_mode", "both"),
    (MixConfig, "last_block", "keep"),
    (BasePretrainConfig, "model_preset", "huge"),
])
def test_enumerations_are_checked_at_load_time(cls, key, value):
    path, extra = TOP[cls]
    with pytest.raises(ConfigError, match=rf"^x\.yaml: {re.escape(key)}: must be one of \[.*\], got '{value}'$"):
        from_dict(cls, _set({**read_yaml(path), **extra}, key, value), where="x.yaml")


def test_the_accepted_schedulers_are_transformers_own():
    from transformers import SchedulerType

    assert "cosine" in LR_SCHEDULERS and set(LR_SCHEDULERS) <= {s.value for s in SchedulerType}


@pytest.mark.parametrize("cls, key", [(CPTConfig, "base_model"), (AlignConfig, "selection.model"),
                                      (ReproduceConfig, "base_model"), (Stage2SearchConfig, "reproduce")])
def test_an_empty_file_names_the_missing_required_key(tmp_path, cls, key):
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match=rf"empty\.yaml: {re.escape(key)}: missing"):
        from_dict(cls, read_yaml(tmp_path / "empty.yaml"), where=str(tmp_path / "empty.yaml"))


# -- the command line ----------------------------------------------------------------------------------------------
def _file(tmp, name: str, text: str) -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


def _cpt(tmp, text: str = "", base=BASE) -> str:
    (tmp / "c.yaml").write_text(f"base_model: {base}\nmix: {CONFIGS / 'mix-tiny.yaml'}\nmax_steps: 2\n{text}")
    return str(tmp / "c.yaml")


def _align(tmp, text: str = "", model=BASE) -> str:
    (tmp / "a.yaml").write_text(f"selection:\n  model: {model}\n{text}")
    return str(tmp / "a.yaml")


def _broken_model(tmp, what: str):
    """A copy of the shipped base model with its weights cut short, its config spoiled, or a tokenizer with more
    tokens than its embedding (tokens added without resizing)."""
    d = tmp / "broken"
    shutil.copytree(BASE, d)
    if what == "weights":
        data = (d / "model.safetensors").read_bytes()
        (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif what == "tokenizer":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(d))
        tokenizer.add_tokens([f"<extra_{i}>" for i in range(3)])
        tokenizer.save_pretrained(str(d))
    else:
        (d / "config.json").write_text("{ not json")
    return d


# (case id, builder tmp_path -> argv without --out, text the one error line must contain; "{tmp}" is tmp_path)
CLI_CASES = [
    ("cpt: learning_rate nan", lambda t: ["cpt", _cpt(t, "learning_rate: .nan\n")],
     "{tmp}/c.yaml: learning_rate: must be a finite number > 0, got nan"),
    ("cpt: learning_rate inf", lambda t: ["cpt", _cpt(t, "learning_rate: .inf\n")],
     "{tmp}/c.yaml: learning_rate: must be a finite number > 0, got inf"),
    ("cpt: lssd.tau nan", lambda t: ["cpt", _cpt(t, "lssd:\n  tau: .nan\n")],
     "{tmp}/c.yaml: lssd.tau: must be a finite number > 0, got nan"),
    ("cpt: weight_decay nan", lambda t: ["cpt", _cpt(t, "weight_decay: .nan\n")],
     "{tmp}/c.yaml: weight_decay: must be a finite number >= 0, got nan"),
    ("cpt: unknown scheduler", lambda t: ["cpt", _cpt(t, "lr_scheduler: cosine_annealing\n")],
     "{tmp}/c.yaml: lr_scheduler: must be one of ['linear', 'cosine',"),
    ("cpt: negative warmup", lambda t: ["cpt", _cpt(t, "warmup_steps: -1\n")],
     "{tmp}/c.yaml: warmup_steps: must be an integer >= 0, got -1"),
    ("cpt: LoRA rank 0", lambda t: ["cpt", _cpt(t, "lora:\n  r: 0\n")],
     "{tmp}/c.yaml: lora.r: must be an integer >= 1, got 0"),
    ("cpt: empty config", lambda t: ["cpt", _file(t, "c.yaml", "")],
     "{tmp}/c.yaml: base_model: missing"),
    ("cpt: truncated weights", lambda t: ["cpt", _cpt(t, base=_broken_model(t, "weights"))],
     "{tmp}/c.yaml: base_model: {tmp}/broken/model.safetensors: unreadable safetensors weights"),
    ("cpt: config that does not load", lambda t: ["cpt", _cpt(t, base=_broken_model(t, "config"))],
     "{tmp}/c.yaml: base_model: {tmp}/broken/config.json: the model's config does not load"),
    ("cpt: tokenizer larger than the model", lambda t: ["cpt", _cpt(t, base=_broken_model(t, "tokenizer"))],
     "{tmp}/c.yaml: base_model: {tmp}/broken/tokenizer.json: the tokenizer has"),
    ("align: tokenizer larger than the model", lambda t: ["align", _align(t, model=_broken_model(t, "tokenizer"))],
     "{tmp}/a.yaml: selection.model: {tmp}/broken/tokenizer.json: the tokenizer has"),
    ("align: sft.learning_rate nan", lambda t: ["align", _align(t, "sft:\n  learning_rate: .nan\n")],
     "{tmp}/a.yaml: sft.learning_rate: must be a finite number > 0, got nan"),
    ("align: dpo.beta -inf", lambda t: ["align", _align(t, "dpo:\n  beta: -.inf\n")],
     "{tmp}/a.yaml: dpo.beta: must be a finite number > 0, got -inf"),
    ("align: LoRA rank 0", lambda t: ["align", _align(t, "lora:\n  r: 0\n")],
     "{tmp}/a.yaml: lora.r: must be an integer >= 1, got 0"),
    ("align: empty config", lambda t: ["align", _file(t, "a.yaml", "")],
     "{tmp}/a.yaml: selection.model: missing"),
    ("align: truncated weights", lambda t: ["align", _align(t, model=_broken_model(t, "weights"))],
     "{tmp}/a.yaml: selection.model: {tmp}/broken/model.safetensors: unreadable safetensors weights"),
    ("mix: share nan", lambda t: ["mix", _file(t, "m.yaml", yaml.safe_dump(
        _set(read_yaml(CONFIGS / "mix-tiny.yaml"), "sources[0].share", math.nan)))],
     "{tmp}/m.yaml: sources[0]: source 'domain': field 'share': must be a finite number >= 0, got nan"),
    ("mix: block_length inf", lambda t: ["mix", _file(t, "m.yaml", yaml.safe_dump(
        {**read_yaml(CONFIGS / "mix-tiny.yaml"), "block_length": math.inf}))],
     "{tmp}/m.yaml: block_length: expected int, got inf"),
    ("pretrain-base: learning_rate nan",
     lambda t: ["pretrain-base", "--config", _file(t, "b.yaml", "learning_rate: .nan\n")],
     "{tmp}/b.yaml: learning_rate: must be a finite number > 0, got nan"),
]


@pytest.mark.parametrize("build, message", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_the_cli_refuses_bad_values_in_one_line_before_anything_runs(tmp_path, capsys, monkeypatch, build, message):
    connections = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, *a: connections.append(a) or 1 / 0)
    argv = build(tmp_path)
    out = tmp_path / "out"
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()  # only what the command writes counts
    assert main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mixcpt: error: ") and "Traceback" not in err, err
    assert message.format(tmp=tmp_path) in err, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == before
    assert connections == []  # nothing was looked up on the hub
