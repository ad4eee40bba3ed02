"""Safety: no code path of mixcpt_core can execute code hidden in a file it reads, and weights are written as
safetensors only.

Loading a pickle (``torch.load`` without ``weights_only=True``, ``pickle``/``dill``/``joblib``) or a model's own
Python code (``trust_remote_code=True``) runs whatever the file's author wrote; safetensors files hold tensors only.
The source checks read the package's syntax tree, so comments and docstrings that mention these names do not count.
"""

import ast
from pathlib import Path

import pytest

from .conftest import ROOT

PACKAGE = ROOT / "mixcpt_core"
PICKLE_MODULES = {"pickle", "dill", "joblib", "cloudpickle"}
# What transformers.Trainer writes into each trainer/checkpoint-N with torch.save: optimizer and scheduler state, RNG
# states and the TrainingArguments. This is the Trainer's own resume format, read back only by the Trainer when
# resuming a run of ours (from our own output directory), so it is the one accepted exception to "safetensors only".
TRAINER_STATE_FILES = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt", "training_args.bin"}
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}


def _is_constant(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _call_name(call: ast.Call) -> str:
    """``torch.load`` for ``torch.load(...)``, ``save_pretrained`` for ``x.y.save_pretrained(...)``."""
    f = call.func
    if isinstance(f, ast.Attribute):
        return f"{f.value.id}.{f.attr}" if isinstance(f.value, ast.Name) else f.attr
    return f.id if isinstance(f, ast.Name) else ""


def unsafe_uses(source: str, filename: str = "<string>") -> list[str]:
    """Every unsafe construct in ``source``, as ``file:line: what``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where}: imports {a.name}" for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
            found.append(f"{where}: imports from {node.module}")
        elif isinstance(node, ast.Call):
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            name = _call_name(node)
            if name.endswith("torch.load") and not _is_constant(kw.get("weights_only"), True):
                found.append(f"{where}: torch.load without weights_only=True")
            if name.endswith("save_pretrained") and "safe_serialization" in kw \
                    and not _is_constant(kw["safe_serialization"], True):
                found.append(f"{where}: save_pretrained with safe_serialization not True")
            if _is_constant(kw.get("trust_remote_code"), True):
                found.append(f"{where}: trust_remote_code=True")
        elif isinstance(node, ast.Dict):  # e.g. from_pretrained(**{"trust_remote_code": True})
            if any(_is_constant(v, True) and isinstance(k, ast.Constant) and k.value == "trust_remote_code"
                   for k, v in zip(node.keys, node.values)):
                found.append(f"{where}: trust_remote_code: True")
    return found


def test_the_checker_finds_each_unsafe_construct():
    bad = """
import pickle
import joblib as jl
from dill import loads
import torch
torch.load("x.pt")
torch.load("x.pt", weights_only=False)
model.save_pretrained("out", safe_serialization=False)
AutoModel.from_pretrained("org/model", trust_remote_code=True)
AutoModel.from_pretrained("org/model", **{"trust_remote_code": True})
"""
    assert [f.split(": ", 1)[1] for f in unsafe_uses(bad)] == [
        "imports pickle", "imports joblib", "imports from dill", "torch.load without weights_only=True",
        "torch.load without weights_only=True", "save_pretrained with safe_serialization not True",
        "trust_remote_code=True", "trust_remote_code: True"]
    good = """
torch.load("x.pt", weights_only=True)
model.save_pretrained("out")
AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code)
"""
    assert unsafe_uses(good) == []


def test_the_package_source_has_no_unsafe_construct():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10  # the package was found
    found = [f for path in files for f in unsafe_uses(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert found == []


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_a_stage1_run_writes_weights_as_safetensors_only(tmp_path, lora):
    import torch
    from datasets import Dataset

    from mixcpt_core.cpt import CPTConfig, LoraSettings, LSSDConfig, run_cpt

    rows = torch.randint(3, 1259, (8, 32), generator=torch.Generator().manual_seed(0))  # ids of the tiny vocabulary
    cfg = CPTConfig(base_model=str(ROOT / "checkpoints/base-tiny"), mix=str(ROOT / "configs/mix-tiny.yaml"),
                    lssd=LSSDConfig(lam=0.5, teacher="adapter_disabled" if lora else "frozen_copy"),
                    lora=LoraSettings(r=4, alpha=8) if lora else None, max_steps=2, save_steps=1, batch_size=4,
                    warmup_steps=0, eval_every=0, probe_texts=0, output_dir=str(tmp_path / "cpt"))
    out = run_cpt(cfg, train_dataset=Dataset.from_dict({"input_ids": rows.tolist()}))

    files = [p.relative_to(out) for p in Path(out).rglob("*") if p.is_file()]
    pickled = [p for p in files if p.suffix in PICKLE_SUFFIXES]
    assert pickled and all(p.parts[0] == "trainer" and p.parts[1].startswith("checkpoint-")
                           and p.name in TRAINER_STATE_FILES for p in pickled), pickled
    assert (out / "model.safetensors").exists()  # the final model (merged for LoRA)
    checkpoints = sorted((out / "trainer").glob("checkpoint-*"))
    assert checkpoints and all(any(c.glob("*.safetensors")) for c in checkpoints)  # model or adapter weights
