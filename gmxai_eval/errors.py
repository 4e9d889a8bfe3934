"""Typed errors. Every message says what was expected and what came."""

from __future__ import annotations

from pathlib import Path


class GMXError(Exception):
    """Base class of every error raised by gmxai_eval on purpose."""


class ConfigError(GMXError, TypeError):
    """Unknown or invalid configuration keyword / value."""


class ShapeError(GMXError, ValueError):
    """A tensor or array has the wrong shape, dtype or device."""


class NonFiniteError(GMXError, ValueError):
    """NaN or infinite values where finite values are required."""


class ModelStateError(GMXError, RuntimeError):
    """The model is in a state the operation cannot work with (training mode, reused modules, ...)."""


class UnknownNameError(GMXError, LookupError):
    """A registry lookup failed; the message lists close matches."""

    def __str__(self) -> str:  # LookupError would repr() the message
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(GMXError, ValueError):
    """A name was registered twice."""


class DataError(GMXError, ValueError):
    """Bad input data. Carries the file and, where known, the row / column."""

    def __init__(self, message: str, *, path: str | Path | None = None, row: int | None = None,
                 column: str | None = None) -> None:
        self.path = None if path is None else str(path)
        self.row = row
        self.column = column
        where = []
        if self.path is not None:
            where.append(self.path)
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")


class ConvergenceError(GMXError, RuntimeError):
    """An iterative solver did not reach its tolerance."""


class ResumeError(GMXError, RuntimeError):
    """A stored partial result cannot be resumed (spec or code changed, corrupt file)."""


class CheckpointError(DataError):
    """A checkpoint cannot be loaded: not a checkpoint, truncated, wrong architecture, card
    without architecture, or refused by weights-only loading. Carries the file (``path``)."""


class OutputError(GMXError, RuntimeError):
    """An output location cannot be used: a file in the way, no permission, no space, a run
    folder that belongs to another spec, a run id that is not a plain folder name."""

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(message if self.path is None else f"{self.path}: {message}")


class StaleCacheWarning(UserWarning):
    """A cached file failed its integrity check (key, code stamp, checksum or schema) and is
    recomputed instead of being used."""
