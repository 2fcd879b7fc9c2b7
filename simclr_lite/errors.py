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
    """A preemption signal (SIGTERM, SIGUSR1) arrived during training; a checkpoint was saved."""
