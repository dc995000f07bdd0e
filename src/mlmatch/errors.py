"""The exceptions mlmatch raises on purpose.

Each one subclasses the built-in exception a caller would naturally catch (``ValueError`` for bad
data, ``RuntimeError`` for a model that cannot be loaded), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "CacheError",
    "CalibrationError",
    "DataFileError",
    "ExemplarError",
    "MissingExtraError",
    "MlmatchError",
    "ModelLoadError",
    "NotEnglishError",
]


class MlmatchError(Exception):
    """Base class of every error mlmatch raises on purpose."""


class ExemplarError(MlmatchError, ValueError):
    """An exemplar folder or file is missing, malformed or inconsistent."""


class ModelLoadError(MlmatchError, RuntimeError):
    """The sentence-embedding model could not be loaded from local files."""


class CacheError(MlmatchError, RuntimeError):
    """Derived data (an export, embeddings) could not be built anywhere: no room to write it."""


class DataFileError(MlmatchError, ValueError):
    """A table to score or evaluate cannot be read or written as asked."""


class CalibrationError(MlmatchError, ValueError):
    """A calibration cannot be fitted from the texts given, read, or used with this matcher."""


class NotEnglishError(MlmatchError, ValueError):
    """A text is clearly not English, so the English model cannot judge it."""

    def __init__(self, message: str, language: str) -> None:
        super().__init__(message)
        self.language = language


class MissingExtraError(MlmatchError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""

    def __init__(self, message: str, extra: str) -> None:
        super().__init__(message)
        self.extra = extra
