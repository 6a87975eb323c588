"""scikit-learn's estimator contract, checked on every registered clusterer.

``sklearn.utils.estimator_checks.check_estimator`` runs its whole suite (clone, pickling,
input validation, fitted-state errors, ``n_features_in_``, dtypes, idempotent fits, ...) on
each name in :func:`deepclust.cluster.available_methods`. A newly registered method is
checked too, with its default parameters unless ``SMALL`` gives it smaller ones, so it
cannot join the registry without passing. A check that cannot pass is declared in
``EXPECTED_FAILURES`` with a one-line reason, through scikit-learn's own
``expected_failed_checks`` (it is then run and reported as an expected failure).
"""

from __future__ import annotations

import warnings

import pytest
from sklearn.utils.estimator_checks import check_estimator

from deepclust.cluster import available_methods, make_clusterer

#: Settings that keep each method's full suite to seconds on a busy 2-core machine.
_HEAD = dict(n_clusters=3, n_heads=2, n_neighbors=3, hidden_dim=16, bottleneck_dim=8,
             n_steps=2, batch_size=16, cache_neighbors=False, device="cpu", precision="fp32",
             random_state=0)
SMALL: dict[str, dict] = {
    "kmeans": dict(n_clusters=3, random_state=0),
    "minibatch-kmeans": dict(n_clusters=3, random_state=0),
    "hkmeans": dict(n_clusters=2, branching=2, n_resampling_steps=1, random_state=0),
    "agglomerative": dict(n_clusters=3),
    "spectral": dict(n_clusters=3, random_state=0),
    "hdbscan": dict(),
    "affinity-propagation": dict(random_state=0),
    "gmm": dict(n_clusters=3, random_state=0),
    "temi": _HEAD,
    "scan": _HEAD,
    "scanv2": _HEAD,
    "turtle": dict(n_clusters=3, n_steps=3, inner_steps=2, n_init=2, batch_size=32,
                   device="cpu", precision="fp32", random_state=0),
    "consensus": dict(n_clusters=3, members="kmeans,gmm", random_state=0),
}

#: method name -> {check name: reason}; every registered method passes every check today.
EXPECTED_FAILURES: dict[str, dict[str, str]] = {}


def test_small_settings_name_registered_methods():
    stale = sorted((set(SMALL) | set(EXPECTED_FAILURES)) - set(available_methods()))
    assert not stale, f"settings for methods that are not registered: {stale}"


@pytest.mark.parametrize("name", sorted(available_methods()))
def test_check_estimator(name):
    estimator = make_clusterer(name, **SMALL.get(name, {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny inputs: convergence warnings and the like
        results = check_estimator(
            estimator,
            expected_failed_checks=EXPECTED_FAILURES.get(name, {}),
            on_skip=None,
            on_fail=None,
        )
    failed = [r for r in results if r["status"] == "failed"]
    assert not failed, f"{name} fails {len(failed)} scikit-learn check(s):\n" + "\n".join(
        f"  {r['check_name']}: {type(r['exception']).__name__}: "
        + (str(r["exception"]).strip().splitlines() or [""])[0][:300]
        for r in failed
    )
