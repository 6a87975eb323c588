"""What every deepclust clusterer shares: the estimator contract and the name registry.

Clusterers follow scikit-learn's API: ``__init__`` only stores parameters, all work and
validation happen in ``fit``, learned state ends in an underscore, ``fit`` returns ``self``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin

from deepclust.errors import InputError, NotFittedError
from deepclust.validation import check_features, check_n_clusters, check_params

_REGISTRY: dict[str, type] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register(name: str, description: str = "") -> Callable[[type], type]:
    """Class decorator: make a clusterer available by ``name`` (CLI, configs)."""

    def deco(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise RuntimeError(f"clusterer name {name!r} registered twice")
        _REGISTRY[name] = cls
        _DESCRIPTIONS[name] = description or (cls.__doc__ or "").strip().splitlines()[0]
        return cls

    return deco


def available_methods() -> dict[str, str]:
    """Registered clusterer names mapped to a one-line description."""
    return dict(sorted(_DESCRIPTIONS.items()))


def get_clusterer_class(name: str) -> type:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise InputError(f"unknown clustering method {name!r}; known methods: {known}") from None


def make_clusterer(name: str, **params) -> BaseClusterer:
    """Build the clusterer registered as ``name`` with ``params``.

    Parameters that the class does not take raise an error naming the ones it does.
    """
    cls = get_clusterer_class(name)
    accepted = cls._get_param_names()
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InputError(
            f"method {name!r} does not take parameter(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(accepted)}"
        )
    est = cls(**params)
    est._validate_params()  # before any data is read
    return est


class BaseClusterer(ClusterMixin, BaseEstimator):
    """Shared helpers; subclasses implement ``fit``.

    ``takes_n_clusters`` says whether the method is told k (k-means) or finds it
    (HDBSCAN, affinity propagation); the CLI and the k sweep read it. ``streams_rows`` says
    whether ``fit`` takes a :class:`~deepclust.data.rows.RowSource` (or a store) and reads
    it block by block without loading it; the pipeline streams stores to those that do.

    The scikit-learn contract lives here once: :meth:`_validate_X` checks the input and
    records ``n_features_in_`` in ``fit`` (``reset=True``) or compares with it afterwards;
    :meth:`_check_fitted` raises :class:`~deepclust.errors.NotFittedError` (a
    deepclust ``InputError`` and scikit-learn's ``NotFittedError``). Every registered
    method passes ``sklearn.utils.estimator_checks.check_estimator``
    (``tests/test_estimator_checks.py``).
    """

    takes_n_clusters: bool = True
    streams_rows: bool = False
    #: The learned attribute whose presence means "fitted".
    _fitted_attribute: str = "labels_"
    #: parameter -> allowed constraints (:mod:`deepclust.validation`), checked by
    #: :meth:`_validate_params` at the start of ``fit`` (and by :func:`make_clusterer`).
    _parameter_constraints: dict = {}

    def _validate_params(self) -> None:
        """Refuse a parameter of a wrong type, range or choice, naming it and what is allowed."""
        name = next((n for n, c in _REGISTRY.items() if c is type(self)), type(self).__name__)
        check_params(name, self.get_params(deep=False), self._parameter_constraints)

    def _validate_X(self, X, *, reset: bool = True, min_samples: int = 1,
                    dtype=(np.float32, np.float64)) -> np.ndarray:
        """``X`` checked by :func:`~deepclust.validation.check_features`.

        ``reset=True`` (in ``fit``) records ``n_features_in_``; ``reset=False`` (after
        fitting) checks that ``X`` has that many features.
        """
        if reset:
            self._validate_params()
        X = check_features(X, min_samples=min_samples, dtype=dtype)
        if reset:
            self.n_features_in_ = X.shape[1]
        else:
            self._check_n_features(X.shape[1])
        return X

    def _check_n_features(self, n_features: int, *, hint: str = "") -> None:
        """Refuse rows whose width differs from the rows ``fit`` saw."""
        if n_features != self.n_features_in_:
            raise InputError(
                f"X has {n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input: it was fitted with {self.n_features_in_}"
                + (f"; {hint}" if hint else "")
            )

    def _validate_k(self, n_samples: int) -> int:
        return check_n_clusters(self.n_clusters, n_samples)

    def _check_fitted(self) -> None:
        if not hasattr(self, self._fitted_attribute):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(X) before predict"
            )

    @property
    def n_noise_(self) -> int:
        """Number of points labelled -1 (noise); 0 for methods without noise."""
        self._check_fitted()
        return int(np.count_nonzero(self.labels_ == -1))
