import subprocess
import sys

import pytest

from mixcpt_core.cli import main

from .conftest import ROOT


def test_world_command_writes_every_file(tmp_path):
    assert main(["world", "--seed", "1", "--preset", "sample", "--out", str(tmp_path / "w")]) == 0
    names = sorted(p.name for p in (tmp_path / "w").iterdir())
    assert names == ["documents.jsonl", "entities.jsonl", "instructions.jsonl", "preferences.jsonl", "qa.jsonl",
                     "world.json"]


def _run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "mixcpt_core.cli", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize("args, message", [
    (["--n-general", "-3"], "must be >= 0, got -3"),
    (["--n-domain", "0"], "n_domain must be >= 1"),
    (["--seed", "x"], "expected an integer"),
    (["--preset", "galactic"], "unknown world preset 'galactic'"),
    (["--templates-per-attribute", "9"], "templates_per_attribute must be <= 6"),
])
def test_world_bad_arguments(tmp_path, args, message):
    out = tmp_path / "w"
    r = _run("world", "--out", str(out), *args, cwd=ROOT)
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_world_command_and_its_errors_do_not_import_torch(tmp_path):
    """The world is plain Python: writing it, or refusing bad arguments, answers at once (importing torch and
    transformers takes 5-15 s on a 2-core machine)."""
    script = ("import sys; from mixcpt_core.cli import main; "
              f"codes = [main(['world', '--preset', 'galactic', '--out', {str(tmp_path / 'bad')!r}]), "
              f"main(['world', '--preset', 'sample', '--out', {str(tmp_path / 'w')!r}])]; "
              "print(codes, sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert r.stdout.strip().splitlines()[-1] == "[2, 0] []", r.stderr
    assert (tmp_path / "w/world.json").exists()


def test_world_unwritable_out_dir(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    r = _run("world", "--preset", "sample", "--out", str(blocker / "w"), cwd=ROOT)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mixcpt: error:") and "is a file" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_world_refuses_to_replace_a_foreign_directory(tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "notes.txt").write_text("mine")
    r = _run("world", "--preset", "sample", "--out", str(tmp_path / "w"), cwd=ROOT)
    assert r.returncode == 2 and "refusing to overwrite" in r.stderr
    assert (tmp_path / "w" / "notes.txt").read_text() == "mine"


def test_pretrain_base_bad_config(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("learning_rate: -1\n")
    r = _run("pretrain-base", "--config", str(cfg), "--out", str(tmp_path / "m"), cwd=ROOT)
    assert r.returncode == 2 and "learning_rate must be > 0" in r.stderr
    assert not (tmp_path / "m").exists()


def test_console_script_is_declared():
    assert 'mixcpt = "mixcpt_core.cli:main"' in (ROOT / "pyproject.toml").read_text()


def test_cpt_bad_config_is_one_line_exit_2(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lssd:\n  tau: 0\n")
    r = _run("cpt", str(cfg), "--out", str(tmp_path / "m"), cwd=ROOT)
    assert r.returncode == 2 and "lssd.tau must be > 0" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_evaluate_command_on_the_shipped_base_model(tmp_path, capsys):
    import json

    out = tmp_path / "m.json"
    assert main(["evaluate", str(ROOT / "checkpoints/base-tiny"), "--out", str(out), "--examples", "2"]) == 0
    m = json.loads(out.read_text())
    shipped = json.loads((ROOT / "figures/base_metrics.json").read_text())
    # the plain-format numbers agree with the base model's own evaluation; it has never seen the chat template
    assert m["plain_general_qa_acc"] == pytest.approx(shipped["general_heldout_qa_acc"], abs=1e-4)
    assert m["plain_domain_qa_acc"] == pytest.approx(shipped["domain_qa_acc"], abs=1e-4)
    assert m["domain_ppl"] == pytest.approx(shipped["domain_eval_doc_ppl"], rel=1e-4)
    assert m["format_rate"] == 0.0 and len(m["examples"]) == 4
    assert "held-out general QA, chat format" in capsys.readouterr().out


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "no model.safetensors here"),
    (lambda d: (d / "model.safetensors").write_bytes(b"not weights"), "cannot load the model"),
])
def test_evaluate_bad_model_dir(tmp_path, setup, message):
    d = tmp_path / "m"
    d.mkdir()
    setup(d)
    r = _run("evaluate", str(d), "--out", str(tmp_path / "x.json"), cwd=ROOT)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()
