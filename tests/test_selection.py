"""Stage-2 selection: response NLL against an independent per-example reference, exact N-lowest selection."""

import json
import math

import pytest
import torch

from mixcpt_core.models import load_causal_lm
from mixcpt_core.selection import (SelectionConfig, plain_pair, response_nll, run_selection, score_records,
                                   select_easy_samples)
from mixcpt_core.world import WORLD_PRESETS

from .conftest import ROOT

BASE = str(ROOT / "checkpoints" / "base-tiny")


@pytest.fixture(scope="module")
def base():
    model, tok = load_causal_lm(BASE)
    return model.eval(), tok


def _reference_nll(model, tok, prompt: str, response: str) -> float:
    """One example, no batching, no padding: mean of -log p over the response tokens of the full plain text."""
    full = tok(prompt + response).input_ids
    n_prompt = len(tok(prompt).input_ids)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([full])).logits[0].double(), -1)
    return -sum(logp[t - 1, full[t]].item() for t in range(n_prompt, len(full))) / (len(full) - n_prompt)


def test_plain_pair_concatenates_to_the_flattened_layout():
    from mixcpt_core.data import flatten_messages

    p, r = plain_pair("Who?", "Ada")
    assert p + r == flatten_messages([{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "Ada"}])


def test_response_nll_matches_unbatched_reference(base, sample_world):
    model, tok = base
    records = sample_world.instructions[:12]
    pairs = [plain_pair(r["messages"][0]["content"], r["messages"][1]["content"]) for r in records]
    got = response_nll(model, tok, [p for p, _ in pairs], [r for _, r in pairs], batch_size=5)  # ragged batches
    want = [_reference_nll(model, tok, p, r) for p, r in pairs]
    assert got.shape == (12,)
    assert got.tolist() == pytest.approx(want, rel=1e-4, abs=1e-5)


def test_selection_is_exactly_the_n_lowest_by_brute_force():
    import random

    rng = random.Random(3)
    scores = [round(rng.random(), 2) for _ in range(200)]  # rounding makes ties
    for n in (1, 16, 64, 200, 500):
        got = select_easy_samples(scores, n)
        # brute force: a sample is selected iff fewer than n samples beat it (lower score, or equal with lower index)
        want = [i for i in range(200) if sum((s, j) < (scores[i], i) for j, s in enumerate(scores)) < n]
        assert sorted(got) == want
        assert [scores[i] for i in got] == sorted(scores)[: min(n, 200)]


def test_random_selection_is_seeded_and_distinct():
    a = select_easy_samples([0.0] * 50, 10, "random", seed=1)
    assert a == select_easy_samples([0.0] * 50, 10, "random", seed=1)
    assert len(set(a)) == 10 and a != select_easy_samples([0.0] * 50, 10, "random", seed=2)


def test_format_ratio_is_chat_nll_over_plain_nll(base, sample_world):
    model, tok = base
    recs = sample_world.preferences[:4]
    plain = score_records(model, tok, recs, "ppl", progress=False)
    ratio = score_records(model, tok, recs, "format_ratio", progress=False)
    chat_prompts = [tok.apply_chat_template([{"role": "user", "content": r["prompt"]}], add_generation_prompt=True,
                                            tokenize=False) for r in recs]
    chat = response_nll(model, tok, chat_prompts, [r["chosen"] for r in recs]).tolist()
    assert ratio == pytest.approx([c / p for c, p in zip(chat, plain)], rel=1e-5)


def test_run_selection_writes_scores_and_selection(tmp_path, base):
    model, tok = base
    cfg = SelectionConfig(model=BASE, world=WORLD_PRESETS["sample"], n_sft=3, n_dpo=2)
    r = run_selection(cfg, model, tok, out_dir=tmp_path)
    saved = json.loads((tmp_path / "selection.json").read_text())
    assert saved["sft"]["selected"] == r["sft"]["selected"] and len(saved["dpo"]["selected"]) == 2
    s = saved["sft"]["scores"]
    assert all(math.isfinite(x) for x in s)
    assert max(s[i] for i in saved["sft"]["selected"]) <= min(x for i, x in enumerate(s)
                                                              if i not in saved["sft"]["selected"])


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="score"):
        SelectionConfig(score="loss")
    with pytest.raises(ValueError, match="n_sft"):
        SelectionConfig(n_sft=0)


def test_cli_select_writes_selection_and_rejects_missing_model(tmp_path, capsys):
    from mixcpt_core.cli import main

    assert main(["select", str(ROOT / "configs/align-tiny.yaml"), "--model", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "x")]) == 2
    assert "stage-1 model not found" in capsys.readouterr().err
    assert main(["select", str(ROOT / "configs/align-tiny.yaml"), "--model", BASE, "--n", "5",
                 "--out", str(tmp_path / "sel")]) == 0
    saved = json.loads((tmp_path / "sel" / "selection.json").read_text())
    assert len(saved["sft"]["scores"]) == 740 and len(saved["dpo"]["scores"]) == 400
    assert saved["sft"]["selected"] == select_easy_samples(saved["sft"]["scores"], 5)
