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
