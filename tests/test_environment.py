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
