"""Bad configs and command-line input, one table: every case must end with exit code 2, exactly one line on stderr
(``mixcpt: error: …`` naming the file and the key) and no output directory.

Cases already covered in tests/test_cli.py and not repeated here: ``pretrain-base`` with a negative learning rate,
``cpt`` with ``lssd.tau: 0``, ``evaluate`` on a directory without weights or with corrupt weights, bad ``world``
arguments. The commands run in this process (``cli.main``), which is much faster than a subprocess per case;
pytest's ``capsys`` sees everything written to stderr, progress bars included.
"""

import shutil

import pytest
import yaml

from mixcpt_core.cli import main

from .conftest import ROOT

BASE = ROOT / "checkpoints" / "base-tiny"
ALIGN = yaml.safe_load((ROOT / "configs" / "align-tiny.yaml").read_text())
MIX = yaml.safe_load((ROOT / "configs" / "mix-tiny.yaml").read_text())


def _yaml(path, data) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _align(tmp, **sections) -> str:
    """align-tiny.yaml on the shipped base model, with ``sections`` merged in (one level deep)."""
    cfg = {**ALIGN, "selection": {**ALIGN["selection"], "model": str(BASE)}}
    for key, value in sections.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
    return _yaml(tmp / "a.yaml", cfg)


def _cpt(tmp, **fields) -> str:
    return _yaml(tmp / "c.yaml", {"base_model": str(BASE), "mix": str(ROOT / "configs" / "mix-tiny.yaml"),
                                  "max_steps": 2, **fields})


def _model_without_weights(tmp):
    d = tmp / "noweights"
    d.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(BASE / name, d / name)
    return d


def _model_without_chat_template(tmp):
    d = tmp / "nochat"
    shutil.copytree(BASE, d)
    (d / "chat_template.jinja").unlink()
    return d


def _mix_file(tmp, name: str, data: bytes, kind: str = "documents") -> list[str]:
    """``mix`` argv for a config whose one source is the file ``name`` holding ``data``."""
    (tmp / name).write_bytes(data)
    return ["mix", _yaml(tmp / "m.yaml", {**MIX, "sources": [
        {"name": "src", "kind": kind, "path": str(tmp / name), "share": 1}]})]


# (case id, builder tmp_path -> argv without --out, text the error line must contain). "{tmp}" is tmp_path.
CASES = [
    ("unknown key", lambda t: ["mix", _yaml(t / "m.yaml", {**MIX, "bogus": 1})],
     "{tmp}/m.yaml: unknown key(s) ['bogus']"),
    ("wrong type", lambda t: ["cpt", _cpt(t, max_steps="ten")], "{tmp}/c.yaml: max_steps: expected int, got 'ten'"),
    ("wrong type, nested", lambda t: ["align", _align(t, dpo={"beta": "high"})],
     "{tmp}/a.yaml: dpo.beta: expected float, got 'high'"),
    ("negative learning rate", lambda t: ["cpt", _cpt(t, learning_rate=-1e-3)],
     "{tmp}/c.yaml: learning_rate: must be a finite number > 0, got -0.001"),
    ("negative SFT learning rate", lambda t: ["align", _align(t, sft={"learning_rate": -1e-3})],
     "{tmp}/a.yaml: sft.learning_rate: must be a finite number > 0, got -0.001"),
    ("lssd.lam above 1", lambda t: ["cpt", _cpt(t, lssd={"lam": 1.5})],
     "{tmp}/c.yaml: lssd.lam: must be a finite number in [0, 1], got 1.5"),
    ("lssd.lam below 0", lambda t: ["cpt", _cpt(t, lssd={"lam": -0.1})],
     "{tmp}/c.yaml: lssd.lam: must be a finite number in [0, 1], got -0.1"),
    ("lssd.tau negative", lambda t: ["cpt", _cpt(t, lssd={"tau": -1})],
     "{tmp}/c.yaml: lssd.tau: must be a finite number > 0"),
    ("n_sft larger than the pool", lambda t: ["select", _align(t, selection={"n_sft": 741})],
     "{tmp}/a.yaml: selection.n_sft: 741 is larger than the pool (the world has 740 general instructions)"),
    ("n_dpo larger than the pool", lambda t: ["align", _align(t, selection={"n_dpo": 401})],
     "{tmp}/a.yaml: selection.n_dpo: 401 is larger than the pool (the world has 400 preference pairs)"),
    ("--n larger than the pool", lambda t: ["align", _align(t), "--n", "741"],
     "selection.n_sft: 741 is larger than the pool"),
    ("block length above the context",
     lambda t: ["cpt", _cpt(t, mix=_yaml(t / "m.yaml", {**MIX, "block_length": 257}))],
     "{tmp}/c.yaml: mix: {tmp}/m.yaml: block_length 257 is longer than the context of base_model "
     f"{BASE} (max_position_embeddings = 256)"),
    ("missing config: cpt", lambda t: ["cpt", str(t / "nope.yaml")], "{tmp}/nope.yaml: config file not found"),
    ("missing config: mix", lambda t: ["mix", str(t / "nope.yaml")], "{tmp}/nope.yaml: config file not found"),
    ("missing config: select", lambda t: ["select", str(t / "nope.yaml")], "{tmp}/nope.yaml: config file not found"),
    ("missing config: align", lambda t: ["align", str(t / "nope.yaml")], "{tmp}/nope.yaml: config file not found"),
    ("missing config: pretrain-base", lambda t: ["pretrain-base", "--config", str(t / "nope.yaml")],
     "{tmp}/nope.yaml: config file not found"),
    ("missing mix file", lambda t: ["cpt", _cpt(t, mix=str(t / "nope.yaml"))],
     "{tmp}/c.yaml: mix: {tmp}/nope.yaml: config file not found"),
    ("missing base model", lambda t: ["cpt", _cpt(t, base_model=str(t / "nope"))],
     "{tmp}/c.yaml: base_model: {tmp}/nope: model directory not found"),
    ("missing source file", lambda t: ["mix", _yaml(t / "m.yaml", {**MIX, "sources": [
        {"name": "docs", "kind": "documents", "path": str(t / "nope.jsonl"), "share": 1}]})],
     "{tmp}/nope.jsonl: file not found (source 'docs'"),
    ("jsonl: one JSON array on one line", lambda t: _mix_file(t, "x.jsonl", b'[{"text": "a"}, {"text": "b"}]\n'),
     "{tmp}/x.jsonl:1: the file is a JSON array, but a .jsonl file holds one JSON object per line"),
    ("jsonl: a JSON array over lines, bad record inside",  # named as the array it is, not as a "world part"
     lambda t: _mix_file(t, "x.jsonl", b'\n[\n  {"text": "a"},\n  {"text": ""}\n]\n'),
     "{tmp}/x.jsonl:2: the file is a JSON array, but a .jsonl file holds one JSON object per line"),
    ("jsonl: a line that is valid JSON but not an object",
     lambda t: _mix_file(t, "x.jsonl", b'{"text": "a"}\n\n42\n{"text": "b"}\n'),
     "{tmp}/x.jsonl:3: expected a JSON object (one record per line), got a number: 42"),
    ("jsonl: a line that is an array", lambda t: _mix_file(t, "x.jsonl", b'{"text": "a"}\n["b"]\n'),
     '{tmp}/x.jsonl:2: expected a JSON object (one record per line), got an array: ["b"]'),
    ("json: an array of strings", lambda t: _mix_file(t, "x.json", b'[\n  "a",\n  "b"\n]\n'),
     '{tmp}/x.json:2: expected a JSON object (a record), got a string: "a"'),
    ("json: one object, not an array", lambda t: _mix_file(t, "x.json", b'\n{"text": "a"}\n'),
     "{tmp}/x.json:2: expected a JSON array of records"),
    ("json: an element that is not an object",
     lambda t: _mix_file(t, "x.json", b'[\n  {"text": "a"},\n  null\n]\n'),
     "{tmp}/x.json:3: expected a JSON object (a record), got null"),
    ("missing stage-1 model", lambda t: ["align", _align(t, selection={"model": str(t / "nope")})],
     "{tmp}/nope: stage-1 model not found"),
    ("no weights: cpt base_model", lambda t: ["cpt", _cpt(t, base_model=str(_model_without_weights(t)))],
     "{tmp}/c.yaml: base_model: {tmp}/noweights: no *.safetensors weights in this model directory"),
    ("no weights: align", lambda t: ["align", _align(t, selection={"model": str(_model_without_weights(t))})],
     "{tmp}/a.yaml: selection.model: {tmp}/noweights: no *.safetensors weights in this model directory"),
    ("no weights: select", lambda t: ["select", _align(t), "--model", str(_model_without_weights(t))],
     "{tmp}/a.yaml: selection.model: {tmp}/noweights: no *.safetensors weights in this model directory"),
    ("no chat template: align",
     lambda t: ["align", _align(t, selection={"model": str(_model_without_chat_template(t))})],
     "{tmp}/a.yaml: selection.model: {tmp}/nochat: the tokenizer has no chat template, which stage 2 needs"),
    ("no chat template: select format_ratio", lambda t: [
        "select", _align(t, selection={"model": str(_model_without_chat_template(t)), "score": "format_ratio"})],
     "{tmp}/a.yaml: selection.model: {tmp}/nochat: the tokenizer has no chat template"),
    ("no chat template: evaluate", lambda t: ["evaluate", str(_model_without_chat_template(t))],
     "{tmp}/nochat: the tokenizer has no chat template (the metrics use the chat format)"),
]


@pytest.mark.parametrize("build, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, build, message):
    argv = build(tmp_path)
    out = tmp_path / "out"
    out_args = ["--out", str(out / "m.json")] if argv[0] == "evaluate" else ["--out", str(out)]
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()  # only what the command writes counts
    assert main(argv + out_args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mixcpt: error: "), err
    assert message.format(tmp=tmp_path) in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == before


def test_exactly_the_pool_size_is_accepted(tiny_world):
    from mixcpt_core.selection import SelectionConfig, check_pool_sizes

    check_pool_sizes(SelectionConfig(n_sft=len(tiny_world.instructions), n_dpo=len(tiny_world.preferences)),
                     tiny_world)
    check_pool_sizes(SelectionConfig(n_sft=10_000, n_dpo=10_000, score="all"), tiny_world)  # `all` ignores N
