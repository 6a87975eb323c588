"""Input checks at the boundary of the public API.

Each check raises :class:`deepclust.errors.InputError` with a message that names the
problem and says what to do, instead of letting a library fail deep inside.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from scipy import sparse

from deepclust.errors import InputError, InputTypeError


def check_features(
    X,
    *,
    name: str = "X",
    min_samples: int = 1,
    dtype=(np.float32, np.float64),
    allow_nonfinite: bool = False,
) -> np.ndarray:
    """Return ``X`` as a C-contiguous 2-D float array, or raise a clear error.

    Sparse matrices and complex numbers are refused; an object array is accepted when
    every entry is a number (as scikit-learn does) and refused with
    :class:`~deepclust.errors.InputTypeError` otherwise. The messages contain the phrases
    scikit-learn's ``check_estimator`` looks for.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    name : str
        How the array is called in error messages.
    min_samples : int
        Fewest rows accepted.
    dtype : dtype or tuple of dtypes
        Accepted float dtypes; anything else is converted to the first.
    allow_nonfinite : bool
        If False, NaN or infinite entries raise, naming the first bad rows.
    """
    if sparse.issparse(X):
        raise InputError(
            f"{name} is a sparse {type(X).__name__}; sparse input is not supported: "
            f"pass a dense array ({name}.toarray()) if it fits in memory"
        )
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise InputError(f"{name} could not be read as a numeric array: {exc}") from None
    if np.iscomplexobj(arr):
        raise InputError(
            f"Complex data not supported: {name} has dtype {arr.dtype}; pass real features, "
            f"e.g. np.abs({name}) or the real and imaginary parts side by side"
        )
    if arr.dtype == object:  # numbers stored as objects are numbers (scikit-learn's rule)
        if any(v is None for v in arr.ravel()):  # numpy would quietly make None a NaN
            raise InputTypeError(
                f"{name} must be numeric, got dtype object with None entries (missing values); "
                "drop or impute them, and convert your features to numbers first"
            )
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise InputTypeError(
                f"{name} must be numeric, got dtype object with an entry that is not a number "
                f"({exc}); convert your features to numbers first"
            ) from None
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InputError(
            f"{name} must be numeric, got dtype {arr.dtype}; convert your features to numbers first"
        )
    if arr.ndim == 1:
        raise InputError(
            f"{name} is 1-D (shape {arr.shape}); features must be 2-D (n_samples, n_features). "
            f"Reshape your data: {name}.reshape(-1, 1) for a single feature or "
            f"{name}.reshape(1, -1) for a single sample."
        )
    if arr.ndim != 2:
        raise InputError(
            f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}; "
            "flatten images first, e.g. X.reshape(len(X), -1)"
        )
    n, d = arr.shape
    if n == 0:
        raise InputError(
            f"{name} has no rows; there is nothing to cluster: 0 sample(s) (shape={arr.shape}) "
            f"while a minimum of {max(1, min_samples)} is required."
        )
    if d == 0:
        raise InputError(
            f"{name} has {n} rows but no features: 0 feature(s) (shape={arr.shape}) while a "
            "minimum of 1 is required."
        )
    if n < min_samples:
        raise InputError(f"{name} has {n} sample(s); at least {min_samples} are needed")
    accepted = dtype if isinstance(dtype, tuple) else (dtype,)
    original = arr
    if arr.dtype not in accepted:
        with np.errstate(over="ignore"):  # overflow is named below
            arr = arr.astype(accepted[0])
    arr = np.ascontiguousarray(arr)
    if not allow_nonfinite:
        finite = np.isfinite(arr).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            shown = ", ".join(map(str, bad[:5])) + (" ..." if bad.size > 5 else "")
            if original is not arr and np.isfinite(original[bad]).all():
                limit = np.finfo(arr.dtype).max
                raise InputError(
                    f"{name} has {bad.size} row(s) with values beyond the {arr.dtype} range "
                    f"(|x| > {limit:.3g}; rows {shown}); rescale the features (e.g. zscore) "
                    "before clustering"
                )
            raise InputError(
                f"{name} has {bad.size} row(s) with NaN or infinite values (rows {shown}); "
                "drop or impute them before clustering"
            )
    return arr


def check_n_clusters(n_clusters, n_samples: int, *, name: str = "n_clusters") -> int:
    """Return ``n_clusters`` as an int in ``[1, n_samples]`` or raise a clear error."""
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, Integral):
        raise InputError(f"{name} must be a positive integer, got {n_clusters!r}")
    k = int(n_clusters)
    if k < 1:
        raise InputError(f"{name} must be at least 1, got {k}")
    if k > n_samples:
        raise InputError(
            f"{name}={k} is larger than the number of samples ({n_samples}); "
            f"choose at most {n_samples} clusters"
        )
    return k


def check_positive_int(value, name: str) -> int:
    """Return ``value`` as an int >= 1 (bools refused) or raise a clear error."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positive_float(value, name: str) -> float:
    """Return ``value`` as a float > 0 (bools refused) or raise a clear error."""
    if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
        raise InputError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_labels(y, n_samples: int | None = None, *, name: str = "labels") -> np.ndarray:
    """Return ``y`` as a 1-D int64 array (of length ``n_samples`` if given)."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        arr = arr.squeeze()
        if arr.ndim != 1:
            raise InputError(f"{name} must be 1-D, got shape {np.asarray(y).shape}")
    if n_samples is not None and arr.shape[0] != n_samples:
        raise InputError(
            f"{name} has {arr.shape[0]} entries but there are {n_samples} samples; "
            "labels must have one entry per row"
        )
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise InputError(f"{name} must be integers (found non-integer or NaN values)")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind in "iub":
        arr = arr.astype(np.int64)
    else:
        # strings or other categories: map to integer codes in sorted order
        _, arr = np.unique(arr, return_inverse=True)
        arr = arr.astype(np.int64)
    return arr


def check_random_state(random_state) -> np.random.Generator:
    """A numpy Generator from None, an int or a Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, Integral):
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    raise InputError(f"random_state must be None, an int or a numpy Generator, got {random_state!r}")


def seed_from(random_state) -> int:
    """An int seed (for libraries that only take ints) derived from ``random_state``."""
    if isinstance(random_state, Integral) and not isinstance(random_state, bool):
        return int(random_state)
    return int(check_random_state(random_state).integers(0, 2**31 - 1))


# ---------------------------------------------------------------------------------------
# Parameters: declared once per class, checked in one place (scikit-learn's
# ``_parameter_constraints`` idea). A constraint is an Interval, Options, Boolean, a Python
# type, or None (the value None is allowed).


class Interval:
    """Numbers of ``kind`` (``Integral`` or ``Real``) between ``low`` and ``high`` (None: no
    bound); ``closed`` is "both", "left", "right" or "neither". Booleans, NaN and infinities
    are never in an interval."""

    def __init__(self, kind: type, low: float | None, high: float | None, closed: str = "both"):
        self.kind, self.low, self.high, self.closed = kind, low, high, closed

    def accepts(self, v) -> bool:
        if isinstance(v, bool) or not isinstance(v, self.kind) or not np.isfinite(float(v)):
            return False
        lo_ok = self.low is None or (v >= self.low if self.closed in ("both", "left") else v > self.low)
        hi_ok = self.high is None or (v <= self.high if self.closed in ("both", "right") else v < self.high)
        return lo_ok and hi_ok

    def describe(self) -> str:
        what = "an integer" if self.kind is Integral else "a number"
        if self.low is not None and self.high is not None:
            lb = "[" if self.closed in ("both", "left") else "("
            rb = "]" if self.closed in ("both", "right") else ")"
            return f"{what} in {lb}{self.low}, {self.high}{rb}"
        if self.low is not None:
            return f"{what} {'>=' if self.closed in ('both', 'left') else '>'} {self.low}"
        if self.high is not None:
            return f"{what} {'<=' if self.closed in ('both', 'right') else '<'} {self.high}"
        return what


class Options:
    """One of the given values (strings compared exactly)."""

    def __init__(self, *values):
        self.values = values

    def accepts(self, v) -> bool:
        return isinstance(v, (str, bool, type(None))) and v in self.values

    def describe(self) -> str:
        return "one of " + ", ".join(map(repr, self.values))


class Boolean(Options):
    """True or False (a string such as "abc" is not a boolean)."""

    def __init__(self):
        super().__init__(True, False)

    def accepts(self, v) -> bool:
        return isinstance(v, (bool, np.bool_))

    def describe(self) -> str:
        return "true or false"


class Each:
    """A non-empty list, tuple or 1-D array each of whose items one of ``constraints``
    accepts (per-level values: ``n_clusters=(1000, 100, 10)``)."""

    def __init__(self, *constraints):
        self.constraints = constraints

    def accepts(self, v) -> bool:
        if not isinstance(v, (list, tuple, np.ndarray)) or np.ndim(v) != 1 or len(v) == 0:
            return False
        return all(any(_accepts(c, x) for c in self.constraints) for x in v)

    def describe(self) -> str:
        return "a list each of whose items is " + " or ".join(_describe(c) for c in self.constraints)


def _accepts(constraint, v) -> bool:
    if constraint is None:
        return v is None
    if isinstance(constraint, type):
        return isinstance(v, constraint)
    return constraint.accepts(v)


def _describe(constraint) -> str:
    if constraint is None:
        return "None"
    if isinstance(constraint, type):
        return {np.random.Generator: "a numpy Generator"}.get(constraint, f"a {constraint.__name__}")
    return constraint.describe()


def check_params(owner: str, params: dict, constraints: dict) -> None:
    """Raise :class:`InputError` for the first parameter in ``params`` whose value none of
    its constraints accept: one line naming the parameter, the value and what is allowed.

    ``constraints`` maps a parameter name to a list of constraints (see above); parameters
    without an entry are not checked here.
    """
    for name, allowed in constraints.items():
        if name not in params:
            continue
        v = params[name]
        if not any(_accepts(c, v) for c in allowed):
            shown = repr(v) if len(repr(v)) <= 60 else repr(v)[:57] + "..."
            raise InputError(f"{owner}: {name}={shown} is not allowed; {name} must be "
                             + " or ".join(_describe(c) for c in allowed))


#: Constraints shared by many classes.
POSITIVE_INT = Interval(Integral, 1, None)
NON_NEGATIVE = Interval(Real, 0, None)
RANDOM_STATE = [None, Interval(Integral, 0, None), np.random.Generator, np.random.RandomState]
#: Metric names that scikit-learn's neighbour trees and pairwise distances all accept.
METRICS = ("euclidean", "l2", "l1", "manhattan", "cityblock", "chebyshev", "minkowski", "cosine")
