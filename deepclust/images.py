"""From images (or features) to a finished run folder in one call.

:func:`cluster_to_folder` is the one road of ``deepclust cluster`` and of
:func:`cluster_images`: an image folder, manifest, tar shards or saved HF dataset is first
embedded into a cached store (:func:`deepclust.embed.cached_embeddings`: a re-run embeds
nothing); a store, a feature file or a built-in dataset goes straight on. Then
:func:`deepclust.pipeline.run_clustering` clusters it, and :func:`deepclust.results.run.write_run`
writes ``labels.npy``, ``assignments.parquet``/``.csv`` and ``run.json``.

Without a method the choice is label-free and automatic: :data:`DEFAULT_METHOD` (``"auto"``:
reducer, method and k chosen among :func:`deepclust.selection.default_candidates` by the
default criterion; the measurement behind it is ``benchmarks/selection.py``,
docs/selection.md); a method that takes k and is given none gets ``k="auto"``.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from deepclust.encoders import DEFAULT_ENCODER
from deepclust.errors import InputError
from deepclust.record import RunRecord

__all__ = ["DEFAULT_METHOD", "DEFAULT_REDUCER", "ImageClustering", "automatic_choice",
           "cluster_images", "cluster_to_folder", "is_image_input"]

#: The clusterer used when none is given: chosen without labels (``--method auto``; measured
#: by ``benchmarks/selection.py``, docs/selection.md).
DEFAULT_METHOD = "auto"
#: The reduction applied when no method and no reducer are given (None: the embeddings as they
#: are; measured in docs/architecture.md).
DEFAULT_REDUCER = None

_MANIFEST_PATHS = ("path", "filepath", "file_path", "file", "filename", "image", "image_path")
_NOT_FEATURES = _MANIFEST_PATHS + ("id", "label", "labels", "class", "class_name", "y", "target")


def _is_manifest(path: Path) -> bool:
    """A .csv/.parquet table with a path column and no numeric feature column."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    try:
        if path.suffix.lower() == ".parquet":
            schema = pq.read_schema(path)
        else:
            with pcsv.open_csv(path) as reader:
                schema = reader.schema
    except (pa.ArrowInvalid, OSError):
        return False
    names = schema.names
    if not any(c in names for c in _MANIFEST_PATHS):
        return False
    numeric = [f for f in schema if f.name not in _NOT_FEATURES
               and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
                    or pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type))]
    return not numeric


def is_image_input(spec) -> bool:
    """Whether ``spec`` names images to embed (a folder that is not a store, a manifest of
    image paths, tar shards, a saved HF dataset) rather than rows to cluster (a store, a
    feature file, a built-in dataset name, an array)."""
    from deepclust.data.sources import ImageSource
    from deepclust.store import is_store

    if isinstance(spec, ImageSource):
        return True
    if not isinstance(spec, (str, os.PathLike)):
        return False
    text = os.fspath(spec)
    p = Path(text).expanduser()
    if p.is_dir():
        return not is_store(p)
    if p.is_file():
        suffix = p.suffix.lower()
        return suffix == ".tar" or (suffix in (".csv", ".tsv", ".parquet") and _is_manifest(p))
    return glob.has_magic(text) or "{" in text and ".." in text


def automatic_choice(method: str | None, k, reducer) -> tuple[str, object, object]:
    """``(method, k, reducer)`` with the label-free defaults filled in (module docstring)."""
    from deepclust.cluster import get_clusterer_class

    if method is None:
        return DEFAULT_METHOD, "auto" if k is None else k, \
            DEFAULT_REDUCER if reducer is None else reducer
    if method == "auto":
        return method, "auto" if k is None else k, reducer
    if k is None and get_clusterer_class(method).takes_n_clusters:
        k = "auto"
    return method, k, reducer


def _absolute_input(spec) -> str | None:
    if isinstance(spec, (str, os.PathLike)):
        p = Path(os.fspath(spec)).expanduser()
        return str(p.resolve()) if p.exists() else os.fspath(spec)
    return None


def cluster_to_folder(inp, out, *, encoder: str = DEFAULT_ENCODER, store=None,
                      method: str | None = None, k=None, reducer=None, labels=None,
                      params: dict | None = None, random_state: int = 0,
                      progress: bool = True, embed_options: dict | None = None,
                      record_fields: dict | None = None, **clustering):
    """Embed (when ``inp`` is images), cluster and write the run folder ``out``.

    Parameters
    ----------
    inp : path, ImageSource, array, FeatureSet or store
        Images (see :func:`is_image_input`) or rows (see :func:`deepclust.pipeline.open_input`).
    out : path
        The run folder.
    encoder, store : str, path
        For images: the encoder (``"auto"``: chosen without labels among the offline
        encoders, :func:`deepclust.selection.encoders.choose_encoder`; the choice is in
        run.json ``input.encoder_selection``), and the store folder (default: cached by
        source and encoder).
    method, k, reducer : optional
        As in :func:`~deepclust.pipeline.run_clustering`; missing ones chosen by
        :func:`automatic_choice`.
    **clustering
        More arguments of :func:`~deepclust.pipeline.run_clustering` (``k_values``,
        ``criterion``, ``label_free``, ``noise``, ``label_column``, ``id_column``, ...).

    Returns
    -------
    (ClusteringResult, RunRecord, pyarrow.Table, dict)
        The result, the record written, the assignments and ``{"embedded": bool}`` (whether
        images were embedded by this call; None for non-image input).
    """
    from deepclust.embed import cached_embeddings
    from deepclust.pipeline import run_clustering
    from deepclust.results.run import failed_items, write_run
    from deepclust.runinfo import check_output_dir, now_iso

    started = now_iso()
    t0 = time.perf_counter()
    out = check_output_dir(out)  # before the work, not after it
    info = {"path": _absolute_input(inp)}
    failed, embedded, rows = None, None, inp
    if is_image_input(inp):
        from deepclust.data.sources import open_source

        source = open_source(info["path"] if info["path"] is not None else inp)  # absolute
        t = time.perf_counter()
        if encoder == "auto":
            from deepclust.selection.encoders import choose_encoder

            encoder, info["encoder_selection"] = choose_encoder(
                source, random_state=random_state, progress=progress,
                embed_options=embed_options,
                **{key: clustering[key] for key in ("k_values", "criterion")
                   if key in clustering})
        st, embedded = cached_embeddings(source, encoder, store, progress=progress,
                                         **(embed_options or {}))
        embed_s = time.perf_counter() - t
        info.update(fingerprint=source.fingerprint(), store=str(st.path.resolve()),
                    encoder=st.meta.get("encoder"), embedded=embedded)
        failed = failed_items(st)
        if len(st) == 0:
            raise InputError(f"no image of {inp} could be read ({len(failed)} failed); "
                             f"see {st.path / 'failed.parquet'}")
        rows = st
    elif store is not None:
        raise InputError("--store applies to images (a folder, manifest, tar shards or HF "
                         "dataset); this input is already rows")
    method, k, reducer = automatic_choice(method, k, reducer)
    result = run_clustering(rows, labels, method=method, k=k, reducer=reducer, params=params,
                            random_state=random_state, progress=progress, **clustering)
    if embedded is not None:
        result.timings["embed_s"] = embed_s
    if "fingerprint" not in info:
        data = result.input
        src = data.rows if data.rows is not None else data.X
        from deepclust.data.rows import as_row_source

        info["fingerprint"] = as_row_source(src).fingerprint()
        store_of = getattr(data.rows, "store", None)
        info["store"] = None if store_of is None else str(store_of.path.resolve())
    fields = {"seed": random_state, "k_requested": k, "started": started,
              **(record_fields or {})}
    record, table = write_run(result, out, input_info=info, failed=failed, progress=progress,
                              finished=now_iso(), t0=t0, **fields)
    return result, record, table, {"embedded": embedded}


@dataclass
class ImageClustering:
    """The outcome of :func:`cluster_images`: a run folder and its per-image results.

    Attributes
    ----------
    run_dir : Path
        The run folder (``labels.npy``, ``assignments.parquet``/``.csv``, ``run.json``).
    record : RunRecord
        Its ``run.json``.
    assignments : pyarrow.Table
        One row per image (schema :data:`deepclust.results.SCHEMA`).
    embedded : bool or None
        Whether this call embedded images (False: the cached store was reused).
    """

    run_dir: Path
    record: RunRecord
    assignments: pa.Table
    embedded: bool | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def labels(self) -> np.ndarray:
        """Cluster of each image (int64, -1 = noise), in row order."""
        return self.assignments["cluster"].to_numpy()

    @property
    def failed(self) -> list[dict]:
        """Images that could not be read: path, id, reason."""
        return list(self.record.failed or [])

    def to_pandas(self):
        """The assignments as a pandas DataFrame (needs pandas)."""
        try:
            import pandas  # noqa: F401
        except ImportError:
            raise InputError("to_pandas needs pandas (pip install pandas); the assignments "
                             "are also a pyarrow Table in .assignments") from None
        return self.assignments.to_pandas()

    def report(self, out=None, **options) -> Path:
        """Write the HTML report of the run (:func:`deepclust.report.write_report`)."""
        from deepclust.report import write_report

        return write_report(self.run_dir, out, **options)

    def export(self, to, *, mode: str = "copy", names=None) -> Path:
        """One folder per cluster under ``to`` (:func:`deepclust.results.export.export_run`);
        returns the manifest of the files written."""
        from deepclust.results.export import export_run

        return export_run(self.run_dir, to, mode=mode, names=names)


def cluster_images(source, *, out=None, encoder: str = DEFAULT_ENCODER, store=None,
                   method: str | None = None, k=None, reducer=None, params: dict | None = None,
                   k_values=range(2, 21), criterion: str = "umap_silhouette",
                   label_free: bool = True, random_state: int = 0, progress: bool = True,
                   **embed_options) -> ImageClustering:
    """Cluster a folder of images (or a manifest, tar shards, a saved HF dataset) in one call.

    Parameters
    ----------
    source : path or ImageSource
        The images.
    out : path, optional
        The run folder; default a new folder under ``cache_dir()/runs``.
    encoder : str
        Encoder registry name (default ``effnet-lite0``).
    store : path, optional
        The embedding store; default cached per source and encoder, so a re-run (with any
        ``out``) embeds nothing.
    method, k, reducer, params
        The clustering; by default chosen without labels (k-means, ``k="auto"``; see the
        module docstring).
    k_values, criterion, label_free, random_state
        As in :func:`deepclust.pipeline.run_clustering`.
    progress : bool
        Progress bars on stderr.
    **embed_options
        Passed to :func:`deepclust.embed.embed` (``batch_size``, ``device``, ...).

    Returns
    -------
    ImageClustering

    Examples
    --------
    >>> result = cluster_images("photos/", out="run")  # doctest: +SKIP
    >>> result.assignments.column_names[:4]  # doctest: +SKIP
    ['row', 'id', 'path', 'cluster']
    """
    import warnings

    if out is None:
        from deepclust.data.builtin import cache_dir

        out = cache_dir() / "runs" / time.strftime("run-%Y%m%d-%H%M%S")
        while out.exists():
            out = out.with_name(out.name + "-1")
    result, record, table, how = cluster_to_folder(
        source, out, encoder=encoder, store=store, method=method, k=k, reducer=reducer,
        params=params, random_state=random_state, progress=progress,
        embed_options=embed_options, k_values=k_values, criterion=criterion,
        label_free=label_free, record_fields={"argv": []})
    for text in result.warnings:
        warnings.warn(text, stacklevel=2)
    return ImageClustering(Path(out), record, table, how["embedded"], list(result.warnings))
