import math

import pytest
import torch

from mixcpt_core.evaluation import document_perplexity, generate_greedy, normalize_answer, plain_qa_accuracy


@pytest.mark.parametrize("raw, gold", [
    (" Amberfall", "amberfall"),
    ("Amberfall.\nQuestion: next", "amberfall"),
    ("  1957 ", "1957"),
    ("Nimbus!", "nimbus"),
    ("", ""),
])
def test_normalize_answer(raw, gold):
    assert normalize_answer(raw) == gold


def test_perplexity_matches_the_models_own_loss(tiny_model, tiny_tokenizer):
    texts = ["Ada Lorvik works for Nimbus.", "Otto Calvik was born in the year 1961. Otto Calvik studied botany."]
    nll, n = 0.0, 0
    for t in texts:  # independent reference: HF's mean loss per text, weighted back to a token sum
        ids = torch.tensor([tiny_tokenizer(t).input_ids + [tiny_tokenizer.eos_token_id]])
        with torch.no_grad():
            loss = tiny_model(input_ids=ids, labels=ids).loss.item()
        nll += loss * (ids.shape[1] - 1)
        n += ids.shape[1] - 1
    assert document_perplexity(tiny_model, tiny_tokenizer, texts, batch_size=2) == pytest.approx(math.exp(nll / n), rel=1e-5)


def test_batched_generation_equals_one_by_one(tiny_model, tiny_tokenizer):
    prompts = ["Question: What did Ada Lorvik study?\nAnswer:", "Hi", "Ada Lorvik was born in the year 1960. Ada"]
    batched = generate_greedy(tiny_model, tiny_tokenizer, prompts, max_new_tokens=5, batch_size=3)
    single = [generate_greedy(tiny_model, tiny_tokenizer, [p], max_new_tokens=5)[0] for p in prompts]
    assert batched == single
    assert tiny_tokenizer.padding_side == "right"  # restored


class _Oracle(torch.nn.Module):
    """Stands in for a model: always emits the token sequence it was given, so accuracy is known by construction."""

    def __init__(self, tokenizer, answers):
        super().__init__()
        self.tok, self.answers, self.device = tokenizer, answers, torch.device("cpu")

    def generate(self, input_ids, attention_mask, max_new_tokens, **kw):
        new = [self.tok(" " + a, add_special_tokens=False).input_ids for a in self.answers[: len(input_ids)]]
        self.answers = self.answers[len(input_ids):]
        width = max(map(len, new))
        pad = [n + [self.tok.pad_token_id] * (width - len(n)) for n in new]
        return torch.cat([input_ids, torch.tensor(pad)], dim=1)


def test_plain_qa_accuracy_counts_exact_matches(tiny_tokenizer):
    qa = [{"question": f"Q{i}?", "answer": a, "attribute": attr}
          for i, (a, attr) in enumerate([("Nimbus", "employer"), ("1960", "birth_year"), ("botany", "field"),
                                         ("Brisk", "birth_city")])]
    said = ["Nimbus.", "1961", "Botany\nQuestion", "Brisk Brisk"]
    r = plain_qa_accuracy(_Oracle(tiny_tokenizer, said), tiny_tokenizer, qa, batch_size=3)
    assert r["accuracy"] == 0.5 and r["n"] == 4
    assert r["per_attribute"] == {"birth_city": 0.0, "birth_year": 0.0, "employer": 1.0, "field": 1.0}


def test_match_rules_and_the_evaluation_spec():
    from mixcpt_core.evaluation import EvalSpec, answer_matches
    from mixcpt_core.pipelines import evaluation_key

    item = {"answer": "Nimbus"}  # a world record: no aliases
    assert answer_matches(" Nimbus.", item) and not answer_matches("Nimbus Nimbus", item)
    assert answer_matches("It is Nimbus.", item, "contains") and not answer_matches("Nimbusian", item, "contains")
    assert answer_matches("eight legs", {"answer": "8", "aliases": ["eight"]}, "contains")
    with pytest.raises(ValueError, match="unknown match rule"):
        answer_matches("x", item, "fuzzy")
    for bad in (dict(general="web"), dict(match="fuzzy"), dict(max_new_tokens=0), dict(limit=-1)):
        with pytest.raises(ValueError):
            EvalSpec(**bad)
    # the synthetic profiles' evaluation keeps the cache names it had before EvalSpec existed
    assert evaluation_key("s2-abc") == evaluation_key("s2-abc", EvalSpec()) == "s2-abc"
    assert evaluation_key("s2-abc", EvalSpec(match="contains")) != "s2-abc"


def test_two_pass_generation_continues_exactly_as_one_pass(tiny_model, tiny_tokenizer):
    """first_pass_tokens regroups the unfinished rows and continues them from prompt + tokens so far: greedy, so the
    tokens equal one long pass (rows that stop early and rows that run to the budget alike)."""
    from mixcpt_core.evaluation import generate_new_tokens

    prompts = ["Question: What did Ada Lorvik study?\nAnswer:", "Hi", "Ada Lorvik was born in the year 1960. Ada",
               "Otto", "Question: Which company does Otto Calvik work for?\nAnswer:"]
    free = generate_new_tokens(tiny_model, tiny_tokenizer, prompts, max_new_tokens=12, batch_size=2)
    stop = free[0][3]  # a token the first row emits 4th: rows that emit it stop at different points
    one = generate_new_tokens(tiny_model, tiny_tokenizer, prompts, 12, 2, stop_token_ids=[stop])
    two = generate_new_tokens(tiny_model, tiny_tokenizer, prompts, 12, 2, stop_token_ids=[stop], first_pass_tokens=3)
    assert any(stop in row[:-1] for row in one) and any(stop not in row for row in one)  # both kinds of rows
    pad = tiny_tokenizer.pad_token_id
    assert [[t for t in r if t != pad] for r in two] == [[t for t in r if t != pad] for r in one]
    assert all(len(r) <= 12 for r in two)


def test_no_repeat_ngram_blocks_every_repeated_ngram_of_prompt_and_reply(tiny_model, tiny_tokenizer):
    from mixcpt_core.evaluation import generate_new_tokens

    def repeats(prompt, row):
        """Generated trigrams (ending at a new token) that already occurred earlier in prompt + reply."""
        p = tiny_tokenizer(prompt).input_ids
        seq = p + [t for t in row if t != tiny_tokenizer.pad_token_id]
        return sum(tuple(seq[i - 2 : i + 1]) in {tuple(seq[j - 2 : j + 1]) for j in range(2, i)}
                   for i in range(max(2, len(p)), len(seq)))

    prompts = ["Ada Lorvik was born in the year 1960. Ada Lorvik", "Hi"]
    free = generate_new_tokens(tiny_model, tiny_tokenizer, prompts, max_new_tokens=20, batch_size=2)
    blocked = generate_new_tokens(tiny_model, tiny_tokenizer, prompts, 20, 2, no_repeat_ngram_size=3)
    assert sum(repeats(p, r) for p, r in zip(prompts, free)) > 0  # an untrained model repeats itself
    assert sum(repeats(p, r) for p, r in zip(prompts, blocked)) == 0


def test_leak_check_rejects_stage1_layout_and_written_out_markers(tiny_tokenizer):
    from mixcpt_core.evaluation import parse_assistant_turn

    def ids(text):
        return tiny_tokenizer(text, add_special_tokens=False).input_ids

    clean = ids("Amberfall, a town in the north.<|end|>")
    leaked = ids("Amberfall\nQuestion: What did Ada study?\nAnswer: botany<|end|>")
    assert parse_assistant_turn(clean, tiny_tokenizer, leak_check=True)["well_formed"]
    assert parse_assistant_turn(leaked, tiny_tokenizer)["well_formed"]  # the default rule: ended, no special token
    assert not parse_assistant_turn(leaked, tiny_tokenizer, leak_check=True)["well_formed"]
    assert not parse_assistant_turn(ids("Amberfall <|im_start|>user<|end|>"), tiny_tokenizer,
                                    leak_check=True)["well_formed"]
    # "Question" inside a sentence is not the layout
    assert parse_assistant_turn(ids("That Question: is hard.<|end|>"), tiny_tokenizer, leak_check=True)["well_formed"]


def test_plain_qa_accuracy_reads_the_layout_it_is_given(tiny_tokenizer, monkeypatch):
    import mixcpt_core.evaluation as ev

    seen = []
    monkeypatch.setattr(ev, "generate_greedy", lambda m, t, prompts, **kw: seen.extend(prompts) or ["x"] * len(prompts))
    qa = [{"question": "Who?", "answer": "x", "attribute": "a"}]
    assert ev.plain_qa_accuracy(None, tiny_tokenizer, qa)["accuracy"] == 1.0
    assert ev.plain_qa_accuracy(None, tiny_tokenizer, qa, prompt="Q: {question}\nA:")["accuracy"] == 1.0
    assert seen == ["Question: Who?\nAnswer:", "Q: Who?\nA:"]
