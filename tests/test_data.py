"""Tests of deepclust.data: built-in datasets (digits, Fashion-MNIST) and feature files."""

from __future__ import annotations

import gzip
import io
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import deepclust.data.builtin as builtin
from deepclust.data import (
    FeatureSet,
    dataset_status,
    load_dataset,
    load_digits_dataset,
    load_fashion_mnist,
    load_features,
)
from deepclust.errors import DataNotFoundError, InputError

DEBIAN = builtin.DEBIAN_FASHION_MNIST
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
needs_fmnist = pytest.mark.skipif(
    not all((DEBIAN / f).is_file() for f in TEST_FILES),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture
def no_fmnist_anywhere(tmp_path, monkeypatch):
    """Point every place Fashion-MNIST is looked for at empty folders."""
    monkeypatch.delenv("DEEPCLUST_DATA", raising=False)
    monkeypatch.setenv("DEEPCLUST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(builtin, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    return tmp_path


def _copy_test_split(dest: Path, *, decompress: bool = False) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in TEST_FILES:
        if decompress:
            with gzip.open(DEBIAN / name, "rb") as f:
                (dest / name[: -len(".gz")]).write_bytes(f.read())
        else:
            shutil.copy(DEBIAN / name, dest / name)


# ----------------------------------------------------------------------------- digits


def test_digits_loads_1797_images_of_10_classes():
    ds = load_digits_dataset()
    assert len(ds) == 1797 and ds.n_classes == 10
    assert ds.images.shape == (1797, 8, 8) and ds.images.dtype == np.uint8
    assert ds.images.max() == 255
    np.testing.assert_array_equal(np.unique(ds.labels), np.arange(10))
    X = ds.features()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert 0.0 <= X.min() and X.max() == 1.0


def test_load_dataset_by_name_and_split():
    assert len(load_dataset("digits")) == 1797
    assert load_dataset("digits:all").split == "all"
    with pytest.raises(InputError, match="single split"):
        load_dataset("digits", "train")
    with pytest.raises(InputError, match="unknown dataset 'cifar'.*digits, fashion-mnist"):
        load_dataset("cifar")


# ----------------------------------------------------------------------------- Fashion-MNIST


@needs_fmnist
@pytest.mark.parametrize("split, n", [("test", 10_000), ("train", 60_000)])
def test_fashion_mnist_shapes_and_label_counts(split, n):
    ds = load_fashion_mnist(split, download=False)
    assert (ds.name, ds.split) == ("fashion-mnist", split)
    assert ds.images.shape == (n, 28, 28) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (n,) and ds.labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(ds.labels), [n // 10] * 10)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"


@needs_fmnist
def test_fashion_mnist_all_and_aliases():
    ds = load_dataset("fashion-mnist:all", download=False)
    assert len(ds) == 70_000 and np.bincount(ds.labels).tolist() == [7000] * 10
    assert len(load_dataset("fmnist", download=False)) == 10_000  # default split: test
    with pytest.raises(InputError, match="splits 'train', 'test' and 'all'"):
        load_fashion_mnist("valid", download=False)


@needs_fmnist
@pytest.mark.parametrize("layout", ["subfolder", "root", "decompressed"])
def test_deepclust_data_is_honoured(tmp_path, monkeypatch, layout):
    root = tmp_path / "data"
    target = root if layout == "root" else root / "fashion-mnist"
    _copy_test_split(target, decompress=layout == "decompressed")
    monkeypatch.setenv("DEEPCLUST_DATA", str(root))
    ds = load_fashion_mnist("test", download=False)
    assert ds.source == str(target)
    assert ds.images.shape == (10_000, 28, 28)
    np.testing.assert_array_equal(ds.labels, builtin.read_idx(DEBIAN / TEST_FILES[1]))


@needs_fmnist
def test_a_corrupted_copy_is_refused_with_its_path(tmp_path, monkeypatch):
    target = tmp_path / "fashion-mnist"
    _copy_test_split(target)
    bad = target / TEST_FILES[1]  # one label changed: still a valid IDX file
    labels = gzip.decompress(bad.read_bytes())
    bad.write_bytes(gzip.compress(labels[:-1] + bytes([(labels[-1] + 1) % 10])))
    monkeypatch.setenv("DEEPCLUST_DATA", str(tmp_path))
    with pytest.raises(InputError, match="does not match the published Fashion-MNIST.*SHA-256"):
        load_fashion_mnist("test", download=False)
    # `deepclust datasets` checks the test images the same way
    (target / TEST_FILES[0]).write_bytes(gzip.compress(b"\x00\x00\x08\x03" + bytes(16)))
    assert dataset_status()[1]["available"] is False


@pytest.mark.parametrize(
    "payload", [b"definitely not gzip", gzip.compress(bytes(range(256)) * 64)[:200]]
)
def test_an_unreadable_copy_is_an_input_error(no_fmnist_anywhere, monkeypatch, payload):
    folder = no_fmnist_anywhere / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(payload)
    monkeypatch.setenv("DEEPCLUST_DATA", str(no_fmnist_anywhere / "data"))
    with pytest.raises(InputError, match="could not be read.*delete it"):
        load_fashion_mnist("test", download=False)


def test_absent_everywhere_says_how_to_get_it(no_fmnist_anywhere):
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist("test", download=False)
    msg = str(info.value)
    assert "downloads disabled" in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "$DEEPCLUST_DATA/fashion-mnist" in msg
    assert builtin.FASHION_MNIST_URL in msg
    status = {row["name"]: row for row in dataset_status()}
    assert status["digits"]["available"] is True
    assert status["fashion-mnist"]["available"] is False
    assert "apt-get install" in status["fashion-mnist"]["where"]


@needs_fmnist
def test_download_lands_verified_in_the_cache(no_fmnist_anywhere, monkeypatch):
    requested = []

    def fake_urlopen(url, timeout=None):
        requested.append(url)
        return open(DEBIAN / url.rsplit("/", 1)[1], "rb")

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    ds = load_fashion_mnist("test")
    cache = no_fmnist_anywhere / "cache" / "fashion-mnist"
    assert ds.source == str(cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted(TEST_FILES)  # no temporary left
    assert requested == [builtin.FASHION_MNIST_URL + f for f in TEST_FILES]
    assert np.bincount(ds.labels).tolist() == [1000] * 10


def test_corrupt_download_is_refused_and_not_kept(no_fmnist_anywhere, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda url, timeout=None: io.BytesIO(gzip.compress(b"wrong")))
    with pytest.raises(InputError, match="corrupt"):
        load_fashion_mnist("test")
    assert list((no_fmnist_anywhere / "cache" / "fashion-mnist").iterdir()) == []


def test_failed_download_says_why_and_how_to_get_it(no_fmnist_anywhere, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataNotFoundError, match="(?s)no route to host.*apt-get install"):
        load_fashion_mnist("test")


@needs_fmnist
def test_dataset_status_finds_the_debian_copy(monkeypatch):
    monkeypatch.delenv("DEEPCLUST_DATA", raising=False)
    row = dataset_status()[1]
    assert row["name"] == "fashion-mnist" and row["available"] is True
    assert row["where"] == str(DEBIAN)


def test_read_idx_rejects_bad_files(tmp_path):
    good = tmp_path / "ok-idx1-ubyte"
    good.write_bytes(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes([7, 8, 9]))
    assert builtin.read_idx(good).tolist() == [7, 8, 9]
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + bytes(12))
    with pytest.raises(InputError, match="bad magic number"):
        builtin.read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + bytes(3))
    with pytest.raises(InputError, match="truncated: 3 bytes of 5"):
        builtin.read_idx(short)


# ----------------------------------------------------------------------------- feature files


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 4)).astype(np.float32)
    y = np.arange(12) % 3
    return X, y


def test_npy_features_without_labels(tmp_path, data):
    X, _ = data
    np.save(tmp_path / "f.npy", X)
    fs = load_features(tmp_path / "f.npy")
    assert isinstance(fs, FeatureSet) and len(fs) == 12
    np.testing.assert_array_equal(fs.X, X)
    assert fs.y is None and not fs.has_labels and fs.source == str(tmp_path / "f.npy")


def test_npz_with_x_y_ids_and_class_names(tmp_path, data):
    X, y = data
    np.savez(tmp_path / "f.npz", X=X, y=y, ids=np.arange(12) + 100,
             class_names=np.array(["a", "b", "c"]))
    fs = load_features(str(tmp_path / "f.npz"))
    np.testing.assert_array_equal(fs.X, X)
    assert fs.y.dtype == np.int64 and fs.y.tolist() == y.tolist() and fs.has_labels
    assert fs.ids.tolist() == list(range(100, 112)) and fs.class_names == ["a", "b", "c"]


def test_npz_other_key_names(tmp_path, data):
    X, y = data
    np.savez(tmp_path / "a.npz", embeddings=X, labels=y)
    np.savez(tmp_path / "b.npz", whatever=X, target=y)  # the only non-label array
    for name in ("a.npz", "b.npz"):
        fs = load_features(tmp_path / name)
        np.testing.assert_array_equal(fs.X, X)
        assert fs.y.tolist() == y.tolist()


def test_unknown_labels_are_minus_one(tmp_path, data):
    X, _ = data
    np.savez(tmp_path / "f.npz", X=X, y=np.full(12, -1))
    fs = load_features(tmp_path / "f.npz")
    assert fs.y is not None and not fs.has_labels


def test_parquet_with_a_list_column(tmp_path, data):
    X, y = data
    table = pa.table({"id": [f"img{i}" for i in range(12)], "embedding": list(X),
                      "label": y})
    pq.write_table(table, tmp_path / "f.parquet")
    fs = load_features(tmp_path / "f.parquet")
    np.testing.assert_allclose(fs.X, X)
    assert fs.y.tolist() == y.tolist() and fs.ids[3] == "img3"


def test_parquet_with_a_fixed_size_list_column(tmp_path, data):
    X, y = data
    col = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 4)
    pq.write_table(pa.table({"X": col, "y": y}), tmp_path / "f.parquet")
    np.testing.assert_allclose(load_features(tmp_path / "f.parquet").X, X)


def test_parquet_with_numeric_columns(tmp_path, data):
    X, y = data
    cols = {f"f{j}": X[:, j] for j in range(4)}
    cols["f2"] = (X[:, 2] * 100).astype(np.int64)  # integer features count too
    pq.write_table(pa.table({**cols, "target": y}), tmp_path / "f.parquet")
    fs = load_features(tmp_path / "f.parquet")
    assert fs.X.shape == (12, 4)
    np.testing.assert_allclose(fs.X[:, 0], X[:, 0])
    np.testing.assert_allclose(fs.X[:, 2], cols["f2"])
    assert fs.y.tolist() == y.tolist()


def _write_csv(path: Path, X, y, label_name="label", extra=None) -> None:
    lines = [",".join([f"f{j}" for j in range(X.shape[1])] + [label_name] + (extra or []))]
    for row, lab in zip(X, y, strict=True):
        lines.append(",".join([f"{v:.6f}" for v in row] + [str(lab)]))
    path.write_text("\n".join(lines) + "\n")


def test_csv_with_a_label_column(tmp_path, data):
    X, y = data
    _write_csv(tmp_path / "f.csv", X, y)
    fs = load_features(tmp_path / "f.csv")
    np.testing.assert_allclose(fs.X, X, atol=1e-6)
    assert fs.y.tolist() == y.tolist()


def test_csv_with_a_named_string_label_column(tmp_path, data):
    X, _ = data
    names = np.array(["dog", "cat", "emu"])[np.arange(12) % 3]
    _write_csv(tmp_path / "f.csv", X, names, label_name="species")
    fs = load_features(tmp_path / "f.csv", label_column="species")
    assert fs.X.shape == (12, 4)
    assert fs.y.tolist() == ([1, 0, 2] * 4)  # sorted codes: cat, dog, emu
    with pytest.raises(InputError, match="non-numeric|not numeric"):
        load_features(tmp_path / "f.csv")  # species taken for a feature
    with pytest.raises(InputError, match="no column 'kind'; columns: f0, f1, f2, f3, species"):
        load_features(tmp_path / "f.csv", label_column="kind")


@pytest.mark.parametrize("suffix", [".npy", ".txt"])
def test_labels_path_supplies_or_overrides_labels(tmp_path, data, suffix):
    X, y = data
    np.savez(tmp_path / "f.npz", X=X, y=np.zeros(12, dtype=int))
    lab = tmp_path / f"labels{suffix}"
    if suffix == ".npy":
        np.save(lab, y[::-1])
    else:
        lab.write_text("\n".join(map(str, y[::-1])) + "\n")
    fs = load_features(tmp_path / "f.npz", labels_path=lab)
    assert fs.y.tolist() == y[::-1].tolist()


def test_labels_of_the_wrong_length(tmp_path, data):
    X, y = data
    np.savez(tmp_path / "f.npz", X=X, y=y[:-1])
    with pytest.raises(InputError, match="11 entries but there are 12 samples"):
        load_features(tmp_path / "f.npz")
    np.save(tmp_path / "f.npy", X)
    np.save(tmp_path / "lab.npy", np.arange(13))
    with pytest.raises(InputError, match=r"labels in .*lab\.npy has 13 entries"):
        load_features(tmp_path / "f.npy", labels_path=tmp_path / "lab.npy")
    with pytest.raises(DataNotFoundError, match="labels file .* does not exist"):
        load_features(tmp_path / "f.npy", labels_path=tmp_path / "nope.npy")
    (tmp_path / "lab.txt").write_text("1 2\n3 4\n")
    with pytest.raises(InputError, match=r"labels in .*lab\.txt must be 1-D"):
        load_features(tmp_path / "f.npy", labels_path=tmp_path / "lab.txt")


def test_builtin_dataset_name_gives_raw_pixels(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no file called "digits" here
    fs = load_features("digits")
    assert fs.X.shape == (1797, 64) and fs.y.shape == (1797,)
    assert fs.source == "digits:all" and fs.class_names[0] == "0"


# ----------------------------------------------------------------------------- bad files

GARBAGE = b"\x93NUMPx not really anything \x00\x01\x02" * 4


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("f.npy", GARBAGE, "not a readable .npy file"),
        ("f.npz", GARBAGE, "not a readable .npz file"),
        ("f.npz", b"PK\x03\x04" + GARBAGE, "not a readable .npz file"),
        ("f.parquet", GARBAGE, "could not be read as a table"),
        ("f.parquet", b"PAR1" + GARBAGE + b"PAR1", "could not be read as a table"),
        ("f.csv", bytes(range(256)) * 3, "could not be read as a table|not numeric"),
        ("f.csv", b"a,b,label\n", "has no rows"),
        ("f.csv", b"a,b\n1,2\n3\n", "could not be read as a table"),
        ("f.csv", b"a,b,label\n1,x,0\n2,y,1\n", "column\\(s\\) b are not numeric"),
        ("f.csv", b"a,b,label\n1,2,0\n3,nan,1\n", "1 row\\(s\\) with NaN"),
        ("f.csv", b"label\n1\n2\n", "no feature columns"),
        ("f.npy", b"", "is empty"),
        ("f.npz", b"", "is empty"),
        ("f.parquet", b"", "is empty"),
        ("f.csv", b"", "is empty"),
        ("f.txt", b"1 2\n3 4\n", "unsupported file type '.txt'; use .npy, .npz, .parquet or .csv"),
        ("f.h5", GARBAGE, "unsupported file type '.h5'"),
    ],
)
def test_garbage_files_give_clear_errors(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=match) as info:
        load_features(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({}, "holds no arrays"),
        ({"a": np.ones((3, 2)), "b": np.ones((3, 2))}, "cannot tell which array.*arrays: a, b.*'X'"),
        ({"y": np.ones(3)}, "cannot tell which array"),
        ({"X": np.array([[1, "a"]], dtype=object)}, "could not be read.*allow_pickle"),
        ({"X": np.ones((3, 2, 2))}, "must be 2-D.*flatten"),
        ({"X": np.ones(3)}, "1-D"),
        ({"X": np.array([["a", "b"]])}, "must be numeric"),
    ],
)
def test_npz_without_a_recognisable_x(tmp_path, arrays, match):
    path = tmp_path / "f.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError, match=match):
        load_features(path)


def test_object_npy_is_refused(tmp_path):
    np.save(tmp_path / "f.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="not a readable .npy file"):
        load_features(tmp_path / "f.npy")


def test_ragged_list_column(tmp_path):
    pq.write_table(pa.table({"embedding": [[1.0, 2.0], [3.0]], "label": [0, 1]}),
                   tmp_path / "f.parquet")
    with pytest.raises(InputError, match="differ in length or are missing"):
        load_features(tmp_path / "f.parquet")


def test_missing_path_and_plain_directory(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist.*digits, fashion-mnist"):
        load_features(tmp_path / "nope.npy")
    with pytest.raises(InputError, match="not an embedding store \\(no meta.json\\)"):
        load_features(tmp_path)
