"""Decode image files into RGB :class:`PIL.Image.Image` objects, predictably and safely.

Every decoder here returns ``(image, None)`` on success and ``(None, reason)`` on failure; it
never raises for a bad file. The reasons are short, human-readable strings that end up in an
embedding store's list of failed items.

Mode conversion rules (:func:`to_rgb`)
--------------------------------------
===============================  ==========================================================
``RGB``                          kept
``1``, ``L``                     grey replicated to three channels
``P`` (palette)                  palette applied; a transparent palette entry is composited
``LA``, ``La``, ``PA``, ``RGBA``,  alpha composited over a **white** background
``RGBa``
``CMYK``                         Pillow's conversion (no ICC colour management)
``YCbCr``, ``HSV``               Pillow's conversion
``I;16``, ``I;16B``, ``I;16L``,  16-bit grey scaled to 8 bits by ``round(v / 257)``, so
``I;16N``                        65535 maps to 255 (Pillow's own conversion clips at 255)
``I`` (32-bit integer)           read as 16-bit data (what Pillow opens 16-bit PNG/TIFF as):
                                 clipped to [0, 65535], then scaled as above
``F`` (32-bit float)             values in [0, 1] are scaled by 255; any other range is
                                 min-max normalised per image; NaN and inf become 0
===============================  ==========================================================

EXIF orientation is applied (:func:`PIL.ImageOps.exif_transpose`); a broken EXIF block is
ignored rather than failing the image. Multi-frame files (GIF, TIFF) give their first frame.

Decompression bombs: an image whose header announces more than ``max_pixels`` pixels is
refused before its pixels are decoded (default: Pillow's own limit,
``PIL.Image.MAX_IMAGE_PIXELS``, about 89 million pixels).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: File name extensions read as images by the folder and tar sources' ``extensions`` filters.
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm",
    ".pbm", ".pnm", ".jp2", ".j2k", ".ico", ".tga", ".dds", ".jfif",
)

#: Default ceiling on the pixel count of one image (Pillow's decompression-bomb limit).
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485

_WHITE = (255, 255, 255)


def _scale_16bit(arr: np.ndarray) -> np.ndarray:
    arr = np.clip(arr.astype(np.float64), 0, 65535)
    return np.rint(arr / 257.0).astype(np.uint8)


def _float_to_uint8(arr: np.ndarray) -> np.ndarray:
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0.0 and hi <= 1.0:
        scaled = arr * 255.0
    elif hi > lo:
        scaled = (arr - lo) * (255.0 / (hi - lo))
    else:  # constant image outside [0, 1]
        scaled = np.zeros_like(arr)
    return np.rint(np.clip(scaled, 0, 255)).astype(np.uint8)


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, _WHITE + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert an image of any Pillow mode to 8-bit RGB by the rules in the module docstring.

    Parameters
    ----------
    img : PIL.Image.Image
        A loaded image.

    Returns
    -------
    PIL.Image.Image
        Mode ``"RGB"``.

    Raises
    ------
    ValueError
        If Pillow cannot convert the mode to RGB (for example ``LAB`` without colour
        management).
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("1", "L"):
        return img.convert("RGB")
    if mode == "P":
        if "transparency" in img.info:
            return _composite_on_white(img)
        return img.convert("RGB")
    if mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        return _composite_on_white(img)
    if mode.startswith("I;16"):
        grey = _scale_16bit(np.asarray(img))
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "I":
        grey = _scale_16bit(np.asarray(img))
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        grey = _float_to_uint8(np.asarray(img))
        return Image.fromarray(grey, "L").convert("RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ValueError(f"unsupported image mode {mode!r} ({exc})") from None


def _describe_error(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def open_image(
    file: str | os.PathLike | bytes | io.IOBase,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> tuple[Image.Image | None, str | None]:
    """Decode one image file (a path, raw bytes or a binary file object) into RGB.

    Parameters
    ----------
    file : path, bytes or binary file object
        The encoded image.
    max_pixels : int or None
        Refuse images whose header announces more pixels than this (decompression bombs);
        None disables the check.

    Returns
    -------
    image : PIL.Image.Image or None
        The decoded ``RGB`` image with EXIF orientation applied, or None on failure.
    reason : str or None
        Why decoding failed, or None on success.

    Examples
    --------
    >>> img, reason = open_image(b"not an image")
    >>> img is None, reason
    (True, 'not an image (Pillow cannot identify the format)')
    """
    if isinstance(file, (bytes, bytearray, memoryview)):
        if len(file) == 0:
            return None, "empty file (0 bytes)"
        stream: io.IOBase | str | os.PathLike = io.BytesIO(file)
    elif isinstance(file, (str, os.PathLike)):
        path = Path(file)
        try:
            if path.stat().st_size == 0:
                return None, "empty file (0 bytes)"
        except FileNotFoundError:
            return None, "file not found"
        except OSError as exc:
            return None, f"unreadable: {_describe_error(exc)}"
        stream = path
    else:
        stream = file
    try:
        with warnings.catch_warnings():
            # We apply our own pixel limit; Pillow's warning would only be noise here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream) as im:
                width, height = im.size
                if max_pixels is not None and width * height > max_pixels:
                    return None, (
                        f"decompression bomb: {width}x{height} = {width * height} pixels "
                        f"exceeds the limit of {max_pixels} (raise max_pixels to allow it)"
                    )
                if getattr(im, "n_frames", 1) > 1:
                    im.seek(0)
                im.load()
                try:
                    im = ImageOps.exif_transpose(im)
                except Exception:  # a broken EXIF block: keep the pixels as stored
                    pass
                return to_rgb(im), None
    except UnidentifiedImageError:
        return None, "not an image (Pillow cannot identify the format)"
    except Image.DecompressionBombError as exc:
        return None, f"decompression bomb: {_describe_error(exc)}"
    except PermissionError:
        return None, "unreadable: permission denied"
    except FileNotFoundError:
        return None, "file not found"
    except OSError as exc:
        text = _describe_error(exc)
        if "truncated" in text.lower():
            return None, f"truncated: {text}"
        return None, f"corrupt: {text}"
    except Exception as exc:  # plug-ins raise ValueError, SyntaxError, struct.error, ... on bad data
        return None, f"corrupt: {type(exc).__name__}: {_describe_error(exc)}"


def array_to_image(array: np.ndarray) -> Image.Image:
    """Turn one in-memory image array into an RGB image.

    Parameters
    ----------
    array : ndarray of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)
        ``uint8`` (0-255), ``uint16`` (0-65535, scaled by 1/257) or float (values in [0, 1]
        scaled by 255; other ranges min-max normalised). Four channels are RGBA.

    Returns
    -------
    PIL.Image.Image
        Mode ``"RGB"``.
    """
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == np.uint16:
        arr = _scale_16bit(arr)
    elif arr.dtype.kind == "f":
        arr = _float_to_uint8(arr)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype.kind in "iu":
        arr = _scale_16bit(arr) if arr.max(initial=0) > 255 else np.clip(arr, 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"unsupported image array dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr)
    if arr.ndim == 2:
        return Image.fromarray(arr, "L").convert("RGB")
    if arr.shape[2] == 4:
        return _composite_on_white(Image.fromarray(arr, "RGBA"))
    return Image.fromarray(arr, "RGB")
