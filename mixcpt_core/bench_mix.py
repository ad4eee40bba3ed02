"""Benchmark (not a test): ``mixcpt bench mix --out FILE.json``, the throughput of building D_MIX on this machine.

Two mixes of the three world sources (domain documents 0.6, instructions 0.3, preferences 0.1):

* ``tiny_world``: ``configs/mix-tiny.yaml`` as shipped (the tiny world, ~47k unique tokens, 819k packed tokens);
* ``large_world``: a world with 4,000 + 4,000 people (5 documents each) and many instructions and pairs, mixed
  with ``total_tokens=None`` (no source repeated): ~1.1M packed tokens, all distinct, ~1.3M tokens tokenised.

Each phase is timed separately: reading and flattening (``source_texts``), tokenising (``tokenize_texts``, a
batched ``map``) and mixing + packing (``mix_and_pack``). Throughput is packed tokens per second of tokenising +
packing, and also per second of the whole build. World generation and loading the tokenizer are not counted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from pathlib import Path

from .config import load_config
from .data import MixConfig, load_tokenizer, mix_and_pack, tokenize_texts
from .sources import _world, quiet_datasets, source_texts
from .world import WorldConfig

LARGE_WORLD = WorldConfig(n_general=4000, n_domain=4000, docs_per_entity=5, n_compare_instructions=8000,
                          n_bio_instructions=2000, n_preference_pairs=12000)


def time_build(cfg: MixConfig, tokenizer, root: Path) -> dict:
    """Build ``cfg`` once with each phase timed; returns seconds, token counts and throughput."""
    _world(cfg.world)  # generate (and memoise) the world outside the timed phases
    with quiet_datasets():
        t0 = time.perf_counter()
        texts = {s.name: source_texts(s, cfg, root) for s in cfg.sources}
        t1 = time.perf_counter()
        tokenized = {name: tokenize_texts(ds, tokenizer) for name, ds in texts.items()}
        t2 = time.perf_counter()
        _, composition = mix_and_pack(tokenized, cfg, tokenizer.pad_token_id)
        t3 = time.perf_counter()
    distinct = sum(r["one_pass_tokens"] for r in composition["sources"])
    return {
        "distinct_tokens_tokenized": distinct,
        "packed_tokens": composition["tokens"],
        "blocks": composition["blocks"],
        "padding_fraction": composition["padding_fraction"],
        "shares": {r["name"]: r["share"] for r in composition["sources"]},
        "seconds": {"read_and_flatten": round(t1 - t0, 3), "tokenize": round(t2 - t1, 3),
                    "mix_and_pack": round(t3 - t2, 3), "total": round(t3 - t0, 3)},
        "tokenize_tokens_per_s": round(distinct / (t2 - t1)),
        "tokenize_and_pack_tokens_per_s": round(composition["tokens"] / (t3 - t1)),
        "end_to_end_tokens_per_s": round(composition["tokens"] / (t3 - t0)),
    }


def bench_mix(out: str | Path, root: str | Path = ".") -> dict:
    """Run both mixes and write the results (plus the machine) as JSON to ``out``."""
    root = Path(root)
    base = load_config(MixConfig, root / "configs" / "mix-tiny.yaml")
    tokenizer = load_tokenizer(base.tokenizer, root)
    runs = {"tiny_world": base, "large_world": dataclasses.replace(base, world=LARGE_WORLD, total_tokens=None)}
    result = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "python": platform.python_version()},
              "tokenizer": base.tokenizer, "block_length": base.block_length,
              "runs": {name: time_build(cfg, tokenizer, root) for name, cfg in runs.items()}}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result
