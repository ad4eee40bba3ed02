"""One prepared GPU check: ``mixcpt bench gpu --out FILE.json`` (``--dry-run``: tiny sizes on the CPU, for CI).

It writes one JSON and a markdown table (``FILE.md``, headed by the GPU's name) with three parts:

1. **Stage-1 throughput**: tokens/s and MFU of the real stage-1 training step (:class:`mixcpt_core.cpt.LSSDTrainer`,
   chunked LSSD, lambda 0.5, chunk from the memory budget, head products in bf16) with each teacher source:
   ``frozen_copy``, ``adapter_disabled`` (LoRA r 64 on every linear layer) and ``cached`` (top-64; the one-off
   statistics pass is timed apart), next to the baseline ``ce``: transformers' ``Trainer`` with the model's own CE
   loss (plain CPT), so the table gives LSSD's cost as a ratio measured in the same run. Two models built from
   configs with random weights (throughput does not depend on the weights, and nothing is downloaded):
   SmolLM2-135M's shape and Qwen2.5-0.5B's shape (151,936 vocabulary), Trainer ``bf16=True``.
2. **Memory at a 151,936 vocabulary**: ``torch.cuda.max_memory_allocated`` over one step of CE, chunked LSSD and
   full-logits LSSD (:mod:`mixcpt_core.bench_peers`, setting ``vocab_152k``).
3. **The peers** (:mod:`mixcpt_core.bench_peers` at 32k and 128k).

MFU = model FLOPs per token x tokens/s / the GPU's peak dense bf16 FLOP/s (:data:`PEAK_BF16_TFLOPS`, looked up by
the device name, or ``--peak-tflops``). Model FLOPs per token: 6 N + 12 L H T for full training (N: the student's
matmul parameters, LM head included; L layers, H width, T context; Kaplan et al. / PaLM's convention), 4 N + 12 L H T
with LoRA (no weight gradients of the frozen matrices). The teacher's forward is overhead, not model FLOPs: it
lowers MFU, as it should.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

# Dense bf16 peak of common GPUs, TFLOP/s (vendor data sheets, without sparsity); matched against the device name.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0,
                    "RTX 4090": 165.0, "RTX 3090": 71.0, "V100": 125.0, "T4": 65.0}
MODELS = {  # (config class, fields): the shapes of the named checkpoints, random weights
    "smollm2-135m": ("LlamaConfig", dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                                          num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                          tie_word_embeddings=True, max_position_embeddings=2048)),
    "qwen2.5-0.5b": ("Qwen2Config", dict(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                                         tie_word_embeddings=True, max_position_embeddings=2048)),
}
TINY = ("LlamaConfig", dict(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
                            max_position_embeddings=64))
TEACHERS = ("ce", "frozen_copy", "adapter_disabled", "cached")  # ce: the model's own CE loss, the baseline
FULL = dict(batch=4, seq=2048, steps=10, warmup=3)  # 8,192 tokens per step
DRY = dict(batch=2, seq=64, steps=1, warmup=1)


def _build(spec, device):
    import transformers

    cls, fields = spec
    cfg = getattr(transformers, cls)(**fields)
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(cfg).to(device)


def model_flops_per_token(model, seq: int, lora: bool) -> float:
    """6 N + 12 L H T (4 N with LoRA); N counts the matmul weights, the LM head once even when tied."""
    cfg = model.config
    head = model.get_output_embeddings().weight
    n = sum(p.numel() for name, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in name)
    n += head.numel() if cfg.tie_word_embeddings else 0  # tied: the head's matmul reuses the embedding matrix
    return (4 if lora else 6) * n + 12 * cfg.num_hidden_layers * cfg.hidden_size * seq


def peak_tflops(device_name: str) -> float | None:
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device_name), None)


def stage1_throughput(spec, teacher: str, batch: int, seq: int, steps: int, warmup: int, device: str,
                      head_matmul: str = "autocast") -> dict:
    """Median seconds per stage-1 step of :class:`~mixcpt_core.cpt.LSSDTrainer` on random token blocks
    (``teacher="ce"``: transformers' ``Trainer`` with the model's own CE loss, what plain CPT runs)."""
    from datasets import Dataset
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from .cpt import LSSDConfig, LSSDTrainer, add_teacher_stats, frozen_copy, packed_collator

    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    model = _build(spec, device)
    flops = model_flops_per_token(model, seq, lora=teacher == "adapter_disabled")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (batch * (steps + warmup), seq), generator=g)
    data = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})
    teacher_model, stats_s = None, None
    if teacher == "frozen_copy":
        teacher_model = frozen_copy(model)
    elif teacher == "adapter_disabled":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=64, lora_alpha=128, task_type="CAUSAL_LM", target_modules=[
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    elif teacher == "cached":
        t0 = time.perf_counter()
        data = add_teacher_stats(data, model, 64, 1.0)  # as run_cpt does: once, before training
        stats_s = time.perf_counter() - t0

    class Timer(TrainerCallback):
        seconds: list[float] = []

        def on_step_begin(self, *a, **k):
            sync()
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            sync()
            self.seconds.append(time.perf_counter() - self.t0)

    timer = Timer()
    timer.seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=batch, max_steps=steps + warmup,
                                 learning_rate=1e-5, bf16=cuda, use_cpu=not cuda, report_to=[], save_strategy="no",
                                 logging_steps=10**6, remove_unused_columns=False, dataloader_num_workers=0,
                                 disable_tqdm=True)
        if teacher == "ce":
            trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=packed_collator,
                              callbacks=[timer])
        else:
            trainer = LSSDTrainer(model=model, args=args, train_dataset=data, data_collator=packed_collator,
                                  lssd=LSSDConfig(lam=0.5, teacher=teacher, chunk_size=0, head_matmul=head_matmul),
                                  teacher_model=teacher_model, callbacks=[timer])
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    sec = statistics.median(timer.seconds[warmup:])
    tokens_s = batch * seq / sec
    return {"teacher": teacher, "head_matmul": head_matmul, "step_s": sec, "tokens_per_s": tokens_s,
            "model_flops_per_token": flops,
            "achieved_tflops": flops * tokens_s / 1e12, "teacher_stats_s": stats_s,
            "peak_mem_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
            "tokens_per_step": batch * seq}


def bench_gpu(out: str, dry_run: bool = False, peak: float | None = None) -> dict:
    """Run the three parts (see the module docstring); write ``out`` (JSON) and ``out`` with ``.md``."""
    from .atomic import write_text_atomic

    cuda = torch.cuda.is_available()
    if not cuda and not dry_run:
        raise RuntimeError("bench gpu needs a CUDA GPU (use --dry-run for the tiny CPU version)")
    device = "cuda" if cuda else "cpu"
    name = torch.cuda.get_device_name() if cuda else "cpu (dry run)"
    peak = peak or (peak_tflops(name) if cuda else None)
    sizes = DRY if dry_run else FULL
    t_start = time.time()
    report = {"device_name": name, "peak_bf16_tflops": peak, "dry_run": dry_run, "torch": torch.__version__,
              "versions": _versions(), "sizes": sizes, "stage1_throughput": {}, "memory_152k": None, "peers": None,
              "complete": False}

    def write():  # after every part: a run stopped by a time limit still leaves what it measured
        report["wall_s"] = round(time.time() - t_start, 1)
        write_text_atomic(out, json.dumps(report, indent=2) + "\n")
        write_text_atomic(Path(out).with_suffix(".md"), markdown(report) + "\n")

    for model_name, spec in MODELS.items():
        report["stage1_throughput"][model_name] = {}
        for teacher in TEACHERS:
            r = stage1_throughput(TINY if dry_run else spec, teacher, device=device, **sizes)
            r["mfu"] = r["achieved_tflops"] / peak if peak else None
            report["stage1_throughput"][model_name][teacher] = r
            print(f"{model_name:13s} {teacher:16s} {r['tokens_per_s']:10,.0f} tokens/s  "
                  f"MFU {r['mfu'] if r['mfu'] is None else format(r['mfu'], '.1%')}", flush=True)
            if cuda:
                torch.cuda.empty_cache()
            write()
    with tempfile.TemporaryDirectory() as tmp:  # the peers' own report files: their numbers are copied into ours
        tmp = Path(tmp)
        report["memory_152k"] = _peers(tmp / "memory.json", settings=("smoke" if dry_run else "vocab_152k",),
                                       steps=1, warmup=1, variants=("ce", "chunked", "full_kl"))
        write()
        report["peers"] = _peers(tmp / "peers.json", settings=("smoke",) if dry_run else ("vocab_32k", "vocab_128k"),
                                 steps=1 if dry_run else 5, warmup=1)
    report["complete"] = True
    write()
    return report


def _versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("transformers", "trl", "peft", "accelerate", "datasets")}


def _peers(path: Path, **kwargs) -> dict:
    """:func:`bench_peers.bench_peers`, keeping its report when the objective check fails (the report says so)."""
    from . import bench_peers

    try:
        return bench_peers.bench_peers(str(path), **kwargs)
    except bench_peers.ObjectiveMismatch as e:
        print(f"warning: {e}", flush=True)
        return json.loads(path.read_text())


def markdown(report: dict) -> str:
    from .bench_peers import markdown as peers_table

    lines = [f"## {report['device_name']} (peak bf16 {report['peak_bf16_tflops']} TFLOP/s; torch {report['torch']}; "
             f"{report['wall_s']} s{'' if report.get('complete', True) else ', incomplete'})", "",
             "| model | teacher | tokens/s | MFU | step s | teacher stats s | peak MB |", "|---|---|---|---|---|---|---|"]
    for model_name, rows in report["stage1_throughput"].items():
        for t, r in rows.items():
            mfu = "" if r["mfu"] is None else f"{r['mfu']:.1%}"
            stats = "" if r["teacher_stats_s"] is None else f"{r['teacher_stats_s']:.1f}"
            mem = "" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f}"
            lines.append(f"| {model_name} | {t} | {r['tokens_per_s']:,.0f} | {mfu} | {r['step_s']:.3f} | {stats} | "
                         f"{mem} |")
    memory = "Memory at vocabulary 151,936 (one step)" + (" (dry run: the smoke sizes)" if report["dry_run"] else "")
    for title, part in ((memory, report["memory_152k"]), ("Peers", report["peers"])):
        lines += ["", title + ":", "", peers_table(part) if part else "(not reached: the run stopped before it)"]
    return "\n".join(lines)


def render_gpu_folder(folder: str | Path) -> str:
    """``figures/gpu/README.md`` from the JSONs one GPU lease wrote there: the stage-1 step of each teacher source next
    to the CE baseline (``mixed_precision_*.json``), and the diagnosis runs (``diagnosis_*.json``: the LSSD trainer
    at lambda 0 against plain CE, and the loss's chunk-size sweep). Every number is read from those files."""
    folder = Path(folder)
    out = ["# GPU measurements", "", "Rendered by `python -m mixcpt_core.bench_gpu render figures/gpu` from the JSON "
           "files beside this one (each names its date, command and code). Step: median seconds of one stage-1 "
           "training step, 4 x 2,048 tokens, Trainer `bf16=True`, random weights in each model's shape.", ""]
    for path in sorted(folder.glob("mixed_precision_*.json")):
        d = json.loads(path.read_text())
        prov = d.get("provenance", {})
        out += [f"## {path.name}: each teacher source next to CE ({d['device']}, torch {d['torch']}; "
                f"{prov.get('date', '')})", "", f"Code: {prov.get('code', '?')}.", "",
                "| model | teacher | head_matmul | step s | x CE step | tokens/s | MFU | peak MB |",
                "|---|---|---|---|---|---|---|---|"]
        ce = {r["model"]: r["step_s"] for r in d["runs"] if r["teacher"] == "ce"}
        for r in d["runs"]:
            ratio = f"{r['step_s'] / ce[r['model']]:.2f}" if r["model"] in ce else ""
            hm = "" if r["teacher"] == "ce" else r["head_matmul"]
            out.append(f"| {r['model']} | {r['teacher']} | {hm} | {r['step_s']:.3f} | {ratio} | "
                       f"{r['tokens_per_s']:,.0f} | {r['mfu']:.1%} | {r['peak_mem_mb']:,.0f} |")
        out.append("")
    for path in sorted(folder.glob("diagnosis_*.json")):
        d = json.loads(path.read_text())
        prov = d.get("provenance", {})
        out += [f"## {path.name}: where the step's time goes ({d['device']}; {prov.get('date', '')})", "",
                f"Code: {prov.get('code', '?')}. `hf_ce`: transformers' Trainer with the model's own CE; `lssd_lam0`: "
                "LSSDTrainer at lambda 0 (the chunked loss's CE alone, no teacher); `lssd_cached` / `lssd_frozen`: "
                "lambda 0.5; `chunk0`: chunk from the memory budget.", "",
                "| model | step | s/step | x hf_ce | peak MB |", "|---|---|---|---|---|"]
        for model, rows in d["trainer"].items():
            base = rows.get("hf_ce_chunk0", {}).get("step_s")
            for key, r in rows.items():
                if "error" in r:
                    out.append(f"| {model} | {key} | error: {r['error'][:80]} | | |")
                    continue
                ratio = f"{r['step_s'] / base:.2f}" if base else ""
                out.append(f"| {model} | {key} | {r['step_s']:.3f} | {ratio} | {r['peak_mb']:,.0f} |")
        out += ["", "The loss alone (one step of the bench-peers model, hidden 256, 4 layers, 4 x 512 tokens, float32, "
                "online teacher, swap on) at each chunk size:", "",
                "| vocabulary | chunk (positions) | s/step | x CE | step extra MB | x CE's extra |",
                "|---|---|---|---|---|---|"]
        for setting, rows in d["sweep"].items():
            ce = rows["ce"]
            for chunk, r in rows.items():
                out.append(f"| {setting} | {chunk} | {r['step_s']:.4f} | {r['step_s'] / ce['step_s']:.2f} | "
                           f"{r['step_extra_mb']:,.0f} | {r['step_extra_mb'] / ce['step_extra_mb']:.2f} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":  # python -m mixcpt_core.bench_gpu render FOLDER
    import sys

    from .atomic import write_text_atomic

    if sys.argv[1:2] != ["render"] or len(sys.argv) != 3:
        sys.exit("usage: python -m mixcpt_core.bench_gpu render FOLDER")
    write_text_atomic(Path(sys.argv[2]) / "README.md", render_gpu_folder(sys.argv[2]) + "\n")
    print(f"wrote {Path(sys.argv[2]) / 'README.md'}")
