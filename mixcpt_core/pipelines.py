"""The compared pipelines of the reproduction as cached stages: start model -> stage 1 -> stage 2 -> evaluation.

* An **arm** (``configs/arms/*.yaml``, :class:`ArmConfig`) names a stage-1 config (a ``CPTConfig`` YAML, or none)
  and a stage-2 config (an ``AlignConfig`` YAML, or none). ``traditional`` = CPT on domain documents, then SFT and
  DPO on the *full* general sets; ``mixcpt`` = D_MIX with LSSD, then SFT and DPO on N easy samples; the ablations
  change one thing each.
* A **start** is the model an arm begins from, which is also the LSSD teacher and the DPO reference: ``base`` (the
  shipped base model, plain text only) or ``chat`` (the base model + SFT on the full general instruction set with the
  chat template, built once by :func:`build_chat_start`).
* A **seed** varies every random choice of an arm (D_MIX sampling and order, Trainer data order, random selection),
  never the world or the start model.

Every stage is cached by content: its directory under ``run_dir`` is named by a hash of everything it is a function
of (input model, resolved configs, seed, :data:`PIPELINE_VERSION`) and counts as finished once its info file exists
(written last). So arms that share a stage (``mixcpt``, ``random_selection`` and ``no_stage2`` share stage 1) run
it once, a rerun skips finished stages, and an interrupted stage 1 resumes from its last Trainer checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .alignment import AlignConfig, SFTSettings
from .atomic import write_text_atomic
from .config import ConfigError, check_numbers, check_seeds, load_config, to_dict
from .cpt import CPT_INFO_FILE, CPTConfig
from .data import MixConfig
from .evaluation import EvalSpec
from .world import WorldConfig

PIPELINE_VERSION = 2  # bump when a change to the code changes what a cached stage would contain
STARTS = ("base", "chat")
CHAT_INFO_FILE = "mixcpt_chat.json"


@dataclass
class ArmConfig:
    """One compared pipeline: optional stage 1 (``cpt``: a CPTConfig YAML) then optional stage 2 (``align``: an
    AlignConfig YAML), each with ``*_overrides`` merged into the YAML's mapping (nested mappings merge key by key),
    so that an arm file states exactly how it differs from the shared stage configs. Paths are relative to the
    repository root."""

    name: str = ""
    description: str = ""
    cpt: str | None = None
    cpt_overrides: dict = field(default_factory=dict)
    align: str | None = None
    align_overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.name:
            raise ValueError("field 'name': every arm needs a name")


@dataclass
class ReproduceConfig:
    """The reproduction: which (start, arm) pairs run for which seeds, and where things go.

    ``main`` is what ``mixcpt reproduce`` runs; ``--full`` adds ``full`` (the ablation grid) and runs the ``main``
    arms with ``main_extra_seeds`` too (narrower intervals for the headline comparison), or with ``headline_seeds``
    instead when that list is given (the headline's seeds; those also in ``seeds`` run once); ``--sweep`` runs
    ``sweep_arm`` from the base start with one setting changed at a time: ``sweep`` maps a parameter
    (:func:`sweep_variant`) to its values, each run with ``sweep_seeds``.
    """

    base_model: str = "checkpoints/base-tiny"
    world: WorldConfig = field(default_factory=WorldConfig)  # the base model's world: evaluation questions, documents
    arms_dir: str = "configs/arms"
    main: dict[str, list[str]] = field(default_factory=lambda: {"base": ["base", "traditional", "mixcpt"]})
    full: dict[str, list[str]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    main_extra_seeds: list[int] = field(default_factory=list)  # --full: the main arms also run these seeds
    # --full: the main arms' seeds for the headline comparison, declared (committed) before they run, sized for its
    # minimum detectable difference; given, they replace main_extra_seeds (a seed also in `seeds` runs once)
    headline_seeds: list[int] = field(default_factory=list)
    chat_sft: SFTSettings = field(default_factory=lambda: SFTSettings(max_steps=100))  # the "chat" start
    sweep_arm: str = "mixcpt"
    sweep: dict[str, list[float]] = field(default_factory=dict)
    sweep_seeds: list[int] = field(default_factory=lambda: [0])
    cpt_overrides: dict = field(default_factory=dict)  # applied to every arm's stage 1 (before the arm's own)
    align_overrides: dict = field(default_factory=dict)  # applied to every arm's stage 2 (before the arm's own)
    examples: int = 24  # generations kept per (arm, start) for seed 0 and each QA set (figures/generations.json)
    stage2_recipes: str = "configs/stage2-selected"  # the validated protocol's recipes (`mixcpt search` writes them)
    evaluation: EvalSpec = field(default_factory=EvalSpec)  # what "general" is and how answers match (per profile)
    gpu_seeds: list[int] = field(default_factory=list)  # if non-empty and a CUDA GPU is present: run these seeds
    run_dir: str = "runs/reproduce-tiny"

    RANGES = {"examples": ">= 0"}
    REQUIRED = ("base_model",)  # the start model: its default holds only when run from the repository root

    def __post_init__(self):
        check_numbers(self)
        check_seeds(self, ("seeds", "main_extra_seeds", "headline_seeds", "sweep_seeds", "gpu_seeds"))
        for grid in (self.main, self.full):
            if bad := sorted(set(grid) - set(STARTS)):
                raise ValueError(f"field 'main'/'full': unknown start(s) {bad}; the starts are {list(STARTS)}")
        if not self.seeds:
            raise ValueError("field 'seeds': give at least one seed")


# -- resolved arms ----------------------------------------------------------------------------------------------------
@dataclass
class ResolvedArm:
    """An arm with its configs loaded (and possibly overridden, e.g. by a sweep)."""

    name: str
    cpt: CPTConfig | None
    mix: MixConfig | None
    align: AlignConfig | None


def merge(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` applied; nested mappings merge key by key (a new dict, inputs untouched)."""
    out = dict(base)
    for k, v in overrides.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _load_stage(cls, path: Path, overrides: dict, arm_path: Path):
    from .config import from_dict, read_yaml

    where = f"{path} with the overrides of {arm_path}" if overrides else str(path)
    return from_dict(cls, merge(read_yaml(path), overrides), where=where)


def load_arm(name: str, arms_dir: str | Path, root: str | Path = ".", cpt_overrides: dict | None = None,
             align_overrides: dict | None = None, recipe: dict | None = None) -> ResolvedArm:
    """Load ``<arms_dir>/<name>.yaml`` and the stage configs it names, with the given overrides for every arm
    (e.g. a smaller budget), then the arm's own, then ``recipe``: a stage-2 recipe (how stage 2 trains: learning
    rate, steps, LoRA), chosen by :mod:`mixcpt_core.search` or a setting being searched. Strict: unknown keys and
    wrong types are errors naming the file."""
    root = Path(root)
    path = root / arms_dir / f"{name}.yaml"
    arm = load_config(ArmConfig, path)
    if arm.name != name:
        raise ConfigError(f"{path}: field 'name' is {arm.name!r} but the file is named {name!r}")
    for stage, overrides in (("cpt", arm.cpt_overrides), ("align", arm.align_overrides)):
        if overrides and getattr(arm, stage) is None:
            raise ConfigError(f"{path}: field '{stage}_overrides' is given but there is no '{stage}' stage")
    cpt = _load_stage(CPTConfig, root / arm.cpt, merge(cpt_overrides or {}, arm.cpt_overrides), path) if arm.cpt else None
    mix = load_config(MixConfig, root / cpt.mix) if cpt else None
    align = (_load_stage(AlignConfig, root / arm.align,
                         merge(merge(align_overrides or {}, arm.align_overrides), recipe or {}), path)
             if arm.align else None)
    return ResolvedArm(name, cpt, mix, align)


def _replace_path(obj, names: list[str], value, where: str):
    name, *more = names
    if not dataclasses.is_dataclass(obj) or name not in {f.name for f in dataclasses.fields(obj)}:
        raise ConfigError(f"sweep parameter {where!r}: {type(obj).__name__} has no field {name!r}")
    current = getattr(obj, name)
    if more:
        return dataclasses.replace(obj, **{name: _replace_path(current, more, value, where)})
    if isinstance(current, int) and not isinstance(current, bool):
        if value != int(value):
            raise ConfigError(f"sweep parameter {where!r}: {value} is not an integer")
        value = int(value)
    return dataclasses.replace(obj, **{name: value})


def sweep_variant(arm: ResolvedArm, param: str, value: float) -> ResolvedArm:
    """``arm`` with one setting replaced. ``param`` is a dotted path into the arm's configs (``cpt.lssd.lam``,
    ``align.sft.max_steps``, ...) or ``mix.domain_share``: the domain documents' token share, the other sources
    keeping their ratio to each other (instructions : preferences stays 3 : 1 in mix-tiny) and filling the rest."""
    stage, *path = param.split(".")
    if stage not in ("cpt", "mix", "align") or not path or getattr(arm, stage) is None:
        raise ConfigError(f"sweep parameter {param!r}: expected cpt.<field>, mix.<field> or align.<field> of an arm "
                          f"that has that stage")
    if param == "mix.domain_share":
        if not 0 < value < 1:
            raise ConfigError(f"sweep parameter {param!r}: a share must be in (0, 1), got {value}")
        rest = [s for s in arm.mix.sources if s.name != "domain"]
        total = sum(s.share for s in rest)
        return dataclasses.replace(arm, mix=arm.mix.with_shares(
            {"domain": value, **{s.name: (1 - value) * s.share / total for s in rest}}))
    try:
        return dataclasses.replace(arm, **{stage: _replace_path(getattr(arm, stage), path, value, param)})
    except ValueError as e:  # a range check of the config dataclass
        raise ConfigError(f"sweep parameter {param!r} = {value}: {e}") from None


# -- cache keys ---------------------------------------------------------------------------------------------------
def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def weights_key(model_dir: str | Path) -> str:
    """Hash of a checkpoint's weights file: the identity of a start model."""
    h = hashlib.sha256()
    with open(Path(model_dir) / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def _without(d: dict, *keys: str) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def files_key(paths: list[str | Path]) -> str:
    """Hash of the bytes of some data files (a pool's JSONL): a stage that reads them is a function of their
    content, not of their names."""
    h = hashlib.sha256()
    for path in paths:
        h.update(Path(path).read_bytes())
    return h.hexdigest()[:12]


def stage1_key(start_key: str, cpt: CPTConfig, mix: MixConfig, seed: int, root: str | Path = ".") -> str:
    c = _without(to_dict(cpt), "base_model", "mix", "output_dir", "seed")
    if c["lssd"].get("head_matmul") == "autocast":  # added later: at its default a float32 run is unchanged, and
        c["lssd"] = _without(c["lssd"], "head_matmul")  # the stages cached before it stay valid
    key = {"v": PIPELINE_VERSION, "start": start_key, "seed": seed, "cpt": c,
           "mix": _without(to_dict(mix), "output_dir", "seed")}
    files = [Path(root) / src.path for src in mix.sources if src.path is not None]
    if files:  # local data files: their content (the world sources are a function of the config already)
        key["files"] = files_key(files)
    return "s1-" + _hash(key)


def stage2_key(model_key: str, align: AlignConfig, seed: int, init_chat_tokens: bool, root: str | Path = ".") -> str:
    d = to_dict(align)
    for name, default in (("sft_format", "messages"), ("evaluation", None), ("skip", False),
                          ("eval_after_sft", True)):  # added later: at their
        if d.get(name) == default:  # defaults they change nothing, and the stages cached before them stay valid
            d.pop(name, None)
    d["selection"] = _without(d["selection"], "model", "seed")
    if d["selection"].get("pool") is None:  # added later: at its default (the world's samples) nothing changes
        d["selection"].pop("pool", None)
    else:  # a pool folder: its content, not its name
        from .format_pool import pool_files

        d["selection"]["pool"] = files_key(pool_files(Path(root) / d["selection"]["pool"]))
    d["init_chat_tokens"] = init_chat_tokens
    return "s2-" + _hash({"v": PIPELINE_VERSION, "model": model_key, "seed": seed,
                          "align": _without(d, "output_dir", "seed")})


# -- stages -----------------------------------------------------------------------------------------------------------
def build_chat_start(base_dir: Path, world_cfg: WorldConfig, sft: SFTSettings, out: Path) -> Path:
    """The "chat" start: the base model after SFT on *all* general instructions with the chat template (chat-token
    embeddings initialised to the mean embedding first, answers with a leading space, seed 0). Cached in ``out``."""
    from transformers import set_seed

    from .alignment import init_chat_token_embeddings, make_sft_trainer, sft_dataset
    from .atomic import atomic_directory
    from .models import load_causal_lm
    from .world import generate_world

    if (out / CHAT_INFO_FILE).exists():
        return out
    t0 = time.time()
    model, tokenizer = load_causal_lm(base_dir)
    init_chat_token_embeddings(model, tokenizer)
    set_seed(0)
    world = generate_world(world_cfg)
    with atomic_directory(out, CHAT_INFO_FILE) as tmp:
        trainer = make_sft_trainer(model, tokenizer, sft_dataset(world.instructions, leading_space=True), sft,
                                   tmp / "trainer", seed=0, log_file=tmp / "sft_log.jsonl", bar="chat start (SFT)")
        trainer.train()
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        info = {"base": str(base_dir), "sft": to_dict(sft), "n_instructions": len(world.instructions),
                "seconds": round(time.time() - t0, 1)}
        (tmp / CHAT_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return out


def run_stage1(start_dir: Path, start_key: str, cpt: CPTConfig, mix: MixConfig, seed: int, run_dir: Path,
               root: Path) -> tuple[Path, dict]:
    """Stage 1 of an arm from ``start_dir`` (student init and teacher), cached; returns (model dir, info)."""
    from .cpt import run_cpt
    from .data import build_mix, load_tokenizer

    out = run_dir / "stage1" / stage1_key(start_key, cpt, mix, seed, root)
    if not (out / CPT_INFO_FILE).exists():
        mix = dataclasses.replace(mix, seed=seed)
        blocks, _ = build_mix(mix, load_tokenizer(str(start_dir)), root=root)
        run_cpt(dataclasses.replace(cpt, base_model=str(start_dir), output_dir=str(out), seed=seed),
                train_dataset=blocks, root=root)
    return out, json.loads((out / CPT_INFO_FILE).read_text(encoding="utf-8"))


def log_locations(run_dir: Path) -> str:
    """Where the stages cached under ``run_dir`` write their per-step logs (:mod:`mixcpt_core.logs`): the line the
    reproduction and the search print once, since the screen shows only a progress bar per stage."""
    from .alignment import LOG_FILES
    from .logs import LOG_FILE

    return (f"[logs] every logged training step: {run_dir}/stage1/*/{LOG_FILE}, "
            f"{run_dir}/stage2/*/{' and '.join(LOG_FILES)}")


def run_stage2(model_dir: Path, model_key: str, align: AlignConfig, seed: int, chat_start: bool,
               run_dir: Path, root: Path) -> tuple[Path, dict]:
    """Stage 2 of an arm on ``model_dir`` (also the DPO reference), cached; returns (model dir, info).
    From the chat start the chat tokens are already trained, so their embeddings are not re-initialised. With
    ``align.skip`` nothing is trained: the model dir returned is ``model_dir`` itself (its validation numbers are
    in the info)."""
    from .alignment import ALIGN_INFO_FILE, run_align

    init = align.init_chat_tokens and not chat_start
    out = run_dir / "stage2" / stage2_key(model_key, align, seed, init, root)
    if not (out / ALIGN_INFO_FILE).exists():
        cfg = dataclasses.replace(align, selection=dataclasses.replace(align.selection, model=str(model_dir), seed=seed),
                                  init_chat_tokens=init, seed=seed, output_dir=str(out))
        run_align(cfg, root=root, validation_cache=(run_dir / "eval", model_key))
    info = json.loads((out / ALIGN_INFO_FILE).read_text(encoding="utf-8"))
    return (model_dir if align.skip else out), info  # skip: the stage-1 model is the result


def evaluation_key(model_key: str, spec: EvalSpec | None = None, general_items: list[dict] | None = None) -> str:
    """The name of a model's cached evaluation: its model key, plus a hash of the evaluation when it is not the
    synthetic profiles' default (another general set or match rule is another evaluation)."""
    if (spec is None or spec.is_default()) and general_items is None:
        return model_key
    return f"{model_key}-{_hash({'spec': to_dict(spec or EvalSpec()), 'general': [q['id'] for q in general_items or []]})}"


def evaluate_cached(model_dir: Path, model_key: str, world, run_dir: Path, examples: int,
                    spec: EvalSpec | None = None, general_items: list[dict] | None = None) -> dict:
    """:func:`mixcpt_core.evaluation.evaluate_model` of ``model_dir``, cached in ``run_dir/eval/<key>.json`` (the first
    call's ``examples`` is what the cache holds: a model is evaluated once per :func:`evaluation_key`)."""
    from .evaluation import evaluate_model
    from .models import load_causal_lm

    path = run_dir / "eval" / f"{evaluation_key(model_key, spec, general_items)}.json"
    if not path.exists():
        model, tokenizer = load_causal_lm(model_dir)
        metrics = evaluate_model(model, tokenizer, world, n_examples=examples, spec=spec, general_items=general_items)
        write_text_atomic(path, json.dumps(metrics, indent=1) + "\n")
    return json.loads(path.read_text(encoding="utf-8"))


def run_arm(arm: ResolvedArm, start: str, start_dir: Path, seed: int, world, run_dir: Path, root: Path,
            examples: int = 0, probe_stages: bool = True, spec: EvalSpec | None = None,
            general_items: list[dict] | None = None) -> dict:
    """Run (or fetch from the cache) one arm from one start with one seed and evaluate it.

    Returns ``{"metrics", "train_seconds", "stage1": info or None, "model_dir", "probes"}``; ``train_seconds`` is the
    sum of the arm's own stages (stage 1 + stage 2 wall time when they ran; the start model's cost is not included).
    ``probes`` maps each point of the pipeline -- ``start``, ``stage1`` (if the arm has a stage 1) and ``stage2`` (if
    it has a stage 2) -- to that model's :func:`~mixcpt_core.evaluation.evaluate_model` metrics (each cached; with
    ``probe_stages=False`` only the final model is evaluated). ``spec`` and ``general_items``: how, and on which
    general questions, every model is evaluated (:func:`evaluate_cached`)."""
    ev = dict(spec=spec, general_items=general_items)
    model_dir, key, seconds, s1_info = start_dir, weights_key(start_dir), 0.0, None
    start_key = key
    points = {}
    if probe_stages and (arm.cpt is not None or arm.align is not None):
        points["start"] = evaluate_cached(start_dir, start_key, world, run_dir, examples, **ev)
    if arm.cpt is not None:
        model_dir, s1_info = run_stage1(start_dir, start_key, arm.cpt, arm.mix, seed, run_dir, root)
        key, seconds = model_dir.name, seconds + s1_info["train_seconds"]
        if probe_stages and arm.align is not None:
            points["stage1"] = evaluate_cached(model_dir, key, world, run_dir, examples, **ev)
    if arm.align is not None:
        model_dir, s2_info = run_stage2(model_dir, key, arm.align, seed, start == "chat", run_dir, root)
        key, seconds = model_dir.name, seconds + s2_info["seconds"]
    metrics = evaluate_cached(model_dir, key, world, run_dir, examples, **ev)
    final = "stage2" if arm.align is not None else "stage1" if arm.cpt is not None else "start"
    points[final] = metrics
    return {"metrics": metrics, "train_seconds": round(seconds, 1), "stage1": s1_info, "model_dir": str(model_dir),
            "probes": points}


__all__ = ["ArmConfig", "ReproduceConfig", "ResolvedArm", "merge", "load_arm", "sweep_variant", "weights_key", "stage1_key",
           "stage2_key", "build_chat_start", "run_stage1", "run_stage2", "evaluate_cached", "run_arm",
           "PIPELINE_VERSION", "STARTS"]
