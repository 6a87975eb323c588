"""Image sources and decoding: modes, EXIF, bad files, and every source type."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from deepclust.data.builtin import Dataset
from deepclust.data.imageio import array_to_image, open_image, to_rgb
from deepclust.data.sources import (
    ArraySource,
    FolderSource,
    HFDiskSource,
    ManifestSource,
    TarShardSource,
    open_source,
    resolve_shards,
)
from deepclust.errors import DataNotFoundError, InputError


def png_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def solid(color=(200, 30, 40), size=(12, 10)) -> Image.Image:
    return Image.new("RGB", size, color)


# --------------------------------------------------------------------------- modes


def test_grey_and_bilevel_become_equal_rgb_channels():
    grey = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8))
    rgb = np.asarray(to_rgb(grey))
    assert rgb.shape == (8, 8, 3)
    assert (rgb[..., 0] == np.arange(64).reshape(8, 8)).all()
    assert (rgb[..., 0] == rgb[..., 2]).all()
    bilevel = Image.fromarray(np.eye(4, dtype=bool))
    assert np.asarray(to_rgb(bilevel))[0, 0].tolist() == [255, 255, 255]
    assert np.asarray(to_rgb(bilevel))[0, 1].tolist() == [0, 0, 0]


def test_alpha_is_composited_on_white():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red stays red
    rgba[0, 1] = (255, 0, 0, 0)  # fully transparent becomes white
    rgba[1, 0] = (0, 0, 0, 128)  # half-transparent black becomes mid grey
    out = np.asarray(to_rgb(Image.fromarray(rgba, "RGBA")))
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert abs(int(out[1, 0, 0]) - 127) <= 1
    la = Image.fromarray(np.stack([np.zeros((2, 2), np.uint8), np.full((2, 2), 0, np.uint8)], -1), "LA")
    assert np.asarray(to_rgb(la))[0, 0].tolist() == [255, 255, 255]


def test_palette_with_transparency_is_composited():
    p = Image.new("P", (4, 4), 0)
    p.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    plain = np.asarray(to_rgb(p))
    assert plain[0, 0].tolist() == [10, 20, 30]
    p.info["transparency"] = 0
    assert np.asarray(to_rgb(p))[0, 0].tolist() == [255, 255, 255]


def test_16bit_is_scaled_not_clipped():
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    img = Image.fromarray(values)
    assert img.mode == "I;16"
    out = np.asarray(to_rgb(img))[0, :, 0]
    assert out.tolist() == [0, 1, 128, 255]
    # the same through a PNG round trip
    decoded, reason = open_image(png_bytes(img))
    assert reason is None
    assert np.asarray(decoded)[0, :, 0].tolist() == [0, 1, 128, 255]


def test_int32_and_float_modes():
    i32 = Image.fromarray(np.array([[0, 65535, 70000]], dtype=np.int32), "I")
    assert np.asarray(to_rgb(i32))[0, :, 0].tolist() == [0, 255, 255]
    f01 = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F")
    assert np.asarray(to_rgb(f01))[0, :, 0].tolist() == [0, 128, 255]
    wide = Image.fromarray(np.array([[-10.0, 0.0, 10.0]], dtype=np.float32), "F")
    assert np.asarray(to_rgb(wide))[0, :, 0].tolist() == [0, 128, 255]


def test_cmyk_converts():
    cmyk = Image.new("CMYK", (3, 3), (0, 255, 255, 0))  # pure red in CMYK
    out = np.asarray(to_rgb(cmyk))
    assert out[0, 0].tolist() == [255, 0, 0]
    decoded, reason = open_image(png_bytes(cmyk, "JPEG"))
    assert reason is None and decoded.mode == "RGB"
    assert decoded.getpixel((1, 1))[0] > 200


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (30, 10), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 5, 10))  # white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    data = png_bytes(img, "JPEG", exif=exif, quality=95)
    out, reason = open_image(data)
    assert reason is None
    assert out.size == (10, 30)  # width and height swapped
    arr = np.asarray(out).mean(axis=2)
    assert arr[:5].mean() > 200 and arr[-5:].mean() < 50  # the band is now at the top


def test_bad_files_give_reasons(tmp_path):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    good, jpeg = png_bytes(noise), png_bytes(noise, "JPEG")
    cases = {
        "empty.png": b"",
        "text.png": b"this is not an image at all",
        "truncated.png": good[: len(good) // 2],
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "corrupt.png": good[:100] + bytes(400) + good[500:],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    reasons = {name: open_image(tmp_path / name)[1] for name in cases}
    assert reasons["empty.png"] == "empty file (0 bytes)"
    assert reasons["text.png"].startswith("not an image")
    assert reasons["truncated.png"].startswith("truncated")
    assert reasons["truncated.jpg"].startswith("truncated")
    assert reasons["corrupt.png"].startswith("corrupt")
    assert open_image(tmp_path / "missing.png") == (None, "file not found")
    img, reason = open_image(tmp_path / "empty.png")
    assert img is None


def test_decompression_bomb_refused_before_decoding():
    data = png_bytes(Image.new("L", (300, 200)))
    img, reason = open_image(data, max_pixels=50_000)
    assert img is None and reason.startswith("decompression bomb")
    assert "60000" in reason
    assert open_image(data, max_pixels=None)[0] is not None


def test_array_to_image_dtypes():
    assert np.asarray(array_to_image(np.full((2, 2), 65535, np.uint16)))[0, 0, 0] == 255
    assert np.asarray(array_to_image(np.full((2, 2, 1), 0.5, np.float32)))[0, 0, 0] == 128
    assert array_to_image(np.zeros((2, 2, 4), np.uint8)).getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(ValueError, match="image array"):
        array_to_image(np.zeros((2, 2, 2), np.uint8))


# --------------------------------------------------------------------------- folder


def make_class_folder(root, classes=("cat", "dog"), per_class=3):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            solid((40 * c, 10 * k, 0)).save(root / name / f"{k}.png")
    return root


def test_folder_labelled_by_subfolder(tmp_path):
    root = make_class_folder(tmp_path / "imgs")
    (root / ".hidden.png").write_bytes(b"skip me")
    (root / "cat" / "notes.txt").write_text("not an image")
    src = FolderSource(root)
    assert len(src) == 7  # the text file is an item (it will fail), the hidden one is not
    assert src.class_names == ["cat", "dog"]
    ids = [src.load(i).id for i in range(len(src))]
    assert ids[0] == "cat/0.png" and "cat/notes.txt" in ids
    image, label, id_ = src[ids.index("dog/1.png")]
    assert label == 1 and image.mode == "RGB" and image.getpixel((0, 0)) == (40, 10, 0)
    bad = src.load(ids.index("cat/notes.txt"))
    assert bad.image is None and bad.error.startswith("not an image") and bad.label == 0
    assert FolderSource(root, extensions=[".png"]).__len__() == 6
    assert (FolderSource(root, labelled=False).labels == -1).all()


def test_folder_flat_is_unlabelled_and_fingerprint_tracks_changes(tmp_path):
    for k in range(3):
        solid((k, k, k)).save(tmp_path / f"{k}.png")
    src = FolderSource(tmp_path)
    assert src.class_names is None and (src.labels == -1).all()
    before = src.fingerprint()
    assert FolderSource(tmp_path).fingerprint() == before
    solid((9, 9, 9), size=(13, 10)).save(tmp_path / "1.png")
    assert FolderSource(tmp_path).fingerprint() != before


def test_folder_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        FolderSource(tmp_path / "nope")
    with pytest.raises(InputError, match="no files"):
        FolderSource(tmp_path)


# --------------------------------------------------------------------------- manifest


def test_manifest_csv_with_string_and_extra_labels(tmp_path):
    make_class_folder(tmp_path / "imgs")
    rows = [
        "path,label,coarse,id",
        "imgs/cat/0.png,cat,animal,a",
        "imgs/dog/1.png,dog,animal,b",
        f"{tmp_path}/imgs/dog/2.png,,animal,c",
        "imgs/missing.png,dog,thing,d",
    ]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    src = ManifestSource(tmp_path / "m.csv", extra_label_columns=["coarse"])
    assert len(src) == 4 and src.class_names == ["cat", "dog"]
    assert src.labels.tolist() == [0, 1, -1, 1]
    assert src[0][2] == "a" and src[2][0] is not None  # absolute paths work too
    assert src.load(3).error == "file not found"
    codes, names = src.extra_labels()["coarse"]
    assert names == ["animal", "thing"] and codes.tolist() == [0, 0, 0, 1]
    with pytest.raises(InputError, match="no column 'nope'"):
        ManifestSource(tmp_path / "m.csv", label_column="nope")


def test_manifest_parquet_integer_labels_and_no_label_option(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    make_class_folder(tmp_path / "imgs")
    pq.write_table(pa.table({"file": ["imgs/cat/0.png", "imgs/dog/0.png"], "target": [3, 7]}),
                   tmp_path / "m.parquet")
    src = ManifestSource(tmp_path / "m.parquet")
    assert src.labels.tolist() == [3, 7] and src.class_names is None
    assert src[1][2] == "imgs/dog/0.png"  # id defaults to the path as written
    assert (ManifestSource(tmp_path / "m.parquet", label_column=False).labels == -1).all()
    pq.write_table(pa.table({"x": [1]}), tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="no path column"):
        ManifestSource(tmp_path / "bad.parquet")


# --------------------------------------------------------------------------- arrays


def test_array_source_wraps_builtin_dataset():
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    ds = Dataset("toy", "test", images, np.array([2, 0, 1]), ["a", "b", "c"])
    src = open_source(ds)
    assert isinstance(src, ArraySource) and len(src) == 3
    image, label, id_ = src[1]
    assert (label, id_) == (0, "1") and image.size == (5, 4)
    assert np.asarray(image)[..., 0].tolist() == images[1].tolist()
    assert src.describe()["name"] == "toy:test"
    other = ArraySource(images.copy(), np.array([2, 0, 1]))
    assert other.fingerprint() == src.fingerprint()
    images2 = images.copy()
    images2[0, 0, 0] += 1
    assert ArraySource(images2, np.array([2, 0, 1])).fingerprint() != src.fingerprint()
    with pytest.raises(InputError, match="labels for"):
        ArraySource(images, [1, 2])


def test_open_source_builtin_name():
    src = open_source("digits")
    assert len(src) == 1797 and src.class_names[0] == "0"


# --------------------------------------------------------------------------- tar shards


def write_shards(root, n_shards=2, per_shard=3, writer="webdataset"):
    """WebDataset shards written by the webdataset package itself (tarfile if absent)."""
    root.mkdir(parents=True, exist_ok=True)
    k = 0
    for s in range(n_shards):
        path = root / f"data-{s:03d}.tar"
        samples = []
        for _ in range(per_shard):
            samples.append({"__key__": f"sample{k:04d}", "png": png_bytes(solid((k, 0, 0))),
                            "cls": str(k % 2).encode()})
            k += 1
        try:
            import webdataset as wds

            with wds.TarWriter(str(path)) as sink:
                for sample in samples:
                    sink.write(sample)
        except ImportError:
            with tarfile.open(path, "w") as tf:
                for sample in samples:
                    for ext in ("png", "cls"):
                        info = tarfile.TarInfo(f"{sample['__key__']}.{ext}")
                        info.size = len(sample[ext])
                        tf.addfile(info, io.BytesIO(sample[ext]))
    return root


def test_tar_shards_random_access(tmp_path):
    root = write_shards(tmp_path / "shards")
    src = TarShardSource(root)
    assert len(src) == 6
    image, label, id_ = src[4]  # in the second shard
    assert id_ == "sample0004" and label == 0 and image.getpixel((0, 0)) == (4, 0, 0)
    assert src.load(5).path.endswith("data-001.tar:sample0005.png")
    assert [src[i][2] for i in (3, 0)] == ["sample0003", "sample0000"]  # any order
    assert len(TarShardSource(str(root / "data-{000..001}.tar"))) == 6
    assert len(resolve_shards(str(root / "*.tar"))) == 2
    assert isinstance(open_source(root), TarShardSource)
    with pytest.raises(DataNotFoundError):
        TarShardSource(tmp_path / "none-*.tar")


def test_tar_sample_without_image_and_bad_bytes(tmp_path):
    path = tmp_path / "x.tar"
    with tarfile.open(path, "w") as tf:
        for name, data in [("a.txt", b"caption"), ("b.jpg", b"garbage"), ("c.png", png_bytes(solid()))]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    src = TarShardSource(path)
    assert len(src) == 3
    assert src.load(0).error == "sample has no image member"
    assert src.load(1).error.startswith("not an image")
    assert src.load(2).image is not None and src.load(2).label == -1


# --------------------------------------------------------------------------- HF datasets


def test_hf_dataset_saved_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    imgs = [solid((k * 20, 0, 0)) for k in range(4)]
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=["x", "y"])})
    ds = datasets.Dataset.from_dict({"image": imgs, "label": [0, 1, 1, 0]}, features=features)
    bad = {"bytes": b"nonsense", "path": None}
    ds = datasets.concatenate_datasets([
        ds, datasets.Dataset.from_dict({"image": [bad], "label": [1]}, features=features)])
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "hf"))
    src = open_source(tmp_path / "hf")
    assert isinstance(src, HFDiskSource) and len(src) == 5
    assert src.class_names == ["x", "y"]
    image, label, id_ = src[2]
    assert label == 1 and id_ == "2" and image.getpixel((0, 0)) == (40, 0, 0)
    assert src.load(4).image is None and src.load(4).error.startswith("not an image")
    with pytest.raises(InputError, match="no split 'test'"):
        HFDiskSource(tmp_path / "hf", split="test")


def test_open_source_unknown(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        open_source(tmp_path / "nothing-here")
    (tmp_path / "f.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="cannot tell"):
        open_source(tmp_path / "f.bin")


def test_folder_symlink_loop_is_visited_once(tmp_path):
    root = make_class_folder(tmp_path / "imgs", per_class=1)
    (root / "cat" / "loop").symlink_to(root, target_is_directory=True)
    src = FolderSource(root)
    assert len(src) == 2 and src.class_names == ["cat", "dog"]
