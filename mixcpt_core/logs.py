"""Where a training run's output goes: one progress bar on the screen, every logged step in a file.

The Trainer prints every logged dict: ``PrinterCallback`` (``disable_tqdm=True``), ``ProgressCallback`` above its bar
(``disable_tqdm=False``) or ``NotebookProgressCallback``'s table in Jupyter. With ``logging_steps=1`` that is a line
per step, hundreds per stage, and the lines a reader needs (each pipeline's result) drown in them.
:func:`quiet_trainer` takes those callbacks out and adds :class:`LogFile` (the run's ``log_history``, one JSON line
per row, in the run's folder) and :class:`StepBar` (one bar per run). What is logged, and ``log_history``, stay as
they were: only where the rows are shown changes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from transformers import TrainerCallback

LOG_FILE = "train_log.jsonl"  # base pre-training and stage 1; stage 2 writes sft_log.jsonl and dpo_log.jsonl


class LogFile(TrainerCallback):
    """Writes ``state.log_history`` to ``path`` as it grows, one JSON object per line: the loss dictionaries of every
    ``logging_steps``, the QA rows of :class:`~mixcpt_core.training.QAEvalCallback` and the Trainer's closing summary.

    At the start of training the file is rewritten from the history (restored from the checkpoint on a resume), so a
    resumed run's file holds the same rows as an uninterrupted run's; ``tail -f`` follows a run. Only the main
    process writes (``torchrun``, ``accelerate launch``)."""

    def __init__(self, path: str | Path):
        self.path, self.written = Path(path), 0

    def _write(self, state, rewrite: bool = False) -> None:
        if not state.is_world_process_zero or (not rewrite and self.written == len(state.log_history)):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w" if rewrite else "a", encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in state.log_history[0 if rewrite else self.written:])
        self.written = len(state.log_history)

    def on_train_begin(self, args, state, control, **kw):
        self._write(state, rewrite=True)

    def on_step_end(self, args, state, control, **kw):
        self._write(state)

    def on_log(self, args, state, control, **kw):
        self._write(state)

    def on_train_end(self, args, state, control, **kw):
        self._write(state)


def interactive() -> bool:
    """Whether progress bars are drawn where they can be redrawn and erased: a terminal or a notebook, not a file or a
    pipe. Elsewhere a run's bar is redrawn rarely and the transient bars (scoring, generating) are not shown."""
    from tqdm import auto

    return sys.stderr.isatty() or auto.notebook_tqdm is not auto.std_tqdm


def read_log(path: str | Path) -> list[dict]:
    """The rows of a :class:`LogFile`, in order."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


class StepBar(TrainerCallback):
    """One progress bar for a run, with the last logged loss beside it; ``tqdm.auto``: a widget in Jupyter, a line
    redrawn in place in a terminal. Written to a file or a pipe (a scheduler's log), it is redrawn at most once a
    minute, so the log gets a few lines per run instead of one per step.

    One bar can span trainers run one after the other (stage 2: SFT, then DPO): give ``total`` (all their steps) and
    set ``offset`` (the steps before) before the next trainer starts; the bar shows ``offset + global_step``, also
    after a resume, and closes when it reaches ``total`` (or at :meth:`close`). Without ``total`` it spans one
    trainer and closes when training ends."""

    def __init__(self, desc: str, total: int | None = None):
        self.desc, self.total, self.offset, self.bar = desc, total, 0, None

    def _show(self, state) -> None:
        if self.bar is not None:
            self.bar.update(self.offset + state.global_step - self.bar.n)

    def on_train_begin(self, args, state, control, **kw):
        if state.is_world_process_zero and self.bar is None:
            from tqdm import auto

            every = 0.1 if interactive() else 60.0  # seconds between redraws
            self.bar = auto.tqdm(total=self.total or state.max_steps, desc=self.desc, dynamic_ncols=True,
                                 mininterval=every, maxinterval=max(10.0, every))
        self._show(state)

    def on_step_end(self, args, state, control, **kw):
        self._show(state)

    def on_log(self, args, state, control, logs=None, **kw):
        loss = (logs or {}).get("loss")
        if self.bar is not None and isinstance(loss, (int, float)):
            self.bar.set_postfix(loss=f"{loss:.3g}", refresh=False)

    def on_train_end(self, args, state, control, **kw):
        if self.bar is not None and (self.total is None or self.bar.n >= self.total):
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def quiet_trainer(trainer, log_file: str | Path, bar: StepBar | str):
    """``trainer`` without the callbacks that print its logs, with :class:`LogFile` ``log_file`` and a progress bar
    instead: ``bar``, a :class:`StepBar` (shared with other trainers), or the description of a bar of its own.
    Returns the trainer."""
    from transformers.trainer import DEFAULT_PROGRESS_CALLBACK  # ProgressCallback, or the notebook's table
    from transformers.trainer_callback import PrinterCallback

    for printing in (PrinterCallback, DEFAULT_PROGRESS_CALLBACK):
        trainer.remove_callback(printing)
    trainer.add_callback(LogFile(log_file))
    trainer.add_callback(bar if isinstance(bar, StepBar) else StepBar(bar))
    return trainer

