"""Errors that deepclust raises on purpose.

Every message names the problem and what to do about it; the CLI prints the message
alone (no traceback) and exits with status 2.
"""

from __future__ import annotations


class DeepclustError(Exception):
    """Base class of the errors deepclust raises deliberately."""


class InputError(DeepclustError, ValueError):
    """The user's data or parameters cannot be used as given."""


class DataNotFoundError(DeepclustError, FileNotFoundError):
    """A dataset, file or model weights are not on this machine."""
