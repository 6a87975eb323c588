"""deepclust embed: bad files, no-op re-runs, kill -9 and resume, CLI, built-in cache."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepclust import runtime
from deepclust.cli import main
from deepclust.data.imageio import open_image
from deepclust.embed import (
    auto_threads,
    builtin_embeddings,
    default_workers,
    embed,
)
from deepclust.encoders import Encoder, ImageTransform, get_encoder
from deepclust.encoders.checkpoint import ConvNet, save_checkpoint
from deepclust.errors import DataNotFoundError, InputError
from deepclust.runtime import resolve_precision
from deepclust.store import open_store


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A tiny convnet encoder (8-d) on 16x16 inputs, saved in deepclust's checkpoint format."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    t = ImageTransform(crop_size=16, resize="exact", mean=(0.5,) * 3, std=(0.5,) * 3)
    return save_checkpoint(path, ConvNet(widths=(4, 8)), "convnet", t, arch_kwargs={"widths": [4, 8]})


def rgb_noise(seed, size=(20, 14)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def make_messy_folder(root: Path) -> tuple[list[str], dict[str, str]]:
    """Good images of many modes and bad files of many kinds; returns (good ids, bad id -> reason prefix)."""
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    good = {
        "a/rgb.png": rgb_noise(1),
        "a/grey.png": rgb_noise(2).convert("L"),
        "a/bilevel.png": rgb_noise(3).convert("1"),
        "a/palette.png": rgb_noise(4).convert("P"),
        "a/rgba.png": rgb_noise(5).convert("RGBA"),
        "b/la.png": rgb_noise(6).convert("LA"),
        "b/cmyk.jpg": rgb_noise(7).convert("CMYK"),
        "b/tiff16.tif": Image.fromarray(np.asarray(rgb_noise(8).convert("L")).astype(np.uint16) * 257),
        "b/photo.jpg": rgb_noise(9),
    }
    for rel, img in good.items():
        img.save(root / rel)
    png16 = Image.fromarray(np.arange(280, dtype=np.uint16).reshape(14, 20) * 234)
    png16.save(root / "b" / "grey16.png")
    good["b/grey16.png"] = png16
    buf = io.BytesIO()
    rgb_noise(10, size=(64, 64)).save(buf, "JPEG")
    jpeg = buf.getvalue()
    buf = io.BytesIO()
    rgb_noise(11, size=(64, 64)).save(buf, "PNG")
    png = buf.getvalue()
    bad = {
        "a/empty.png": (b"", "empty file"),
        "a/notes.txt": (b"shopping list", "not an image"),
        "a/fake.jpg": (b"<html>404</html>", "not an image"),
        "b/truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "b/corrupt.png": (png[:100] + bytes(400) + png[500:], "corrupt"),
    }
    for rel, (data, _) in bad.items():
        (root / rel).write_bytes(data)
    Image.new("L", (400, 300)).save(root / "b" / "bomb.png")
    reasons = {rel: prefix for rel, (_, prefix) in bad.items()}
    reasons["b/bomb.png"] = "decompression bomb"
    return sorted(good), reasons


def test_messy_folder_every_good_image_embedded_every_bad_one_listed(tmp_path, ckpt):
    good, reasons = make_messy_folder(tmp_path / "imgs")
    store = embed(tmp_path / "imgs", f"checkpoint:{ckpt}", tmp_path / "store", batch_size=4,
                  shard_size=5, dtype="float32", precision="fp32", progress=False,
                  source_options={"max_pixels": 100_000})
    assert sorted(store.ids.tolist()) == good
    failed = {row["id"]: row["reason"] for row in store.failed}
    assert set(failed) == set(reasons)
    for rel, prefix in reasons.items():
        assert failed[rel].startswith(prefix), (rel, failed[rel])
    assert store.meta["n_failed"] == len(reasons) and store.meta["count"] == len(good)
    assert store.meta["last_run"]["failed"] == len(reasons)
    assert store.class_names == ["a", "b"]
    # every row is the encoder applied to that file, decoded by the same rules
    enc = get_encoder(f"checkpoint:{ckpt}")
    X = store.X
    for row, id_ in enumerate(store.ids):
        image, reason = open_image(tmp_path / "imgs" / id_)
        assert reason is None
        expected = enc(enc.transform(image)[None])[0].numpy()
        assert np.allclose(X[row], expected, atol=1e-5), id_
    assert store.labels[store.ids.tolist().index("b/cmyk.jpg")] == 1


def test_rerun_is_a_noop_and_other_settings_are_refused(tmp_path, ckpt):
    for k in range(5):
        rgb_noise(k).save(tmp_path / f"{k}.png")
    store = embed(tmp_path, f"checkpoint:{ckpt}", tmp_path / "out" / "s", shard_size=2, progress=False)
    shard_files = sorted((store.path / "shards").iterdir())
    stamps = [p.stat().st_mtime_ns for p in shard_files]
    again = embed(tmp_path, f"checkpoint:{ckpt}", tmp_path / "out" / "s", progress=False)
    assert [p.stat().st_mtime_ns for p in shard_files] == stamps
    assert json.loads((store.path / "run.json").read_text())["rows_written"] == 0
    assert np.array_equal(again.X, store.X) and len(again) == 5 and again.meta["shard_size"] == 2
    with pytest.raises(InputError, match="other inputs or settings.*dtype"):
        embed(tmp_path, f"checkpoint:{ckpt}", tmp_path / "out" / "s", dtype="float32", progress=False)


def test_worker_processes_and_bf16_give_the_same_embeddings(tmp_path, ckpt):
    for k in range(6):
        rgb_noise(k).save(tmp_path / f"{k}.png")
    base = embed(tmp_path, f"checkpoint:{ckpt}", tmp_path / "o" / "a", num_workers=0, threads=1,
                 dtype="float32", precision="fp32", progress=False)
    workers = embed(tmp_path, f"checkpoint:{ckpt}", tmp_path / "o" / "b", num_workers=2, threads=1,
                    dtype="float32", precision="fp32", progress=False)
    assert np.array_equal(base.X, workers.X) and base.ids.tolist() == workers.ids.tolist()
    bf16 = embed(tmp_path, f"checkpoint:{ckpt}", tmp_path / "o" / "c", precision="bf16", progress=False)
    assert bf16.meta["precision"] == "bf16"
    cos = (bf16.X.astype(np.float32) * base.X).sum(1) / (
        np.linalg.norm(bf16.X.astype(np.float32), axis=1) * np.linalg.norm(base.X, axis=1))
    assert cos.min() > 0.99


def test_precision_threads_and_workers_defaults(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime, "busy_cores", lambda: 0.0)
    assert auto_threads() == torch.get_num_threads()
    monkeypatch.setattr(runtime, "busy_cores", lambda: 50.0)
    assert auto_threads() == 1  # a busy machine: do not oversubscribe
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert auto_threads() == torch.get_num_threads()  # torchrun's choice is respected
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert default_workers(cpu, threads=2) == 0 and default_workers(cpu, threads=1) == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 32)
    assert default_workers(cpu, threads=32) == 4
    assert resolve_precision("embed", "fp32", cpu) == "fp32" and resolve_precision("embed", "bf16", cpu) == "bf16"
    assert resolve_precision("embed", "auto", cpu) in ("bf16", "fp32")
    with pytest.raises(InputError, match="precision"):
        resolve_precision("embed", "fp8", cpu)


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from deepclust.embed import embed
    from deepclust.encoders.checkpoint import CheckpointEncoder

    class SlowEncoder(CheckpointEncoder):
        def forward(self, batch):
            time.sleep(0.15)  # slow enough to be killed mid-run; does not change the rows
            return super().forward(batch)

    src, ckpt, out = sys.argv[1:4]
    embed(src, SlowEncoder(ckpt), out, batch_size=2, shard_size=4, num_workers=0, threads=1,
          progress=False)
""")


def test_sigkill_midway_then_resume_gives_identical_rows(tmp_path, ckpt):
    src = tmp_path / "imgs"
    src.mkdir()
    for k in range(30):
        rgb_noise(k).save(src / f"{k:02d}.png")
    (src / "zz-broken.png").write_bytes(b"broken")
    # one thread everywhere: rows are then bit-identical whatever the machine's load
    reference = embed(src, f"checkpoint:{ckpt}", tmp_path / "ref", batch_size=2, shard_size=4,
                      num_workers=0, threads=1, progress=False)

    script = tmp_path / "slow_embed.py"
    script.write_text(KILL_SCRIPT)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(src), str(ckpt), str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    try:
        while time.time() < deadline:
            if len(list((out / "shards").glob("shard-*.parquet"))) >= 2 if (out / "shards").is_dir() else False:
                break
            if proc.poll() is not None:
                pytest.fail(f"the embedding subprocess ended early: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.02)
        else:
            pytest.fail("the embedding subprocess wrote no shard within 60 s")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    written = len(list((out / "shards").glob("shard-*.parquet")))
    assert 2 <= written < 8  # killed midway
    with pytest.raises(InputError, match="incomplete"):
        open_store(out)

    resumed = embed(src, f"checkpoint:{ckpt}", out, batch_size=2, num_workers=0, threads=1,
                    progress=False)
    run = resumed.meta["last_run"]
    assert run["resumed"] and run["shards_written"] == 8 - written
    assert np.array_equal(resumed.X, reference.X)  # bit for bit
    assert resumed.ids.tolist() == reference.ids.tolist()
    assert resumed.labels.tolist() == reference.labels.tolist()
    assert resumed.failed == reference.failed and len(resumed.failed) == 1
    assert not list((out / "shards").glob(".*"))


def test_cli_embed_and_encoders(tmp_path, ckpt, capsys):
    for k in range(3):
        rgb_noise(k).save(tmp_path / f"{k}.png")
    (tmp_path / "bad.png").write_bytes(b"")
    code = main(["embed", str(tmp_path), "--encoder", f"checkpoint:{ckpt}", "--out",
                 str(tmp_path / "store"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "3 embeddings of dim 8" in out and "bad.png: empty file" in out
    assert main(["embed", str(tmp_path), "--encoder", f"checkpoint:{ckpt}", "--out",
                 str(tmp_path / "store"), "--no-progress"]) == 0
    assert "already complete" in capsys.readouterr().out
    code = main(["embed", str(tmp_path / "missing"), "--encoder", "raw", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and "Traceback" not in err
    code = main(["embed", str(tmp_path), "--encoder", "raw", "--encoder-opt", "size=4",
                 "--encoder-opt", "grey=true", "--out", str(tmp_path / "raw"), "--no-progress"])
    assert code == 0 and open_store(tmp_path / "raw").dim == 16
    assert main(["encoders"]) == 0
    listing = capsys.readouterr().out
    assert "effnet-lite0" in listing and "1280" in listing and "offline" in listing
    assert main(["encoders", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert any(r["name"] == "raw" and r["available"] for r in rows)


def test_builtin_embeddings_are_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPCLUST_CACHE", str(tmp_path / "cache"))
    fs = builtin_embeddings("digits", "all", "raw", progress=False)
    assert fs.X.shape == (1797, 3072) and fs.X.dtype == np.float32
    assert fs.y[:3].tolist() == [0, 1, 2] and fs.class_names[0] == "0"
    assert (tmp_path / "cache" / "stores" / "digits-all-raw" / "meta.json").is_file()

    def no_embedding(*args, **kwargs):
        raise AssertionError("the cached store should have been reused")

    monkeypatch.setattr("deepclust.embed.embed", no_embedding)
    again = builtin_embeddings("digits", "all", "raw", progress=False)
    assert np.array_equal(again.X, fs.X)


def test_builtin_embeddings_of_rows_come_from_the_split_or_a_store_of_their_own(tmp_path, monkeypatch):
    from deepclust.data import load_dataset
    from deepclust.embed import builtin_subset_store_path

    monkeypatch.setenv("DEEPCLUST_CACHE", str(tmp_path / "cache"))
    rows = np.array([5, 0, 1796, 42])
    with pytest.raises(DataNotFoundError, match="4 rows of digits:all"):
        builtin_embeddings("digits", "all", "raw", rows=rows, compute=False)
    sub = builtin_embeddings("digits", "all", "raw", rows=rows, progress=False)
    ds = load_dataset("digits")
    assert sub.X.shape == (4, 3072) and sub.y.tolist() == ds.labels[rows].tolist()
    assert list(sub.ids) == ["5", "0", "1796", "42"]
    assert (builtin_subset_store_path("digits", "all", "raw", rows) / "meta.json").is_file()
    assert not (tmp_path / "cache" / "stores" / "digits-all-raw").exists()  # only the rows
    # once the whole split is cached, rows are read from it, and agree
    full = builtin_embeddings("digits", "all", "raw", progress=False)
    monkeypatch.setattr("deepclust.embed.embed", lambda *a, **k: pytest.fail("re-embedded"))
    again = builtin_embeddings("digits", "all", "raw", rows=rows[::-1], compute=False)
    assert np.allclose(again.X, sub.X[::-1]) and np.array_equal(again.X, full.X[rows[::-1]])
    assert list(again.ids) == ["42", "1796", "0", "5"]
    with pytest.raises(InputError, match=r"rows must lie in \[0, 1797\)"):
        builtin_embeddings("digits", "all", "raw", rows=[1797])


def test_embed_input_errors(tmp_path, ckpt):
    rgb_noise(0).save(tmp_path / "0.png")
    with pytest.raises(InputError, match="shard_size"):
        embed(tmp_path, f"checkpoint:{ckpt}", tmp_path / "s", shard_size=0, progress=False)
    with pytest.raises(InputError, match="dtype"):
        embed(tmp_path, f"checkpoint:{ckpt}", tmp_path / "s", dtype="int8", progress=False)
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not an embedding store"):
        embed(tmp_path, f"checkpoint:{ckpt}", tmp_path / "occupied", progress=False)
    assert os.path.exists(tmp_path / "occupied" / "keep.txt")


class _ExtremeEncoder(Encoder):
    """Gives NaN for very red images and 1e6 (beyond float16) for fairly red ones."""

    def __init__(self):
        super().__init__()
        self.name, self.dim, self.model = "extreme", 2, torch.nn.Identity()
        self.transform = ImageTransform(crop_size=4, resize="exact", mean=(0, 0, 0), std=(1, 1, 1))

    def forward(self, batch):
        red = batch[:, 0, 0, 0]
        out = torch.stack([red, red], 1)
        out[red > 0.9] = float("nan")
        out[(red > 0.7) & (red <= 0.9)] = 1e6
        return out


def test_non_finite_embeddings_fail_their_item_not_the_run(tmp_path):
    for name, red in (("a", 25), ("b", 205), ("c", 250), ("d", 50)):
        Image.new("RGB", (6, 6), (red, 0, 0)).save(tmp_path / f"{name}.png")
    store = embed(tmp_path, _ExtremeEncoder(), tmp_path / "s", batch_size=4, progress=False)
    assert store.ids.tolist() == ["a.png", "d.png"]
    reasons = {row["id"]: row["reason"] for row in store.failed}
    assert reasons["b.png"].startswith("the embedding exceeds the float16 range")
    assert reasons["c.png"].startswith("the encoder gave NaN")


def test_busy_cores_sees_other_work_not_its_own():
    """A busy loop in another process counts; this process's own spinning does not."""
    import subprocess
    import sys
    import threading

    from deepclust.runtime import busy_cores

    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    mine = threading.Thread(target=spin)
    mine.start()
    try:
        own = busy_cores(0.5)
    finally:
        stop.set()
        mine.join()
    other = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)
        seen = busy_cores(0.5)
    finally:
        other.kill()
        other.wait()
    assert seen >= 0.6  # the other process's loop holds about one core
    assert own <= seen - 0.4  # our own spinning thread is left out
