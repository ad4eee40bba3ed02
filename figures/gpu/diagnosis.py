"""GPU diagnosis (run once on an H200): the stage-1 step of plain CE (transformers Trainer) vs LSSDTrainer at lambda 0
and 0.5, and a chunk-size sweep of the loss at 128k/152k vocabularies. Needs a CUDA GPU; writes $OUT/diagnosis_h200.json."""
import json, os, statistics, sys, tempfile, time
import torch
from mixcpt_core import bench_gpu as B, bench_peers as P
from mixcpt_core.cpt import LSSDConfig, LSSDTrainer, add_teacher_stats, frozen_copy, packed_collator
from mixcpt_core.losses import OnlineTeacher, chunked_lssd, supervised_rows
out = os.environ.get("OUT", "/tmp") + "/diagnosis_h200.json"
res = {"device": torch.cuda.get_device_name(), "trainer": {}, "sweep": {}}
def save(): open(out, "w").write(json.dumps(res, indent=1))

def step_time(spec, mode, chunk, batch=4, seq=2048, steps=10, warmup=3):
    from datasets import Dataset
    from transformers import Trainer, TrainerCallback, TrainingArguments
    model = B._build(spec, "cuda")
    ids = torch.randint(0, model.config.vocab_size, (batch * (steps + warmup), seq), generator=torch.Generator().manual_seed(0))
    data = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})
    class T(TrainerCallback):
        def on_step_begin(self, *a, **k): torch.cuda.synchronize(); self.t0 = time.perf_counter()
        def on_step_end(self, *a, **k): torch.cuda.synchronize(); self.s.append(time.perf_counter() - self.t0)
    t = T(); t.s = []
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=batch, max_steps=steps + warmup, learning_rate=1e-5,
                                 bf16=True, report_to=[], save_strategy="no", logging_steps=10**6, remove_unused_columns=False,
                                 dataloader_num_workers=0, disable_tqdm=True)
        if mode == "hf_ce":
            tr = Trainer(model=model, args=args, train_dataset=data, data_collator=packed_collator, callbacks=[t])
        else:
            teacher = mode.split("_")[-1]
            tm = None
            if teacher == "frozen":
                tm = frozen_copy(model)
            elif teacher == "cached":
                data = add_teacher_stats(data, model, 64, 1.0)
            lam = 0.0 if mode == "lssd_lam0" else 0.5
            tr = LSSDTrainer(model=model, args=args, train_dataset=data, data_collator=packed_collator, callbacks=[t],
                             lssd=LSSDConfig(lam=lam, teacher={"frozen": "frozen_copy"}.get(teacher, "cached"), chunk_size=chunk), teacher_model=tm)
        torch.cuda.reset_peak_memory_stats()
        tr.train()
    return {"step_s": statistics.median(t.s[warmup:]), "peak_mb": torch.cuda.max_memory_allocated() / 2**20}

for name, spec in B.MODELS.items():
    res["trainer"][name] = {}
    for mode, chunk in [("hf_ce", 0), ("lssd_lam0", 0), ("lssd_cached", 0), ("lssd_frozen", 0), ("lssd_frozen", 4096), ("lssd_cached", 4096)]:
        key = f"{mode}_chunk{chunk}"
        try:
            r = step_time(spec, mode, chunk)
        except Exception as e:
            r = {"error": repr(e)[:300]}
        res["trainer"][name][key] = r; print(name, key, r, flush=True); save(); torch.cuda.empty_cache()

for setting in ("vocab_128k", "vocab_152k"):
    s = P.SETTINGS[setting]; res["sweep"][setting] = {}
    for chunk in ["ce", 64, 128, 256, 512, 1024, 2048, 4096]:
        student, teacher, ids = P._models(s, "cuda")
        opt = torch.optim.AdamW(student.parameters(), lr=1e-4, weight_decay=0.0)
        for p in student.parameters(): p.grad = torch.zeros_like(p)
        opt.step(); opt.zero_grad(set_to_none=True); torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated() / 2**20
        ts = []
        for i in range(13):
            t0 = time.perf_counter(); opt.zero_grad(set_to_none=True)
            if chunk == "ce":
                loss = student(input_ids=ids, labels=ids).loss
            else:
                h, y, rows = supervised_rows(student.model(input_ids=ids).last_hidden_state, ids)
                with torch.inference_mode():
                    th = teacher.model(input_ids=ids).last_hidden_state
                tt = th[:, :-1].reshape(-1, th.shape[-1])[rows]
                loss = chunked_lssd(h, student.lm_head, y, OnlineTeacher(tt, teacher.lm_head), lam=0.5, swap=True, chunk_size=chunk).loss
            loss.backward(); opt.step(); torch.cuda.synchronize()
            if i >= 3: ts.append(time.perf_counter() - t0)
        r = {"step_s": statistics.median(ts), "step_extra_mb": torch.cuda.max_memory_allocated() / 2**20 - base}
        res["sweep"][setting][str(chunk)] = r; print(setting, chunk, r, flush=True); save()
        del student, teacher, opt; torch.cuda.empty_cache()
print("done")
