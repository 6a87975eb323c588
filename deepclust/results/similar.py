"""Find the images of an embedding store most like a query image or a stored item.

A query is an image file, embedded with the store's own encoder (rebuilt from the store's
``meta.json`` and checked to have the same settings), or the id of an item of the store
(its stored row is the query, and the item itself is left out of the results). The search
is exact cosine similarity over every row (:func:`deepclust.neighbors.search`, faiss in
float32, the store read shard by shard).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from deepclust.errors import DataNotFoundError, InputError
from deepclust.store import EmbeddingStore, open_store

__all__ = ["absolute_paths", "embed_image", "find_similar", "store_encoder"]


def _store(store) -> EmbeddingStore:
    if isinstance(store, EmbeddingStore):
        return store
    path = Path(store).expanduser()
    if not path.exists():
        raise DataNotFoundError(f"embedding store {path} does not exist")
    return open_store(path)


def absolute_paths(store: EmbeddingStore) -> list[str | None]:
    """Absolute image path of each row of ``store`` (None where the store has none).

    Paths recorded absolute are kept. A folder source's relative paths are its root (stored
    absolute in ``meta.json``) joined with the item id (the path under the root); other
    relative paths are joined with the source's root when that file exists, else resolved
    against the current folder.
    """
    source = store.meta.get("source")
    source = source if isinstance(source, dict) else {}
    root = Path(source["root"]) if source.get("root") else None
    out: list[str | None] = []
    for id_, path in zip(store.index["id"].to_pylist(), store.index["path"].to_pylist(), strict=True):
        if not path:
            out.append(None)
        elif os.path.isabs(path):
            out.append(path)
        elif root is not None and source.get("kind") == "folder":
            out.append(str(root / id_))
        elif root is not None and (root / path).exists():
            out.append(str(root / path))
        else:
            out.append(str(Path(path).resolve()))
    return out


def _normalised(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def store_encoder(store: EmbeddingStore):
    """The encoder that made ``store``, with the same preprocessing and options."""
    from deepclust.encoders import get_encoder

    name = store.meta.get("encoder")
    want = store.meta.get("encoder_config") or {}
    config = want.get("config") or {}
    crop = (want.get("transform") or {}).get("crop_fraction")
    tried = []
    for options in ({}, dict(config), {"crop_fraction": crop} if crop is not None else None):
        if options is None or options in tried:
            continue
        tried.append(options)
        try:
            enc = get_encoder(name, **options)
        except InputError as exc:
            if "unknown encoder" in str(exc) or "not available" in str(exc):
                raise
            continue
        if _normalised(enc.describe()) == _normalised(want):
            return enc
    raise InputError(f"cannot rebuild encoder {name!r} with the settings that made {store.path}; "
                     "query by an id of the store instead")


def embed_image(path: str | os.PathLike, store: EmbeddingStore, encoder=None) -> np.ndarray:
    """The embedding of the image file ``path`` by the store's encoder, shape (dim,)."""
    import torch

    from deepclust.data.imageio import open_image

    image, error = open_image(path)
    if image is None:
        raise InputError(f"cannot read the image {path}: {error}")
    enc = encoder if encoder is not None else store_encoder(store)
    bf16 = store.meta.get("precision") == "bf16"
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        row = enc(enc.transform(image)[None]).float().cpu().numpy()[0]
    if row.shape != (store.dim,):
        raise InputError(f"the encoder gave {row.shape[0]} values, the store holds {store.dim}")
    return row


def find_similar(store, query, n: int = 10, *, encoder=None) -> list[dict]:
    """The ``n`` items of ``store`` most cosine-similar to ``query``.

    Parameters
    ----------
    store : EmbeddingStore or path
        A finished embedding store.
    query : path, str or ndarray
        An image file (embedded with the store's encoder; its own item, if stored, comes
        first with similarity about 1), an id of the store (its row is the query and the
        item is left out), or an embedding of shape (dim,).
    n : int
        How many results.
    encoder : Encoder, optional
        Use this encoder for an image query instead of rebuilding the store's.

    Returns
    -------
    list of dict
        Most similar first: ``rank`` (1 = most similar), ``similarity`` (cosine), ``row``,
        ``id``, ``path`` (absolute, or None).

    Examples
    --------
    >>> find_similar("photos-lite0", "photos/cat.jpg", n=3)  # doctest: +SKIP
    [{'rank': 1, 'similarity': 0.9999, 'row': 12, 'id': 'cat.jpg', 'path': '/data/photos/cat.jpg'}, ...]
    """
    from deepclust.data.rows import as_row_source
    from deepclust.neighbors import search

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"n must be a positive integer, got {n!r}")
    st = _store(store)
    if len(st) == 0:
        raise InputError(f"{st.path} is empty (no image could be embedded); there is nothing to search")
    ids = st.ids
    skip = None
    if isinstance(query, np.ndarray):
        vector = query
    else:
        text = os.fspath(query)
        hits = np.flatnonzero(ids == text)
        if hits.size:
            skip = int(hits[0])
            vector = as_row_source(st).take(np.array([skip]))[0]
        elif Path(text).expanduser().is_file():
            vector = embed_image(Path(text).expanduser(), st, encoder)
        else:
            example = f" (ids look like {ids[0]!r})" if len(ids) else ""
            raise InputError(f"{text!r} is neither an image file nor an id of {st.path}{example}")
    k = min(int(n) + (skip is not None), len(st))
    sims, rows = search(np.asarray(vector, dtype=np.float32)[None], st, k)
    paths = absolute_paths(st)
    out = []
    for sim, row in zip(sims[0].tolist(), rows[0].tolist(), strict=True):
        if row < 0 or row == skip:
            continue
        out.append({"rank": len(out) + 1, "similarity": float(sim), "row": int(row),
                    "id": str(ids[row]), "path": paths[row]})
    return out[: int(n)]
