"""Where to train and in which precision: CUDA first, then Apple's MPS, then the CPU.

* ``cuda``: bfloat16 when the GPU supports it (Ampere and newer), else float32;
* ``mps`` (Apple silicon): float32. bf16 on MPS needs macOS 14 and still lacks kernels for some ops, fp16 needs loss
  scaling; float32 is the precision that runs everything here. Ops MPS lacks fall back to the CPU when
  ``PYTORCH_ENABLE_MPS_FALLBACK=1`` (else they raise): :func:`enable_mps_fallback` sets it;
* ``cpu``: float32 (bf16 training on a CPU is slower here and less exact).

The notebooks (:func:`mixcpt_core.notebook.setup_notebook`) and stage 1 of the CLI (``mixcpt cpt``) use
:func:`select_device`; the Trainer then puts the model there. Base pre-training keeps ``use_cpu=True``, and stage 2
uses CUDA when present, else the CPU.
"""

from __future__ import annotations

import os
import sys

MPS_FALLBACK = "PYTORCH_ENABLE_MPS_FALLBACK"


def enable_mps_fallback() -> bool:
    """Set ``PYTORCH_ENABLE_MPS_FALLBACK=1`` unless the user set it. PyTorch reads it once, when ``import torch``
    registers the MPS backend, so it only takes effect if torch is not imported yet; returns whether it will."""
    os.environ.setdefault(MPS_FALLBACK, "1")
    return "torch" not in sys.modules


def select_device() -> tuple[str, "torch.dtype"]:  # noqa: F821 (torch is imported inside: the caller sets env first)
    """``(device, dtype)``: ``("cuda", bfloat16 or float32)``, ``("mps", float32)`` or ``("cpu", float32)``."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if torch.backends.mps.is_available():
        return "mps", torch.float32
    return "cpu", torch.float32
