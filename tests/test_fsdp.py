"""Stage 1 with sharded weights: 2 CPU processes (gloo) under accelerate's FSDP2, and under DeepSpeed ZeRO-3, follow
the same loss trajectory as 1 process with the same global batch, and save the same model. Every run goes through
the CLI (``mixcpt cpt CONFIG``); the 2-process runs are launched with ``accelerate launch --config_file`` on the
committed configs/accelerate/fsdp.yaml or deepspeed-zero3.yaml, changed only where a 2-process CPU run needs it
(2 processes, fp32, a port, the tiny model's decoder layer class).

What sharding changes for stage 1, and what this test pins:

* each process holds half of every weight (and of its Adam state), gathered for forward and backward;
* the chunked LSSD loss reads the LM head weight after the model's forward and returns its gradient from its own
  autograd function. FSDP2 (accelerate 1.15) keeps the head's group (final norm, LM head, tied input embedding)
  gathered after the forward, so the loss sees the whole weight and FSDP reduce-scatters its gradient; ZeRO-3 holds
  a weight whole only inside its module's forward, so the loss gathers it (``cpt._gathered_zero3``; without it the
  loss got a weight of shape (0,));
* the frozen-copy teacher is not prepared by accelerate: every process keeps a whole, replicated copy;
* the final save gathers the full weights (a collective every process takes part in), rank 0 writes them; the tied
  embedding is written once, as in a 1-process run.

Why the trajectories must agree: as for DDP (tests/test_distributed.py), each process's loss is divided by the
supervised tokens of the *global* batch and scaled by the number of processes, the gradient reduction averages, and
rank r gets the r-th half of the single process's batch. Sharding adds no arithmetic of its own: the optimizer is
elementwise, and clipping sums the squares of the shards across processes. Tolerance: relative 1e-5 on every logged
loss and gradient norm, as for DDP (probe_kl, which starts at exactly 0, also gets an absolute 1e-8); measured at
most 1.1e-6 (docs/running-anywhere.md), while a real error (a wrong normaliser, a gradient not reduced) is 1e-2 or
more. Saved weights: 1e-4 of max(1, the tensor's largest entry). Measured at most 8.9e-6 (the untied model's input
embedding under ZeRO-3: Adam divides by the root of the squared gradients, so the rounding of entries with tiny
gradients shows); the 4 training steps move every tensor by at least 1.2e-3 on that scale, so a save of stale or
wrong weights cannot pass.

accelerate (1.15) enables FSDP only for accelerator devices: its ``AcceleratorState`` ignores the FSDP plugin when the
distributed type is ``MULTI_CPU``. So for FSDP this file is itself the launched script: it makes that one switch,
then runs the CLI unchanged. Everything downstream (``fully_shard`` through accelerate's ``fsdp2_prepare_model``,
the Trainer's FSDP paths, the loss) is the code a GPU run goes through, on gloo. DeepSpeed runs on the CPU as it is
(its CPU accelerator, gloo), but it is not in requirements.txt: that case is skipped unless ``deepspeed`` imports
(run it with a Python that has it, e.g. ``/tmp/dsvenv/bin/python -m pytest tests/test_fsdp.py``, see the docs).
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = 4


def _enable_fsdp_on_cpu():
    """accelerate: treat a multi-process CPU run with an FSDP plugin as FSDP (it keeps MULTI_CPU otherwise)."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    init = AcceleratorState.__init__

    def __init__(self, *args, fsdp_plugin=None, **kwargs):
        init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            PartialState._shared_state["distributed_type"] = self.distributed_type  # as accelerate does for GPUs

    AcceleratorState.__init__ = __init__


if __name__ == "__main__":  # run by `accelerate launch --config_file FSDP.yaml tests/test_fsdp.py cpt CONFIG`
    sys.path.insert(0, str(ROOT))
    _enable_fsdp_on_cpu()
    from mixcpt_core.cli import main

    sys.exit(main(sys.argv[1:]))

import pytest  # noqa: E402
import yaml  # noqa: E402

ACCELERATE_CONFIGS = {"fsdp": "fsdp.yaml", "deepspeed": "deepspeed-zero3.yaml"}


def _write_cpt_config(tmp_path, batch_size: int, tag: str, base_model: Path):
    mix = yaml.safe_load((ROOT / "configs" / "mix-tiny.yaml").read_text())
    mix.update(total_tokens=STEPS * 8 * 128, output_dir=str(tmp_path / "mix"),
               tokenizer=str(ROOT / "checkpoints" / "base-tiny"))
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(mix))
    cpt = yaml.safe_load((ROOT / "configs" / "cpt-tiny.yaml").read_text())
    cpt.update(base_model=str(base_model), mix=str(tmp_path / "mix.yaml"), max_steps=STEPS, batch_size=batch_size,
               warmup_steps=1, save_steps=1000, eval_every=0, probe_texts=4, output_dir=str(tmp_path / tag))
    path = tmp_path / f"cpt-{tag}.yaml"
    path.write_text(yaml.safe_dump(cpt))
    return path


def _write_accelerate_config(tmp_path, backend: str):
    """The committed accelerate config, for 2 CPU processes: fp32 and the tiny model's decoder layer."""
    acc = yaml.safe_load((ROOT / "configs" / "accelerate" / ACCELERATE_CONFIGS[backend]).read_text())
    if backend == "fsdp":
        acc["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"] = "LlamaDecoderLayer"
    acc.update(num_processes=2, mixed_precision="no", main_process_port=29500 + os.getpid() % 1000 + len(backend))
    path = tmp_path / f"accelerate-{backend}.yaml"
    path.write_text(yaml.safe_dump(acc))
    return path


def _run(cmd, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf-datasets"), "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]


def _history(out_dir):
    info = json.loads((out_dir / "mixcpt_cpt.json").read_text())
    return info, [r for r in info["history"] if "loss" in r]


def _untied_copy(out: Path) -> Path:
    """base-tiny with its LM head untied from the input embedding (a copy of it): a head whose gradient reaches it
    only through the loss (ZeRO-3 failed on it until the loss ran as the head's forward)."""
    import shutil

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(ROOT / "checkpoints" / "base-tiny")
    model.config.tie_word_embeddings = False
    model.lm_head.weight = type(model.lm_head.weight)(model.model.embed_tokens.weight.detach().clone())
    model.save_pretrained(out)
    for f in (ROOT / "checkpoints" / "base-tiny").iterdir():
        if f.name not in ("model.safetensors", "config.json", "generation_config.json"):
            shutil.copy(f, out / f.name)
    return out


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The references: 1 process, 8 rows per step, per base model (made on first use)."""
    runs = {}

    def run(model: str) -> Path:
        if model not in runs:
            tmp_path = tmp_path_factory.mktemp(f"one-{model}")
            base = ROOT / "checkpoints" / "base-tiny" if model == "tied" else _untied_copy(tmp_path / "base")
            _run([sys.executable, "-m", "mixcpt_core.cli", "cpt", str(_write_cpt_config(tmp_path, 8, "one", base))],
                 tmp_path)
            runs[model] = (tmp_path / "one", base)
        return runs[model]

    return run


@pytest.mark.parametrize("backend, model", [("fsdp", "tied"), ("deepspeed", "tied"), ("deepspeed", "untied")])
def test_two_sharded_processes_match_one_process_with_the_same_global_batch(backend, model, one_process, tmp_path):
    if backend == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        pytest.skip("deepspeed is not installed (not in requirements.txt; see docs/running-anywhere.md)")
    one, base = one_process(model)
    two = _write_cpt_config(tmp_path, 4, "two", base)  # 2 processes x 4 rows = the same 8-row global batch
    acc = _write_accelerate_config(tmp_path, backend)
    script = [__file__] if backend == "fsdp" else ["-m", "mixcpt_core.cli"]
    _run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(acc), *script, "cpt", str(two)],
         tmp_path)

    info1, h1 = _history(one)
    info2, h2 = _history(tmp_path / "two")
    assert (info1["world_size"], info2["world_size"]) == (1, 2)
    # it really ran sharded: the Trainer's end-of-run checkpoint is FSDP's, or ZeRO's per-rank partitions
    ckpt = tmp_path / "two" / "trainer" / f"checkpoint-{STEPS}"
    if backend == "fsdp":
        assert (ckpt / "pytorch_model_fsdp.bin").is_file()
    else:
        assert len(list(ckpt.glob("global_step*/zero_pp_rank_*_model_states.pt"))) == 2
    assert len(h1) == len(h2) == STEPS
    for key in ("loss", "ce", "lssd", "grad_norm", "probe_kl"):
        a, b = [r[key] for r in h1], [r[key] for r in h2]
        assert b == pytest.approx(a, rel=1e-5, abs=1e-8 if key == "probe_kl" else 0), (key, a, b)
    assert h1[-1]["loss"] != pytest.approx(h1[0]["loss"], rel=1e-3)  # training moved: the comparison means something
    # the saved model is the full model (gathered from the shards), written once, equal to the 1-process result
    assert sorted(p.name for p in (tmp_path / "two").glob("*.safetensors")) == ["model.safetensors"]
    from safetensors.torch import load_file

    w1, w2 = load_file(one / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert sorted(w2) == sorted(w1)  # a tied embedding once, as from 1 process
    for k in w1:
        assert w2[k].shape == w1[k].shape, k
        assert (w2[k] - w1[k]).abs().max().item() <= 1e-4 * max(w1[k].abs().max().item(), 1.0), k
