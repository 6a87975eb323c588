"""The attack suite (issue 15): deepclust used as a hostile or unlucky user would.

Each case runs the command in-process through :func:`deepclust.cli.main` and asserts exit
status 2 with a one-line message on stderr naming the problem (no "Traceback"), or, where the
input is legitimate, the correct result. For damaged stores it also asserts that nothing was
read: no labels were written. A property-based test (hypothesis) feeds random shapes, dtypes
and values to ``load_features`` and to every estimator's ``fit``: a result or a
``DeepclustError``, never another exception.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tarfile
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepclust.cli import main
from deepclust.errors import DeepclustError
from deepclust.store import read_meta, write_array_store

N_PER, K, D = 100, 4, 8


# ----------------------------------------------------------------------------- helpers


def run_cli(argv: list[str]) -> tuple[int | str, str, str]:
    """(exit status, stderr, stdout); an exception escaping ``main`` is status "TB"."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse
            rc = exc.code
        except Exception:  # noqa: BLE001 - what the suite exists to catch
            rc = "TB"
            err.write(traceback.format_exc())
    return rc, err.getvalue(), out.getvalue()


def assert_clean_error(argv, *fragments: str) -> str:
    argv = [str(a) for a in argv]
    if argv[0] == "cluster":
        argv.append("--json")  # no progress lines on stderr: the error is all there is
    rc, err, _ = run_cli(argv)
    assert "Traceback" not in err, err
    assert rc == 2, (rc, err)
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    for f in fragments:
        assert f in err, (f, err)
    return err


def blobs(seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(K, D)) * 8
    y = np.repeat(np.arange(K), N_PER)
    return (centers[y] + rng.normal(size=(K * N_PER, D))).astype(np.float32), y


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("attacks")
    X, y = blobs()
    np.savez(d / "blobs.npz", X=X, y=y)
    write_array_store(d / "store", X, n=len(X), dim=D, dtype="float32", shard_size=N_PER, labels=y)
    return d


@pytest.fixture
def store(base, tmp_path):
    """A fresh copy of a whole 4-shard store (400 x 8, labels 0..3) to damage."""
    s = tmp_path / "store"
    shutil.copytree(base / "store", s)
    return s


def shard(s: Path, k: int) -> Path:
    return s / "shards" / f"shard-{k:05d}.npy"


def edit_meta(s: Path, **changes) -> None:
    meta = read_meta(s)
    meta.update(changes)
    (s / "meta.json").write_text(json.dumps(meta))


# ----------------------------------------------------------------------------- damaged stores


def _truncate(s):
    f = shard(s, 2)
    f.write_bytes(f.read_bytes()[:-500])


def _shorten(s):
    np.save(shard(s, 1), np.load(shard(s, 1))[:90])


def _delete_shard(s):
    shard(s, 3).unlink()


def _swap(s):
    a, b = shard(s, 1).read_bytes(), shard(s, 2).read_bytes()
    shard(s, 1).write_bytes(b)
    shard(s, 2).write_bytes(a)


def _resize_same_total(s):
    rows = np.concatenate([np.load(shard(s, 1)), np.load(shard(s, 2))])
    np.save(shard(s, 1), rows[:120])
    np.save(shard(s, 2), rows[120:])


def _object_shard(s):
    np.save(shard(s, 0), np.array([[object()]] * 3, dtype=object), allow_pickle=True)


def _flip_byte(s):
    f = shard(s, 2)
    data = bytearray(f.read_bytes())
    data[-3] ^= 0xFF
    f.write_bytes(bytes(data))


STORE_DAMAGE = {
    "truncated shard": (_truncate, "shard 2 is damaged"),
    "shard shortened (valid header)": (_shorten, "shard 1 is damaged: it holds 90 rows but the store says 100"),
    "shard deleted": (_delete_shard, "shard 3 is damaged"),
    "two shards swapped": (_swap, "shard 1 is damaged"),
    "shards resized, total unchanged": (_resize_same_total, "shard 1 is damaged: it holds 120 rows"),
    "object-dtype shard": (_object_shard, "shard 0 is damaged: it holds object values"),
    "one byte flipped": (_flip_byte, "shard 2 is damaged"),
    "index deleted": (lambda s: (s / "index.parquet").unlink(), "index.parquet is missing"),
    "index garbage": (lambda s: (s / "index.parquet").write_bytes(b"garbage" * 10), "index.parquet is damaged"),
    "meta is a list": (lambda s: (s / "meta.json").write_text("[1, 2]"), "it holds a list"),
    "meta not JSON": (lambda s: (s / "meta.json").write_text("{"), "not readable JSON"),
    "meta lacks count": (lambda s: edit_meta(s, count=None) or _drop_key(s, "count"), "it has no 'count'"),
    "negative count": (lambda s: edit_meta(s, count=-5), "count is -5"),
    "count too high": (lambda s: edit_meta(s, count=500), "the shards hold 400 rows but meta.json says count=500"),
    "unknown dtype": (lambda s: edit_meta(s, dtype="complex64"), "dtype is complex64"),
    "dim changed": (lambda s: edit_meta(s, dim=9), "store says dim=9"),
    "n_shards not an integer": (lambda s: edit_meta(s, n_shards=3.5), "n_shards is 3.5"),
    "n_shards edited": (lambda s: edit_meta(s, n_shards=3), "shard records do not match n_shards=3"),
    "dim is a string": (lambda s: edit_meta(s, dim="8"), "dim is 8"),
}


def _drop_key(s, key):
    meta = read_meta(s)
    meta.pop(key)
    (s / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("method", ["kmeans", "agglomerative"])  # streamed / loaded in memory
@pytest.mark.parametrize("case", sorted(STORE_DAMAGE))
def test_damaged_store_is_named_not_read(store, tmp_path, case, method):
    damage, fragment = STORE_DAMAGE[case]
    damage(store)
    out = tmp_path / "run"
    assert_clean_error(["cluster", store, "--k", K, "--method", method, "--out", out,
                        "--no-label-free"], fragment)
    assert not (out / "labels.npy").exists()  # nothing was read, nothing written


@pytest.mark.parametrize("case", sorted(STORE_DAMAGE))
def test_verify_names_the_damage(store, case):
    damage, fragment = STORE_DAMAGE[case]
    damage(store)
    rc, err, out = run_cli(["verify", store])
    assert rc == 2 and "Traceback" not in err and len(err.strip().split("\n")) == 1, (rc, err)
    assert fragment in out + err


def test_verify_whole_store(store):
    rc, err, out = run_cli(["verify", store])
    assert rc == 0 and "OK, 400 rows x 8 in 4 shards (structure and checksums checked)" in out


def test_every_reader_refuses_a_damaged_store(store):
    """In memory (X), streamed (StoreRows), shard maps, a distributed part: one check."""
    from deepclust.data.rows import as_row_source
    from deepclust.errors import InputError
    from deepclust.store import open_store

    _swap(store)
    for read in (lambda: open_store(store).X, lambda: as_row_source(store).to_array(),
                 lambda: open_store(store).shard(0), lambda: as_row_source(store).part(1, 2)):
        with pytest.raises(InputError, match="shard 1 is damaged"):
            read()


def test_checksum_only_damage_is_found_by_verify(tmp_path):
    """A byte changed past the hashed head: structure intact, verify's SHA-256 finds it."""
    X, y = blobs()
    big = np.repeat(X, 30, axis=0)  # 12 000 x 8 float32: 384 KB, past the 64 KiB head
    write_array_store(tmp_path / "s", big, n=len(big), dim=D, dtype="float32", shard_size=len(big))
    f = shard(tmp_path / "s", 0)
    data = bytearray(f.read_bytes())
    data[-5] ^= 0x01
    f.write_bytes(bytes(data))
    rc, err, out = run_cli(["verify", tmp_path / "s"])
    assert rc == 2 and "SHA-256 differs" in out, (rc, out, err)
    assert run_cli(["verify", tmp_path / "s", "--quick"])[0] == 0


def test_old_store_without_records_still_opens(store, tmp_path):
    meta = read_meta(store)
    meta.pop("shards")
    meta.pop("index_file")
    (store / "meta.json").write_text(json.dumps(meta))
    rc, err, out = run_cli(["cluster", store, "--k", K, "--out", tmp_path / "r", "--no-label-free",
                            "--json"])
    assert rc == 0, err
    assert json.loads(out)["metrics"]["ami"] == pytest.approx(1.0)
    rc, _, out = run_cli(["verify", store])
    assert rc == 0 and "no checksums were recorded" in out


def test_rerun_rebuilds_a_damaged_shard_with_the_same_rows(store):
    X, y = blobs()
    _shorten(store)
    write_array_store(store, X, n=len(X), dim=D, dtype="float32", shard_size=N_PER, labels=y)
    assert run_cli(["verify", store])[0] == 0
    from deepclust.store import open_store

    s = open_store(store)
    assert np.array_equal(s.X, X) and np.array_equal(s.labels, y)


def test_pickle_in_npy_is_refused(tmp_path):
    np.save(tmp_path / "evil.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    assert_clean_error(["cluster", tmp_path / "evil.npy", "--k", 2, "--out", tmp_path / "r"],
                       "not a readable .npy file")


# ----------------------------------------------------------------------------- parameters


PARAM_CASES = {
    "hdbscan min_cluster_size huge": (["--method", "hdbscan", "--param", "min_cluster_size=1e30"],
                                       "min_cluster_size=1e+30 is not allowed"),
    "hdbscan min_cluster_size above n": (["--method", "hdbscan", "--param", "min_cluster_size=100000"],
                                          "needs at least that many points"),
    "hdbscan min_samples=abc": (["--method", "hdbscan", "--param", "min_samples=abc"],
                                "min_samples='abc' is not allowed"),
    "hdbscan metric=bogus": (["--method", "hdbscan", "--param", "metric=bogus"],
                             "metric='bogus' is not allowed"),
    "hdbscan cluster_selection_epsilon=abc": (
        ["--method", "hdbscan", "--param", "cluster_selection_epsilon=abc"],
        "cluster_selection_epsilon='abc' is not allowed"),
    "spectral n_neighbors=abc": (["--method", "spectral", "--k", K, "--param", "n_neighbors=abc"],
                                 "n_neighbors='abc' is not allowed"),
    "spectral n_neighbors=0": (["--method", "spectral", "--k", K, "--param", "n_neighbors=0"],
                               "n_neighbors=0 is not allowed"),
    "affinity preference=abc": (["--method", "affinity-propagation", "--param", "preference=abc"],
                                "preference='abc' is not allowed"),
    "agglomerative metric=bogus": (["--method", "agglomerative", "--k", K, "--param",
                                    "linkage=average", "--param", "metric=bogus"],
                                   "metric='bogus' is not allowed"),
    "kmeans spherical=abc": (["--method", "kmeans", "--k", K, "--param", "spherical=abc"],
                             "spherical='abc' is not allowed"),
    "gmm covariance_type=bogus": (["--method", "gmm", "--k", K, "--param", "covariance_type=x"],
                                  "covariance_type='x' is not allowed"),
    "umap n_neighbors=abc": (["--k", K, "--reduce", "umap:2:n_neighbors=abc"],
                             "n_neighbors='abc' is not allowed"),
    "unknown parameter": (["--method", "kmeans", "--k", K, "--param", "bogus=1"],
                          "does not take parameter(s) bogus"),
    "a parameter with --method auto": (["--k", K, "--param", "n_init=2"],
                                       "give --param only with a named --method"),
}
# the heads and hierarchical k-means: one case per kind of constraint (type, range, choice,
# boolean, "auto"-or-number, per-level list)
for _m, _k, _cases in [
    ("temi", K, ["beta=abc", "beta=2", "precision=fp16", "n_steps=0", "n_steps=many",
                 "teacher_momentum=1", "teacher_momentum_final=1.5", "checkpoint_every=-1",
                 "resume=maybe", "student_temp=0", "warmup_steps=-2", "neighbor_precision=x"]),
    ("scan", K, ["self_label=abc", "self_label_threshold=0", "entropy_weight=-1", "n_heads=0",
                 "batch_size=abc", "self_label_steps=0", "temperature=-0.1", "base_lr=0"]),
    ("hkmeans", 2, ["branching=1", "resampling_strategy=far", "tol=-1", "level=0",
                    "n_resampling_steps=-1", "sample_size=0", "spherical=abc", "init=kmeans",
                    "max_iter=0", "n_levels=0"]),
]:
    for _c in _cases:
        _name, _value = _c.split("=")
        PARAM_CASES[f"{_m} {_c}"] = (["--method", _m, "--k", _k, "--param", _c],
                                     f"{_m}: {_name}=")


@pytest.mark.parametrize("case", sorted(PARAM_CASES))
def test_bad_parameter_is_named(base, tmp_path, case):
    argv, fragment = PARAM_CASES[case]
    assert_clean_error(["cluster", base / "blobs.npz", "--out", tmp_path / "r", "--no-label-free",
                        *argv], fragment)


def test_all_negative_labels_are_refused(base, tmp_path):
    np.save(tmp_path / "neg.npy", -np.ones(K * N_PER, dtype=np.int64))
    assert_clean_error(["cluster", base / "blobs.npz", "--k", K, "--out", tmp_path / "r",
                        "--labels", tmp_path / "neg.npy", "--no-label-free"], "every label is negative")


def test_huge_finite_values_are_not_called_nan(tmp_path):
    X, _ = blobs()
    X = X.astype(np.float64)
    X[3, 0] = 1e300
    np.save(tmp_path / "big.npy", X)
    err = assert_clean_error(["cluster", tmp_path / "big.npy", "--k", K, "--out", tmp_path / "r"],
                             "beyond the float32 range")
    assert "NaN" not in err


def test_complex_features_are_refused(tmp_path):
    X, _ = blobs()
    np.save(tmp_path / "c.npy", X.astype(np.complex64) + 1j)
    assert_clean_error(["cluster", tmp_path / "c.npy", "--k", K, "--out", tmp_path / "r"],
                       "Complex data not supported")


# ----------------------------------------------------------------------------- images and sources


def _photos():
    from sklearn.datasets import load_sample_images

    return [Image.fromarray(im) for im in load_sample_images().images]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Class folders a/ and b/ of small crops of the two sample photos."""
    d = tmp_path_factory.mktemp("photos") / "imgs"
    for c, im in zip("ab", _photos(), strict=True):
        (d / c).mkdir(parents=True)
        for j in range(3):
            im.crop((40 * j, 0, 40 * j + 64, 64)).save(d / c / f"{j}.png")
    return d


def _embed(src, out, *extra, encoder=("raw", "--encoder-opt", "size=8")):
    return ["embed", src, "--encoder", *encoder, "--out", out, "--workers", "0", "--no-progress",
            *extra]


def test_symlink_to_sibling_class_keeps_labels(photos, tmp_path):
    from deepclust.data.sources import FolderSource

    src = tmp_path / "imgs"
    shutil.copytree(photos, src)
    os.symlink(src / "b", src / "a" / "link-to-b")
    fs = FolderSource(src)
    assert fs.class_names == ["a", "b"]
    assert sorted(fs.paths) == [f"{c}/{j}.png" for c in "ab" for j in range(3)]
    assert fs.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_symlink_leaving_the_folder_is_refused(photos, tmp_path):
    src = tmp_path / "imgs"
    shutil.copytree(photos, src)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    _photos()[0].crop((0, 0, 32, 32)).save(outside / "x.png")
    os.symlink(outside, src / "a" / "out")
    assert_clean_error(_embed(src, tmp_path / "s"), "outside the image folder", "--follow-outside")
    rc, err, _ = run_cli(_embed(src, tmp_path / "s2", "--follow-outside"))
    assert rc == 0, err
    assert read_meta(tmp_path / "s2")["count"] == 7


def test_manifest_path_leaving_the_root_is_refused(photos, tmp_path):
    (tmp_path / "m.csv").write_text("path,label\n/etc/passwd,0\n")
    assert_clean_error(_embed(tmp_path / "m.csv", tmp_path / "s"), "lead outside the folder")
    (tmp_path / "m2.csv").write_text("path,label\n../../x.png,0\n")
    assert_clean_error(_embed(tmp_path / "m2.csv", tmp_path / "s"), "lead outside the folder")


def test_terminal_escapes_in_names_are_escaped(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\n/tmp/\x1b[2Jevil.png,0\n")
    err = assert_clean_error(_embed(tmp_path / "m.csv", tmp_path / "s"), "\\x1b[2J")
    assert "\x1b" not in err


@pytest.mark.parametrize("value", ["0", "-1"])
def test_max_pixels_must_be_positive(photos, tmp_path, value):
    assert_clean_error(_embed(photos, tmp_path / "s", "--max-pixels", value), "max_pixels")


def test_negative_workers_are_refused(photos, tmp_path):
    argv = _embed(photos, tmp_path / "s")
    argv[argv.index("--workers") + 1] = "-1"
    assert_clean_error(argv, "num_workers=-1 is not allowed")
    assert not (tmp_path / "s" / "meta.json").exists()


def _tar(path: Path, cls: bytes) -> Path:
    buf = io.BytesIO()
    _photos()[0].crop((0, 0, 16, 16)).save(buf, format="PNG")
    with tarfile.open(path, "w") as tf:
        for name, data in (("s0.png", buf.getvalue()), ("s0.cls", cls)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_non_integer_cls_in_a_tar_is_refused(tmp_path):
    assert_clean_error(_embed(_tar(tmp_path / "t.tar", b"cat"), tmp_path / "s"),
                       "s0.cls holds the label 'cat', which is not an integer")


def test_truncated_tar_is_named(tmp_path):
    t = _tar(tmp_path / "t.tar", b"1")
    t.write_bytes(t.read_bytes()[:700])
    assert_clean_error(_embed(t, tmp_path / "s"), "damaged or truncated")


# ----------------------------------------------------------------------------- checkpoints


def _checkpoint(tmp_path, **config_changes) -> Path:
    import torch

    from deepclust.encoders.checkpoint import ConvNet, save_checkpoint
    from deepclust.encoders.transform import ImageTransform

    torch.manual_seed(0)
    t = ImageTransform(crop_size=16, resize="exact", mean=(0.5,) * 3, std=(0.5,) * 3)
    ck = save_checkpoint(tmp_path / "ckpt", ConvNet(widths=(4, 8)), "convnet", t,
                         arch_kwargs={"widths": [4, 8]})
    config = json.loads((ck / "config.json").read_text())
    for key, value in config_changes.items():
        if key in ("mean", "std"):
            config["transform"][key] = value
        else:
            config[key] = value
    (ck / "config.json").write_text(json.dumps(config))
    return ck


def test_checkpoint_with_wrong_dim_is_refused_before_a_store_is_written(photos, tmp_path):
    ck = _checkpoint(tmp_path, dim=99)
    argv = _embed(photos, tmp_path / "s", encoder=(f"checkpoint:{ck}",))
    assert_clean_error(argv, "declares dim=99, but the model gives 8")
    assert not (tmp_path / "s").exists()


def test_checkpoint_mean_not_numbers_is_refused(photos, tmp_path):
    ck = _checkpoint(tmp_path, mean="abc")
    argv = _embed(photos, tmp_path / "s", encoder=(f"checkpoint:{ck}",))
    assert_clean_error(argv, "mean is 'abc'; it must be 3 finite numbers")


# ----------------------------------------------------------------------------- outputs and disks


def test_out_under_a_file_fails_before_clustering(base, tmp_path):
    (tmp_path / "file").write_text("x")
    assert_clean_error(["cluster", base / "blobs.npz", "--k", K, "--out", tmp_path / "file" / "run"],
                       "is a file, not a folder")


def test_out_in_proc_fails_before_clustering(base):
    assert_clean_error(["cluster", base / "blobs.npz", "--k", K, "--out", "/proc/deepclust-run"],
                       "cannot be written")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only permissions")
def test_read_only_out_fails_before_clustering(base, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert_clean_error(["cluster", base / "blobs.npz", "--k", K, "--out", ro / "run"],
                           "cannot be written")
    finally:
        ro.chmod(0o700)


def test_full_disk_before_the_run_is_a_clean_error_at_once(base, tmp_path, monkeypatch):
    import errno

    import deepclust.runinfo as runinfo

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runinfo.os, "fsync", full)
    out = tmp_path / "run"
    assert_clean_error(["cluster", base / "blobs.npz", "--k", K, "--out", out],
                       "cannot be written (No space left on device)")
    assert not any(out.iterdir())


def test_full_disk_while_writing_is_a_clean_error_and_leaves_no_temporary_file(
        base, tmp_path, monkeypatch):
    """ENOSPC while writing the run: one line naming the folder, no .tmp left, re-run works."""
    import errno

    real = np.save

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "run"
    monkeypatch.setattr(np, "save", full)
    assert_clean_error(["cluster", base / "blobs.npz", "--k", K, "--out", out, "--no-label-free"],
                       "no space left on the device", str(out))
    assert not list(out.glob(".*.tmp")), list(out.iterdir())
    monkeypatch.setattr(np, "save", real)
    rc, err, _ = run_cli(["cluster", base / "blobs.npz", "--k", K, "--out", out, "--no-label-free"])
    assert rc == 0 and (out / "labels.npy").exists(), err


def test_full_disk_during_embed_resumes(photos, tmp_path, monkeypatch):
    import errno

    real, calls = np.save, []

    def fills_up(*args, **kwargs):  # the second shard written hits a full disk
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(np, "save", fills_up)
    out = tmp_path / "s"
    assert_clean_error(_embed(photos, out, "--shard-size", "2"), "no space left on the device")
    assert not list((out / "shards").glob(".*.tmp"))
    monkeypatch.setattr(np, "save", real)
    assert run_cli(_embed(photos, out, "--shard-size", "2"))[0] == 0
    whole = tmp_path / "whole"
    assert run_cli(_embed(photos, whole, "--shard-size", "2"))[0] == 0
    from deepclust.store import open_store

    assert np.array_equal(open_store(out).X, open_store(whole).X)
    assert run_cli(["verify", out])[0] == 0


# ----------------------------------------------------------------------------- property-based


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

_DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int64, np.uint8, np.bool_, np.complex64]
_SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=12)


def _array(dtype):
    dtype = np.dtype(dtype)
    # no subnormals: a library here sets flush-to-zero, which hypothesis refuses to draw under
    elements = hnp.from_dtype(dtype, allow_subnormal=False) if dtype.kind in "fc" else None
    return hnp.arrays(dtype=dtype, shape=_SHAPES, elements=elements)


_ARRAYS = st.sampled_from(_DTYPES).flatmap(_array)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(X=_ARRAYS)
def test_load_features_gives_a_result_or_a_deepclust_error(tmp_path_factory, X):
    from deepclust.data.features import load_features

    path = tmp_path_factory.mktemp("h") / "x.npy"
    np.save(path, X)
    try:
        fs = load_features(path)
    except DeepclustError:
        return
    assert fs.X.ndim == 2 and np.isfinite(fs.X).all()


_METHODS = ["kmeans", "minibatch-kmeans", "agglomerative", "spectral", "hdbscan",
            "affinity-propagation", "gmm"]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(X=_ARRAYS, method=st.sampled_from(_METHODS), k=st.integers(-1, 5))
def test_fit_gives_a_result_or_a_deepclust_error(X, method, k):
    from deepclust.cluster import get_clusterer_class, make_clusterer

    params = {"n_clusters": k} if get_clusterer_class(method).takes_n_clusters else {}
    try:
        est = make_clusterer(method, random_state=0, **params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X)
    except DeepclustError:
        return
    assert est.labels_.shape == (np.asarray(X).shape[0],)


# ----------------------------------------------------------------------------- heads checkpoints


def _temi_argv(base, tmp_path, ckpt):
    return ["cluster", base / "blobs.npz", "--method", "temi", "--k", K, "--out", tmp_path / "o",
            "--no-label-free", "--param", f"checkpoint_dir={ckpt}", "--param", "n_steps=5",
            "--param", "n_heads=1", "--param", "hidden_dim=16", "--param", "bottleneck_dim=8",
            "--param", "n_neighbors=5", "--param", "batch_size=64"]


def _fake_checkpoint(tmp_path, **state) -> Path:
    from deepclust.cluster.heads.checkpoint import FORMAT, STATE_FILE

    ckpt = tmp_path / "ckpt" / "heads"  # TEMI's phase folder inside checkpoint_dir
    ckpt.mkdir(parents=True)
    (ckpt / STATE_FILE).write_text(json.dumps({"format": FORMAT, "step": 20, **state}))
    return ckpt


def test_checkpoint_json_without_tensors_is_named(base, tmp_path):
    ckpt = _fake_checkpoint(tmp_path)
    assert_clean_error(_temi_argv(base, tmp_path, ckpt.parent), "does not name its tensor file",
                       "remove the folder")
    assert not (tmp_path / "o" / "labels.npy").exists()


def test_checkpoint_naming_a_path_outside_its_folder_is_refused(base, tmp_path):
    ckpt = _fake_checkpoint(tmp_path, tensors="../../etc/passwd")
    assert_clean_error(_temi_argv(base, tmp_path, ckpt.parent), "does not name its tensor file")


def test_truncated_checkpoint_tensors_are_named(base, tmp_path):
    ckpt = _fake_checkpoint(tmp_path, tensors="checkpoint-00000020.safetensors")
    (ckpt / "checkpoint-00000020.safetensors").write_bytes(b"\x40\x00\x00\x00\x00\x00\x00\x00{\"a")
    assert_clean_error(_temi_argv(base, tmp_path, ckpt.parent), "is damaged", "remove the folder")


def test_checkpoint_with_a_list_for_identity_is_named(base, tmp_path):
    ckpt = _fake_checkpoint(tmp_path, identity=[1, 2], tensors="checkpoint-00000020.safetensors")
    assert_clean_error(_temi_argv(base, tmp_path, ckpt.parent), "is damaged", "remove the folder")


# ----------------------------------------------------------------------------- locks


_LOCK_THEN_FORK = """
import os, sys, time
from deepclust.store import StoreWriter
w = StoreWriter(sys.argv[1])
w._lock()
if os.fork() == 0:  # a worker that inherits the lock, as a DataLoader worker does
    time.sleep(60)
    os._exit(0)
print("locked", flush=True)
time.sleep(60)
"""


def test_lock_kept_by_an_orphaned_child_of_a_killed_owner_is_taken_over(tmp_path):
    import signal
    import subprocess
    import sys

    from deepclust.store import StoreWriter

    (tmp_path / "s").mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", _LOCK_THEN_FORK, str(tmp_path / "s")],
                            stdout=subprocess.PIPE, env=env, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == b"locked"
        with pytest.raises(DeepclustError, match="being written by another deepclust process"):
            StoreWriter(tmp_path / "s")._lock()  # the owner is alive: refused
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        w = StoreWriter(tmp_path / "s")
        w._lock()  # the orphan still holds the old lock file: taken over, not refused
        assert (tmp_path / "s" / ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(DeepclustError, match="being written"):
            StoreWriter(tmp_path / "s")._lock()  # and the new lock holds
        w.release()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


# ----------------------------------------------------------------------------- cost guards


def test_method_whose_matrix_exceeds_memory_is_refused_before_reading(tmp_path):
    np.save(tmp_path / "wide.npy", np.random.default_rng(0).normal(size=(60_000, 2))
            .astype(np.float32))
    assert_clean_error(["cluster", tmp_path / "wide.npy", "--method", "agglomerative",
                        "--k", "3", "--out", tmp_path / "o"], "agglomerative on 60000 rows",
                       "GiB", "subsample")
    assert not (tmp_path / "o" / "labels.npy").exists()


def test_slow_methods_are_announced_with_an_estimate():
    from deepclust.cluster import get_clusterer_class
    from deepclust.cluster.cost import CostWarning, check_cost

    for method, params in [("spectral", {}), ("hdbscan", {}),
                           ("gmm", {"covariance_type": "full"})]:
        with pytest.warns(CostWarning, match=rf"{method} on 200000 rows needs about .* here"):
            check_cost(get_clusterer_class(method), params, 200_000, 768, k=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CostWarning)
        check_cost(get_clusterer_class("spectral"), {}, 2_000, 64)  # small: silent
        check_cost(get_clusterer_class("kmeans"), {}, 10**8, 768)  # linear: never
        check_cost(get_clusterer_class("gmm"), {"covariance_type": "diag"}, 200_000, 768)


def test_k_auto_sweeps_a_sample_then_fits_every_row():
    from deepclust.pipeline import run_clustering

    X, y = blobs()
    r = run_clustering(X, y, method="kmeans", k="auto", k_values=range(2, 7),
                       selection_rows=200, random_state=0)
    assert (r.k_selection.rows, r.k_selection.of_rows) == (200, len(X))
    assert r.k_selection.best_k == K and len(r.labels) == len(X)
    assert r.label_free_rows == 200 and len(r.sample.rows) == 200
    assert r.metrics["ami"] > 0.99
    full = run_clustering(X, y, method="kmeans", k="auto", k_values=range(2, 7),
                          selection_rows=None, random_state=0)
    assert full.k_selection.rows == len(X) and full.label_free_rows == len(X)


# ----------------------------------------------------------------------------- report confinement


@pytest.fixture
def image_run(photos, tmp_path):
    """A folder of 6 images, its store and a k-means run of it; an image outside the folder."""
    src = tmp_path / "imgs"
    shutil.copytree(photos, src)
    assert run_cli(_embed(src, tmp_path / "store"))[0] == 0
    rc, err, _ = run_cli(["cluster", tmp_path / "store", "--k", 2, "--out", tmp_path / "run",
                          "--no-label-free", "--quiet"])
    assert rc == 0, err
    secret = tmp_path / "elsewhere" / "secret.png"
    secret.parent.mkdir()
    _photos()[1].crop((0, 0, 32, 32)).save(secret)
    return tmp_path, src, secret


def _set_column(path: Path, column: str, values: list) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    i = table.column_names.index(column)
    pq.write_table(table.set_column(i, column, pa.array(values, type=pa.string())), path)


def _hostile_paths(secret: Path, src: Path) -> list[str]:
    """Row paths: two outside the folder (absolute, and ../ from inside it), the rest inside."""
    inside = sorted(str(p) for p in src.rglob("*.png"))
    return [str(secret), str(src / "a" / ".." / ".." / "elsewhere" / "secret.png"), *inside[2:]]


def test_report_reads_no_assignment_path_outside_the_image_folder(image_run):
    from deepclust.report import load_run
    from deepclust.report.data import outside_warning

    tmp, src, secret = image_run
    _set_column(tmp / "run" / "assignments.parquet", "path", _hostile_paths(secret, src))
    data = load_run(tmp / "run")
    assert data.outside == {"skipped": 2, "roots": [str(src.resolve())]}
    assert data.paths[:2] == [None, None] and all(data.paths[2:])
    assert data.images.image(0) is None and data.images.image(2) is not None
    assert data.missing is None  # skipped files are not reported as missing
    assert "2 image path(s) outside" in outside_warning(data.outside)
    opened = load_run(tmp / "run", follow_outside=True)  # the explicit opt-out reads them
    assert opened.outside is None and opened.paths[0] == str(secret)


def test_report_reads_no_store_index_path_outside_its_root(image_run):
    """An older run (no assignments file) read through the store's index: absolute and
    ``../`` paths leaving the recorded root are skipped."""
    from deepclust.report import load_run

    tmp, src, secret = image_run
    (tmp / "run" / "assignments.parquet").unlink()
    rel = os.path.relpath(secret, src)  # ../elsewhere/secret.png, relative to the root
    paths = [str(secret), rel, *(f"{c}/{j}.png" for c in "ab" for j in range(3))][:6]
    index = tmp / "store" / "index.parquet"
    _set_column(index, "path", paths)
    _set_column(index, "id", paths)
    edit_meta(tmp / "store", index_file=None)
    data = load_run(tmp / "run")
    assert data.outside is not None and data.outside["skipped"] == 2, data.notes
    assert data.paths[:2] == [None, None] and all(data.paths[2:])


def test_report_does_not_follow_a_link_out_of_the_image_folder(image_run):
    from deepclust.report import load_run

    tmp, src, secret = image_run
    (src / "a" / "0.png").unlink()
    os.symlink(secret, src / "a" / "0.png")  # swapped for a link after the run
    data = load_run(tmp / "run")
    assert data.outside == {"skipped": 1, "roots": [str(src.resolve())]}
    assert str(src / "a" / "0.png") not in data.paths


def test_report_command_says_how_many_paths_were_skipped(image_run):
    tmp, src, secret = image_run
    _set_column(tmp / "run" / "assignments.parquet", "path", _hostile_paths(secret, src))
    rc, err, out = run_cli(["report", tmp / "run", "--per-page", "4"])
    assert rc == 0, err
    assert "2 image path(s) outside the run's image folder" in out
    assert "--follow-outside" in out
    manifest = json.loads((tmp / "run" / "report" / "report.json").read_text())
    assert any("2 image path(s)" in w for w in manifest["warnings"])
    rc, err, out = run_cli(["report", tmp / "run", "--per-page", "4", "--follow-outside"])
    assert rc == 0, err
    assert "outside the run's image folder" not in out


def test_heads_and_hkmeans_coerce_nothing_at_fit():
    """The declared tables run at the start of fit too (not only in make_clusterer): a string
    where a number belongs is refused, not turned into the number."""
    from deepclust.cluster import SCAN, TEMI, HierarchicalKMeans
    from deepclust.errors import InputError

    X, _ = blobs()
    for est, fragment in [(TEMI(n_clusters=K, beta="0.6"), "beta='0.6'"),
                          (SCAN(n_clusters=K, temperature="0.1"), "temperature='0.1'"),
                          (TEMI(n_clusters=K, n_steps=10.0), "n_steps=10.0"),
                          (HierarchicalKMeans(n_clusters=(20, "5")), "n_clusters=(20, '5')"),
                          (HierarchicalKMeans(n_clusters=(20, 5), tol="0"), "tol='0'")]:
        with pytest.raises(InputError, match="is not allowed") as err:
            est.fit(X)
        assert fragment in str(err.value) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------- full disks: report, bench


def _disk_fills_after(monkeypatch, n_writes: int) -> None:
    """Every atomic write (and the output-folder probe) after the first ``n_writes`` meets a
    full disk (their fsync raises ENOSPC)."""
    import errno

    import deepclust.runinfo as runinfo

    real, calls = runinfo.os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) > n_writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(runinfo.os, "fsync", fsync)


def assert_one_error_line(argv, *fragments: str) -> None:
    """Exit status 2, no traceback, one error line holding ``fragments`` (progress lines on
    stderr aside)."""
    rc, err, _ = run_cli([str(a) for a in argv])
    assert rc == 2 and "Traceback" not in err, (rc, err)
    errors = [ln for ln in err.splitlines() if ": error: " in ln]
    assert len(errors) == 1 and all(f in errors[0] for f in fragments), err


def _temporary_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture
def blobs_run(base, tmp_path):
    rc, err, _ = run_cli(["cluster", base / "blobs.npz", "--k", K, "--out", tmp_path / "run",
                          "--no-label-free", "--quiet"])
    assert rc == 0, err
    return tmp_path / "run"


@pytest.mark.parametrize("n_writes", [0, 2])
def test_full_disk_during_report_is_one_line_and_leaves_nothing_half_written(
        blobs_run, monkeypatch, n_writes):
    """0: full before the report starts; 2: full after its first figure."""
    out = blobs_run / "report"
    _disk_fills_after(monkeypatch, n_writes)
    assert_one_error_line(["report", blobs_run], "pace left", str(out))
    assert not _temporary_files(blobs_run), _temporary_files(blobs_run)
    assert not (out / "report.html").exists() and not (out / "report.json").exists()
    assert not (out / "assets").exists()
    monkeypatch.undo()
    rc, err, _ = run_cli(["report", blobs_run])
    assert rc == 0, err
    assert (out / "report.html").is_file() and not _temporary_files(blobs_run)


def test_report_into_an_unwritable_folder_is_one_line(blobs_run):
    assert_clean_error(["report", blobs_run, "--out", "/proc/deepclust-report"], "cannot be written",
                       "/proc/deepclust-report")


def _bench_config(base, tmp_path) -> Path:
    cfg = {"out": str(tmp_path / "bench"), "seeds": [0, 1], "methods": [{"name": "kmeans"}],
           "features": [{"name": "blobs", "path": str(base / "blobs.npz")}],
           "benchmarks": [{"type": "long_tail", "imbalance_ratio": 2, "name": "lt2"}]}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(cfg))
    return path


@pytest.mark.parametrize("n_writes", [0, 3])
def test_full_disk_during_bench_is_one_line_and_resumes(base, tmp_path, monkeypatch, n_writes):
    """0: full before the first task; 3: full after the first task (writes: the folder probe,
    the first subset manifest, the first result row; then the second manifest fails)."""
    import pyarrow.parquet as pq

    config, out = _bench_config(base, tmp_path), tmp_path / "bench"
    _disk_fills_after(monkeypatch, n_writes)
    assert_one_error_line(["bench", config], "pace left", str(out))
    assert not _temporary_files(out)
    if (out / "results.parquet").exists():  # what was finished is whole and readable
        assert pq.read_table(out / "results.parquet").num_rows == 1
    assert not (out / "errors.jsonl").exists()  # the disk is not recorded as failed tasks
    monkeypatch.undo()
    rc, err, _ = run_cli(["bench", config])
    assert rc == 0, err
    assert pq.read_table(out / "results.parquet").num_rows == 2
    assert not _temporary_files(out)


def test_error_line_is_appended_whole_or_not_at_all(tmp_path, monkeypatch):
    import errno

    import deepclust.runinfo as runinfo
    from deepclust.errors import OutputError

    path = tmp_path / "errors.jsonl"
    runinfo.append_line(path, '{"a": 1}')

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runinfo.os, "fsync", full)
    with pytest.raises(OutputError, match="errors.jsonl"):
        runinfo.append_line(path, '{"b": 2}')
    assert path.read_text() == '{"a": 1}\n'
