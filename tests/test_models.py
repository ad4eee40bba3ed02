import pytest
import torch

from mixcpt_core.models import SIZE_PRESETS, build_model, count_parameters, load_causal_lm


def test_presets_have_the_advertised_sizes(tiny_tokenizer):
    tiny = build_model("tiny", tiny_tokenizer)
    small = build_model("small", tiny_tokenizer)
    assert 0.9e6 <= count_parameters(tiny) <= 1.5e6
    assert 5e6 <= count_parameters(small) <= 8e6
    c = tiny.config
    assert (c.hidden_size, c.num_hidden_layers, c.intermediate_size) == (128, 4, 512)
    assert c.vocab_size == len(tiny_tokenizer) and c.tie_word_embeddings
    assert tiny.get_input_embeddings().weight.data_ptr() == tiny.get_output_embeddings().weight.data_ptr()
    # hand count for tiny: per layer q,k,v,o (4 h^2) + gate/up/down (3 h m) + 2 norms; + embeddings + final norm
    h, m, v, n = 128, 512, len(tiny_tokenizer), 4
    assert count_parameters(tiny) == n * (4 * h * h + 3 * h * m + 2 * h) + v * h + h


def test_unknown_preset(tiny_tokenizer):
    with pytest.raises(ValueError, match="unknown model preset 'huge'"):
        build_model("huge", tiny_tokenizer)
    assert set(SIZE_PRESETS) == {"tiny", "small"}


def test_same_seed_same_weights(tiny_tokenizer):
    a, b = build_model("tiny", tiny_tokenizer, seed=1), build_model("tiny", tiny_tokenizer, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_loader_round_trip_on_a_local_checkpoint(tmp_path, tiny_model, tiny_tokenizer):
    tiny_model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    model, tok = load_causal_lm(tmp_path)
    ids = tok("Ada Lorvik works for", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, tiny_model(ids).logits, rtol=0, atol=0)
    assert type(model).__name__ == "LlamaForCausalLM"


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        load_causal_lm(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors weights"):
        load_causal_lm(tmp_path)


def test_hub_ids_fail_fast_offline():
    # The hub path exists in code (users online need it); offline it must fail at once, not hang.
    import time

    t = time.time()
    with pytest.raises(OSError):
        load_causal_lm("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert time.time() - t < 10
