"""The committed notebook outputs come from the inputs their text names (where that can be checked without
rerunning them), from a full-mode run, and without frozen progress bars."""

import json
import re

import nbformat
import pytest
import yaml

from .conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _nb(prefix):
    return nbformat.read(next(p for p in NOTEBOOKS if p.name.startswith(prefix)), as_version=4)


def _text(output) -> str:
    if output.get("output_type") == "stream":
        return output["text"]
    data = output.get("data", {})
    return "\n".join(str(data.get(k, "")) for k in ("text/plain", "text/markdown", "text/html"))


def outputs(nb) -> str:
    return "\n".join(_text(o) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def markdown(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_saved_from_a_full_mode_run_without_frozen_progress_bars(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "full mode" in "".join(_text(o) for o in first.outputs), "saved from a FAST run, or not run"
    bars = [_text(o)[:60] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if "application/vnd.jupyter.widget-view+json" in o.get("data", {}) and re.search(r"\d+%\|", _text(o))]
    assert bars == [], f"progress-bar widgets in the saved outputs: {bars[:3]}"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []


def test_00_shows_the_shipped_base_checkpoint():
    from mixcpt_core.training import base_info

    nb = _nb("00_")
    assert "checkpoints/base-tiny" in markdown(nb)
    info = base_info(ROOT / "checkpoints" / "base-tiny")
    line = f"trained on {info['train_tokens']:,} tokens in {info['train_seconds']:.0f} s"
    assert line in outputs(nb)


def test_01_composition_is_that_of_the_config_it_names():
    from mixcpt_core.config import load_config
    from mixcpt_core.data import MixConfig, build_mix

    nb = _nb("01_")
    assert "configs/mix-tiny.yaml" in markdown(nb)
    _, comp = build_mix(load_config(MixConfig, ROOT / "configs" / "mix-tiny.yaml"), root=ROOT)
    assert f"{comp['tokens']:,} tokens in {comp['blocks']:,} blocks of {comp['block_length']}" in outputs(nb)


def test_02_trained_from_its_configs_and_saved_where_03_reads():
    from mixcpt_core.config import load_config
    from mixcpt_core.cpt import CPTConfig

    cfg = load_config(CPTConfig, ROOT / "configs" / "cpt-tiny.yaml")
    out = outputs(_nb("02_"))
    assert (f"stage 1 from {cfg.base_model} on the D_MIX of {cfg.mix}, {cfg.max_steps} steps per run; "
            f"saved to runs/nb02/lam0.5") in out
    assert f"[step {cfg.max_steps}] heldout_qa_acc" in out


def test_03_starts_from_the_stage1_model_its_text_names():
    nb = _nb("03_")
    assert "runs/nb02/lam0.5" in markdown(nb)
    assert "starting model: runs/nb02/lam0.5" in outputs(nb)


def test_05_names_the_datasets_and_sizes_its_configs_use():
    nb = _nb("05_")
    text, out = markdown(nb), outputs(nb)
    mix = yaml.safe_load((ROOT / "configs" / "gpu-qwen2.5-0.5b-mix.yaml").read_text())
    for source in mix["sources"]:
        assert source["hub"] in text and source["hub"] in out, source["hub"]
    assert "alpaca" not in text.lower()  # the GPU mix uses UltraChat
    summary = json.loads((ROOT / "figures" / "smollm2_cpu.json").read_text())  # written by the same full run
    assert f"{summary['steps']} steps:" in out
