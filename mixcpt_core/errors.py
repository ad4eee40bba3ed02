"""Errors a ``mixcpt`` command reports as one line (``mixcpt: error: …``) instead of a traceback.

This module imports nothing heavy, so that the command line can catch them without importing torch: a command that
fails on its arguments (``mixcpt world --preset galactic``) answers at once.
"""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss (or weights); the message names the step and the last good checkpoint."""


__all__ = ["NonFiniteLossError"]
