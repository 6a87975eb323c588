"""Per-image results of a run: assignments, duplicates, outliers, find similar, export."""
