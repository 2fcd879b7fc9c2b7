"""Errors that the CLI turns into one clear line (no traceback).

Every message names what is wrong and how to fix it; see
``simclr_lite/__main__.py``, which catches :class:`SimCLRError`.
"""
from __future__ import annotations


class SimCLRError(Exception):
    """Base class: a user-facing problem with a one-line explanation."""


class DataError(SimCLRError):
    """A dataset path, archive or image that cannot be used."""


class ConfigError(SimCLRError, ValueError):
    """A configuration value that cannot work (batch size 1, temperature <= 0, ...)."""


class CheckpointError(SimCLRError):
    """A checkpoint that is missing, corrupt or from another model."""


class TrainingError(SimCLRError):
    """Training diverged (NaN or infinite loss)."""


class Preempted(SimCLRError):
    """A stop signal (SIGTERM, SIGUSR1, SIGINT, SIGHUP) arrived during training; a checkpoint was saved.
    ``signum`` is the signal (None when another rank received it)."""

    def __init__(self, message: str, signum: int | None = None) -> None:
        super().__init__(message)
        self.signum = signum
