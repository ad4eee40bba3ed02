"""The stage-2 search: one declared space, one fixed rule, validation questions only.

Stage 2's recipe (learning rate, steps, full fine-tuning or LoRA, N, DPO, the selection score) decides how much of
stage 1's knowledge survives, so it is chosen per pipeline, fairly, before any test number is read:

* the **space** is declared in a committed config (``configs/search-stage2-tiny.yaml``) before the search runs: a
  list of grids, each mapping a dotted :class:`~mixcpt_core.alignment.AlignConfig` field (``sft.learning_rate``,
  ``lora``) to the values to try; the union of their Cartesian products is the space, the same for every arm;
* or the space comes in ordered **stages** (``stages:``, e.g. ``configs/search-stage2-tiny-staged.yaml``): each
  stage has a name, a space of its own and optionally the ``arms`` it applies to (default: every pipeline). Per
  pipeline, each stage searches its space with the earlier stages' choices fixed (the recipe so far, merged under
  the stage's setting), by the same rule; a pipeline whose recipe so far is ``skip`` (no stage 2) has nothing left
  to choose, and its later stages are not run. A key is searched in one stage only;
* every (start, arm) pair runs its stage 1 and then stage 2 with each setting, for the declared seeds;
  :func:`mixcpt_core.alignment.run_align` evaluates the result on the **validation** questions only
  (``general_val``, ``domain_val``), and a setting's numbers are the means over the seeds;
* the **rule** (:func:`choose`), fixed in advance: among settings whose validation format compliance (mean over the
  seeds) is at least ``min_format``, the highest validation score (the mean of general and domain chat QA, mean
  over the seeds); ties go to the setting declared first. If no setting is compliant enough, the most compliant one.

The chosen settings are written as one YAML per (start, arm) into ``out_dir`` (``configs/stage2-selected/``):
align overrides that ``mixcpt reproduce`` applies on top of the arm's own, so the reproduction never searches again.
Every row of the table (``table``) is one setting of one pipeline (and, in a staged search, of one stage).

Nothing here reads a test question. The search's stage 1 runs without the monitoring curves (``eval_every = 0``,
:func:`search_stage1`): those plot plain QA on the *test* splits during training (the reproduction's figure). The
weights do not depend on it, but the stage is cached apart from the reproduction's monitored one (its key includes
``eval_every``; the probe KL on general documents, a training diagnostic, stays). ``tests/test_search.py`` runs a
search from an empty run folder with the test splits made unreadable, and checks that the search's stage-1 weights
equal the reproduction's.

Resuming: every stage 1 and stage 2 is cached in the reproduction's ``run_dir`` (:mod:`mixcpt_core.pipelines`), and
the choices are a function of the cached numbers, so a rerun after an interruption retrains nothing it finished and
takes the same path through the stages. A search longer than a working session can also go on from its **progress
file** (:func:`progress_path`, next to the table): the validation numbers of every finished (pipeline, recipe), one
JSON line each, written as it lands and meant to be committed; a rerun takes those numbers instead of training
again, even from an empty run folder. Each line carries a fingerprint of the search and reproduction configs, and a
line whose fingerprint differs is ignored. The progress file is removed once the table is written.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .atomic import write_text_atomic
from .config import ConfigError, check_numbers, check_seeds


def check_grids(space: list[dict[str, list]], where: str = "space") -> None:
    """Every grid maps a key to a non-empty list of values (:class:`ValueError` naming ``where[i].key``)."""
    for i, grid in enumerate(space):
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"field '{where}[{i}].{key}': expected a non-empty list of values")


@dataclass
class SearchStage:
    """One stage of a staged search: its ``name`` (the table's ``stage`` column), its ``space`` (grids, as the flat
    form's ``space``) and the ``arms`` that search it (empty: every pipeline; the others keep their own values of
    its keys, e.g. ``traditional`` trains on every sample by definition and has no N to choose)."""

    name: str = ""
    space: list[dict[str, list]] = field(default_factory=list)
    arms: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.name:
            raise ValueError("field 'name': every stage needs a name")
        if not self.space:
            raise ValueError(f"stage {self.name!r}: field 'space': declare at least one grid of settings")
        check_grids(self.space)

    def applies_to(self, arm: str) -> bool:
        return not self.arms or arm in self.arms


@dataclass
class Stage2SearchConfig:
    """The declared stage-2 search (see the module docstring). ``reproduce`` names the reproduction config whose base
    model, world, arms, chat start and run directory (stage cache) the search shares. Give either ``space`` (one
    space, searched at once) or ``stages`` (ordered :class:`SearchStage` s, searched one after the other)."""

    reproduce: str = "configs/reproduce-tiny.yaml"
    pairs: dict[str, list[str]] = field(default_factory=lambda: {"base": ["traditional", "mixcpt"]})
    seeds: list[int] = field(default_factory=lambda: [0])
    space: list[dict[str, list]] = field(default_factory=list)
    stages: list[SearchStage] = field(default_factory=list)
    min_format: float = 0.95
    out_dir: str = "configs/stage2-selected"
    table: str = "figures/search_stage2.csv"

    RANGES = {"min_format": "[0, 1]"}
    REQUIRED = ("reproduce",)  # the reproduction whose stage cache and arms the search shares

    def __post_init__(self):
        check_numbers(self)
        check_seeds(self, ("seeds",))
        if bool(self.space) == bool(self.stages):
            raise ValueError("fields 'space' and 'stages': declare exactly one of them (one space, or ordered stages)")
        if not self.seeds:
            raise ValueError("field 'seeds': give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"field 'seeds': a seed is listed twice in {self.seeds}")
        check_grids(self.space)
        names, owner = set(), {}
        arms = {a for group in self.pairs.values() for a in group}
        for stage in self.stages:
            if stage.name in names:
                raise ValueError(f"field 'stages': two stages are named {stage.name!r}")
            names.add(stage.name)
            if unknown := sorted(set(stage.arms) - arms):
                raise ValueError(f"stage {stage.name!r}: field 'arms': {unknown} not among the pairs' arms "
                                 f"{sorted(arms)}")
            for key in {k for grid in stage.space for k in grid}:
                if key in owner:
                    raise ValueError(f"stage {stage.name!r}: key {key!r} is already searched in stage "
                                     f"{owner[key]!r}; a key is searched in one stage only")
                owner[key] = stage.name
        if self.stages and (bare := sorted(a for a in arms if not any(st.applies_to(a) for st in self.stages))):
            raise ValueError(f"field 'stages': arm(s) {bare} are searched by no stage")

    @property
    def staged(self) -> bool:
        return bool(self.stages)


def search_stages(cfg: Stage2SearchConfig) -> list[SearchStage]:
    """The stages of a search: its declared ones, or its flat ``space`` as one stage (named ``space``) of every arm."""
    return list(cfg.stages) if cfg.stages else [SearchStage(name="space", space=cfg.space)]


def search_stage1(cpt):
    """The stage-1 config a search trains: the arm's own without the monitoring curves (``eval_every = 0``), which
    evaluate plain QA on the test splits during training. ``None`` (no stage 1) stays ``None``."""
    return dataclasses.replace(cpt, eval_every=0) if cpt is not None and cpt.eval_every else cpt


def dotted_to_nested(key: str, value) -> dict:
    """``("sft.learning_rate", 1e-4)`` -> ``{"sft": {"learning_rate": 1e-4}}``."""
    *parents, leaf = key.split(".")
    out = {leaf: value}
    for p in reversed(parents):
        out = {p: out}
    return out


def expand_space(space: list[dict[str, list]]) -> list[dict]:
    """Every setting of the space, in declared order: the Cartesian product of each grid, grids one after the other.
    Each setting is a flat ``{dotted key: value}`` dict; duplicates (the same setting in two grids) are kept once."""
    settings: list[dict] = []
    for grid in space:
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            s = dict(zip(keys, values))
            if s not in settings:
                settings.append(s)
    return settings


def setting_overrides(setting: dict) -> dict:
    """A flat setting as nested align overrides (mappings merge key by key, see :func:`mixcpt_core.pipelines.merge`)."""
    from .pipelines import merge

    out: dict = {}
    for key, value in setting.items():
        out = merge(out, dotted_to_nested(key, value))
    return out


def setting_label(setting: dict) -> str:
    """A short readable label: ``sft.learning_rate=0.0003 sft.max_steps=400 lora=r16``."""
    def show(v):
        if isinstance(v, dict):
            return "r" + str(v.get("r", "?"))
        return "full" if v is None else f"{v:g}" if isinstance(v, float) else str(v)
    return " ".join(f"{k}={show(v)}" for k, v in setting.items())


def choose(rows: list[dict], min_format: float) -> int:
    """The rule. ``rows``: one per setting in declared order, with the validation ``score`` and
    ``format_compliance`` (means over the search seeds). Returns the index of the chosen setting: the highest score
    among rows with ``format_compliance >= min_format`` (first declared on ties), else the most compliant row."""
    if not rows:
        raise ValueError("choose: no settings")
    def exact(x):  # scores are ratios of counts: equal counts must tie whatever the float summation order
        return round(x, 9)

    ok = [i for i, r in enumerate(rows) if exact(r["format_compliance"]) >= exact(min_format)]
    if ok:
        return max(ok, key=lambda i: (exact(rows[i]["score"]), -i))
    return max(range(len(rows)), key=lambda i: (exact(rows[i]["format_compliance"]), -i))


SEARCH_COLUMNS = ("start", "arm", "setting", "label", "seeds", "score", "general_accuracy", "domain_accuracy",
                  "format_compliance", "seconds", "chosen")
# a staged search's table: the stage of each row, and the whole recipe it trained (the earlier stages' choices + the
# row's setting; ``label`` is the row's own setting)
STAGED_COLUMNS = ("start", "arm", "stage", "setting", "label", "recipe", "seeds", "score", "general_accuracy",
                  "domain_accuracy", "format_compliance", "seconds", "chosen")
METRICS = ("score", "general_accuracy", "domain_accuracy", "format_compliance")


def progress_path(cfg: Stage2SearchConfig, root: Path) -> Path:
    """The search's progress file: ``<table>.progress.jsonl`` beside ``cfg.table``."""
    table = root / cfg.table
    return table.with_name(table.stem + ".progress.jsonl")


def search_fingerprint(cfg: Stage2SearchConfig, rep) -> str:
    """A hash of the search config and of the reproduction config it reads (world, base model, arms, overrides):
    progress written under other configs does not match."""
    import hashlib
    import json

    from .config import to_dict

    text = json.dumps([to_dict(cfg), to_dict(rep)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_progress(path: Path, fingerprint: str) -> dict[tuple, dict]:
    """``{(start, arm, recipe label, seeds): validation numbers}`` of the progress file's lines that carry
    ``fingerprint`` (none if the file does not exist)."""
    import json

    if not path.exists():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r.get("fingerprint") == fingerprint:
            out[(r["start"], r["arm"], r["recipe"], r["seeds"])] = {k: r[k] for k in (*METRICS, "seconds")}
    return out


def run_search(cfg: Stage2SearchConfig, root: Path, write: bool = True,
               source: str = "configs/search-stage2-tiny.yaml") -> list[dict]:
    """Run the declared search (stages cached in the reproduction's ``run_dir``: a rerun continues where it
    stopped), apply the rule per (start, arm) -- stage by stage in a staged search -- and, with ``write``, write the
    table ``cfg.table`` and one recipe YAML per (start, arm) into ``cfg.out_dir``. Returns the table rows.

    With ``write``, each finished (pipeline, recipe) is also added to the progress file (:func:`progress_path`), and
    the numbers already there (same fingerprint) are taken instead of training again; the file is removed once the
    table is written."""
    import json
    from .config import load_config
    from .pipelines import (ReproduceConfig, build_chat_start, load_arm, log_locations, run_stage1, run_stage2,
                            weights_key)
    from .reproduce import start_model_dir

    t0 = time.time()
    rep = load_config(ReproduceConfig, root / cfg.reproduce)
    run_dir = root / rep.run_dir
    stages = search_stages(cfg)
    spaces = {st.name: expand_space(st.space) for st in stages}
    starts = {"base": start_model_dir(rep, root)}  # a shipped checkpoint or a released model (SmolLM2)
    pairs = [(start, arm) for start, arms in cfg.pairs.items() for arm in arms]

    def variant(arm: str, recipe: dict):
        v = load_arm(arm, rep.arms_dir, root, rep.cpt_overrides, rep.align_overrides, recipe=setting_overrides(recipe))
        return dataclasses.replace(v, cpt=search_stage1(v.cpt))

    # every setting of every stage is built on every pipeline it applies to (and so checked) before anything runs
    pools: dict = {}
    for start, arm in pairs:
        for st in stages:
            for s in spaces[st.name] if st.applies_to(arm) else []:
                v = variant(arm, s)
                if v.align is None:
                    raise ConfigError(f"{cfg.reproduce}: arm {arm!r} has no stage 2 to search")
                check_pool(v.align.selection, root, pools)
    if "chat" in cfg.pairs:
        starts["chat"] = build_chat_start(starts["base"], rep.world, rep.chat_sft, run_dir / "start-chat")

    def validate(start: str, v) -> dict:
        """The validation numbers of one stage 2 (means over the search seeds) and its seconds (their sum)."""
        vals, seconds = [], 0.0
        for seed in cfg.seeds:
            model_dir, key = starts[start], weights_key(starts[start])
            if v.cpt is not None:
                model_dir, _ = run_stage1(starts[start], key, v.cpt, v.mix, seed, run_dir, root)
                key = model_dir.name
            _, info = run_stage2(model_dir, key, v.align, seed, start == "chat", run_dir, root)
            vals.append(info["metrics"]["dpo"])
            seconds += info["seconds"]
        return {**{k: sum(x[k] for x in vals) / len(vals) for k in METRICS}, "seconds": round(seconds, 1)}

    progress = progress_path(cfg, root)
    fingerprint = search_fingerprint(cfg, rep)
    finished = read_progress(progress, fingerprint) if write else {}
    seeds_text = " ".join(map(str, cfg.seeds))

    def validated(start: str, arm: str, trained: dict) -> dict:
        key = (start, arm, setting_label(trained), seeds_text)
        if key in finished:
            return {**finished[key]}
        numbers = validate(start, variant(arm, trained))
        if write:
            finished[key] = numbers
            lines = [json.dumps({"fingerprint": fingerprint, "start": k[0], "arm": k[1], "recipe": k[2], "seeds": k[3],
                                 **v}) for k, v in finished.items()]
            progress.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(progress, "\n".join(lines) + "\n")
        return numbers

    if finished:
        print(f"[search] {len(finished)} finished stage-2 runs taken from {progress}", flush=True)
    print(log_locations(run_dir), flush=True)
    rows: list[dict] = []
    total = sum(len(spaces[st.name]) for _, arm in pairs for st in stages if st.applies_to(arm)) * len(cfg.seeds)
    done = 0
    for start, arm in pairs:
        recipe: dict = {}  # the earlier stages' choices (flat dotted keys)
        chosen_row, counts = None, []
        for st in stages:
            settings = spaces[st.name]
            if not st.applies_to(arm) or recipe.get("skip"):
                why = "skips stage 2" if recipe.get("skip") else f"is not among its arms {st.arms}"
                print(f"[search] {start}/{arm}: stage {st.name!r} not searched ({arm} {why})", flush=True)
                done += len(settings) * len(cfg.seeds) if st.applies_to(arm) else 0
                continue
            per_setting = []
            for i, setting in enumerate(settings):
                trained = {**recipe, **setting}
                row = {"start": start, "arm": arm, "setting": i, "label": setting_label(setting),
                       "seeds": seeds_text, **validated(start, arm, trained)}
                if cfg.staged:
                    row.update(stage=st.name, recipe=setting_label(trained))
                per_setting.append(row)
                done += len(cfg.seeds)
                where = f"stage {st.name} " if cfg.staged else ""
                print(f"[search {done}/{total}] {start}/{arm} {where}{row['label']}: validation score "
                      f"{row['score']:.3f} (general {row['general_accuracy']:.3f}, domain "
                      f"{row['domain_accuracy']:.3f}), format {row['format_compliance']:.3f} "
                      f"({(time.time() - t0) / 60:.1f} min so far)", flush=True)
            best = choose(per_setting, cfg.min_format)
            for j, r in enumerate(per_setting):
                r["chosen"] = int(j == best)
            recipe = {**recipe, **settings[best]}
            chosen_row = per_setting[best]
            counts.append((st.name, len(settings)))
            rows += per_setting
        if write:
            write_recipe(root / cfg.out_dir / f"{start}-{arm}.yaml", start, arm, recipe, chosen_row,
                         counts if cfg.staged else counts[0][1], cfg, source)
    if write:
        from .reproduce import write_csv

        write_csv(rows, STAGED_COLUMNS if cfg.staged else SEARCH_COLUMNS, root / cfg.table)
        progress.unlink(missing_ok=True)  # the table holds it all now
    what = (" + ".join(f"{st.name} {len(spaces[st.name])}" for st in stages) + " settings (stages)" if cfg.staged
            else f"{len(spaces['space'])} settings")
    print(f"\nsearch: {what} x {len(pairs)} pipelines x {len(cfg.seeds)} seed(s) in "
          f"{(time.time() - t0) / 60:.1f} min")
    return rows


def check_pool(selection, root: Path, pools: dict) -> None:
    """:func:`mixcpt_core.selection.check_pool_sizes` of a setting's selection (an N larger than the pool fails before
    anything runs); ``pools`` caches the pools by world and pool folder."""
    import json

    from .config import to_dict
    from .selection import check_pool_sizes, general_pool

    key = json.dumps([to_dict(selection.world), selection.pool], sort_keys=True, default=str)
    if key not in pools:
        pools[key] = general_pool(selection, root)
    check_pool_sizes(selection, pools[key])


def write_recipe(path: Path, start: str, arm: str, setting: dict, row: dict, n_settings,
                 cfg: Stage2SearchConfig, source: str) -> None:
    """One selected recipe: the align overrides of the chosen setting, with how it was chosen as comments.
    ``n_settings``: the number of settings (a flat search), or ``[(stage, settings), ...]`` of the stages this
    pipeline searched (a staged one)."""
    if isinstance(n_settings, int):
        among = f"# among the {n_settings} settings declared there "
    else:
        among = ("# stage by stage (" + ", ".join(f"{name}: {n} settings" for name, n in n_settings)
                 + "; each with the earlier stages' choices fixed)\n# ")
    head = (f"# Stage-2 recipe of arm '{arm}' from the '{start}' start, chosen by `mixcpt search {source}`\n"
            f"{among}"
            f"by its rule (format compliance >= {cfg.min_format}, then the highest mean of general and\n"
            f"# domain validation chat QA). Validation, seeds {cfg.seeds}: score {row['score']:.3f} (general "
            f"{row['general_accuracy']:.3f}, domain {row['domain_accuracy']:.3f}), format {row['format_compliance']:.3f}."
            f"\n# Align overrides, applied on top of the arm's own by `mixcpt reproduce` (validated protocol).\n")
    write_text_atomic(path, head + yaml.safe_dump(setting_overrides(setting), sort_keys=True))


def load_recipe(recipes_dir: Path, start: str, arm: str) -> dict:
    """The align overrides of a selected recipe (``<recipes_dir>/<start>-<arm>.yaml``); :class:`ConfigError` naming
    the file and the command that writes it when it is missing."""
    from .config import read_yaml

    path = recipes_dir / f"{start}-{arm}.yaml"
    if not path.exists():
        raise ConfigError(f"{path}: no selected stage-2 recipe for arm {arm!r} from the {start!r} start; run "
                          f"`mixcpt search configs/search-stage2-tiny.yaml` or use `--protocol fixed`")
    return read_yaml(path)


__all__ = ["Stage2SearchConfig", "SearchStage", "progress_path", "read_progress", "search_fingerprint", "search_stages", "search_stage1", "check_grids", "expand_space",
           "setting_overrides", "setting_label", "choose", "run_search", "write_recipe", "load_recipe", "check_pool",
           "SEARCH_COLUMNS", "STAGED_COLUMNS"]
