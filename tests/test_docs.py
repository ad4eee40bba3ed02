"""The documentation holds together: every relative link of README.md and docs/*.md points at a file that exists
(and, for a Markdown target with an anchor, at a heading that exists), and no file a reader gets outside tests/
refers to material that is not in the repository (the developers' notes, their brief, issue numbers)."""

import re
import subprocess

import pytest

from .conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _without_code(text: str) -> str:
    text = re.sub(r"(?ms)^(```|~~~).*?^\1", "", text)  # fenced blocks
    return re.sub(r"`[^`\n]*`", "", text)  # inline code


def links(text: str) -> list[str]:
    return LINK.findall(_without_code(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path) -> set[str]:
    text = re.sub(r"(?ms)^(```|~~~).*?^\1", "", path.read_text(encoding="utf-8"))
    return {slug(m) for m in re.findall(r"(?m)^#{1,6}\s+(.*?)\s*#*\s*$", text)}


def broken_links(path) -> list[str]:
    bad = []
    for target in links(path.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
    return bad


def test_the_link_checker_catches_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n## The sweeps (`x`, y.csv)\n\n[ok](b.md) [ok](#the-sweeps-x-ycsv) "
                                   "[bad](missing.md) [bad anchor](b.md#nope) `[in code](gone.md)` "
                                   "![img](pic.png) [web](https://example.com/x)\n")
    (tmp_path / "b.md").write_text("# B\n")
    (tmp_path / "pic.png").write_bytes(b"")
    assert broken_links(tmp_path / "a.md") == ["missing.md: no such file",
                                               f"b.md#nope: no heading #nope in {tmp_path / 'b.md'}"]


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_every_relative_link_resolves(path):
    assert broken_links(path) == []


def test_the_readme_is_a_short_front_door():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text) <= 15_000, f"README.md has {len(text):,} characters; move details into docs/"
    fence, reproduce, test, end = text.splitlines()[2:6]  # the two commands a newcomer runs, first thing
    assert (fence, end) == ("```bash", "```")
    assert reproduce.startswith("make reproduce   # the main job") and test.startswith("make test        # the test")


# What a reader cannot follow: the developers' notes and brief outside the repository, and issue numbers.
OUTSIDE = re.compile(r"\.\./shared|shared/research|BRIEF|(?i:\bissues?\s+#?\d+)")
BINARY = {".png", ".jpg", ".safetensors", ".parquet", ".arrow", ".gguf", ".bin", ".pdf"}


def reader_files() -> list[str]:
    """Every file in the repository (tracked, or new and not ignored) outside tests/."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split("\n")
    return sorted(p for p in out if p and not p.startswith("tests/") and (ROOT / p).is_file()
                  and (ROOT / p).suffix not in BINARY)


def outside_references(text: str) -> list[str]:
    return [m.group(0) for m in OUTSIDE.finditer(text)]


def test_the_self_containment_check_catches_each_kind():
    assert outside_references("see ../shared/x.md, shared/research/paper.md, BRIEF §3, issue 6, issues 4 and 5, "
                              "Issue #12") == ["../shared", "shared/research", "BRIEF", "issue 6", "issues 4",
                                               "Issue #12"]
    assert outside_references("a tissue 6 cm; the brief answer; an issue with the cache") == []


def test_no_file_outside_tests_refers_to_material_outside_the_repository():
    files = reader_files()
    assert "README.md" in files and any(f.startswith("notebooks/") for f in files)
    bad = {}
    for name in files:
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        found = outside_references(text)
        if found:
            bad[name] = sorted(set(found))
    assert bad == {}, "references to material outside the repository:\n" + "\n".join(f"{k}: {v}" for k, v in bad.items())
