"""Killing a real ``mixcpt`` process at a random moment, for the interruption tests of every long stage.

Each test runs its command once to the end (the reference), then again in a fresh output directory, killed with
SIGKILL or SIGTERM a random time after its first Trainer checkpoint appeared, then once more to the end (the rerun
resumes), and compares the result with the reference's. The random delay is drawn in [0, the time the reference
took from that checkpoint to its result file], so the kill lands anywhere in what follows: training, a later
checkpoint being written (or the older one being rotated out), the evaluation, the weights and the result being
written, and now and then just after (the clean-up, the interpreter's exit)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .conftest import ROOT

POLL_S = 0.02


def mixcpt_command(*args) -> list[str]:
    """``mixcpt <args>`` as a subprocess of this interpreter (no installed entry point needed)."""
    return [sys.executable, "-m", "mixcpt_core.cli", *map(str, args)]


def _wait_for(marker_dir: Path, pattern: str, proc: subprocess.Popen) -> bool:
    while proc.poll() is None:
        if any(marker_dir.glob(pattern)):
            return True
        time.sleep(POLL_S)
    return any(marker_dir.glob(pattern))


def run_to_the_end(command: list[str], marker_dir: Path, pattern: str, result: Path) -> float:
    """Run ``command`` to its end; return the seconds from the first file matching ``marker_dir/pattern`` (a glob:
    the first checkpoint's ``trainer_state.json``) to the moment its ``result`` (the file it writes last) appeared.
    Fails if it exits non-zero or never writes either."""
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    saw = _wait_for(marker_dir, pattern, proc)
    t = time.monotonic()
    while proc.poll() is None and not result.exists():
        time.sleep(POLL_S)
    seconds = time.monotonic() - t
    _, err = proc.communicate()
    assert proc.returncode == 0, f"{' '.join(command[2:])} exited {proc.returncode}: {err[-2000:]}"
    assert saw and result.exists(), f"{' '.join(command[2:])} never wrote {marker_dir / pattern} or {result}"
    return seconds


@dataclass
class Kill:
    signal_name: str
    delay: float  # seconds after the first checkpoint appeared
    exit_code: int  # of the killed process: -9 for SIGKILL, 130 for SIGTERM (mixcpt turns it into an interrupt)
    finished: bool  # the command's result file was complete when it died (the kill came after the work)
    ended_at: float  # time.time() when it had died: files modified later were written by the rerun

    def __str__(self) -> str:
        notes = [f"exit {self.exit_code}"] + (["result already written"] if self.finished else []) + \
            (["not sent: the run had ended"] if self.exit_code == 0 else [])
        return f"{self.signal_name} {self.delay:.2f} s after the first checkpoint ({', '.join(notes)})"


def kill_then_rerun(command: list[str], marker_dir: Path, pattern: str, remaining_s: float, signal_name: str,
                    result: Path) -> Kill:
    """Start ``command``, send it ``signal_name`` a random delay after the first file matching ``marker_dir/pattern``
    appeared (uniform in [0, ``remaining_s``]: what :func:`run_to_the_end` measured), then run the same command again
    to its end. ``result`` is the file the command writes last, to mark its result complete.

    Asserts that the process died of the signal (or, if it had already ended, that it ended well) and that the
    rerun exits 0. Returns what happened (in the message of any later assertion, it makes a failure reproducible)."""
    delay = random.uniform(0.0, remaining_s)
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        saw = _wait_for(marker_dir, pattern, proc)
        time.sleep(delay)
        running = proc.poll() is None
        if running:
            proc.send_signal(getattr(signal, signal_name))
    finally:
        _, err = proc.communicate()
    kill = Kill(signal_name, delay, proc.returncode, result.exists(), time.time())
    assert saw, f"the run ended (exit {proc.returncode}) before its first checkpoint: {err[-2000:]}"
    # SIGTERM while the command works: mixcpt's one-line interrupt, exit 130; -15 if it landed after the command's
    # work, while the interpreter shut down (the default handler is back by then). A delay drawn near the end of the
    # window can find a run a little faster than the reference already gone: then it must have ended well (exit 0),
    # and the rerun of a finished run is what gets tested.
    expected = ((-9,) if signal_name == "SIGKILL" else (130, -15)) if running else (0,)
    assert proc.returncode in expected, f"{kill}: expected exit {expected}; stderr: {err[-2000:]}"
    if proc.returncode == 130:
        assert err.strip().splitlines()[-1].startswith("mixcpt: interrupted (SIGTERM); rerun the same command"), err
    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert rerun.returncode == 0, f"rerun after {kill}: {rerun.stderr[-2000:]}"
    return kill
