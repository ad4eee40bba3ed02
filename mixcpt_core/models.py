"""Model factory (Llama architecture from size presets) and the one loader every model goes through.

The tiny profile builds a ``LlamaForCausalLM`` from a config; real models (SmolLM2, Qwen, Llama) come from a local
path or a hub id through :func:`load_causal_lm`, which is also how the tiny checkpoints are loaded back, so the
notebooks and the CLI exercise the same path a real model takes.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

# hidden / layers / heads / MLP width. Parameter counts at the world's ~1.3k vocabulary (tied embeddings):
# tiny ≈ 1.2M, small ≈ 6.6M.
SIZE_PRESETS: dict[str, dict] = {
    "tiny": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512),
    "small": dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=4, intermediate_size=1024),
}


def build_model(preset: str, tokenizer, max_position_embeddings: int = 256, seed: int = 0) -> LlamaForCausalLM:
    """A randomly initialised Llama-architecture causal LM of size ``preset`` for ``tokenizer``'s vocabulary."""
    if preset not in SIZE_PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(SIZE_PRESETS)}")
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        rope_theta=10000.0,
        attn_implementation="sdpa",
        **SIZE_PRESETS[preset],
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def load_causal_lm(name_or_path: str | os.PathLike, dtype: torch.dtype = torch.float32,
                   trust_remote_code: bool = False, **kwargs):
    """Load a causal LM and its tokenizer from a local directory or a hub id.

    ``trust_remote_code`` stays off unless the caller sets it; weights are read from safetensors. A local path that
    does not exist is reported as such instead of being sent to the hub as an id.
    """
    path = Path(name_or_path)
    looks_local = path.is_absolute() or str(name_or_path).startswith((".", "~")) or path.exists()
    if looks_local and not path.exists():
        raise FileNotFoundError(f"{path}: model directory not found")
    if path.is_dir() and not any(path.glob("*.safetensors")) and "gguf_file" not in kwargs:
        raise FileNotFoundError(f"{path}: no *.safetensors weights in this model directory")
    tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(
        str(name_or_path), dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=True, **kwargs
    )
    return model, tokenizer
