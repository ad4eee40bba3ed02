"""Atomic writes and removals: what a killed process leaves behind is never mistaken for a complete file."""

import pytest

from mixcpt_core.atomic import atomic_directory, atomic_file, remove_directory, write_text_atomic


def test_write_text_atomic_replaces_in_one_step_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "info.json"
    write_text_atomic(path, "first\n")
    write_text_atomic(path, "second\n")
    assert path.read_text() == "second\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["info.json"]
    with pytest.raises(KeyboardInterrupt), atomic_file(path) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt  # killed (SIGTERM) while writing
    assert path.read_text() == "second\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["info.json"]


def test_remove_directory_renames_first_and_clears_what_a_killed_removal_left(tmp_path):
    ckpt = tmp_path / "trainer-sft" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    left = tmp_path / ".trainer-sft.removing" / "checkpoint-4"  # an earlier removal killed half-way
    left.mkdir(parents=True)
    remove_directory(tmp_path / "trainer-sft")
    assert list(tmp_path.iterdir()) == []
    remove_directory(tmp_path / "trainer-sft")  # absent: nothing to do


def test_atomic_directory_keeps_the_old_result_when_the_block_fails(tmp_path):
    out = tmp_path / "world"
    with atomic_directory(out, "world.json") as tmp:
        (tmp / "world.json").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_directory(out, "world.json") as tmp:
        (tmp / "world.json").write_text("half")
        raise KeyboardInterrupt  # Ctrl-C, or SIGTERM as mixcpt's CLI turns it into one
    assert (out / "world.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world"]
