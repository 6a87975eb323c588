"""Choosing without labels: the criteria, the candidates, the pick.

- :mod:`deepclust.selection.criteria`: label-free criteria (modularity, UMAP-silhouette,
  silhouette, DBCV density, stability, learnability, ...) scored on one shared sample;
- :mod:`deepclust.selection.auto`: the candidate grid of ``--method auto`` and
  :func:`select`, which fits, scores and picks, with the margin to the runner-up;
- :mod:`deepclust.selection.k`: ``--k auto`` for one method (:func:`select_k`) and the
  parsing of k ranges.

How well each criterion tracks AMI is measured by ``benchmarks/selection.py``
(``docs/selection.md``).
"""

from deepclust.selection.auto import (
    AUTO_METHODS,
    AUTO_REDUCERS,
    AUTO_ROWS,
    UMAP_REDUCER,
    Candidate,
    Selection,
    default_candidates,
    edge_warning,
    select,
)
from deepclust.selection.criteria import (
    COMBINED_WEIGHTS,
    CRITERIA,
    DEFAULT_CRITERION,
    Criterion,
    ScoringSample,
    check_criterion,
    combine,
    parts,
    score,
    values,
)
from deepclust.selection.k import KSelection, check_clusterer_params, parse_k_range, select_k

__all__ = [
    "AUTO_METHODS", "AUTO_REDUCERS", "AUTO_ROWS", "COMBINED_WEIGHTS", "CRITERIA",
    "DEFAULT_CRITERION", "Candidate", "Criterion", "KSelection", "ScoringSample", "Selection",
    "check_clusterer_params", "check_criterion", "combine", "default_candidates",
    "UMAP_REDUCER", "edge_warning", "parse_k_range", "parts", "score", "select", "select_k", "values",
]
