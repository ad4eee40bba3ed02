"""GPU check (run once on an H200): stage-1 step per teacher source next to the CE baseline, head products under
head_matmul autocast vs float32. Needs a CUDA GPU; writes $OUT/mixed_precision_h200.json."""
import json, os, sys, time, torch
from mixcpt_core import bench_gpu as B
out = os.environ["OUT"] + "/mixed_precision_h200.json"
res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "runs": []}
order = [("qwen2.5-0.5b", "ce", "autocast"), ("qwen2.5-0.5b", "frozen_copy", "autocast"), ("qwen2.5-0.5b", "cached", "autocast"),
         ("smollm2-135m", "ce", "autocast"), ("smollm2-135m", "frozen_copy", "autocast"), ("smollm2-135m", "cached", "autocast"),
         ("qwen2.5-0.5b", "frozen_copy", "float32"), ("qwen2.5-0.5b", "adapter_disabled", "autocast"),
         ("smollm2-135m", "adapter_disabled", "autocast"), ("smollm2-135m", "frozen_copy", "float32")]
for m, t, hm in order:
    t0 = time.time()
    r = B.stage1_throughput(B.MODELS[m], t, device="cuda", head_matmul=hm, **B.FULL)
    r.update(model=m, mfu=r["achieved_tflops"] / 989.0, wall_s=round(time.time() - t0, 1))
    res["runs"].append(r); open(out, "w").write(json.dumps(res, indent=1))
    print(f"{m} {t} {hm}: {r['step_s']:.3f} s/step {r['tokens_per_s']:,.0f} tok/s MFU {r['mfu']:.1%} peak {r['peak_mem_mb']:.0f} MB ({r['wall_s']} s)", flush=True)
    torch.cuda.empty_cache()
