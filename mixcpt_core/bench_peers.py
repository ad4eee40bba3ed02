"""Benchmark (not a test): ``mixcpt bench peers --out FILE.json``, this project's chunked loss next to its peers.

One training step (forward, loss, backward, AdamW) of a Llama-shaped student (hidden 256, 4 layers, fp32) on
4 x 512 tokens, with a frozen teacher of the same shape (initialised with another seed, so that the KL is not
zero), at vocabularies of 32k and 128k. Every variant but ``ce`` computes the same objective,
``0.5 * CE + 0.5 * KL(teacher || student)`` (token means, tau 1, **no swap**: the peers have none), and the
benchmark checks that it does: the loss and the gradient norm of the first step must agree across them
(:data:`RTOL_LOSS`, :data:`RTOL_GRAD`), and the CE part must equal ``ce``'s loss. The variants:

* ``ce``            CE only through the model's own forward (full [B, T, V] logits): the baseline, lambda = 0;
* ``chunked``       :func:`mixcpt_core.losses.chunked_lssd`, chunk size from the memory budget (the default);
* ``chunked_fixed`` the same with 1,024 positions per chunk (the fixed size used before the budget);
* ``trl_chunked``   TRL's DistillationTrainer loss, ``_chunked_divergence_loss`` (beta 0 = forward KL), plus TRL's
  chunked CE (``ChunkedLogProbFunction``, what TRL's fused LM-head loss uses): no [N, V] logits either;
* ``trl_gkd``       full logits; ``GKDTrainer.generalized_jsd_loss`` (beta 0) plus ``F.cross_entropy``;
* ``full_kl``       full logits; ``F.kl_div`` plus ``F.cross_entropy``: the textbook version, and the reference.

Each variant runs in its own child process. Memory: on a GPU, ``torch.cuda.max_memory_allocated`` during the
measured steps minus the memory allocated before them; on a CPU (no allocator peak counter), the process's peak
resident set minus its resident set before them. "Before" means after the model, the teacher, the batch and the
optimizer state were set up (the state is created by one zero-gradient update with no weight decay, which moves
no weight), so ``step_extra_mb`` is what the step adds over model + optimizer. Time: median of the measured steps.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

LAM = 0.5
MODEL = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
SETTINGS = {
    "vocab_32k": dict(vocab=32768, batch=4, seq=512, model=MODEL),
    "vocab_128k": dict(vocab=131072, batch=4, seq=512, model=MODEL),
    "vocab_152k": dict(vocab=151936, batch=4, seq=512, model=MODEL),  # Qwen2.5's vocabulary (mixcpt bench gpu)
    # --dry-run: the same code at sizes that take seconds on a CPU (what CI runs)
    "smoke": dict(vocab=2048, batch=2, seq=64,
                  model=dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=128)),
}
VARIANTS = ("ce", "chunked", "chunked_fixed", "trl_chunked", "trl_gkd", "full_kl")
REFERENCE = "full_kl"
RTOL_LOSS, RTOL_GRAD = 1e-4, 1e-3  # fp32: the variants sum in different orders (measured: see the docs)


def _models(setting: dict, device: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=setting["vocab"], max_position_embeddings=setting["seq"], tie_word_embeddings=False,
                      **setting["model"])
    torch.manual_seed(0)
    student = LlamaForCausalLM(cfg).to(device).train()
    torch.manual_seed(1)
    teacher = LlamaForCausalLM(cfg).to(device).eval().requires_grad_(False)
    ids = torch.randint(0, setting["vocab"], (setting["batch"], setting["seq"]),
                        generator=torch.Generator().manual_seed(2)).to(device)
    return student, teacher, ids


def _full_logits_loss(variant, student, teacher, ids):
    """``trl_gkd`` / ``full_kl``: both models' full logits. Returns (loss, ce)."""
    s = student(input_ids=ids).logits[:, :-1]
    with torch.no_grad():
        t = teacher(input_ids=ids).logits[:, :-1]
    y = ids[:, 1:]
    ce = F.cross_entropy(s.reshape(-1, s.shape[-1]), y.reshape(-1))
    if variant == "trl_gkd":
        from trl.experimental.gkd.gkd_trainer import GKDTrainer

        kl = GKDTrainer.generalized_jsd_loss(s, t, labels=y, beta=0.0)
    else:
        kl = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="sum") / y.numel()
    return (1 - LAM) * ce + LAM * kl, ce


def _hidden_loss(variant, student, teacher, ids):
    """``ce`` and the variants that work from final hidden states and the LM heads. Returns (loss, ce)."""
    from .losses import OnlineTeacher, chunked_lssd, supervised_rows

    if variant == "ce":
        loss = student(input_ids=ids, labels=ids).loss
        return loss, loss
    h, y, rows = supervised_rows(student.model(input_ids=ids).last_hidden_state, ids)
    with torch.inference_mode():
        th = teacher.model(input_ids=ids).last_hidden_state
    t = th[:, :-1].reshape(-1, th.shape[-1])[rows]
    if variant in ("chunked", "chunked_fixed"):
        out = chunked_lssd(h, student.lm_head, y, OnlineTeacher(t, teacher.lm_head), lam=LAM, swap=False,
                           chunk_size=1024 if variant == "chunked_fixed" else None)
        return out.loss, out.ce
    from trl.kernels.chunked_logprob import ChunkedLogProbFunction
    from trl.trainer.distillation_trainer import _chunked_divergence_loss
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

    t = t.clone()  # an inference tensor cannot be saved for TRL's backward
    kl = _chunked_divergence_loss(h[None], t[None], student.lm_head.weight, teacher.lm_head.weight,
                                  torch.ones(1, len(y), device=h.device), beta=0.0)[0]
    logprobs = ChunkedLogProbFunction.apply(h, student.lm_head.weight, None, y, 1.0, _CHUNKED_LOGPROB_CHUNK_SIZE,
                                            None, 1.0, ())[0]
    ce = -logprobs.mean()
    return (1 - LAM) * ce + LAM * kl, ce


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def run_variant(variant: str, setting_name: str, steps: int = 5, warmup: int = 1, device: str | None = None) -> dict:
    """One variant in this process (see the module docstring): seconds per step, extra memory, first-step values."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    setting = SETTINGS[setting_name]
    student, teacher, ids = _models(setting, device)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4, weight_decay=0.0)
    for p in student.parameters():  # create the optimizer state now: a zero gradient moves no weight (no decay)
        p.grad = torch.zeros_like(p)
    opt.step()
    opt.zero_grad(set_to_none=True)
    loss_fn = _full_logits_loss if variant in ("trl_gkd", "full_kl") else _hidden_loss
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = _rss_mb()
    times, first = [], None
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, ce = loss_fn(variant, student, teacher, ids)
        loss.backward()
        if first is None:  # before the update: every variant sees the same weights here
            norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in student.parameters() if p.grad is not None))
            first = {"loss": loss.item(), "ce": ce.item(), "grad_norm": norm.item()}
        opt.step()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"variant": variant, "setting": setting_name, "device": device,
            "device_name": torch.cuda.get_device_name() if cuda else "cpu",
            "step_s": statistics.median(times) if times else None, "step_s_all": times,
            "peak_mb": round(peak, 1), "step_extra_mb": round(peak - base, 1), "first_step": first,
            "tokens_per_step": setting["batch"] * setting["seq"], "threads": torch.get_num_threads(),
            "n_parameters": sum(p.numel() for p in student.parameters())}


def check_objective(results: dict) -> dict:
    """The objective check across the variants of one setting: the largest relative differences to
    :data:`REFERENCE` of the first step's loss and gradient norm, and of the CE part to ``ce``'s loss."""
    ref = results[REFERENCE]["first_step"]
    same = [v for v in results if v != "ce"]

    def rel(a, b):
        return abs(a - b) / max(abs(b), 1e-30)

    loss = max(rel(results[v]["first_step"]["loss"], ref["loss"]) for v in same)
    grad = max(rel(results[v]["first_step"]["grad_norm"], ref["grad_norm"]) for v in same)
    ce = max(rel(results[v]["first_step"]["ce"], results["ce"]["first_step"]["loss"]) for v in same) \
        if "ce" in results else 0.0
    return {"max_rel_diff_loss": loss, "max_rel_diff_grad_norm": grad, "max_rel_diff_ce": ce,
            "passed": loss <= RTOL_LOSS and ce <= RTOL_LOSS and grad <= RTOL_GRAD}


def ratios(r: dict) -> dict:
    """The targets: chunked extra memory <= 0.5 x CE's, chunked (budget) time <= 1.05 x chunked (1,024 positions)."""
    out = {}
    if "chunked" in r and "ce" in r:
        out["chunked_over_ce_step_extra_mem"] = r["chunked"]["step_extra_mb"] / max(r["ce"]["step_extra_mb"], 1e-9)
        out["chunked_over_ce_time"] = r["chunked"]["step_s"] / r["ce"]["step_s"]
    if "chunked" in r and "chunked_fixed" in r:
        out["chunked_over_chunked_fixed_time"] = r["chunked"]["step_s"] / r["chunked_fixed"]["step_s"]
    return out


def markdown(report: dict) -> str:
    """The results as a markdown table: seconds per step and extra memory of each variant, per setting."""
    settings = list(report["results"])
    head = "| variant | " + " | ".join(f"{s}: s/step | {s}: step extra MB" for s in settings) + " |"
    rows = [head, "|---|" + "---|---|" * len(settings)]
    for v in report["config"]["variants"]:
        cells = []
        for s in settings:
            x = report["results"][s].get(v)
            cells += [f"{x['step_s']:.3f}", f"{x['step_extra_mb']:.0f}"] if x else ["", ""]
        rows.append(f"| {v} | " + " | ".join(cells) + " |")
    for s in settings:
        c = report["results"][s]["objective_check"]
        rows.append(f"\n{s}: objective check {'passed' if c['passed'] else 'FAILED'} (largest relative difference: "
                    f"loss {c['max_rel_diff_loss']:.1e}, gradient norm {c['max_rel_diff_grad_norm']:.1e}, "
                    f"CE {c['max_rel_diff_ce']:.1e}); " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                                       report["results"][s]["ratios"].items()))
    return "\n".join(rows)


class ObjectiveMismatch(RuntimeError):
    """The variants did not compute the same objective (the report is written all the same)."""


def bench_peers(out: str, settings=("vocab_32k", "vocab_128k"), steps: int = 5, warmup: int = 1,
                variants=VARIANTS, device: str | None = None) -> dict:
    """Run every variant of every setting in its own child process; write the JSON report to ``out`` (and the
    markdown table next to it, ``.md``); raise :class:`ObjectiveMismatch` if the objective check failed."""
    from pathlib import Path

    from .atomic import write_text_atomic

    results = {}
    for setting in settings:
        results[setting] = {}
        for variant in variants:
            cmd = [sys.executable, "-m", "mixcpt_core.bench_peers", variant, setting, str(steps), str(warmup)]
            if device:
                cmd.append(device)
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"bench peers: {variant} at {setting} failed:\n{r.stderr[-3000:]}")
            v = results[setting][variant] = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"{setting:10s} {variant:13s} {v['step_s']:.3f} s/step  step +{v['step_extra_mb']:.0f} MB  "
                  f"first loss {v['first_step']['loss']:.6f}", flush=True)
        results[setting]["objective_check"] = check_objective(
            {k: v for k, v in results[setting].items() if k in variants})
        results[setting]["ratios"] = ratios(results[setting])
    some = next(iter(next(iter(results.values())).values()))
    report = {"config": {"settings": {k: SETTINGS[k] for k in settings}, "variants": list(variants), "steps": steps,
                         "warmup": warmup, "lambda": LAM, "tau": 1.0, "swap": False, "torch": torch.__version__,
                         "device": some["device"], "device_name": some["device_name"], "threads": some["threads"]},
              "results": results}
    write_text_atomic(out, json.dumps(report, indent=2) + "\n")
    write_text_atomic(Path(out).with_suffix(".md"), markdown(report) + "\n")
    failed = [s for s in settings if not results[s]["objective_check"]["passed"]]
    if failed:
        raise ObjectiveMismatch(f"the variants disagree on the objective at {failed}: see {out}")
    return report


if __name__ == "__main__":  # child process: one variant
    a = sys.argv[1:]
    print(json.dumps(run_variant(a[0], a[1], steps=int(a[2]), warmup=int(a[3]), device=a[4] if len(a) > 4 else None)))
