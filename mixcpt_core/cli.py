"""The ``mixcpt`` command line. Every subcommand is a thin wrapper over a function of ``mixcpt_core``.

    mixcpt world --seed 0 --out runs/world          # write the knowledge world as JSONL
    mixcpt pretrain-base --config configs/base-tiny.yaml --out checkpoints/base-tiny
    mixcpt evaluate checkpoints/base-tiny --out figures/base_eval.json
    mixcpt mix configs/mix-tiny.yaml --out runs/tiny/mix   # stage-1 data D_MIX (--share domain=0.5 to sweep)
    mixcpt reproduce --profile tiny                  # the main job (`make reproduce`)

Bad arguments or configs (and missing files they name) print one line ``mixcpt: error: …`` and exit with code 2,
writing nothing. A training run whose loss or weights become NaN/inf stops with one such line naming the step and the
last good checkpoint, and exit code 1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub calls unless the user clears these
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# transformers' own progress bars ("Loading weights", "Writing model shards": a line per model loaded or saved,
# dozens per reproduction) and the hub's (offline, nothing is downloaded); a training run shows one bar
# (mixcpt_core.logs). Read when huggingface_hub is imported.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")  # Apple MPS: missing ops run on the CPU; read by import torch

# The model-size rungs of the synthetic world: the same world, tokenizer, arms and protocol, a larger base model.
PROFILES = {"tiny": "configs/base-tiny.yaml", "small": "configs/base-small.yaml"}
SHIPPED_BASE = {"tiny": "checkpoints/base-tiny", "small": "checkpoints/base-small"}
# ... and a real chat model (SmolLM2-135M-Instruct, offline) on a new domain of the same generator.
REPRODUCE_CONFIGS = {"tiny": "configs/reproduce-tiny.yaml", "small": "configs/reproduce-small.yaml",
                     "smollm2": "configs/smollm2/reproduce.yaml"}
PROFILE_FIGURES = {"tiny": "figures", "small": "figures/small", "smollm2": "figures/smollm2"}  # one folder each
# stage-2 protocols run by default: tiny also its fixed recipes for comparison (smollm2's comparison, a further stage 2
# per arm at ~10 min each on a CPU, runs with `--protocol validated fixed`: `make reproduce-smollm2`)
PROFILE_PROTOCOLS = {"tiny": ["validated", "fixed"], "small": ["validated"], "smollm2": ["validated"]}


class UsageError(Exception):
    """Bad input from the user: reported as one line with exit code 2."""


class BenchFailed(Exception):
    """A benchmark's own check failed (e.g. the variants disagree on the objective): one line, exit code 1."""


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``mixcpt: error: …``) and exit code 2, without the usage block."""

    def error(self, message):
        self.exit(2, f"mixcpt: error: {message} (see `{self.prog} --help`)\n")


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _check_writable_dir(path: Path) -> None:
    """Fail early, before any work, if ``path`` cannot be created or written."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path}: exists and is not a directory")
    ancestor = next(p for p in (path, *path.parents) if p.exists())
    if not ancestor.is_dir():
        raise UsageError(f"{path}: cannot create it, {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{path}: not writable ({ancestor} does not allow writing)")


# -- world ---------------------------------------------------------------------------------------------------------
def cmd_world(args) -> None:
    from .world import WORLD_PRESETS, generate_world, write_world

    if args.preset not in WORLD_PRESETS:
        raise UsageError(f"unknown world preset {args.preset!r}; choose one of {sorted(WORLD_PRESETS)}")
    overrides = {k: v for k, v in vars(args).items() if k in {f.name for f in dataclasses.fields(WORLD_PRESETS["tiny"])}
                 and v is not None}
    try:
        cfg = dataclasses.replace(WORLD_PRESETS[args.preset], **overrides)
    except ValueError as e:
        raise UsageError(str(e)) from None
    out = Path(args.out)
    _check_writable_dir(out)
    try:
        write_world(generate_world(cfg), out)
    except (OSError, FileExistsError) as e:
        raise UsageError(str(e)) from None
    print(f"wrote world {cfg.fingerprint()} to {out}/ ({', '.join(f.name for f in sorted(out.glob('*.jsonl')))})")


# -- base model ------------------------------------------------------------------------------------------------------
def _base_config(path: str | None, out: str | None):
    from .config import ConfigError, load_config
    from .training import BasePretrainConfig

    try:
        cfg = load_config(BasePretrainConfig, path) if path else BasePretrainConfig()
    except ConfigError as e:
        raise UsageError(str(e)) from None
    if out:
        cfg = dataclasses.replace(cfg, output_dir=out)
    return cfg


def cmd_pretrain_base(args) -> None:
    from .training import pretrain_base

    cfg = _base_config(args.config, args.out)
    _check_writable_dir(Path(cfg.output_dir))
    out = pretrain_base(cfg, resume=not args.no_resume)
    print(f"base checkpoint written to {out}")


def _model_world(model_dir: Path):
    """The world a model was trained in, from its info file (base, stage 1 or stage 2), else the tiny world."""
    from .config import from_dict, load_config
    from .data import MixConfig
    from .world import WorldConfig

    for name, get in (("mixcpt_base.json", lambda c: c["world"]), ("mixcpt_align.json", lambda c: c["selection"]["world"]),
                      ("mixcpt_cpt.json", lambda c: load_config(MixConfig, _repo_root() / c["mix"]).world)):
        if (model_dir / name).exists():
            world = get(json.loads((model_dir / name).read_text(encoding="utf-8"))["config"])
            return world if isinstance(world, WorldConfig) else from_dict(WorldConfig, world, f"{model_dir / name}")
    return WorldConfig()


def cmd_evaluate(args) -> None:
    from .atomic import write_text_atomic
    from .evaluation import evaluate_model, format_metrics_table
    from .models import has_chat_template, load_causal_lm
    from .world import generate_world

    model_dir = Path(args.model_dir)
    if not (model_dir / "model.safetensors").exists():
        raise UsageError(f"{model_dir}: no model.safetensors here (give a checkpoint directory)")
    try:
        chat = has_chat_template(model_dir)  # the tokenizer alone: refuse before the weights are loaded
        if chat:
            model, tokenizer = load_causal_lm(model_dir)
    except Exception as e:  # missing config or tokenizer, corrupt weights: one line, not a traceback
        raise UsageError(f"{model_dir}: cannot load the model ({(str(e).splitlines() or [type(e).__name__])[0]})") from None
    if not chat:
        raise UsageError(f"{model_dir}: the tokenizer has no chat template (the metrics use the chat format)")
    world_cfg = _model_world(model_dir)
    metrics = evaluate_model(model, tokenizer, generate_world(world_cfg), n_examples=args.examples)
    print(f"{model_dir} on world {world_cfg.fingerprint()}:\n" + format_metrics_table(metrics))
    if args.out:
        write_text_atomic(args.out, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.out}")


# -- stage-1 data ----------------------------------------------------------------------------------------------------
def _parse_share(text: str) -> tuple[str, float]:
    """``--share domain=0.5`` -> ``("domain", 0.5)``."""
    name, _, value = text.partition("=")
    try:
        share = float(value)
    except ValueError:
        share = None
    if not name or share is None:
        raise argparse.ArgumentTypeError(f"expected NAME=SHARE (e.g. domain=0.5), got {text!r}")
    return name, share


def cmd_mix(args) -> None:
    from .config import ConfigError, load_config
    from .data import DataError, MixConfig, build_mix, save_mix

    try:
        cfg = load_config(MixConfig, args.config)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    try:
        cfg = cfg.with_shares(dict(args.share))
    except ValueError as e:
        raise UsageError(f"--share: {e}") from None
    out = Path(args.out or cfg.output_dir)
    _check_writable_dir(out)
    try:
        blocks, composition = build_mix(cfg)
        save_mix(blocks, composition, out)
    except (DataError, OSError) as e:  # OSError: tokenizer not found, refusing to overwrite, disk full
        raise UsageError(str(e).splitlines()[0]) from None
    print(format_composition(composition))
    print(f"wrote {composition['blocks']:,} blocks to {out}/ (datasets.load_from_disk) and {out}/composition.json")


def format_composition(c: dict) -> str:
    """Markdown table of a mix's composition (:func:`mixcpt_core.data.mix_and_pack`) and its padding."""
    rows = [f"| {r['name']} | {r['kind']} | {r['requested_share']:.3f} | {r['share']:.4f} | {r['tokens']:,} | "
            f"{r['documents']:,} | {r['repeat_factor']:.2f} |" for r in c["sources"]]
    return ("| source | kind | requested share | achieved share | tokens | texts | repeat factor |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows) +
            f"\n\n{c['tokens']:,} tokens in {c['blocks']:,} blocks of {c['block_length']}; "
            f"padding {c['padding_tokens']} tokens ({c['padding_fraction']:.4%})")


# -- stage 1 and benchmarks -----------------------------------------------------------------------------------------
def cmd_cpt(args) -> None:
    from .config import ConfigError, load_config
    from .cpt import CPTConfig, check_cpt_inputs, run_cpt

    try:
        cfg = load_config(CPTConfig, args.config)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    if args.out:
        cfg = dataclasses.replace(cfg, output_dir=args.out)
    try:
        check_cpt_inputs(cfg)  # the files the config names: before a model is loaded (one error line, no progress bar)
    except ConfigError as e:
        raise UsageError(f"{args.config}: {e}") from None
    _check_writable_dir(Path(cfg.output_dir))
    print(f"stage-1 model written to {run_cpt(cfg)}")


def cmd_bench(args) -> None:
    if args.kind == "mix":
        from .bench_mix import bench_mix

        r = bench_mix(args.out, root=_repo_root())
        for name, run in r["runs"].items():
            print(f"{name}: {run['packed_tokens']:,} packed tokens ({run['distinct_tokens_tokenized']:,} distinct), "
                  f"tokenise + pack {run['tokenize_and_pack_tokens_per_s']:,} tokens/s, "
                  f"end to end {run['end_to_end_tokens_per_s']:,} tokens/s")
    elif args.kind == "lssd":
        from .bench import bench_lssd

        bench_lssd(args.out, steps=6 if args.steps is None else args.steps)
    elif args.kind == "peers":
        from .bench_peers import ObjectiveMismatch, bench_peers, markdown

        settings = ("smoke",) if args.dry_run else ("vocab_32k", "vocab_128k")
        try:
            report = bench_peers(args.out, settings=settings, steps=(1 if args.dry_run else 5) if args.steps is None else args.steps,
                                 warmup=1)
        except ObjectiveMismatch as e:
            raise BenchFailed(str(e)) from None
        print(markdown(report))
    elif args.kind == "gpu":
        import torch

        from .bench_gpu import bench_gpu, markdown

        if not (args.dry_run or torch.cuda.is_available()):
            raise UsageError("bench gpu needs a CUDA GPU; --dry-run runs it at tiny sizes on the CPU")
        print(markdown(bench_gpu(args.out, dry_run=args.dry_run, peak=args.peak_tflops)))
    elif args.kind == "cache-error":
        from .bench import cached_teacher_error
        from .models import load_causal_lm
        from .world import WorldConfig, generate_world

        if not args.student:
            raise UsageError("bench cache-error needs --student MODEL_DIR (a stage-1 model; the teacher is --teacher)")
        try:
            student, tok = load_causal_lm(args.student)
            teacher, _ = load_causal_lm(args.teacher)
        except (FileNotFoundError, OSError) as e:
            raise UsageError(str(e)) from None
        texts = generate_world(WorldConfig()).docs("domain")[:64]  # new facts: where the teacher is most wrong
        ids = tok(texts, return_tensors="pt", padding="max_length", max_length=40, truncation=True).input_ids
        rows = cached_teacher_error(student.eval(), teacher.eval(), ids)
        Path(args.out).write_text(json.dumps({"student": args.student, "teacher": args.teacher, "rows": rows},
                                             indent=2) + "\n", encoding="utf-8")
        for r in rows:
            print(f"k={r['k']:5d}  L_cached / L_exact = {r['ratio']:.4f}  gradient cosine = {r['grad_cosine']:.4f}")
    print(f"wrote {args.out}")


# -- stage 2 -----------------------------------------------------------------------------------------------------------
def _align_config(path: str, out: str | None, model_dir: str | None = None, n: int | None = None):
    """The stage-2 config of ``select`` and ``align`` with the command line's overrides, and its stage-1 model folder
    checked (weights readable, config loads), before anything is loaded or written."""
    from .alignment import AlignConfig
    from .config import ConfigError, from_dict, read_yaml
    from .selection import stage1_model

    try:
        data = read_yaml(path)
        selection = data.get("selection") or {}
        if model_dir and isinstance(selection, dict):  # before loading: --model stands in for selection.model
            data = {**data, "selection": {**selection, "model": model_dir}}
        cfg = from_dict(AlignConfig, data, where=str(path))
    except ConfigError as e:
        raise UsageError(str(e)) from None
    if out:
        cfg = dataclasses.replace(cfg, output_dir=out)
    if n:
        cfg = dataclasses.replace(cfg, selection=dataclasses.replace(cfg.selection, n_sft=n, n_dpo=n))
    model = _repo_root() / cfg.selection.model
    if not (Path(cfg.selection.model).exists() or model.exists()) and cfg.selection.model.startswith(("runs", "checkpoints", ".", "/")):
        raise UsageError(f"{cfg.selection.model}: stage-1 model not found (make it with "
                         f"`mixcpt cpt configs/cpt-tiny.yaml --out {cfg.selection.model}`)")
    try:
        stage1_model(cfg.selection, _repo_root())
    except ConfigError as e:
        raise UsageError(f"{path}: {e}") from None
    _check_writable_dir(Path(cfg.output_dir))
    return cfg


def cmd_select(args) -> None:
    from .selection import SELECTION_FILE, run_selection

    from .config import ConfigError

    cfg = _align_config(args.config, args.out, args.model, args.n)
    try:
        r = run_selection(cfg.selection, out_dir=cfg.output_dir, root=_repo_root())
    except ConfigError as e:  # N larger than the pool, no chat template: checked before anything is written
        raise UsageError(f"{args.config}: {e}") from None
    except (FileNotFoundError, OSError) as e:  # model directory without weights, unreadable files
        raise UsageError(str(e).splitlines()[0]) from None
    for part in ("sft", "dpo"):
        chosen = [r[part]["scores"][i] for i in r[part]["selected"]]
        print(f"{part}: selected {len(chosen)} of {len(r[part]['scores'])} by {cfg.selection.score} "
              f"(scores {min(chosen):.4f} .. {max(chosen):.4f}; pool median "
              f"{sorted(r[part]['scores'])[len(r[part]['scores']) // 2]:.4f})")
    print(f"wrote {Path(cfg.output_dir) / SELECTION_FILE}")


def cmd_align(args) -> None:
    from .alignment import align_rows, format_align_table, run_align

    from .config import ConfigError

    cfg = _align_config(args.config, args.out, args.model, args.n)
    try:
        info = run_align(cfg, root=_repo_root())
    except ConfigError as e:  # N larger than the pool, no chat template: checked before anything is written
        raise UsageError(f"{args.config}: {e}") from None
    except (FileNotFoundError, OSError) as e:
        raise UsageError(str(e).splitlines()[0]) from None
    print(format_align_table(align_rows(info)))
    print(f"stage-2 model written to {cfg.output_dir} ({info['seconds']} s)")


# -- reproduce -------------------------------------------------------------------------------------------------------
def cmd_reproduce(args) -> None:
    import dataclasses

    from .config import load_config
    from .pipelines import ReproduceConfig
    from .reproduce import profile_seeds, reproduce, reproduce_base

    t0 = time.time()
    root = _repo_root()
    rcfg = load_config(ReproduceConfig, args.config or root / REPRODUCE_CONFIGS[args.profile])
    if args.seeds:  # an explicit choice: it holds on a GPU too (the config's gpu_seeds no longer apply)
        rcfg = dataclasses.replace(rcfg, seeds=args.seeds, gpu_seeds=[])
    if args.run_dir:
        rcfg = dataclasses.replace(rcfg, run_dir=args.run_dir)
    figures = Path(args.figures or PROFILE_FIGURES[args.profile])
    _check_writable_dir(figures)
    protocols = args.protocol or PROFILE_PROTOCOLS[args.profile]
    if args.profile in PROFILES:  # a base model pre-trained on the world: evaluate it (or retrain it) first
        cfg = _base_config(str(root / PROFILES[args.profile]), None)
        print("== the base model every pipeline starts from ==")
        reproduce_base(cfg, shipped=root / SHIPPED_BASE[args.profile], figures=figures,
                       run_dir=root / rcfg.run_dir, retrain=args.retrain_base)
    elif args.retrain_base:
        raise UsageError(f"--retrain-base: the {args.profile} profile starts from a released model, not one "
                         f"pre-trained here")
    if args.retrain_base:
        rcfg = dataclasses.replace(rcfg, base_model=str(root / rcfg.run_dir / "base"))
    print(f"\n== the compared pipelines ({'main + ablation grid' if args.full else 'main arms'}, "
          f"seeds {profile_seeds(rcfg)}) ==")
    from .report import cached_stages, record_wall_time

    cached = cached_stages(root / rcfg.run_dir)
    reproduce(rcfg, root, figures, full=args.full, sweep=args.sweep, protocols=protocols)
    if args.run_dir is None and args.seeds is None and args.config is None:  # the documented command: record its time
        flags = [f for f, on in (("--full", args.full), ("--sweep", args.sweep)) if on]
        flags += [] if protocols == PROFILE_PROTOCOLS[args.profile] else ["--protocol", *protocols]
        record_wall_time(figures, " ".join(["mixcpt reproduce --profile", args.profile, *flags]), time.time() - t0,
                         cached)


def cmd_search(args) -> None:
    from .config import load_config
    from .search import Stage2SearchConfig, run_search

    root = _repo_root()
    cfg = load_config(Stage2SearchConfig, args.config)
    from .pipelines import ReproduceConfig
    from .report import cached_stages, record_wall_time

    t0 = time.time()
    cached = cached_stages(root / load_config(ReproduceConfig, root / cfg.reproduce).run_dir)
    run_search(cfg, root, source=args.config)
    record_wall_time((root / cfg.table).parent, f"mixcpt search {args.config}", time.time() - t0, cached)


def cmd_calibrate(args) -> None:
    from .calibration import (BUDGET_FILE, CALIBRATION_DOC, calibrate_stage2, fit_reply_budget, render_calibration,
                              search_recipes)
    from .config import load_config
    from .pipelines import ReproduceConfig
    from .search import Stage2SearchConfig

    root = _repo_root()
    rcfg = load_config(ReproduceConfig, root / REPRODUCE_CONFIGS[args.profile])
    if rcfg.evaluation.general != "realworld":
        raise UsageError(f"--profile {args.profile}: calibration is for a released chat model (the smollm2 profile)")
    recipes = {"fixed recipe": {}}
    if args.search:
        recipes = search_recipes(load_config(Stage2SearchConfig, root / args.search), root)
    if args.only:  # the fixed recipe stays: a setting that spells it out is copied from it, not trained
        recipes = {k: v for k, v in recipes.items() if k == "fixed recipe" or any(o in k for o in args.only)}
    figures = root / PROFILE_FIGURES[args.profile]
    if args.refit_budget or not (figures / BUDGET_FILE).exists():  # deterministic: the committed fit stands
        fit_reply_budget(rcfg, root, figures)
    rows = calibrate_stage2(rcfg, root, figures, recipes, arms=args.arms, redo=args.redo)
    render_calibration(figures / "calibration.csv", root / CALIBRATION_DOC)
    print(f"wrote {PROFILE_FIGURES[args.profile]}/calibration.csv and its table in {CALIBRATION_DOC}: "
          f"{sum(int(r['holds']) for r in rows)} of {len(rows)} rows hold")


def cmd_pool(args) -> None:
    from .config import load_config
    from .format_pool import PoolConfig, run_pool

    root = _repo_root()
    cfg = load_config(PoolConfig, args.config)  # a ConfigError is the one-line error of main()
    out = run_pool(cfg, command=f"mixcpt pool {args.config}", root=root)
    summary = json.loads((out / "pool.json").read_text(encoding="utf-8"))["summary"]
    print(f"wrote {out}: {sum(summary['instructions'].values())} instructions and "
          f"{sum(summary['preferences'].values())} preference pairs from {sum(summary['prompts'].values())} prompts; "
          f"budget fitted to the start model's factual replies: {summary['fitted_budget']} tokens")


def cmd_scale(args) -> None:
    from .scaling import write_scale

    try:
        names = write_scale(_repo_root())
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    print(f"wrote {', '.join(names)} to figures/")
    print((_repo_root() / "figures" / "scale.md").read_text(encoding="utf-8"))


def cmd_report(args) -> None:
    from .report import write_report

    changed = write_report(_repo_root(), Path(args.figures) if args.figures else None)
    print(f"rendered from figures/: {', '.join(changed) if changed else 'nothing changed'}")


def cmd_notebooks(args) -> None:
    from .notebook import execute_notebooks

    notebooks = sorted((_repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    chosen = notebooks
    if args.names:
        chosen = []
        for name in args.names:
            match = [p for p in notebooks if p.name == name or p.name.startswith(f"{name}_")]
            if not match:
                raise UsageError(f"{name}: no such notebook (have: {', '.join(p.name for p in notebooks)})")
            chosen += match
    times = execute_notebooks(chosen, fast=args.fast, record=not args.fast)
    total = sum(t for _, t in times)
    print(f"{len(times)} notebook(s) in {total / 60:.1f} min{' (FAST mode, not saved)' if args.fast else ', saved'}")


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="mixcpt", description="Mix-CPT lab: knowledge world, training and evaluation.")
    sub = p.add_subparsers(dest="command", required=True)

    w = sub.add_parser("world", help="generate the synthetic knowledge world as JSONL")
    w.add_argument("--seed", type=_nonneg_int, default=None, help="world seed (default: the preset's, 0)")
    w.add_argument("--out", required=True, help="output directory (replaced atomically)")
    w.add_argument("--preset", default="tiny", help="size preset: tiny (CPU profile) or sample (data_samples/)")
    for name in ("n_general", "n_domain", "docs_per_entity", "templates_per_attribute"):
        w.add_argument("--" + name.replace("_", "-"), dest=name, type=_nonneg_int, default=None)
    w.set_defaults(func=cmd_world)

    b = sub.add_parser("pretrain-base", help="pre-train the base model on the general world (resumes if interrupted)")
    b.add_argument("--config", default=None, help="YAML with BasePretrainConfig fields (default: built-in defaults)")
    b.add_argument("--out", default=None, help="checkpoint directory (default: the config's output_dir)")
    b.add_argument("--no-resume", action="store_true", help="ignore intermediate checkpoints and start over")
    b.set_defaults(func=cmd_pretrain_base)

    e = sub.add_parser("evaluate", help="the reproduction's metrics of a checkpoint (chat and plain QA, perplexity)")
    e.add_argument("model_dir")
    e.add_argument("--out", default=None, help="write the metrics as JSON here")
    e.add_argument("--examples", type=_nonneg_int, default=0, help="also keep the first N generations per QA set")
    e.set_defaults(func=cmd_evaluate)

    m = sub.add_parser("mix", help="build the stage-1 data D_MIX (packed blocks + composition.json)")
    m.add_argument("config", help="YAML with MixConfig fields, e.g. configs/mix-tiny.yaml")
    m.add_argument("--out", default=None, help="output directory (default: the config's output_dir; replaced atomically)")
    m.add_argument("--share", action="append", type=_parse_share, default=[], metavar="NAME=SHARE",
                   help="override one source's share (repeatable), e.g. --share domain=0.5")
    m.set_defaults(func=cmd_mix)

    c = sub.add_parser("cpt", help="stage 1: knowledge-mixture CPT with LSSD (resumes if interrupted)")
    c.add_argument("config", help="YAML with CPTConfig fields, e.g. configs/cpt-tiny.yaml")
    c.add_argument("--out", default=None, help="output directory (default: the config's output_dir)")
    c.set_defaults(func=cmd_cpt)

    bn = sub.add_parser("bench", help="benchmarks (step time and memory), written as JSON")
    bn.add_argument("kind", choices=["lssd", "cache-error", "mix", "peers", "gpu"],
                    help="lssd: CE vs naive vs chunked vs cached-teacher LSSD; cache-error: top-k cache vs exact; "
                         "mix: tokenisation + packing throughput of D_MIX; peers: the chunked loss next to TRL's and "
                         "full-logits KL at 32k and 128k vocabularies; gpu: the prepared GPU check (throughput, MFU, "
                         "memory at 152k, peers; also writes OUT with .md)")
    bn.add_argument("--out", required=True, help="JSON file to write")
    bn.add_argument("--steps", type=_nonneg_int, default=None,
                    help="measured steps per variant (default: lssd 6 after 2 warm-up, peers 5 after 1)")
    bn.add_argument("--dry-run", action="store_true", help="peers, gpu: tiny sizes on the CPU (what CI runs)")
    bn.add_argument("--peak-tflops", type=float, default=None,
                    help="gpu: the GPU's peak dense bf16 TFLOP/s for MFU (default: looked up by its name)")
    bn.add_argument("--student", default=None, help="cache-error: the stage-1 model")
    bn.add_argument("--teacher", default="checkpoints/base-tiny", help="cache-error: the original model")
    bn.set_defaults(func=cmd_bench)

    sl = sub.add_parser("select", help="stage 2: score general samples under the stage-1 model and select N")
    sl.add_argument("config", help="YAML with AlignConfig fields (its selection section), e.g. configs/align-tiny.yaml")
    sl.add_argument("--out", default=None, help="output directory (default: the config's output_dir)")
    sl.add_argument("--model", default=None, help="stage-1 model directory (default: the config's selection.model)")
    sl.add_argument("--n", type=_nonneg_int, default=None, help="select N instructions and N pairs (overrides n_sft, n_dpo)")
    sl.set_defaults(func=cmd_select)

    al = sub.add_parser("align", help="stage 2: selection -> SFT -> DPO with the chat template, then evaluation")
    al.add_argument("config", help="YAML with AlignConfig fields, e.g. configs/align-tiny.yaml")
    al.add_argument("--out", default=None, help="output directory (default: the config's output_dir)")
    al.add_argument("--model", default=None, help="stage-1 model directory (default: the config's selection.model)")
    al.add_argument("--n", type=_nonneg_int, default=None, help="select N instructions and N pairs (overrides n_sft, n_dpo)")
    al.set_defaults(func=cmd_align)

    r = sub.add_parser("reproduce", help="the main job: base model, then the compared pipelines for several seeds "
                                         "-> figures/results.csv, results.md and figures (resumes if interrupted)")
    r.add_argument("--profile", choices=sorted(REPRODUCE_CONFIGS), default="tiny",
                   help="tiny (1.2M, the main job), small (6.6M, same world) or smollm2 (SmolLM2-135M-Instruct)")
    r.add_argument("--config", default=None, help="YAML with ReproduceConfig fields (default: configs/reproduce-tiny.yaml)")
    r.add_argument("--full", action="store_true", help="also run the ablation grid and the chat start "
                   "-> figures/results_full.* (see docs/reproduction.md for wall times)")
    r.add_argument("--sweep", action="store_true", help="also run the sweeps of the config (LSSD weight, mixture "
                   "share, stage-2 steps, learning rate and N) -> figures/sweep.csv, sweep.png")
    r.add_argument("--seeds", type=_nonneg_int, nargs="+", default=None, help="override the config's seeds")
    r.add_argument("--retrain-base", action="store_true", help="pre-train the base model from scratch (~7 min)")
    r.add_argument("--figures", default=None, help="where figures and tables go (default: figures/ for tiny, "
                   "figures/<profile>/ for the others)")
    r.add_argument("--run-dir", default=None, help="where stages are cached (default: the config's run_dir)")
    r.add_argument("--protocol", choices=("validated", "fixed"), nargs="+", default=None,
                   help="stage-2 recipes: 'validated' = chosen per pipeline on validation QA by `mixcpt search` "
                        "(configs/stage2-selected/) -> results.*; 'fixed' = the fixed defaults of the arm configs, "
                        "main arms only, for comparison -> results_fixed.* (default: both for tiny, validated for "
                        "small and smollm2)")
    r.set_defaults(func=cmd_reproduce)

    se = sub.add_parser("search", help="the declared stage-2 search on validation QA -> configs/stage2-selected/, "
                                       "figures/search_stage2.csv (resumes if interrupted)")
    se.add_argument("config", help="YAML with Stage2SearchConfig fields, e.g. configs/search-stage2-tiny.yaml")
    se.set_defaults(func=cmd_search)

    ca = sub.add_parser("calibrate", help="stage 2 applied to the untouched start model: does it leave the model's "
                                          "known facts and format as they were? -> <figures>/calibration.csv")
    ca.add_argument("--profile", choices=["smollm2"], default="smollm2")
    ca.add_argument("--search", help="also every trained setting of this declared search "
                                     "(e.g. configs/smollm2/search-stage2.yaml)")
    ca.add_argument("--arms", nargs="+", default=["traditional", "mixcpt"],
                    help="whose stage 2 (selection and recipe) to apply (default: traditional mixcpt)")
    ca.add_argument("--only", nargs="+", metavar="TEXT", help="only the search settings whose label contains one "
                                                             "of these (e.g. r16: the LoRA settings)")
    ca.add_argument("--redo", action="store_true", help="run again the (arm, recipe) rows that calibration.csv "
                                                        "already has (default: keep them; a cut-off run goes on)")
    ca.add_argument("--refit-budget", action="store_true", help="fit reply_budget.json again although it exists")
    ca.set_defaults(func=cmd_calibrate)

    po = sub.add_parser("pool", help="a real chat model's format-alignment pool: general prompts answered by the "
                                     "start model itself (instructions + preference pairs)")
    po.add_argument("config", help="YAML with PoolConfig fields, e.g. configs/smollm2/pool.yaml")
    po.set_defaults(func=cmd_pool)

    sc = sub.add_parser("scale", help="the scale comparison (tiny -> small -> SmolLM2) from each profile's committed "
                                      "results -> figures/scale.csv, scale.md, scale.png")
    sc.set_defaults(func=cmd_scale)

    rp = sub.add_parser("report", help="render docs/reproduction.md and the README's results block from figures/")
    rp.add_argument("--figures", default=None, help="where the results are (default: figures/)")
    rp.set_defaults(func=cmd_report)

    nbp = sub.add_parser("notebooks", help="run the notebooks top to bottom in order (as Jupyter's Run All) and save "
                                           "them with their outputs and figures")
    nbp.add_argument("names", nargs="*", help="notebooks to run, e.g. 02 or 02_cpt_with_distillation.ipynb "
                                              "(default: all, in order)")
    nbp.add_argument("--fast", action="store_true", help="MIXCPT_FAST=1 (the test suite's small sizes); saves nothing")
    nbp.set_defaults(func=cmd_notebooks)
    return p


def _close_progress_bars() -> None:
    """Finish the progress bars an exception left open (the Trainer's), so that the error starts a line of its own
    and stays the last line (an open bar would be redrawn after it when the process exits)."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def _close_distributed() -> None:
    """Destroy the process group a ``torchrun`` / ``accelerate launch`` run opened (the Trainer opens it, nobody
    closes it). Left open, gloo's worker threads can outlive the interpreter's teardown and abort the process
    (SIGABRT, "terminate called without an active exception") after the work is done and the model is written, so
    the launcher reports a finished run as failed. A no-op in one process, and torch is not imported for it."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """While the command runs, SIGTERM raises KeyboardInterrupt (as Ctrl-C does) instead of ending the process on
    the spot, so that temporary directories are cleaned up and the exit is one line. What a kill cuts short
    (a checkpoint or a result being written) is recognised and redone by the rerun either way: SIGKILL cannot be
    caught, and the kill tests use both."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (e.g. called from a worker thread): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .config import ConfigError
    from .errors import NonFiniteLossError
    from .notebook import NotebookError

    try:
        with _sigterm_as_interrupt():
            args.func(args)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (a scheduler, `kill`): checkpoints on disk stay usable
        _close_progress_bars()
        # on a line of its own: a bar cut short inside a library (transformers' "Writing model shards") may have
        # been left mid-line, closed or not
        print(f"\nmixcpt: interrupted{f' ({e})' if str(e) else ''}; rerun the same command to resume from the last "
              "checkpoint", file=sys.stderr)
        return 130
    except (UsageError, ConfigError, NonFiniteLossError, NotebookError, BenchFailed) as e:
        _close_progress_bars()
        print(f"mixcpt: error: {e}", file=sys.stderr)
        # 2: bad input, nothing done; 1: a run that failed (diverged training, says where to resume; a notebook cell)
        return 2 if isinstance(e, (UsageError, ConfigError)) else 1
    finally:
        _close_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
