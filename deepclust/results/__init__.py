"""Per-image results of a run: assignments, duplicates, outliers, find similar, export.

- :mod:`~deepclust.results.assignments`: the table written to ``RUN/assignments.parquet``
  and ``.csv`` (its schema, distances and ranks to the cluster centres).
- :mod:`~deepclust.results.duplicates`: exact copies (SHA-256) and near duplicates
  (embedding cosine similarity, connected components).
- :mod:`~deepclust.results.outliers`: outlier scores from neighbour distances.
- :mod:`~deepclust.results.run`: a run's files from a clustering result.
- :mod:`~deepclust.results.similar`: the rows of a store nearest to an image or an id.
- :mod:`~deepclust.results.export`: one folder per cluster (copy, symlink, move) and undo.
"""

from deepclust.results.assignments import (
    ASSIGNMENTS_FILE,
    REPRESENTATIVES_PER_CLUSTER,
    SCHEMA,
    assignments_table,
    read_assignments,
    write_assignments,
)
from deepclust.results.duplicates import (
    NEAR_DUPLICATE_COSINE,
    exact_duplicate_groups,
    near_duplicate_groups,
)
from deepclust.results.outliers import OUTLIER_NEIGHBORS, outlier_scores

__all__ = [
    "ASSIGNMENTS_FILE",
    "NEAR_DUPLICATE_COSINE",
    "OUTLIER_NEIGHBORS",
    "REPRESENTATIVES_PER_CLUSTER",
    "SCHEMA",
    "assignments_table",
    "exact_duplicate_groups",
    "near_duplicate_groups",
    "outlier_scores",
    "read_assignments",
    "write_assignments",
]
