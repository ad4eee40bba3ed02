"""Blocks of the docs rendered from the files that hold their numbers, so that no measured number is typed by hand.

A block sits between a ``<!-- NAME:begin (rendered ... from SOURCE; do not edit by hand) -->`` line and a
``<!-- NAME:end -->`` line. :data:`BLOCKS` lists the blocks rendered here: their page, their source file and the
function that renders them. ``python -m mixcpt_core.docblocks`` re-renders them all (after a benchmark rewrote its
JSON, say); ``tests/test_doc_numbers.py`` checks that each block equals its rendering and that every number outside a
block is tied to a file. Other commands render their own blocks: ``mixcpt report`` (README's results,
docs/reproduction.md), ``mixcpt scale`` (README's scale section, docs/scaling.md's notebook-05 blocks: listed here
too), ``mixcpt notebooks`` (the course and runtime tables), ``python -m mixcpt_core.coverage`` and
``mixcpt calibrate``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent


def _json(root: Path, name: str) -> dict:
    return json.loads((root / name).read_text(encoding="utf-8"))


# -- docs/stage1.md: `mixcpt bench lssd` and `mixcpt bench cache-error` ------------------------------------------------
BENCH_VARIANT_LABELS = {
    "ce": "(a) CE only, model's own forward (full logits)",
    "naive": "(b) LSSD on full logits",
    "chunked": "(c) chunked LSSD, online frozen teacher",
    "cached": "(d) chunked LSSD, cached top-64 teacher",
    "chunked_ce": "(e) chunked CE only (lambda = 0, no teacher)",
}
# the stage-1 loss's targets, fixed before the benchmark ran: (label, ratio key, bound, smallest vocabulary it is for)
BENCH_TARGETS = (("(c)/(a) step time ≤ 1.45", "chunked_over_ce_time", 1.45, 0),
                 ("(d)/(a) step time ≤ 1.15", "cached_over_ce_time", 1.15, 0),
                 ("(c) peak memory ≤ 1.2 × (a)", "chunked_over_ce_peak_mem", 1.2, 0),
                 ("(c) peak memory ≤ 0.5 × (b) (at vocab ≥ 32k)", "chunked_over_naive_peak_mem", 0.5, 32_000))


def bench_lssd_block(report: dict) -> str:
    """Step time and peak memory of every variant at both settings, and the targets met or missed, from
    ``mixcpt bench lssd``'s JSON (``figures/bench_lssd.json``)."""
    settings = report["config"]["settings"]
    names = list(report["results"])
    head = " | ".join(f"{'tiny model, ' if i == 0 else ''}vocab {settings[n]['vocab']:,}: s/step | peak MB"
                      for i, n in enumerate(names))
    lines = [f"| variant | {head} |", "|---|" + "---|---|" * len(names)]
    for variant, label in BENCH_VARIANT_LABELS.items():
        cells = [f"{report['results'][n][variant]['step_s']:.3f} | {report['results'][n][variant]['peak_mem_mb']:.0f}"
                 for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| target | " + " | ".join(f"vocab {settings[n]['vocab']:,}" for n in names) + " |",
              "|---|" + "---|" * len(names)]
    for label, key, bound, min_vocab in BENCH_TARGETS:
        cells = []
        for n in names:
            value = f"{report['results'][n]['ratios'][key]:.2f}"
            if settings[n]["vocab"] < min_vocab:
                cells.append(f"({value})")  # the target is not for this size
            else:
                cells.append(value if report["results"][n]["ratios"][key] <= bound else f"**{value}: missed**")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cache_error_block(data: dict) -> str:
    """The cached objective against the exact one per k, from ``mixcpt bench cache-error``'s JSON."""
    lines = ["| k | L_LSSD cached / exact | gradient cosine to exact |", "|---|---|---|"]
    lines += [f"| {r['k']} | {r['ratio']:.3f} | {r['grad_cosine']:.4f} |" for r in data["rows"]]
    return "\n".join(lines)


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository root
    source: str  # the file its numbers come from
    render: Callable[[Path], str]  # root -> the block's text
    command: str = "python -m mixcpt_core.docblocks"

    def markers(self, name: str) -> tuple[str, str]:
        if name in _SCALING_MARKERS:
            return _SCALING_MARKERS[name]
        return (f"<!-- {name}:begin (rendered by `{self.command}` from {self.source}; do not edit by hand) -->",
                f"<!-- {name}:end -->")


def _smollm2(name: str) -> Callable[[Path], str]:
    def render(root: Path) -> str:
        from .scaling import SMOLLM2_CPU_JSON, smollm2_cpu_blocks

        return smollm2_cpu_blocks(_json(root, SMOLLM2_CPU_JSON))[name]

    return render


def _scaling_markers() -> dict[str, tuple[str, str]]:
    # the markers `mixcpt scale` writes (scaling.SMOLLM2_CPU_BLOCKS), without importing scaling (transformers)
    source = "figures/smollm2_cpu.json"
    return {name: (f"<!-- {name}:begin (rendered by `mixcpt scale` from {source}; do not edit by hand) -->",
                   f"<!-- {name}:end -->") for name in ("smollm2-cpu", "smollm2-conversion")}


_SCALING_MARKERS = _scaling_markers()

BLOCKS: dict[str, Block] = {
    "bench-lssd": Block("docs/stage1.md", "figures/bench_lssd.json",
                        lambda root: bench_lssd_block(_json(root, "figures/bench_lssd.json"))),
    "cache-error": Block("docs/stage1.md", "figures/cache_error.json",
                         lambda root: cache_error_block(_json(root, "figures/cache_error.json"))),
    "base-model": Block("docs/base-model.md", "figures/base_model.md",
                        lambda root: (root / "figures/base_model.md").read_text(encoding="utf-8").strip()),
    "smollm2-cpu": Block("docs/scaling.md", "figures/smollm2_cpu.json", _smollm2("smollm2-cpu"), "mixcpt scale"),
    "smollm2-conversion": Block("docs/scaling.md", "figures/smollm2_cpu.json", _smollm2("smollm2-conversion"),
                                "mixcpt scale"),
}


def current(name: str, root: str | Path = ROOT) -> str:
    """The text between the markers of block ``name`` on its page (stripped)."""
    from .runtimes import block

    b = BLOCKS[name]
    begin, end = b.markers(name)
    text = (Path(root) / b.page).read_text(encoding="utf-8")
    if begin not in text or end not in text:
        raise ValueError(f"{b.page}: the markers of block {name!r} are missing ({begin!r} ... {end!r})")
    return block(text, begin, end)


def render_all(root: str | Path = ROOT) -> list[str]:
    """Re-render every block of :data:`BLOCKS` from its source; returns the pages that changed."""
    from .atomic import write_text_atomic
    from .runtimes import replace_block

    root = Path(root)
    changed = []
    for page in dict.fromkeys(b.page for b in BLOCKS.values()):
        path = root / page
        old = path.read_text(encoding="utf-8")
        new = old
        for name, b in BLOCKS.items():
            if b.page == page:
                begin, end = b.markers(name)
                new = replace_block(new, begin, end, b.render(root), page)
        if new != old:
            write_text_atomic(path, new)
            changed.append(page)
    return changed


if __name__ == "__main__":
    changed = render_all()
    print(f"rendered: {', '.join(changed) if changed else 'nothing changed'}")
