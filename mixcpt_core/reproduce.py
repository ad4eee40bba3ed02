"""The main job, on the CPU profile: world -> tokenizer -> base model -> evaluation -> ``figures/``.

Later stages (stage 1, stage 2, the compared pipelines) extend this; for now it reproduces and evaluates the base
model every pipeline starts from.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from .evaluation import format_base_table
from .plots import plot_base_training
from .tokenizer import train_tokenizer
from .training import BasePretrainConfig, evaluate_base, load_base_checkpoint, pretrain_base
from .world import generate_world, write_world


def reproduce_base(cfg: BasePretrainConfig, shipped: Path, figures: Path, run_dir: Path, retrain: bool = False) -> dict:
    """Regenerate the world and tokenizer, take the base model (the shipped checkpoint, checked against ``cfg``'s
    cache key, or retrained with ``retrain``), evaluate it and write figures and tables. Returns the metrics."""
    t0 = time.time()
    world = generate_world(cfg.world)
    write_world(world, run_dir / "world")
    print(f"[1/4] world {cfg.world.fingerprint()}: {len(world.entities)} people, {len(world.documents)} documents, "
          f"{len(world.qa)} QA items -> {run_dir / 'world'}")

    tokenizer = train_tokenizer(world.all_texts(), vocab_size=cfg.vocab_size)
    print(f"[2/4] tokenizer: byte-level BPE, {len(tokenizer)} tokens")

    if retrain:
        base_dir = pretrain_base(dataclasses.replace(cfg, output_dir=str(run_dir / "base")))
    else:
        base_dir = shipped
    model, base_tok, info = load_base_checkpoint(base_dir, cfg)
    if base_tok.get_vocab() != tokenizer.get_vocab():
        raise RuntimeError(f"{base_dir}: its tokenizer differs from the one trained on this world just now")
    print(f"[3/4] base model: {base_dir} ({info['n_parameters']:,} parameters, trained {info['train_seconds']:.0f} s "
          f"on {info['train_tokens']:,} tokens{'' if retrain else ', shipped checkpoint'})")

    metrics = evaluate_base(model, tokenizer, world)
    figures.mkdir(parents=True, exist_ok=True)
    (figures / "base_metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    plot_base_training(info["history"], figures / "base_training.png")
    table = format_base_table(metrics)
    (figures / "base_model.md").write_text(table + "\n", encoding="utf-8")
    print(f"[4/4] evaluation -> {figures}/base_metrics.json, base_model.md, base_training.png\n")
    print(table)
    print(f"\ndone in {time.time() - t0:.0f} s")
    return metrics
