"""Device selection: CUDA first, then Apple's MPS, then the CPU, each with its precision. The availability checks are
monkeypatched, so every branch runs on any machine."""

import os

import pytest
import torch

from mixcpt_core.device import MPS_FALLBACK, enable_mps_fallback, select_device


@pytest.mark.parametrize("cuda, bf16, mps, expected", [
    (True, True, True, ("cuda", torch.bfloat16)),  # CUDA wins over MPS
    (True, False, False, ("cuda", torch.float32)),  # a GPU without bf16 (pre-Ampere) trains in float32
    (False, False, True, ("mps", torch.float32)),
    (False, True, False, ("cpu", torch.float32)),  # bf16 support is only asked of a CUDA device
    (False, False, False, ("cpu", torch.float32)),
])
def test_select_device_order_and_precision(monkeypatch, cuda, bf16, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert select_device() == expected


def test_setup_notebook_reports_mps(monkeypatch, capsys):
    from mixcpt_core.notebook import setup_notebook

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    nb = setup_notebook("tiny", packages=[])
    assert (nb["device"], nb["dtype"], nb["bf16"]) == ("mps", torch.float32, False)


def test_mps_fallback_is_set_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv(MPS_FALLBACK, raising=False)
    assert enable_mps_fallback() is False  # torch is imported in this process: too late to take effect here
    assert os.environ[MPS_FALLBACK] == "1"
    monkeypatch.setenv(MPS_FALLBACK, "0")
    enable_mps_fallback()
    assert os.environ[MPS_FALLBACK] == "0"


def test_the_cli_sets_the_mps_fallback_before_torch():
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != MPS_FALLBACK}
    code = f"import os, sys, mixcpt_core.cli; print(os.environ.get({MPS_FALLBACK!r}), 'torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["1", "False"]  # set at import, and torch (which reads it) not imported yet
