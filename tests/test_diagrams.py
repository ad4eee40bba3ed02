"""The drawn figures of the method: they draw what the code does (the swap by the loss's own function)."""

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

from mixcpt_core import diagrams  # noqa: E402
from mixcpt_core.losses import swap_top1_with_label  # noqa: E402


def test_swap_diagram_draws_the_loss_swap(tmp_path):
    fig = diagrams.draw_swap(tmp_path / "swap.png")
    assert (tmp_path / "swap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    z = torch.tensor([diagrams.SWAP_LOGITS])
    swapped = swap_top1_with_label(z, torch.tensor([diagrams.SWAP_LABEL]))[0].tolist()
    heights = [round(p.get_height(), 6) for p in fig.axes[1].patches]
    assert heights == [round(v, 6) for v in swapped]
    top1 = diagrams.SWAP_LOGITS.index(max(diagrams.SWAP_LOGITS))
    assert swapped[diagrams.SWAP_LABEL] == max(diagrams.SWAP_LOGITS) and top1 != diagrams.SWAP_LABEL
    q = [p.get_height() for p in fig.axes[3].patches]
    assert abs(sum(q) - 1) < 1e-6 and max(range(len(q)), key=q.__getitem__) == diagrams.SWAP_LABEL


def test_pipelines_diagram_shows_every_stage_and_what_data_it_sees(tmp_path):
    fig = diagrams.draw_pipelines(tmp_path / "pipelines.png")
    assert (tmp_path / "pipelines.png").stat().st_size > 10_000
    texts = "\n".join(t.get_text() for t in fig.axes[0].texts)
    for name, stages in diagrams.PIPELINES.items():
        assert name in texts
        for title, loss, data in stages:
            assert f"{title}\n{loss}" in texts
            for kind, how in data:
                assert f"{kind}\n{how}" in texts
    # Mix-CPT's stage 1 sees all three kinds of data; the traditional CPT only the domain documents
    assert {k for k, _ in diagrams.PIPELINES["Mix-CPT"][0][2]} == set(diagrams.DATA_COLOURS)
    assert {k for k, _ in diagrams.PIPELINES["traditional"][0][2]} == {"domain documents"}


def test_committed_diagrams_exist():
    from .conftest import ROOT

    for name in ("pipelines.png", "swap_diagram.png"):
        assert (ROOT / "figures" / name).read_bytes()[:4] == b"\x89PNG"
