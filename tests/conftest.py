"""Shared fixtures. Offline first: a stray hub call must fail at once, not hang for ~40 s."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def sample_world():
    from mixcpt_core.world import WORLD_PRESETS, generate_world

    return generate_world(WORLD_PRESETS["sample"])


@pytest.fixture(scope="session")
def tiny_world():
    from mixcpt_core.world import WORLD_PRESETS, generate_world

    return generate_world(WORLD_PRESETS["tiny"])


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_world):
    from mixcpt_core.tokenizer import train_tokenizer

    return train_tokenizer(tiny_world.all_texts(), vocab_size=1536)


@pytest.fixture()
def tiny_model(tiny_tokenizer):
    from mixcpt_core.models import build_model

    return build_model("tiny", tiny_tokenizer, seed=0).eval()
