"""The benchmarks' own logic (not their numbers): the objective check of `bench peers`, the FLOP count behind MFU,
and `mixcpt bench gpu --dry-run`, the CPU rehearsal of the prepared GPU check (which runs `bench peers` too)."""

import copy
import json

import pytest
import torch

from mixcpt_core import bench_gpu
from mixcpt_core.bench_peers import RTOL_GRAD, RTOL_LOSS, VARIANTS, check_objective
from mixcpt_core.cli import main


def _results(loss=3.8, ce=7.6, grad=0.5):
    r = {v: {"first_step": {"loss": loss, "ce": ce, "grad_norm": grad}} for v in VARIANTS}
    r["ce"]["first_step"] = {"loss": ce, "ce": ce, "grad_norm": 1.0}
    return r


def test_objective_check_catches_a_variant_with_another_objective():
    assert check_objective(_results())["passed"]
    for key, off in [("loss", 10 * RTOL_LOSS), ("ce", 10 * RTOL_LOSS), ("grad_norm", 10 * RTOL_GRAD)]:
        r = _results()
        r["trl_chunked"]["first_step"][key] *= 1 + off  # e.g. a swap, a tau^2 factor, another normaliser
        c = check_objective(r)
        assert not c["passed"] and c[f"max_rel_diff_{key}"] == pytest.approx(off), (key, c)
    r = copy.deepcopy(_results())
    r["ce"]["first_step"]["loss"] *= 1.01  # the CE part must be the plain CE of the baseline
    assert not check_objective(r)["passed"]


def test_model_flops_per_token_by_hand():
    model = bench_gpu._build(bench_gpu.TINY, "cpu")
    # per layer: q, o 32 x 32; k, v 32 x 16 (1 KV head of 16); gate, up, down 32 x 64 -> 9,216; 2 layers; the tied
    # head 512 x 32 once; embeddings and norms are no matmuls
    n = 2 * (2 * 1024 + 2 * 512 + 3 * 2048) + 512 * 32
    assert bench_gpu.model_flops_per_token(model, 64, lora=False) == 6 * n + 12 * 2 * 32 * 64
    assert bench_gpu.model_flops_per_token(model, 64, lora=True) == 4 * n + 12 * 2 * 32 * 64
    assert bench_gpu.peak_tflops("NVIDIA H200") == 989.0 and bench_gpu.peak_tflops("Mystery GPU") is None


def test_bench_gpu_needs_a_gpu_or_dry_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "gpu", "--out", str(tmp_path / "g.json")]) == 2
    assert capsys.readouterr().err.strip() == ("mixcpt: error: bench gpu needs a CUDA GPU; --dry-run runs it at tiny "
                                               "sizes on the CPU")
    assert not list(tmp_path.iterdir())


def test_bench_gpu_dry_run_writes_the_json_and_the_table(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert main(["bench", "gpu", "--dry-run", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert set(r["stage1_throughput"]) == set(bench_gpu.MODELS)
    for rows in r["stage1_throughput"].values():
        assert set(rows) == set(bench_gpu.TEACHERS) and all(x["tokens_per_s"] > 0 for x in rows.values())
    assert rows["cached"]["teacher_stats_s"] is not None
    for part in ("memory_152k", "peers"):
        assert all(s["objective_check"]["passed"] for s in r[part]["results"].values())
    assert set(r["peers"]["results"]["smoke"]) >= set(VARIANTS)
    table = out.with_suffix(".md").read_text()
    assert table.startswith("## cpu (dry run)") and "| qwen2.5-0.5b | cached |" in table and "| trl_chunked |" in table


def test_gpu_folder_render_reads_every_number_from_the_json(tmp_path):
    """The GPU lease's tables: ratios against the CE rows, computed by hand here."""
    from mixcpt_core.bench_gpu import render_gpu_folder

    run = dict(tokens_per_s=1000.0, mfu=0.1, peak_mem_mb=10.0, head_matmul="autocast")
    (tmp_path / "mixed_precision_x.json").write_text(json.dumps({"device": "GPU X", "torch": "2.x", "runs": [
        dict(run, model="m", teacher="ce", step_s=0.2), dict(run, model="m", teacher="cached", step_s=0.5)]}))
    (tmp_path / "diagnosis_x.json").write_text(json.dumps({"device": "GPU X", "trainer": {"m": {
        "hf_ce_chunk0": {"step_s": 0.1, "peak_mb": 5.0}, "lssd_lam0_chunk0": {"step_s": 0.25, "peak_mb": 4.0}}},
        "sweep": {"vocab_128k": {"ce": {"step_s": 0.02, "step_extra_mb": 400.0},
                                 "64": {"step_s": 0.03, "step_extra_mb": 100.0}}}}))
    md = render_gpu_folder(tmp_path)
    assert "| m | cached | autocast | 0.500 | 2.50 | 1,000 | 10.0% | 10 |" in md  # 0.5 / 0.2
    assert "| m | lssd_lam0_chunk0 | 0.250 | 2.50 | 4 |" in md  # 0.25 / 0.1
    assert "| vocab_128k | 64 | 0.0300 | 1.50 | 100 | 0.25 |" in md  # 0.03 / 0.02, 100 / 400


# -- `mixcpt bench lssd` and `mixcpt bench cache-error` (mixcpt_core/bench.py), `mixcpt bench mix` (bench_mix.py) ---
MICRO = dict(preset="micro", vocab=61, batch=2, seq=16)  # a setting small enough for a test: 32 tokens per step
MICRO_MODEL = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)


def test_bench_lssd_runs_every_variant_and_its_ratios_are_the_quotients_of_its_rows(tmp_path, monkeypatch):
    """`bench_lssd` at a micro setting, its child processes run in this process (the child's own command line
    parsed as its ``__main__`` does): one row per variant with its step time and memory, and every ratio of the
    report (the numbers docs/stage1.md quotes) the quotient of the rows it names."""
    import subprocess as sp
    import types

    from mixcpt_core import bench

    monkeypatch.setitem(bench.SETTINGS, "micro", MICRO)
    monkeypatch.setitem(bench.SIZE_PRESETS, "micro", MICRO_MODEL)
    children = []

    def child(cmd, **kw):  # [python, -m, mixcpt_core.bench, variant, setting, steps, chunk, topk]
        assert cmd[1:3] == ["-m", "mixcpt_core.bench"] and kw.get("check")
        variant, setting, steps, chunk, topk = cmd[3], cmd[4], int(cmd[5]), int(cmd[6]), int(cmd[7])
        children.append((variant, setting, steps, chunk, topk))
        r = bench.run_variant(variant, setting, steps=steps, warmup=0, chunk_size=chunk, topk=topk)
        return types.SimpleNamespace(stdout="child log line\n" + json.dumps(r) + "\n")

    monkeypatch.setattr(sp, "run", child)
    out = tmp_path / "lssd.json"
    report = bench.bench_lssd(str(out), settings=("micro",), steps=1, chunk_size=8, topk=4)
    assert children == [(v, "micro", 1, 8, 4) for v in bench.VARIANTS]
    assert json.loads(out.read_text()) == report
    assert report["config"]["settings"] == {"micro": MICRO} and report["config"]["chunk_size"] == 8
    r = report["results"]["micro"]
    for v in bench.VARIANTS:
        assert r[v]["variant"] == v and r[v]["tokens_per_step"] == 32 and len(r[v]["step_s_all"]) == 1
        assert r[v]["step_s"] > 0 and r[v]["peak_mem_mb"] > 0
    assert r["ratios"]["chunked_over_ce_time"] == r["chunked"]["step_s"] / r["ce"]["step_s"]
    assert r["ratios"]["cached_over_ce_time"] == r["cached"]["step_s"] / r["ce"]["step_s"]
    assert r["ratios"]["chunked_over_naive_peak_mem"] == r["chunked"]["peak_mem_mb"] / r["naive"]["peak_mem_mb"]
    assert r["ratios"]["cached_over_chunked_ce_time"] == r["cached"]["step_s"] / r["chunked_ce"]["step_s"]


def test_bench_child_prints_its_row_as_the_last_line(monkeypatch, capsys):
    """The child's entry point (``python -m mixcpt_core.bench VARIANT SETTING STEPS CHUNK TOPK``), run in this
    process at the committed tiny-vocabulary setting (its batch and vocabulary) with a smaller model, one step."""
    import runpy
    import sys
    import warnings

    from mixcpt_core.models import SIZE_PRESETS

    monkeypatch.setitem(SIZE_PRESETS, "tiny", MICRO_MODEL)  # the re-executed module imports this same dict
    monkeypatch.setattr(sys, "argv", ["bench", "chunked_ce", "tiny_vocab", "1", "512", "64"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module is already imported
        runpy.run_module("mixcpt_core.bench", run_name="__main__")
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (row["variant"], row["setting"], row["tokens_per_step"], len(row["step_s_all"])) == (
        "chunked_ce", "tiny_vocab", 32 * 128, 1)


def test_cached_teacher_error_is_exact_once_k_covers_the_vocabulary():
    """`mixcpt bench cache-error`'s measure (docs/stage1.md's table) on a random student and teacher: the cached
    loss is a lower bound of the exact one that rises with k, and equals it, gradient included, at k = V."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from mixcpt_core.bench import cached_teacher_error

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=37, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, max_position_embeddings=32)
    student, teacher = LlamaForCausalLM(cfg).double().eval(), LlamaForCausalLM(cfg).double().eval()
    ids = torch.randint(0, 37, (3, 12))
    rows = cached_teacher_error(student, teacher, ids, ks=(1, 4, 16, 37, 99))
    assert [r["k"] for r in rows] == [1, 4, 16, 37, 37]  # k is capped at the vocabulary
    assert all(r["positions"] == 3 * 11 and r["lssd_exact"] > 0 for r in rows)
    ratios = [r["ratio"] for r in rows]
    assert all(a <= b + 1e-6 for a, b in zip(ratios, ratios[1:])) and ratios[0] < 0.99
    for r in rows[-2:]:
        assert r["ratio"] == pytest.approx(1.0, abs=1e-5) and r["grad_cosine"] == pytest.approx(1.0, abs=1e-5)
        assert r["lssd_cached"] == pytest.approx(r["lssd_exact"], rel=1e-5)


def test_bench_mix_times_every_phase_of_both_mixes(tmp_path, monkeypatch, capsys):
    """`mixcpt bench mix` with its large world made small: both runs, each phase timed, the token counts and the
    throughputs (docs/data-mix.md quotes them) consistent with each other and with the shipped mix config."""
    from mixcpt_core import bench_mix
    from mixcpt_core.config import load_config
    from mixcpt_core.data import MixConfig
    from mixcpt_core.world import WorldConfig

    from .conftest import ROOT

    monkeypatch.setattr(bench_mix, "LARGE_WORLD", WorldConfig(n_general=20, n_domain=20, docs_per_entity=2,
                                                              n_compare_instructions=10, n_bio_instructions=5,
                                                              n_preference_pairs=10))
    out = tmp_path / "mix.json"
    assert main(["bench", "mix", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    shipped = load_config(MixConfig, ROOT / "configs/mix-tiny.yaml")
    assert set(r["runs"]) == {"tiny_world", "large_world"} and r["block_length"] == shipped.block_length
    printed = capsys.readouterr().out
    for name, run in r["runs"].items():
        s = run["seconds"]
        assert set(s) == {"read_and_flatten", "tokenize", "mix_and_pack", "total"} and min(s.values()) >= 0
        assert s["total"] == pytest.approx(s["read_and_flatten"] + s["tokenize"] + s["mix_and_pack"], abs=2e-3)
        assert run["blocks"] * r["block_length"] >= run["packed_tokens"] > 0
        assert run["tokenize_and_pack_tokens_per_s"] >= run["end_to_end_tokens_per_s"] > 0
        assert set(run["shares"]) == {s.name for s in shipped.sources}
        assert f"{name}: {run['packed_tokens']:,} packed tokens" in printed
    tiny = r["runs"]["tiny_world"]
    assert tiny["packed_tokens"] == pytest.approx(shipped.total_tokens, rel=1e-3)  # the shipped config's budget
    for source in shipped.sources:
        assert tiny["shares"][source.name] == pytest.approx(source.share, abs=0.01)
    assert r["runs"]["large_world"]["packed_tokens"] < tiny["packed_tokens"]  # no repeats of the small world
