"""Thumbnails for the report: where a run's images come from, and how they are packed.

A gallery shows a few dozen images per cluster. Writing each one as its own file (or, worse,
as a base64 blob inside the HTML) makes a 10 000-image report slow to open, so the
thumbnails of one cluster are packed into one PNG *sprite sheet*, one row per kind of sample
(nearest the centre, random). The page shows each sheet as a single ``<img>`` and lays a grid
of transparent cells over it that carry the tooltips.

Tile size: small images are enlarged by a whole factor with nearest-neighbour sampling (8x8
digits become 64x64, 28x28 Fashion-MNIST 56x56), so pixels stay sharp; large images are
shrunk with Lanczos to fit ``max_size``. Images that are not square are letterboxed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

#: Colour of letterbox bars and of the cell of an image that could not be read.
BACKGROUND = (236, 236, 236)
#: Colour between tiles of a sprite sheet.
GAP_COLOUR = (255, 255, 255)


class ImageSet(Protocol):
    """Random access to the images of a run, row ``i`` of the run being image ``i``."""

    def __len__(self) -> int: ...

    def image(self, i: int) -> np.ndarray | None:
        """Image ``i`` as uint8 ``(H, W)`` or ``(H, W, 3)``, or None when it cannot be read."""
        ...


@dataclass
class ArrayImages:
    """Images held in memory, e.g. a built-in dataset's ``images`` array.

    Parameters
    ----------
    images : ndarray of uint8, shape (N, H, W) or (N, H, W, 3)
    """

    images: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def image(self, i: int) -> np.ndarray | None:
        return np.asarray(self.images[i])


@dataclass
class FileImages:
    """Images read from files, one path per row (None where a row has no file).

    Parameters
    ----------
    paths : sequence of str or None
    max_side : int
        Images are reduced to at most this many pixels per side as they are read (JPEG
        draft mode makes large photos cheap to thumbnail).
    """

    paths: Sequence[str | None]
    max_side: int = 256

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, i: int) -> np.ndarray | None:
        from PIL import Image

        path = self.paths[i]
        if not path:
            return None
        try:
            with Image.open(path) as im:
                im.draft("RGB", (self.max_side, self.max_side))
                im = im.convert("RGB")
                im.thumbnail((self.max_side, self.max_side))
                return np.asarray(im)
        except (OSError, ValueError, Image.DecompressionBombError):
            return None


def resolve_image_paths(
    paths: Sequence[str | None], roots: Sequence[str | os.PathLike]
) -> list[str | None]:
    """Each path as an existing file, made absolute: an absolute path as it is; a relative
    one under each of ``roots`` in turn, then against the current working folder.

    Parameters
    ----------
    paths : sequence of str or None
        Paths as an embedding store's ``index.parquet`` records them (absolute, or relative
        to the source's root).
    roots : sequence of path
        Folders to try relative paths against.

    Returns
    -------
    list of str or None
        Absolute paths; None where no file was found.
    """
    out: list[str | None] = []
    for p in paths:
        found = None
        if p:
            candidates = ([Path(p)] if os.path.isabs(p)
                          else [Path(r) / p for r in roots] + [Path(p)])
            found = next((os.path.abspath(c) for c in candidates if c.is_file()), None)
        out.append(found)
    return out


def confine_paths(paths: Sequence[str | None], roots: Sequence[str | os.PathLike]
                  ) -> tuple[list[str | None], int]:
    """Keep the paths whose real location (links followed) lies inside one of ``roots``.

    A run or a store handed over by someone else may name any file (``/etc/...``, ``../..``,
    a link leading out of its folder); the report reads only images inside the folders the
    store recorded as its source.

    Returns
    -------
    paths, skipped : list of (str or None), int
        ``paths`` with None in place of each path outside every root, and how many those were.

    Examples
    --------
    >>> confine_paths(["/data/a.png", "/etc/passwd", None], ["/data"])
    (['/data/a.png', None, None], 1)
    """
    real_roots = [os.path.realpath(r) for r in roots if r]
    out: list[str | None] = []
    skipped = 0
    for p in paths:
        if p and not any(_inside(os.path.realpath(p), r) for r in real_roots):
            p, skipped = None, skipped + 1
        out.append(p)
    return out, skipped


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def tile_size_for(shape: tuple[int, ...], target: int = 64, max_size: int = 96) -> int:
    """Side of the square tile for images of ``shape`` (H, W[, C]).

    Images no larger than ``target`` are enlarged by the largest whole factor that keeps
    them within it; larger ones are shown at ``min(side, max_size)``.

    Examples
    --------
    >>> tile_size_for((8, 8)), tile_size_for((28, 28)), tile_size_for((480, 640))
    (64, 56, 96)
    """
    side = max(int(shape[0]), int(shape[1]), 1)
    if side <= target:
        return side * max(1, target // side)
    return min(side, max_size)


def _as_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating) and img.size and float(np.nanmax(img)) <= 1.0:
            img = img * 255.0
        img = np.clip(np.nan_to_num(img), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim == 3 and img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if img.ndim == 3 and img.shape[2] == 4:
        return img[:, :, :3]
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    raise ValueError(f"cannot show an image of shape {img.shape}")


def thumbnail(img: np.ndarray | None, size: int) -> np.ndarray:
    """``img`` as a ``(size, size, 3)`` uint8 tile (see the module docstring for the rules).

    Parameters
    ----------
    img : ndarray or None
        uint8 (or float in [0, 1]) ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``;
        None gives a blank tile.
    size : int
        Side of the tile in pixels.
    """
    tile = np.empty((size, size, 3), dtype=np.uint8)
    tile[:] = BACKGROUND
    if img is None:
        return tile
    rgb = _as_rgb(img)
    h, w = rgb.shape[:2]
    if max(h, w) <= size:
        f = max(1, size // max(h, w))
        rgb = np.repeat(np.repeat(rgb, f, axis=0), f, axis=1)  # nearest neighbour: sharp pixels
    else:
        from PIL import Image

        scale = size / max(h, w)
        new = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(new, Image.Resampling.LANCZOS))
    h, w = rgb.shape[:2]
    top, left = (size - h) // 2, (size - w) // 2
    tile[top : top + h, left : left + w] = rgb
    return tile


@dataclass
class SpriteSheet:
    """Tiles packed into one image.

    Attributes
    ----------
    pixels : ndarray of uint8, shape (H, W, 3)
    boxes : list of list of (x, y)
        Top-left corner of each tile, one list per row of tiles as given.
    tile : int
        Side of a tile.
    """

    pixels: np.ndarray
    boxes: list[list[tuple[int, int]]]
    tile: int

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    def save(self, path: str | os.PathLike) -> Path:
        """Write the sheet as a PNG (atomically) and return its path."""
        from PIL import Image

        from deepclust.runinfo import atomic_write

        path = Path(path)
        image = Image.fromarray(self.pixels)
        atomic_write(path, lambda f: image.save(f, format="PNG", optimize=False))
        return path


def sprite_sheet(
    rows: Sequence[Sequence[np.ndarray | None]], tile: int, *, gap: int = 2
) -> SpriteSheet:
    """Pack rows of images into one sheet, each image a ``tile``-pixel square.

    Parameters
    ----------
    rows : sequence of sequences of images (or None)
        Row ``r`` of the sheet holds ``rows[r]``, left to right; an empty row still takes
        its height, so rows of a gallery stay aligned with their captions.
    tile : int
        Side of a tile in pixels.
    gap : int
        Pixels between tiles.

    Returns
    -------
    SpriteSheet

    Examples
    --------
    >>> s = sprite_sheet([[np.zeros((8, 8), np.uint8)] * 3, []], 16, gap=2)
    >>> s.pixels.shape, s.boxes
    ((34, 52, 3), [[(0, 0), (18, 0), (36, 0)], []])
    """
    if tile < 1:
        raise ValueError(f"tile must be at least 1 pixel, got {tile}")
    n_rows = max(1, len(rows))
    n_cols = max([len(r) for r in rows] + [1])
    height = n_rows * tile + (n_rows - 1) * gap
    width = n_cols * tile + (n_cols - 1) * gap
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[:] = GAP_COLOUR
    boxes: list[list[tuple[int, int]]] = []
    for r, row in enumerate(rows):
        y = r * (tile + gap)
        row_boxes = []
        for c, img in enumerate(row):
            x = c * (tile + gap)
            pixels[y : y + tile, x : x + tile] = thumbnail(img, tile)
            row_boxes.append((x, y))
        boxes.append(row_boxes)
    return SpriteSheet(pixels, boxes, tile)

