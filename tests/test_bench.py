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
