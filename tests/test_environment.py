"""requirements.txt is the one list of pins; environment.yml (conda) must list the same."""

import yaml

from .conftest import ROOT


def _requirements():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]


def test_requirements_are_exact_pins_with_torch_first():
    reqs = _requirements()
    assert reqs[0] == "torch==2.13.0"
    assert all("==" in r and r.count("==") == 1 for r in reqs), [r for r in reqs if "==" not in r]


def test_environment_yml_matches_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(pip) == sorted(_requirements())
    assert "pip" in env["dependencies"]


def _make_dry_run(*variables) -> list[str]:
    """The pip commands ``make`` would run to set up .venv (``-n``: print only; ``-B``: as on a fresh clone)."""
    import subprocess

    r = subprocess.run(["make", "-n", "-B", ".venv/.installed", *variables], cwd=ROOT, capture_output=True, text=True,
                       check=True)
    return [ln for ln in r.stdout.splitlines() if "pip install" in ln]


def test_cpu_only_install_takes_torch_from_the_cpu_index_first():
    default = _make_dry_run()
    assert not any("torch" in ln or "index-url" in ln for ln in default), default  # the tested route, unchanged
    for variables, index in [(["CPU_ONLY=1"], "https://download.pytorch.org/whl/cpu"),
                             (["TORCH_INDEX=https://example.org/whl/cpu"], "https://example.org/whl/cpu")]:
        cmds = _make_dry_run(*variables)
        torch_line = next(i for i, ln in enumerate(cmds) if "--index-url" in ln)
        assert cmds[torch_line].endswith(f'pip install -q "{_requirements()[0]}" --index-url {index}'), cmds
        # torch first, so that `-r requirements.txt` finds its pin satisfied and never fetches a CUDA build
        assert torch_line < next(i for i, ln in enumerate(cmds) if "-r requirements.txt" in ln)
        assert [c for i, c in enumerate(cmds) if i != torch_line] == default
