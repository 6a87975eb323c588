"""Built-in datasets: scikit-learn's ``digits`` and Fashion-MNIST.

Fashion-MNIST is looked for, in order, in ``$DEEPCLUST_DATA/fashion-mnist``, in the Debian
package's folder (``apt-get install dataset-fashion-mnist``), and in the user's cache folder;
when absent everywhere it is downloaded from the official source into the cache, and every file
is checked against a SHA-256 of its decompressed content before use.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepclust.errors import DataNotFoundError, InputError

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# SHA-256 of the *decompressed* IDX files: recompressed copies (Debian's) stay verifiable.
FASHION_MNIST_FILES = {
    ("train", "images"): (
        "train-images-idx3-ubyte",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    ("train", "labels"): (
        "train-labels-idx1-ubyte",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    ("test", "images"): (
        "t10k-images-idx3-ubyte",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    ("test", "labels"): (
        "t10k-labels-idx1-ubyte",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
}


@dataclass
class Dataset:
    """A labelled image dataset held in memory.

    Attributes
    ----------
    name : str
    split : str
    images : ndarray of uint8, shape (N, H, W) or (N, H, W, 3)
    labels : ndarray of int64, shape (N,)
    class_names : list of str
    source : str
        Where the data was read from.
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    source: str = ""
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def features(self, dtype=np.float32) -> np.ndarray:
        """Raw pixels flattened to ``(N, H*W[*C])`` and scaled to [0, 1]."""
        return (self.images.reshape(len(self.images), -1).astype(dtype)) / dtype(255.0)


def cache_dir() -> Path:
    """deepclust's cache folder: ``$DEEPCLUST_CACHE``, else ``$XDG_CACHE_HOME/deepclust``."""
    if os.environ.get("DEEPCLUST_CACHE"):
        return Path(os.environ["DEEPCLUST_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "deepclust"


def _sha256_of_payload(path: Path) -> str:
    h = hashlib.sha256()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not."""
    opener = gzip.open if Path(path).suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise InputError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise InputError(f"{path} is truncated: {len(data) - offset} bytes of {expected} expected")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _candidate_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("DEEPCLUST_DATA"):
        root = Path(os.environ["DEEPCLUST_DATA"]).expanduser()
        dirs += [root / "fashion-mnist", root]
    dirs += [DEBIAN_FASHION_MNIST, cache_dir() / "fashion-mnist"]
    return dirs


def _find_file(stem: str, digest: str) -> Path | None:
    for d in _candidate_dirs():
        for name in (stem + ".gz", stem):
            p = d / name
            if p.is_file():
                try:
                    actual = _sha256_of_payload(p)
                except (OSError, EOFError) as exc:  # not gzip, or truncated
                    raise InputError(
                        f"{p} could not be read ({exc}); delete it and fetch it again"
                    ) from None
                if actual != digest:
                    raise InputError(
                        f"{p} does not match the published Fashion-MNIST data "
                        f"(SHA-256 {actual[:12]}..., expected {digest[:12]}...); "
                        "delete it and fetch it again"
                    )
                return p
    return None


def _download(stem: str, digest: str, timeout: float = 20.0) -> Path:
    dest_dir = cache_dir() / "fashion-mnist"
    dest_dir.mkdir(parents=True, exist_ok=True)
    url = FASHION_MNIST_URL + stem + ".gz"
    dest = dest_dir / (stem + ".gz")
    # ".gz" last: _sha256_of_payload decompresses by suffix, and the digests are of the payload
    fd, tmp = tempfile.mkstemp(dir=dest_dir, suffix=".part.gz")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out)
        if _sha256_of_payload(Path(tmp)) != digest:
            raise InputError(f"download of {url} is corrupt (SHA-256 mismatch); try again")
        os.replace(tmp, dest)  # atomic: a half-written file never takes the final name
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def _fashion_mnist_missing_message(reason: str) -> str:
    return (
        "Fashion-MNIST is not on this machine and could not be downloaded "
        f"({reason}). Get it in one of these ways:\n"
        "  - Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist\n"
        "    (files land in /usr/share/datasets/fashion-mnist)\n"
        f"  - download the four *-ubyte.gz files from {FASHION_MNIST_URL}\n"
        "    into $DEEPCLUST_DATA/fashion-mnist/ (or "
        f"{cache_dir() / 'fashion-mnist'})"
    )


def load_fashion_mnist(split: str = "test", *, download: bool = True) -> Dataset:
    """Fashion-MNIST (Xiao et al. 2017): 28x28 grey images of 10 clothing classes.

    Parameters
    ----------
    split : {"train", "test", "all"}
        60 000 training, 10 000 test images, or both (train first).
    download : bool
        Fetch from the official source into the cache when not found locally.
    """
    if split == "all":
        tr, te = load_fashion_mnist("train", download=download), load_fashion_mnist("test", download=download)
        return Dataset(
            "fashion-mnist", "all", np.concatenate([tr.images, te.images]),
            np.concatenate([tr.labels, te.labels]), list(FASHION_MNIST_CLASSES), tr.source,
        )
    if split not in ("train", "test"):
        raise InputError(f"fashion-mnist has splits 'train', 'test' and 'all', not {split!r}")
    paths = {}
    for kind in ("images", "labels"):
        stem, digest = FASHION_MNIST_FILES[(split, kind)]
        p = _find_file(stem, digest)
        if p is None:
            if not download:
                raise DataNotFoundError(_fashion_mnist_missing_message("downloads disabled"))
            try:
                p = _download(stem, digest)
            except (OSError, urllib.error.URLError) as exc:
                raise DataNotFoundError(_fashion_mnist_missing_message(str(exc))) from None
        paths[kind] = p
    images = read_idx(paths["images"])
    labels = read_idx(paths["labels"]).astype(np.int64)
    return Dataset(
        "fashion-mnist", split, images, labels, list(FASHION_MNIST_CLASSES),
        str(paths["images"].parent),
    )


def load_digits_dataset() -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (1 797 images, 10 classes)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    # Pixel values are 0..16; spread them over 0..255 like any other grey image.
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    return Dataset(
        "digits", "all", images, d.target.astype(np.int64),
        [str(i) for i in range(10)], "scikit-learn (bundled)",
    )


BUILTIN_DATASETS = {
    "digits": "scikit-learn's 8x8 handwritten digits: 1 797 images, 10 classes (always available)",
    "fashion-mnist": "Zalando's 28x28 clothing images: train 60 000 / test 10 000, 10 classes",
}


def load_dataset(name: str, split: str | None = None, *, download: bool = True) -> Dataset:
    """Load a built-in dataset by name; ``name:split`` is accepted too (``fashion-mnist:train``)."""
    if ":" in name and split is None:
        name, split = name.split(":", 1)
    key = name.lower().replace("_", "-")
    if key == "digits":
        if split not in (None, "all"):
            raise InputError("digits has a single split, 'all'")
        return load_digits_dataset()
    if key in ("fashion-mnist", "fashionmnist", "fmnist"):
        return load_fashion_mnist(split or "test", download=download)
    raise InputError(f"unknown dataset {name!r}; built-in datasets: {', '.join(BUILTIN_DATASETS)}")


def dataset_status() -> list[dict]:
    """Each built-in dataset with whether it is available without a download, and where."""
    rows = [{"name": "digits", "available": True, "where": "scikit-learn (bundled)",
             "description": BUILTIN_DATASETS["digits"]}]
    found = None
    try:
        found = _find_file(*FASHION_MNIST_FILES[("test", "images")])
    except InputError:
        found = None
    rows.append({
        "name": "fashion-mnist",
        "available": found is not None,
        "where": str(found.parent) if found else "not found (apt-get install dataset-fashion-mnist, or download)",
        "description": BUILTIN_DATASETS["fashion-mnist"],
    })
    return rows
