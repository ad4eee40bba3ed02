"""Benchmarks (not tests): ``mixcpt bench lssd --out FILE.json``.

Step time and peak memory of one training step (forward, loss, backward, AdamW) for four ways to compute the
stage-1 loss, side by side on the same model and batch:

(a) ``ce``        plain next-token CE through the model's own forward (full [B, T, V] logits): the baseline;
(b) ``naive``     LSSD on full student and teacher logits (what a first implementation does);
(c) ``chunked``   :func:`mixcpt_core.losses.chunked_lssd` with an online frozen teacher (this project's default);
(d) ``cached``    the same from cached top-k teacher statistics (no teacher forward during training);
(e) ``chunked_ce`` the chunked loss with lambda = 0 and no teacher: CE through the same code path, so that
                  (c) / (e) isolates what the teacher and the KL cost, apart from how the head is computed.

CPU PyTorch has no allocator peak counter, so each variant runs in its own child process and its peak memory is
that process's peak resident set size (``ru_maxrss``); ``step_mem_mb`` is that peak minus the resident size after
the model, teacher and batch were set up (what the step itself adds, optimizer state included).
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
from transformers import LlamaConfig, LlamaForCausalLM

from .cpt import frozen_copy
from .losses import CachedTeacher, OnlineTeacher, chunked_lssd, supervised_rows, swap_top1_with_label, teacher_topk_stats
from .models import SIZE_PRESETS

VARIANTS = ("ce", "naive", "chunked", "cached", "chunked_ce")
SETTINGS = {  # tokens per step = batch * seq = 4,096 in both
    "tiny_vocab": dict(preset="tiny", vocab=1259, batch=32, seq=128),
    "vocab_32k": dict(preset="tiny", vocab=32768, batch=8, seq=512),
}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _naive_lssd(student_logits, teacher_logits, labels, lam, tau):
    """Full-logits LSSD: every [B, T, V] tensor materialised (student, teacher, swapped, both softmaxes)."""
    s, z, y = student_logits[:, :-1].float(), teacher_logits[:, :-1].float(), labels[:, 1:]
    s, z, y = s.reshape(-1, s.shape[-1]), z.reshape(-1, z.shape[-1]), y.reshape(-1)
    keep = y != -100
    s, z, y = s[keep], z[keep], y[keep]
    log_q = F.log_softmax(swap_top1_with_label(z, y) / tau, -1)
    kl = F.kl_div(F.log_softmax(s / tau, -1), log_q, log_target=True, reduction="batchmean")
    return (1 - lam) * F.cross_entropy(s, y) + lam * kl


def run_variant(variant: str, setting: str, steps: int = 6, warmup: int = 2, chunk_size: int = 512,
                topk: int = 64, lam: float = 0.5, tau: float = 1.0, seed: int = 0) -> dict:
    """One variant in this process: median seconds per step and memory (see the module docstring)."""
    s = SETTINGS[setting]
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=s["vocab"], max_position_embeddings=s["seq"], tie_word_embeddings=True,
                      **SIZE_PRESETS[s["preset"]])
    model = LlamaForCausalLM(cfg).train()
    teacher = frozen_copy(model) if variant in ("naive", "chunked", "cached") else None
    ids = torch.randint(0, s["vocab"], (s["batch"], s["seq"]))
    labels = ids.clone()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    head = model.get_output_embeddings()
    stats = None
    if variant == "cached":  # computed once, outside the timed steps, as a training cache would be
        with torch.no_grad():
            th = teacher.model(input_ids=ids).last_hidden_state
            _, y, rows = supervised_rows(th, labels)
            t_rows = th[:, :-1].reshape(-1, th.shape[-1])[rows]
            stats = {k: torch.cat([teacher_topk_stats(teacher.lm_head(t_rows[i:i + 512]), y[i:i + 512], topk, tau)[k]
                                   for i in range(0, len(y), 512)]) for k in ("topk_logits", "topk_ids", "label_logit", "lse")}
        del teacher
        teacher = None
    base_rss = _rss_mb()

    def step():
        opt.zero_grad(set_to_none=True)
        if variant == "ce":
            loss = model(input_ids=ids, labels=labels).loss
        elif variant == "naive":
            with torch.inference_mode():
                t_logits = teacher(input_ids=ids).logits
            loss = _naive_lssd(model(input_ids=ids).logits, t_logits, labels, lam, tau)
        else:
            hidden = model.model(input_ids=ids).last_hidden_state
            h, y, rows = supervised_rows(hidden, labels)
            if variant == "chunked_ce":
                target = None
            elif variant == "chunked":
                with torch.inference_mode():
                    th = teacher.model(input_ids=ids).last_hidden_state
                target = OnlineTeacher(th[:, :-1].reshape(-1, th.shape[-1])[rows], teacher.lm_head)
            else:
                target = CachedTeacher(stats, tau)
            loss = chunked_lssd(h, head, y, target, lam=lam if target is not None else 0.0, tau=tau,
                                chunk_size=chunk_size).loss
        loss.backward()
        opt.step()
        return float(loss)

    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"variant": variant, "setting": setting, "step_s": statistics.median(times), "step_s_all": times,
            "peak_mem_mb": round(peak, 1), "step_mem_mb": round(peak - base_rss, 1),
            "tokens_per_step": s["batch"] * s["seq"], "n_parameters": sum(p.numel() for p in model.parameters())}


def bench_lssd(out: str, settings=tuple(SETTINGS), steps: int = 6, chunk_size: int = 512, topk: int = 64) -> dict:
    """Run every variant of every setting in its own child process; write and return the JSON report."""
    results = {}
    for setting in settings:
        results[setting] = {}
        for variant in VARIANTS:
            cmd = [sys.executable, "-m", "mixcpt_core.bench", variant, setting, str(steps), str(chunk_size), str(topk)]
            r = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[setting][variant] = json.loads(r.stdout.strip().splitlines()[-1])
            v = results[setting][variant]
            print(f"{setting:10s} {variant:8s} {v['step_s']:.3f} s/step  peak {v['peak_mem_mb']:.0f} MB  "
                  f"step +{v['step_mem_mb']:.0f} MB", flush=True)
        r = results[setting]
        r["ratios"] = {
            "chunked_over_ce_time": r["chunked"]["step_s"] / r["ce"]["step_s"],
            "cached_over_ce_time": r["cached"]["step_s"] / r["ce"]["step_s"],
            "chunked_over_ce_peak_mem": r["chunked"]["peak_mem_mb"] / r["ce"]["peak_mem_mb"],
            "chunked_over_naive_peak_mem": r["chunked"]["peak_mem_mb"] / r["naive"]["peak_mem_mb"],
            "chunked_over_chunked_ce_time": r["chunked"]["step_s"] / r["chunked_ce"]["step_s"],
            "cached_over_chunked_ce_time": r["cached"]["step_s"] / r["chunked_ce"]["step_s"],
            "chunked_over_ce_step_mem": r["chunked"]["step_mem_mb"] / max(r["ce"]["step_mem_mb"], 1e-9),
            "chunked_over_naive_step_mem": r["chunked"]["step_mem_mb"] / max(r["naive"]["step_mem_mb"], 1e-9),
        }
    report = {"config": {"settings": {k: SETTINGS[k] for k in settings}, "steps": steps, "warmup": 2,
                         "chunk_size": chunk_size, "topk": topk, "lambda": 0.5, "tau": 1.0,
                         "torch": torch.__version__, "threads": torch.get_num_threads()},
              "results": results}
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":  # child process: one variant
    variant, setting, steps, chunk, topk = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    print(json.dumps(run_variant(variant, setting, steps=steps, chunk_size=chunk, topk=topk)))


def cached_teacher_error(student, teacher, input_ids: torch.Tensor, ks=(1, 4, 16, 64, 256), tau: float = 1.0,
                         lam: float = 1.0) -> list[dict]:
    """How far the cached (top-k) objective is from the exact one, on one batch ``input_ids`` [B, T].

    For each k: L_LSSD (cached) / L_LSSD (exact), and the cosine similarity between the two gradients with respect
    to the student's hidden states (the direction training actually moves in). Exact = online frozen teacher.
    """
    from .cpt import final_hidden

    labels = input_ids.clone()
    with torch.no_grad():
        th = final_hidden(teacher, input_ids)
        hidden = final_hidden(student, input_ids)
    h, y, rows = supervised_rows(hidden, labels)
    t_rows = th[:, :-1].reshape(-1, th.shape[-1])[rows]
    head = student.get_output_embeddings()

    def run(target):
        x = h.detach().clone().requires_grad_(True)
        out = chunked_lssd(x, head, y, target, lam=lam, tau=tau)
        (g,) = torch.autograd.grad(out.loss, x)
        return out.lssd.item(), g.flatten()

    exact, g_exact = run(OnlineTeacher(t_rows, teacher.get_output_embeddings()))
    with torch.no_grad():
        z = teacher.get_output_embeddings()(t_rows)
    rows_out = []
    for k in ks:
        k = min(k, z.shape[-1])
        value, g = run(CachedTeacher(teacher_topk_stats(z, y, k, tau), tau))
        rows_out.append({"k": k, "lssd_exact": exact, "lssd_cached": value, "ratio": value / exact,
                         "grad_cosine": F.cosine_similarity(g, g_exact, dim=0).item(), "positions": len(y)})
    return rows_out
