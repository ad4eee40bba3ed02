import pytest
from transformers import AutoTokenizer

from mixcpt_core.tokenizer import BOS, END_OF_TURN, EOS, PAD, ROLE_TOKENS, end_of_turn_id, train_tokenizer
from mixcpt_core.world import ATTRIBUTES

MESSAGES = [{"role": "user", "content": "What did Ada Lorvik study?"}, {"role": "assistant", "content": "botany"}]
RENDERED = "<|bos|><|user|>\nWhat did Ada Lorvik study?<|end|>\n<|assistant|>\nbotany<|end|>\n"


def test_round_trip_on_world_text_and_unseen_characters(tiny_world, tiny_tokenizer):
    texts = tiny_world.all_texts()[::50] + ["Zoë paid 12€ — naïve café!\n\ttabs"]
    for t in texts:
        ids = tiny_tokenizer(t, add_special_tokens=False).input_ids
        assert tiny_tokenizer.decode(ids) == t


def test_special_tokens(tiny_tokenizer):
    for t in (BOS, EOS, PAD, END_OF_TURN, *ROLE_TOKENS.values()):
        ids = tiny_tokenizer(t, add_special_tokens=False).input_ids
        assert len(ids) == 1 and tiny_tokenizer.convert_ids_to_tokens(ids[0]) == t
    assert len({tiny_tokenizer.bos_token_id, tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id}) == 3
    ids = tiny_tokenizer("Ada works for Nimbus.").input_ids
    assert ids[0] == tiny_tokenizer.bos_token_id and ids[-1] != tiny_tokenizer.eos_token_id


def test_every_name_and_value_is_one_token(tiny_world, tiny_tokenizer):
    # Answers are single tokens, so exact match is not confounded by partial multi-token answers.
    words = {w for e in tiny_world.entities for w in e["name"].split()}
    words |= {e["attributes"][a] for e in tiny_world.entities for a in ATTRIBUTES}
    multi = [w for w in words if len(tiny_tokenizer(" " + w, add_special_tokens=False).input_ids) != 1]
    assert multi == []


def test_chat_template_renders_exactly(tiny_tokenizer):
    assert tiny_tokenizer.apply_chat_template(MESSAGES, tokenize=False) == RENDERED
    prompt = tiny_tokenizer.apply_chat_template(MESSAGES[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|bos|><|user|>\nWhat did Ada Lorvik study?<|end|>\n<|assistant|>\n"
    ids = tiny_tokenizer.apply_chat_template(MESSAGES, tokenize=True, return_dict=True)["input_ids"]
    assert ids == tiny_tokenizer(RENDERED, add_special_tokens=False).input_ids
    assert ids.count(tiny_tokenizer.bos_token_id) == 1


def test_assistant_mask_covers_answer_and_end_of_turn(tiny_tokenizer):
    enc = tiny_tokenizer.apply_chat_template(MESSAGES, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"]) if m]
    assert tiny_tokenizer.decode(masked) == "botany<|end|>"
    assert masked[-1] == end_of_turn_id(tiny_tokenizer)


def test_unknown_role_is_rejected(tiny_tokenizer):
    with pytest.raises(Exception, match="unknown role: tool"):
        tiny_tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_save_and_reload(tmp_path, tiny_world, tiny_tokenizer):
    tiny_tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = tiny_world.documents[0]["text"]
    assert again(text).input_ids == tiny_tokenizer(text).input_ids
    assert again.apply_chat_template(MESSAGES, tokenize=False) == RENDERED
    assert (again.bos_token, again.eos_token, again.pad_token) == (BOS, EOS, PAD)


def test_training_is_deterministic(tiny_world, tiny_tokenizer):
    again = train_tokenizer(tiny_world.all_texts(), vocab_size=1536)
    assert again.get_vocab() == tiny_tokenizer.get_vocab()
