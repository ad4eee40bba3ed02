"""The stage-2 search: one declared space, one fixed rule, validation questions only.

Stage 2's recipe (learning rate, steps, full fine-tuning or LoRA) decides how much of stage 1's knowledge survives,
so it is chosen per pipeline, fairly, before any test number is read:

* the **space** is declared in a committed config (``configs/search-stage2-tiny.yaml``) before the search runs: a
  list of grids, each mapping a dotted :class:`~mixcpt_core.alignment.AlignConfig` field (``sft.learning_rate``,
  ``lora``) to the values to try; the union of their Cartesian products is the space, the same for every arm;
* every (start, arm) pair runs its stage 1 (the cached one of the reproduction) and then stage 2 with each setting,
  for the declared seeds; :func:`mixcpt_core.alignment.run_align` evaluates the result on the **validation**
  questions only (``general_val``, ``domain_val``);
* the **rule** (:func:`choose`), fixed in advance: among settings whose validation format compliance (mean over the
  seeds) is at least ``min_format``, the highest validation score (the mean of general and domain chat QA, mean
  over the seeds); ties go to the setting declared first. If no setting is compliant enough, the most compliant one.

The chosen settings are written as one YAML per (start, arm) into ``out_dir`` (``configs/stage2-selected/``):
align overrides that ``mixcpt reproduce`` applies on top of the arm's own, so the reproduction never searches again.
Nothing here calls the test-set evaluation; a test runs the search with the test splits made unreadable.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .atomic import write_text_atomic
from .config import ConfigError


@dataclass
class Stage2SearchConfig:
    """The declared stage-2 search (see the module docstring). ``reproduce`` names the reproduction config whose base
    model, world, arms, chat start and run directory (stage cache) the search shares."""

    reproduce: str = "configs/reproduce-tiny.yaml"
    pairs: dict[str, list[str]] = field(default_factory=lambda: {"base": ["traditional", "mixcpt"]})
    seeds: list[int] = field(default_factory=lambda: [0])
    space: list[dict[str, list]] = field(default_factory=list)
    min_format: float = 0.95
    out_dir: str = "configs/stage2-selected"
    table: str = "figures/search_stage2.csv"

    def __post_init__(self):
        if not self.space:
            raise ValueError("field 'space': declare at least one grid of settings")
        if not self.seeds:
            raise ValueError("field 'seeds': give at least one seed")
        if not 0.0 <= self.min_format <= 1.0:
            raise ValueError(f"field 'min_format' must be in [0, 1], got {self.min_format}")
        for i, grid in enumerate(self.space):
            for key, values in grid.items():
                if not isinstance(values, list) or not values:
                    raise ValueError(f"field 'space[{i}].{key}': expected a non-empty list of values")


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


def run_search(cfg: Stage2SearchConfig, root: Path, write: bool = True,
               source: str = "configs/search-stage2-tiny.yaml") -> list[dict]:
    """Run the declared search (stages cached in the reproduction's ``run_dir``: a rerun continues where it
    stopped), apply the rule per (start, arm) and, with ``write``, write the table ``cfg.table`` and one recipe YAML
    per (start, arm) into ``cfg.out_dir``. Returns the table rows."""
    from .config import load_config
    from .pipelines import ReproduceConfig, build_chat_start, load_arm, run_stage1, run_stage2, weights_key
    from .reproduce import start_model_dir

    t0 = time.time()
    rep = load_config(ReproduceConfig, root / cfg.reproduce)
    run_dir = root / rep.run_dir
    settings = expand_space(cfg.space)
    starts = {"base": start_model_dir(rep, root)}  # a shipped checkpoint or a released model (SmolLM2)
    if "chat" in cfg.pairs:
        starts["chat"] = build_chat_start(starts["base"], rep.world, rep.chat_sft, run_dir / "start-chat")
    pairs = [(start, arm) for start, arms in cfg.pairs.items() for arm in arms]
    # every variant is built (and so checked) before anything runs
    variants = {(start, arm): [load_arm(arm, rep.arms_dir, root, rep.cpt_overrides, rep.align_overrides,
                                        recipe=setting_overrides(s)) for s in settings] for start, arm in pairs}
    for (start, arm), vs in variants.items():
        if vs[0].align is None:
            raise ConfigError(f"{cfg.reproduce}: arm {arm!r} has no stage 2 to search")

    rows: list[dict] = []
    total, done = len(pairs) * len(settings) * len(cfg.seeds), 0
    for start, arm in pairs:
        per_setting = []
        for i, (setting, variant) in enumerate(zip(settings, variants[(start, arm)])):
            vals, seconds = [], 0.0
            for seed in cfg.seeds:
                model_dir, key = starts[start], weights_key(starts[start])
                if variant.cpt is not None:
                    model_dir, _ = run_stage1(starts[start], key, variant.cpt, variant.mix, seed, run_dir, root)
                    key = model_dir.name
                _, info = run_stage2(model_dir, key, variant.align, seed, start == "chat", run_dir, root)
                vals.append(info["metrics"]["dpo"])
                seconds += info["seconds"]
                done += 1
            row = {"start": start, "arm": arm, "setting": i, "label": setting_label(setting),
                   "seeds": " ".join(map(str, cfg.seeds)), "seconds": round(seconds, 1),
                   **{k: sum(v[k] for v in vals) / len(vals)
                      for k in ("score", "general_accuracy", "domain_accuracy", "format_compliance")}}
            per_setting.append(row)
            print(f"[search {done}/{total}] {start}/{arm} {row['label']}: validation score {row['score']:.3f} "
                  f"(general {row['general_accuracy']:.3f}, domain {row['domain_accuracy']:.3f}), format "
                  f"{row['format_compliance']:.3f} ({(time.time() - t0) / 60:.1f} min so far)", flush=True)
        best = choose(per_setting, cfg.min_format)
        for j, r in enumerate(per_setting):
            r["chosen"] = int(j == best)
        rows += per_setting
        if write:
            write_recipe(root / cfg.out_dir / f"{start}-{arm}.yaml", start, arm, settings[best], per_setting[best],
                         len(settings), cfg, source)
    if write:
        from .reproduce import write_csv

        write_csv(rows, SEARCH_COLUMNS, root / cfg.table)
    print(f"\nsearch: {len(settings)} settings x {len(pairs)} pipelines x {len(cfg.seeds)} seed(s) in "
          f"{(time.time() - t0) / 60:.1f} min")
    return rows


def write_recipe(path: Path, start: str, arm: str, setting: dict, row: dict, n_settings: int,
                 cfg: Stage2SearchConfig, source: str) -> None:
    """One selected recipe: the align overrides of the chosen setting, with how it was chosen as comments."""
    head = (f"# Stage-2 recipe of arm '{arm}' from the '{start}' start, chosen by `mixcpt search {source}`\n"
            f"# among the {n_settings} settings declared there "
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


__all__ = ["Stage2SearchConfig", "expand_space", "setting_overrides", "setting_label", "choose", "run_search",
           "write_recipe", "load_recipe", "SEARCH_COLUMNS"]
