"""Errors that deepclust raises on purpose.

Every message names the problem and what to do about it; the CLI prints the message
alone (no traceback) and exits with status 2.
"""

from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError


class DeepclustError(Exception):
    """Base class of the errors deepclust raises deliberately."""


class InputError(DeepclustError, ValueError):
    """The user's data or parameters cannot be used as given."""


class InputTypeError(InputError, TypeError):
    """Data of a type that cannot be read as numbers (scikit-learn raises TypeError here)."""


class NotFittedError(InputError, _SklearnNotFittedError):
    """An estimator was used before ``fit``; also scikit-learn's ``NotFittedError``."""


class OutputError(InputError):
    """An output folder cannot be written: full, read-only or forbidden. Raised by the atomic
    writers (:func:`deepclust.runinfo.atomic_write`), so a loop that records per-item failures
    can stop on it instead of recording one failure per item."""


class DataNotFoundError(DeepclustError, FileNotFoundError):
    """A dataset, file or model weights are not on this machine."""
