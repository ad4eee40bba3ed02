"""Every file under configs/ loads into its dataclass (strict: unknown keys and wrong types fail), the files and
local models it names exist, and the GPU configs' hub mix builds through the same code path as local files."""

import dataclasses
import fnmatch
import importlib
import re

import pytest
import yaml

from mixcpt_core.config import load_config
from mixcpt_core.search import Stage2SearchConfig

from .conftest import ROOT

CONFIGS = ROOT / "configs"
# pattern (relative to configs/) -> "module:Class", "accelerate" for an accelerate launcher config, or "recipe" for a
# selected stage-2 recipe (align overrides: merged into align-tiny.yaml they must load as an AlignConfig).
# The first matching row wins; a file that matches no row fails the test (add a row for a new kind of config).
TABLE = [
    ("accelerate/*.yaml", "accelerate"),
    ("arms/*.yaml", "mixcpt_core.pipelines:ArmConfig"),
    ("base-*.yaml", "mixcpt_core.training:BasePretrainConfig"),
    ("reproduce-*.yaml", "mixcpt_core.pipelines:ReproduceConfig"),
    ("mix-*.yaml", "mixcpt_core.data:MixConfig"),
    ("*-mix.yaml", "mixcpt_core.data:MixConfig"),
    ("cpt-*.yaml", "mixcpt_core.cpt:CPTConfig"),
    ("*-cpt.yaml", "mixcpt_core.cpt:CPTConfig"),
    ("align-*.yaml", "mixcpt_core.alignment:AlignConfig"),
    ("*-align.yaml", "mixcpt_core.alignment:AlignConfig"),
    ("search-*.yaml", "mixcpt_core.search:Stage2SearchConfig"),
    ("stage2-selected/*.yaml", "recipe"),
    ("stage2-selected-*/*.yaml", "recipe"),
    ("smollm2/arms/*.yaml", "mixcpt_core.pipelines:ArmConfig"),  # the SmolLM2 profile's configs, one folder
    ("smollm2/reproduce.yaml", "mixcpt_core.pipelines:ReproduceConfig"),
    ("smollm2/mix*.yaml", "mixcpt_core.data:MixConfig"),
    ("smollm2/cpt.yaml", "mixcpt_core.cpt:CPTConfig"),
    ("smollm2/align.yaml", "mixcpt_core.alignment:AlignConfig"),
    ("smollm2/search-stage2.yaml", "mixcpt_core.search:Stage2SearchConfig"),
    ("smollm2/stage2-selected/*.yaml", "recipe"),
    ("smollm2/pool.yaml", "mixcpt_core.format_pool:PoolConfig"),
]
FILES = sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*") if p.is_file())
DATA_SUFFIXES = (".yaml", ".yml", ".jsonl", ".json", ".parquet", ".csv")
MODEL_FIELDS = ("base_model", "tokenizer", "model")
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _kind(rel: str) -> str | None:
    return next((kind for pattern, kind in TABLE if fnmatch.fnmatch(rel, pattern) and
                 pattern.count("/") == rel.count("/")), None)


def _class(kind: str):
    module, name = kind.split(":")
    return getattr(importlib.import_module(module), name)


def _check_model_ref(value: str, where: str) -> None:
    """A local model directory must exist; otherwise the value must be the SmolLM2 name or a hub id. Paths under
    runs/ are written by an earlier stage and are not checked."""
    from mixcpt_core.models import SMOLLM2

    if value == SMOLLM2 or value.startswith("runs/") or (ROOT / value).exists():
        return
    assert HUB_ID.match(value) and not (ROOT / value.split("/")[0]).is_dir(), \
        f"{where}: {value!r} is neither an existing local path nor a hub id"


def _check_references(obj, where: str) -> None:
    """Walk a loaded config: files it names (YAML, data) must exist relative to the repository root."""
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.name in MODEL_FIELDS and isinstance(value, str):
                _check_model_ref(value, f"{where}.{f.name}")
            elif isinstance(obj, Stage2SearchConfig) and f.name == "table":
                continue  # what a search writes: absent until the declared search has run
            else:
                _check_references(value, f"{where}.{f.name}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_references(v, f"{where}[{i}]")
    elif isinstance(obj, str) and obj.endswith(DATA_SUFFIXES) and not obj.startswith("runs/"):
        assert (ROOT / obj).exists(), f"{where}: {obj} does not exist"


def _check_accelerate(path) -> None:
    """An accelerate config: known top-level keys (accelerate's ClusterConfig), FSDP / DeepSpeed keys that
    `accelerate launch` knows, a valid distributed type and precision, and a launch command line that parses."""
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import launch_command_parser
    from accelerate.utils import DistributedType

    cfg = yaml.safe_load(path.read_text())
    known = {f.name for f in dataclasses.fields(ClusterConfig)}
    assert set(cfg) <= known, f"{path.name}: unknown keys {sorted(set(cfg) - known)}"
    assert cfg["distributed_type"] in {t.value for t in DistributedType}, cfg["distributed_type"]
    assert cfg["mixed_precision"] in ("no", "fp16", "bf16", "fp8")
    parser = launch_command_parser()
    options = {a.dest for a in parser._actions}
    for section in ("fsdp_config", "deepspeed_config"):
        unknown = set(cfg.get(section, {})) - options
        assert not unknown, f"{path.name}: {section} keys unknown to accelerate launch: {sorted(unknown)}"
    args = parser.parse_args(["--config_file", str(path), "-m", "mixcpt_core.cli", "cpt",
                              "configs/gpu-qwen2.5-0.5b-full-cpt.yaml"])
    assert args.module and args.training_script == "mixcpt_core.cli"


def test_every_config_file_has_a_loader():
    assert FILES
    unmatched = [f for f in FILES if _kind(f) is None]
    assert not unmatched, f"configs with no row in TABLE (tests/test_configs.py): {unmatched}"


@pytest.mark.parametrize("rel", FILES)
def test_config_loads_and_its_references_exist(rel):
    kind = _kind(rel)
    assert kind is not None, f"{rel}: no row in TABLE"
    path = CONFIGS / rel
    if kind == "accelerate":
        _check_accelerate(path)
        return
    if kind == "recipe":
        from mixcpt_core.alignment import AlignConfig
        from mixcpt_core.config import from_dict, read_yaml
        from mixcpt_core.pipelines import merge

        start, arm = path.stem.split("-", 1)
        smollm2 = rel.startswith("smollm2/")  # its own arms and stage-2 config
        profile = CONFIGS / "smollm2" if smollm2 else CONFIGS
        align = profile / ("align.yaml" if smollm2 else "align-tiny.yaml")
        assert start in ("base", "chat") and (profile / "arms" / f"{arm}.yaml").exists(), rel
        from_dict(AlignConfig, merge(read_yaml(align), read_yaml(path)), where=rel)
        return
    cfg = load_config(_class(kind), path)  # ConfigError names the file and key on an unknown key or a bad value
    _check_references(cfg, rel)


def test_gpu_mix_builds_from_local_stand_ins_of_its_hub_datasets(monkeypatch):
    """The GPU mix names three hub datasets; with network access they come from `datasets.load_dataset(hub, subset,
    split=...)`. Here that call is answered with small local datasets of the same columns, and the mix is built by
    the code every local file goes through (with the tiny tokenizer instead of Qwen's, which needs the network)."""
    import datasets

    from mixcpt_core.data import MixConfig, build_mix
    from mixcpt_core.tokenizer import BOS, EOS

    cfg = load_config(MixConfig, CONFIGS / "gpu-qwen2.5-0.5b-mix.yaml")
    stand_ins = {
        "HuggingFaceTB/finemath": {"url": ["u"] * 4, "text": [f"Lemma {i}: the sum of two even numbers is even."
                                                               for i in range(4)]},
        "HuggingFaceH4/ultrachat_200k": {"prompt": ["Hi"], "messages": [[
            {"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "Seven."}]]},
        "Intel/orca_dpo_pairs": {"system": [""], "question": ["Is two even?"], "chosen": ["Yes."],
                                 "rejected": ["No."]},
    }
    calls = []

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return datasets.Dataset.from_dict(stand_ins[path])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    small = dataclasses.replace(cfg, tokenizer=str(ROOT / "checkpoints/base-tiny"), block_length=64,
                                total_tokens=2000, last_block="pad")
    blocks, composition = build_mix(small, root=ROOT)
    assert sorted(calls) == sorted((s.hub, s.subset, s.split) for s in cfg.sources)
    assert [s["name"] for s in composition["sources"]] == ["domain", "instructions", "preferences"]
    for row, source in zip(composition["sources"], cfg.sources):
        assert row["share"] == pytest.approx(source.share, abs=0.05)
    from mixcpt_core.data import load_tokenizer

    text = load_tokenizer(small.tokenizer).decode([t for row in blocks["input_ids"] for t in row])
    assert BOS in text and EOS in text
    assert "Question: Is two even?\nAnswer: Yes." in text  # orca's `question` column mapped to the prompt
    assert "Question: Name a prime.\nAnswer: Seven." in text and "Lemma 0" in text
