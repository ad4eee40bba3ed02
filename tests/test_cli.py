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
    (["--n-domain", "0"], "n_domain: must be an integer >= 1, got 0"),
    (["--seed", "x"], "expected an integer"),
    (["--preset", "galactic"], "unknown world preset 'galactic'"),
    (["--templates-per-attribute", "9"], "templates_per_attribute: must be an integer in [1, 6], got 9"),
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
    assert r.returncode == 2 and "learning_rate: must be a finite number > 0, got -1.0" in r.stderr
    assert not (tmp_path / "m").exists()


def test_console_script_is_declared():
    assert 'mixcpt = "mixcpt_core.cli:main"' in (ROOT / "pyproject.toml").read_text()


def test_cpt_bad_config_is_one_line_exit_2(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("base_model: checkpoints/base-tiny\nmix: configs/mix-tiny.yaml\nlssd:\n  tau: 0\n")
    r = _run("cpt", str(cfg), "--out", str(tmp_path / "m"), cwd=ROOT)
    assert r.returncode == 2 and "lssd.tau: must be a finite number > 0, got 0.0" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
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


# -- `mixcpt report` and `mixcpt scale`: the commands whose outputs README and docs quote --------------------------------
def _repo_copy(tmp_path, monkeypatch, *paths):
    """A copy of the committed figures/ and of the working tree's ``paths`` (the docs and files beside them) in
    ``tmp_path/repo``, made the repository root of the command line (``cli._repo_root``): the commands write there,
    never into this checkout. The committed figures: `make reproduce` rewrites the checkout's."""
    import shutil

    import mixcpt_core.cli as cli

    from .committed import committed_tree

    root = committed_tree(tmp_path / "repo", "figures", or_working_tree=True)
    for p in paths:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / p, root / p)
    monkeypatch.setattr(cli, "_repo_root", lambda: root)
    return root


def test_report_renders_from_the_figures_it_is_given_and_repairs_a_hand_edit(tmp_path, monkeypatch, capsys):
    """`mixcpt report --figures DIR` on a copy of the committed figures: README's results block and
    docs/reproduction.md are the rendering of DIR; a number typed into the README is put back on the next run."""
    from mixcpt_core.report import BEGIN, current_block, readme_block, reproduction_page

    root = _repo_copy(tmp_path, monkeypatch, "README.md", "docs/reproduction.md")
    figures = root.parent / "elsewhere"
    (root / "figures").rename(figures)  # --figures, not the default folder
    assert main(["report", "--figures", str(figures)]) == 0
    capsys.readouterr()
    readme = (root / "README.md").read_text()
    assert current_block(readme) == readme_block(figures).strip()
    assert (root / "docs/reproduction.md").read_text() == reproduction_page(figures)
    head, block = readme.split(BEGIN, 1)
    (root / "README.md").write_text(f"{head}{BEGIN}\nMix-CPT wins by 0.999.{block}")  # a typed claim in the block
    assert main(["report", "--figures", str(figures)]) == 0
    assert capsys.readouterr().out.strip() == "rendered from figures/: README.md"
    assert (root / "README.md").read_text() == readme
    assert main(["report", "--figures", str(figures)]) == 0
    assert capsys.readouterr().out.strip() == "rendered from figures/: nothing changed"


def test_scale_writes_the_committed_scale_files_and_blocks(tmp_path, monkeypatch, capsys):
    """`mixcpt scale` on a copy of the committed figures and of the base checkpoints' info files, README and
    docs/scaling.md:
    it writes figures/scale.csv, scale_probes.csv and scale.md byte for byte as committed (the files the README and
    notebook 06 quote), draws scale.png, and leaves the README's scale block and docs/scaling.md's blocks as they
    are (they are its rendering). Without results it says which command makes them."""
    infos = ["checkpoints/base-tiny/mixcpt_base.json", "checkpoints/base-small/mixcpt_base.json"]
    root = _repo_copy(tmp_path, monkeypatch, "README.md", "docs/scaling.md", *infos)
    committed = {p: (root / p).read_bytes() for p in ("figures/scale.csv", "figures/scale_probes.csv",
                                                       "figures/scale.md", "README.md", "docs/scaling.md")}
    (root / "figures/scale.png").unlink()
    assert main(["scale"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("wrote scale.csv, scale_probes.csv, scale.md, scale.png to figures/\n")
    assert (root / "figures/scale.md").read_text() in out
    for path, data in committed.items():
        assert (root / path).read_bytes() == data, f"{path}: `mixcpt scale` does not give the committed file"
    assert (root / "figures/scale.png").stat().st_size > 10_000

    (root / "docs/scaling.md").write_text(committed["docs/scaling.md"].decode().replace("| 3.", "| 9.", 1))
    assert main(["scale"]) == 0
    assert "../docs/scaling.md" in capsys.readouterr().out  # a typed-over number is rendered back
    assert (root / "docs/scaling.md").read_bytes() == committed["docs/scaling.md"]

    empty = tmp_path / "empty"
    (empty / "figures").mkdir(parents=True)
    monkeypatch.setattr("mixcpt_core.cli._repo_root", lambda: empty)
    assert main(["scale"]) == 2
    assert capsys.readouterr().err.strip() == ("mixcpt: error: no profile has results yet: run `mixcpt reproduce "
                                               "--profile tiny` first")
