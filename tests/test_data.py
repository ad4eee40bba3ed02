"""Stage-1 data (D_MIX): flattening, share semantics, packing, adapters for every input format, and bad input.

Share and packing checks count tokens in the packed output themselves (split at EOS, recognise each text by its
token ids) instead of trusting the composition the code reports.
"""

import collections
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from datasets import load_from_disk

from mixcpt_core.cli import main
from mixcpt_core.config import ConfigError, load_config
from mixcpt_core.data import (
    DataError,
    FlattenLayout,
    MixConfig,
    SourceConfig,
    build_mix,
    flatten_instruction,
    flatten_messages,
    flatten_preference,
    pack_tokens,
    plan_mix,
    save_mix,
    tokenize_texts,
)
from mixcpt_core.sources import source_texts
from mixcpt_core.world import plain_qa_text

from .conftest import ROOT

SAMPLES = ROOT / "data_samples" / "formats"


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(ROOT / "checkpoints" / "base-tiny"))


def _user(c):
    return {"role": "user", "content": c}


def _assistant(c):
    return {"role": "assistant", "content": c}


# -- flattening: exact strings ---------------------------------------------------------------------------------------
def test_single_turn_is_exactly_the_plain_qa_format():
    text = flatten_messages([_user("What is the birth city of Ada Lorvik?"), _assistant("Amberfall")])
    assert text == "Question: What is the birth city of Ada Lorvik?\nAnswer: Amberfall"
    assert text == plain_qa_text("What is the birth city of Ada Lorvik?", "Amberfall")


def test_multi_turn_with_system_message():
    messages = [{"role": "system", "content": "Be brief."}, _user("Hi?"), _assistant("Hello."), _user("Bye?"),
                _assistant("Goodbye.")]
    assert flatten_messages(messages) == "Be brief.\nQuestion: Hi?\nAnswer: Hello.\nQuestion: Bye?\nAnswer: Goodbye."
    layout = FlattenLayout(system_prefix="System: ", user_prefix="User: ", assistant_prefix="Assistant: ",
                           separator="\n\n")
    assert flatten_messages(messages, layout) == ("System: Be brief.\n\nUser: Hi?\n\nAssistant: Hello.\n\n"
                                                  "User: Bye?\n\nAssistant: Goodbye.")


def test_alpaca_records():
    assert flatten_instruction({"instruction": "Add 2 and 3.", "input": "", "output": "5"}) == \
        "Question: Add 2 and 3.\nAnswer: 5"
    assert flatten_instruction({"instruction": "Translate to French.", "input": "cat", "output": "chat"}) == \
        "Question: Translate to French.\ncat\nAnswer: chat"
    assert flatten_instruction({"instruction": "Say hi.", "output": "Hi.", "system": "Be kind."}) == \
        "Be kind.\nQuestion: Say hi.\nAnswer: Hi."
    no_system = {"instruction": "Say hi.", "output": "Hi.", "system": ""}  # an empty CSV cell
    assert flatten_instruction(no_system) == "Question: Say hi.\nAnswer: Hi."


def test_preference_modes():
    pair = {"prompt": "2 + 2?", "chosen": "4", "rejected": "5"}
    assert flatten_preference(pair) == ["Question: 2 + 2?\nAnswer: 4"]
    assert flatten_preference(pair, mode="chosen_and_rejected") == ["Question: 2 + 2?\nAnswer: 4",
                                                                    "Question: 2 + 2?\nAnswer: 5"]
    assert flatten_preference(pair, mode="chosen_only") == ["4"]
    as_messages = {"prompt": [{"role": "system", "content": "Math."}, _user("2 + 2?")], "chosen": [_assistant("4")],
                   "rejected": [_assistant("5")]}
    assert flatten_preference(as_messages) == ["Math.\nQuestion: 2 + 2?\nAnswer: 4"]


def test_flattened_world_records_look_like_the_base_models_plain_qa(sample_world, tok):
    qa = {q["question"]: q["answer"] for q in sample_world.qa}
    for r in sample_world.instructions:
        text = flatten_instruction(r)
        assert "<|" not in text  # no role or special tokens
        if r["kind"] == "qa":
            question = r["messages"][0]["content"]
            assert text == plain_qa_text(question, qa[question])
    chat = tok.apply_chat_template(sample_world.instructions[0]["messages"], tokenize=False)
    assert "<|user|>" in chat and "<|user|>" not in flatten_instruction(sample_world.instructions[0])


def test_tokenized_text_is_bos_text_eos_as_in_base_pretraining(tok):
    from datasets import Dataset

    texts = ["Question: Who?\nAnswer: Nobody", "Ada Lorvik was born in Amberfall."]
    out = tokenize_texts(Dataset.from_dict({"text": texts}), tok)
    assert out["input_ids"][:] == [tok(t).input_ids + [tok.eos_token_id] for t in texts]
    assert out["input_ids"][0][0] == tok.bos_token_id and out["n_tokens"][:] == [len(x) for x in out["input_ids"]]


# -- the share plan --------------------------------------------------------------------------------------------------
def test_plan_repeats_whole_passes_then_a_random_subset():
    lengths = {"a": np.full(10, 10), "b": np.full(40, 5)}  # one pass: a = 100 tokens, b = 200 tokens
    plan = plan_mix(lengths, {"a": 0.75, "b": 0.25}, total_tokens=400, seed=0)
    counts_a = np.bincount(plan["a"], minlength=10)
    assert lengths["a"][plan["a"]].sum() == 300 and set(counts_a) == {3}  # 3 whole passes, nothing else
    assert lengths["b"][plan["b"]].sum() == 100 and len(set(plan["b"])) == 20  # half a pass, no repeats
    assert not np.array_equal(np.sort(plan["b"]), np.arange(20))  # a random subset, not the first half
    assert np.array_equal(plan_mix(lengths, {"a": 0.75, "b": 0.25}, 400, 0)["b"], plan["b"])  # seeded


def test_plan_without_total_uses_the_scarcest_source_exactly_once():
    lengths = {"a": np.full(10, 10), "b": np.full(40, 5)}
    plan = plan_mix(lengths, {"a": 0.5, "b": 0.5}, total_tokens=None, seed=1)
    assert np.array_equal(np.sort(plan["a"]), np.arange(10))  # a (100 tokens) limits the total to 200
    assert lengths["b"][plan["b"]].sum() == 100
    assert "c" not in plan_mix({**lengths, "c": np.full(3, 3)}, {"a": 1, "b": 1, "c": 0}, None, 0)


# -- the mix, counted independently ----------------------------------------------------------------------------------
def _write_jsonl(path: Path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def file_sources(tmp_path_factory, tiny_world):
    """Three files whose flattened texts are disjoint, and each text's expected plain form written out by hand."""
    d = tmp_path_factory.mktemp("sources")
    docs = tiny_world.docs("domain")
    chats = [r for r in tiny_world.instructions if r["kind"] != "qa"]  # qa instructions equal preference texts
    prefs = tiny_world.preferences
    files = {"docs": _write_jsonl(d / "docs.jsonl", [{"body": t} for t in docs]),
             "chat": _write_jsonl(d / "chat.jsonl", [{"messages": r["messages"]} for r in chats]),
             "prefs": _write_jsonl(d / "prefs.jsonl", prefs)}
    expected = {"docs": docs,
                "chat": [f"Question: {r['messages'][0]['content']}\nAnswer: {r['messages'][1]['content']}"
                         for r in chats],
                "prefs": [f"Question: {p['prompt']}\nAnswer: {p['chosen']}" for p in prefs]}
    return files, expected


def _mix_config(files, shares, **kw):
    kinds = {"docs": "documents", "chat": "chat", "prefs": "preference"}
    sources = [SourceConfig(name=n, kind=kinds[n], share=s, path=files[n],
                            columns={"text": "body"} if n == "docs" else {}) for n, s in shares.items()]
    return MixConfig(sources=sources, **kw)


def _segments(blocks, tok):
    """Split the packed stream (padding removed) at EOS into texts; returns the token-id tuples, EOS excluded."""
    ids = np.concatenate([np.asarray(r) for r in blocks["input_ids"]])
    ids = ids[ids != tok.pad_token_id]
    ends = np.flatnonzero(ids == tok.eos_token_id)
    assert len(ends) and ends[-1] == len(ids) - 1, "the stream must end with EOS"
    return [tuple(s[:-1].tolist()) for s in np.split(ids, ends + 1)[:-1]], len(ids)


@pytest.mark.parametrize("shares, total", [({"docs": 0.5, "chat": 0.3, "prefs": 0.2}, 12_000),
                                           ({"docs": 0.2, "chat": 0.2, "prefs": 0.6}, 40_000)])
def test_achieved_token_shares_counted_in_the_packed_output(file_sources, tok, shares, total):
    files, expected = file_sources
    of = {tuple(tok(t).input_ids): name for name, texts in expected.items() for t in texts}
    assert len(of) == len({t for ts in expected.values() for t in ts})  # no text belongs to two sources
    blocks, comp = build_mix(_mix_config(files, shares, total_tokens=total, block_length=128), tok)
    segments, n_tokens = _segments(blocks, tok)
    counted = collections.Counter()
    for seg in segments:
        counted[of[seg]] += len(seg) + 1  # + EOS
    assert sum(counted.values()) == n_tokens == comp["tokens"]
    assert abs(n_tokens - total) < 200  # within about one text per source
    for name, share in shares.items():
        assert abs(counted[name] / n_tokens - share) < 0.02, (name, counted[name] / n_tokens, share)
    reported = {r["name"]: r for r in comp["sources"]}
    assert {n: reported[n]["tokens"] for n in shares} == dict(counted)
    assert reported["prefs"]["repeat_factor"] > 1 if shares["prefs"] == 0.6 else True  # upsampled in the 2nd case


def test_packing_loses_and_duplicates_nothing(file_sources, tok):
    files, expected = file_sources
    blocks, comp = build_mix(_mix_config(files, {"docs": 0.8, "chat": 0.1, "prefs": 0.1}, block_length=64), tok)
    limiting = max(comp["sources"], key=lambda r: r["repeat_factor"])  # total=None: this one is used exactly once
    assert limiting["name"] == "docs" and limiting["repeat_factor"] == 1.0
    segments, _ = _segments(blocks, tok)
    want = collections.Counter(tuple(tok(t).input_ids) for t in expected["docs"])
    got = collections.Counter(s for s in segments if s in want)
    assert got == want  # every domain document exactly once, none cut apart
    assert all(s[0] == tok.bos_token_id for s in segments)
    assert sum(r["documents"] for r in comp["sources"]) == len(segments)
    # labels = input_ids (loss on every token) except padding; padding only at the end of the last block
    ids, labels, mask = (np.array(blocks[c]) for c in ("input_ids", "labels", "attention_mask"))
    assert ids.shape == (comp["blocks"], 64)
    assert np.array_equal(labels[mask == 1], ids[mask == 1]) and (labels[mask == 0] == -100).all()
    assert mask[:-1].all() and (ids[mask == 0] == tok.pad_token_id).all()
    assert comp["padding_tokens"] == (mask == 0).sum() < 64


def test_pack_tokens_pad_and_drop():
    stream = np.arange(1, 11, dtype=np.int32)
    assert pack_tokens(stream, 4, pad_id=0).tolist() == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 0, 0]]
    assert pack_tokens(stream, 4, pad_id=0, last_block="drop").tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert pack_tokens(stream, 5, pad_id=0).tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]


def test_shipped_tiny_mix(tok):
    cfg = load_config(MixConfig, ROOT / "configs" / "mix-tiny.yaml")
    assert [(s.name, s.kind, s.share) for s in cfg.sources] == [
        ("domain", "world_domain_docs", 0.6), ("instructions", "world_instructions", 0.3),
        ("preferences", "world_preferences", 0.1)]
    small = dataclasses.replace(cfg, total_tokens=50_000)
    blocks, comp = build_mix(small, tok, root=ROOT)
    assert comp["padding_fraction"] < 0.01 and comp["dropped_tokens"] == 0
    assert all(abs(r["share"] - r["requested_share"]) < 0.01 for r in comp["sources"])
    again, _ = build_mix(small, tok, root=ROOT)
    assert again["input_ids"][:] == blocks["input_ids"][:]  # seeded
    other, _ = build_mix(dataclasses.replace(small, seed=1), tok, root=ROOT)
    assert other["input_ids"][:] != blocks["input_ids"][:]
    dropped, comp_d = build_mix(dataclasses.replace(small, last_block="drop"), tok, root=ROOT)
    assert comp_d["padding_tokens"] == 0 and comp_d["dropped_tokens"] == comp["tokens"] % 128
    assert len(dropped) == comp["tokens"] // 128


# -- adapters: every sample file ---------------------------------------------------------------------------------------
SAMPLE_CASES = [
    ("documents.jsonl", "documents", {}, 4, "Bread dough rises faster in a warm kitchen. Cover the bowl with a damp "
                                          "towel and leave it for about an hour, until it has doubled in size."),
    ("documents.parquet", "documents", {"text": "body"}, 3, "Check the tyre pressure once a month, when the tyres are "
                                                            "cold. The right value is printed inside the driver door."),
    ("alpaca.json", "alpaca", {}, 3, "Question: Give one tip for keeping cut flowers fresh.\nAnswer: Trim the stems at "
                                     "an angle and change the water every two days."),
    ("chat.jsonl", "chat", {}, 3, "Question: How long should I boil an egg for a soft yolk?\nAnswer: About six minutes "
                                  "in gently boiling water."),
    ("preference.jsonl", "preference", {}, 3, "Question: How many minutes are there in two hours?\nAnswer: There are "
                                              "120 minutes in two hours."),
    ("preference_messages.jsonl", "preference", {}, 2, "Question: Suggest a quick breakfast.\nAnswer: Porridge with a "
                                                       "sliced banana takes five minutes."),
    ("preference.csv", "preference", {}, 3, "Question: What is the boiling point of water at sea level?\nAnswer: It "
                                            "boils at 100 degrees Celsius."),
]


@pytest.mark.parametrize("name, kind, columns, n, first", SAMPLE_CASES, ids=[c[0] for c in SAMPLE_CASES])
def test_every_sample_format_loads(name, kind, columns, n, first):
    src = SourceConfig(name="s", kind=kind, share=1.0, path=f"data_samples/formats/{name}", columns=columns)
    texts = source_texts(src, MixConfig(sources=[src]), root=ROOT)["text"][:]
    assert len(texts) == n and texts[0] == first


def test_sample_texts_of_the_other_records():
    cfg = MixConfig(sources=[SourceConfig(name="s", kind="chat", share=1.0, path="x.jsonl")])
    chat = source_texts(dataclasses.replace(cfg.sources[0], path="data_samples/formats/chat.jsonl"), cfg, ROOT)["text"]
    assert chat[2] == ("Question: What is a good first houseplant?\nAnswer: A snake plant: it needs little light and "
                       "little water.\nQuestion: How often should I water it?\nAnswer: Every two to three weeks, when "
                       "the soil is completely dry.")
    assert chat[1].startswith("You are a patient cooking assistant.\nQuestion: Can I freeze fresh basil?\nAnswer: ")
    alpaca = SourceConfig(name="s", kind="alpaca", share=1.0, path="data_samples/formats/alpaca.json")
    assert source_texts(alpaca, cfg, ROOT)["text"][1] == \
        "Question: Turn the sentence into a question.\nThe train leaves at seven.\nAnswer: When does the train leave?"


def test_samples_config_builds(tok):
    cfg = load_config(MixConfig, ROOT / "configs" / "mix-samples.yaml")
    _, comp = build_mix(cfg, tok, root=ROOT)
    assert {r["name"] for r in comp["sources"]} == {s.name for s in cfg.sources}
    assert all(r["tokens"] > 0 for r in comp["sources"])


def test_hub_source_error_names_the_dataset():
    src = SourceConfig(name="ultra", kind="chat", share=1.0, hub="no-such-org/no-such-dataset", split="train_sft")
    with pytest.raises(DataError, match=r"hub dataset 'no-such-org/no-such-dataset' \(split 'train_sft'"):
        source_texts(src, MixConfig(sources=[src]), ROOT)


# -- bad input: file, line and field in every message -----------------------------------------------------------------
def _jsonl(*rows):
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


_DOC, _CHAT = {"text": "Fine."}, {"messages": [_user("q"), _assistant("a")]}
_PAIR = {"prompt": "p", "chosen": "yes", "rejected": "no"}
BAD_INPUT = [  # (id, file name, bytes, kind, columns, expected message after the path)
    ("invalid-json", "x.jsonl", _jsonl(_DOC, _DOC, '{"text": "cut'), "documents", {}, ":3: invalid JSON"),
    ("missing-field", "x.jsonl", _jsonl(_CHAT, {"msgs": []}), "chat", {}, ":2: field 'messages': missing"),
    ("wrong-type", "x.jsonl", _jsonl(_DOC, {"text": 5}), "documents", {},
     ":2: field 'text': expected a string, got int"),
    ("empty-text", "x.jsonl", _jsonl(_DOC, {"text": "   "}), "documents", {}, ":2: field 'text': empty text"),
    ("unknown-role", "x.jsonl", _jsonl(_CHAT, _CHAT, {"messages": [_user("q"), {"role": "robot", "content": "a"}]}),
     "chat", {}, ":3: field 'messages'[1].role: unknown role 'robot'"),
    ("missing-content", "x.jsonl", _jsonl({"messages": [_user("q"), {"role": "assistant"}]}), "chat", {},
     ":1: field 'messages'[1].content: missing"),
    ("messages-not-a-list", "x.jsonl", _jsonl({"messages": "hi"}), "chat", {},
     ":1: field 'messages': expected a list of messages, got str"),
    ("no-assistant", "x.jsonl", _jsonl({"messages": [_user("q")]}), "chat", {}, ":1: field 'messages': no assistant"),
    ("identical-pair", "x.jsonl", _jsonl(_PAIR, {"prompt": "p", "chosen": "same", "rejected": "same"}), "preference",
     {}, ":2: field 'rejected': identical to 'chosen'"),
    ("mapped-column", "x.jsonl", _jsonl({"body": "ok"}, {"body": ""}), "documents", {"text": "body"},
     ":2: field 'body': empty text"),
    ("blank-lines-counted", "x.jsonl", _jsonl(_DOC, "", "", {"text": ""}), "documents", {}, ":4: field 'text'"),
    ("non-utf8", "x.jsonl", _jsonl(_DOC) + b'{"text": "caf\xe9"}\n', "documents", {},
     ":2: not valid UTF-8 (byte 0xe9)"),
    ("json-array-record", "x.json",
     b'[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "a",\n   "output": ""}\n]\n', "alpaca", {},
     ":3: field 'output': empty text"),
    ("csv-row", "x.csv", b"prompt,chosen,rejected\np,yes,no\n\"two\nlines\",yes,no\nq,,no\n", "preference", {},
     ":5: field 'chosen': empty text"),
    ("empty-file", "x.jsonl", b"", "documents", {}, ": no records (source 'bad' is empty)"),
    ("only-blank-lines", "x.jsonl", b"\n\n", "documents", {}, ": no records (source 'bad' is empty)"),
    ("csv-header-only", "x.csv", b"prompt,chosen,rejected\n", "preference", {}, ": no records (source 'bad' is empty)"),
]


@pytest.mark.parametrize("case", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_names_file_line_and_field(tmp_path, case):
    _, name, data, kind, columns, message = case
    (tmp_path / name).write_bytes(data)
    src = SourceConfig(name="bad", kind=kind, share=1.0, path=str(tmp_path / name), columns=columns)
    with pytest.raises(DataError) as e:
        source_texts(src, MixConfig(sources=[src]))
    assert str(e.value).startswith(str(tmp_path / name) + message), str(e.value)


def test_bad_parquet_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["fine", "also fine", ""]}), tmp_path / "x.parquet")
    src = SourceConfig(name="bad", kind="documents", share=1.0, path=str(tmp_path / "x.parquet"),
                       columns={"text": "body"})
    with pytest.raises(DataError, match=r"x\.parquet: row 3: field 'body': empty text"):
        source_texts(src, MixConfig(sources=[src]))


def test_missing_file_and_unknown_type(tmp_path):
    src = SourceConfig(name="gone", kind="documents", share=1.0, path=str(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match=r"nope\.jsonl: file not found \(source 'gone'"):
        source_texts(src, MixConfig(sources=[src]))
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(DataError, match=r"x\.txt: unsupported file type '\.txt'"):
        source_texts(dataclasses.replace(src, path=str(tmp_path / "x.txt")), MixConfig(sources=[src]))


def test_empty_world_part_is_an_error():
    from mixcpt_core.world import WORLD_PRESETS

    src = SourceConfig(name="prefs", kind="world_preferences", share=1.0)
    world = dataclasses.replace(WORLD_PRESETS["sample"], n_preference_pairs=0)
    with pytest.raises(DataError, match="source 'prefs' is empty"):
        source_texts(src, MixConfig(sources=[src], world=world))


@pytest.mark.parametrize("sources, message", [
    ("[{name: a, kind: world_domain_docs, share: -0.5}]",
     "sources[0]: source 'a': field 'share': must be a finite number >= 0, got -0.5"),
    ("[{name: a, kind: world_domain_docs, share: 0}, {name: b, kind: world_instructions, share: 0.0}]",
     "field 'share': all shares are zero"),
    ("[{name: a, kind: world_domain_docs}]", "sources[0]: source 'a': field 'share': missing"),
    ("[{name: a, kind: novels, share: 1}]", "sources[0]: source 'a': field 'kind': unknown kind 'novels'"),
    ("[{name: a, kind: documents, share: 1}]", "sources[0]: source 'a': field 'path'/'hub': give exactly one"),
    ("[{name: a, kind: documents, share: 1, path: x.jsonl, columns: {txt: body}}]", "field 'columns': cannot map"),
])
def test_bad_config_names_file_and_field(tmp_path, sources, message):
    (tmp_path / "mix.yaml").write_text(f"sources: {sources}\n")
    with pytest.raises(ConfigError) as e:
        load_config(MixConfig, tmp_path / "mix.yaml")
    assert str(tmp_path / "mix.yaml") in str(e.value) and message in str(e.value), str(e.value)


def test_share_overrides():
    cfg = load_config(MixConfig, ROOT / "configs" / "mix-tiny.yaml")
    assert [s.share for s in cfg.with_shares({"domain": 0.5}).sources] == [0.5, 0.3, 0.1]
    with pytest.raises(ValueError, match=r"unknown source\(s\) \['robots'\]"):
        cfg.with_shares({"robots": 0.2})
    with pytest.raises(ValueError, match="source 'domain': field 'share': must be a finite number >= 0"):
        cfg.with_shares({"domain": -1})
    with pytest.raises(ValueError, match="all shares are zero"):
        cfg.with_shares({"domain": 0, "instructions": 0, "preferences": 0})


# -- writing: atomic, and the CLI ------------------------------------------------------------------------------------
def test_cli_mix_writes_dataset_and_composition(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "mix"
    assert main(["mix", "configs/mix-samples.yaml", "--out", str(out), "--share", "domain=0.6"]) == 0
    comp = json.loads((out / "composition.json").read_text())
    assert comp["sources"][0]["requested_share"] == pytest.approx(0.6 / 1.1, abs=1e-6)
    blocks = load_from_disk(str(out))
    assert len(blocks) == comp["blocks"] and len(blocks[0]["input_ids"]) == 128
    assert "| domain | world_domain_docs |" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mix"]  # no temporary directory left


def test_cli_bad_data_is_one_line_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "chat.jsonl"
    bad.write_bytes(_jsonl(_CHAT, {"messages": [_user("q"), {"role": "robot", "content": "a"}]}))
    cfg = tmp_path / "mix.yaml"
    cfg.write_text(f"sources: [{{name: c, kind: chat, share: 1, path: {bad}}}]\n"
                   f"tokenizer: {ROOT / 'checkpoints/base-tiny'}\n")
    assert main(["mix", str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mixcpt: error: {bad}:2: field 'messages'[1].role: unknown role 'robot' "
                   "(expected one of system, user, assistant)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.jsonl", "mix.yaml"]


def test_save_is_atomic(tmp_path, tok, monkeypatch):
    from datasets import Dataset

    cfg = MixConfig(sources=[SourceConfig(name="d", kind="world_domain_docs", share=1.0)], total_tokens=2000)
    blocks, comp = build_mix(cfg, tok)
    save_mix(blocks, comp, tmp_path / "mix")

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(Dataset, "save_to_disk", fail)
    with pytest.raises(OSError, match="disk full"):
        save_mix(blocks, comp, tmp_path / "mix")
    with pytest.raises(OSError):
        save_mix(blocks, comp, tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mix"]  # old output intact, no partial new one
    assert load_from_disk(str(tmp_path / "mix"))["input_ids"][:] == blocks["input_ids"][:]
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        save_mix(blocks, comp, tmp_path / "foreign")


def test_exact_readers_give_each_record_its_line(tmp_path):
    from mixcpt_core.jsonl import iter_json_array, iter_jsonl

    # a byte-order mark, blank lines and a record spanning lines: the numbers are those an editor shows
    (tmp_path / "x.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "a"}\n\n{"text": "b"}\n')
    assert list(iter_jsonl(tmp_path / "x.jsonl")) == [(1, {"text": "a"}), (3, {"text": "b"})]
    (tmp_path / "x.json").write_bytes(b'[{"text": "a"},\n\n  {"text":\n "b"}]')
    assert list(iter_json_array(tmp_path / "x.json")) == [(1, {"text": "a"}), (3, {"text": "b"})]
