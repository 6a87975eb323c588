"""torchrun with 2 CPU processes (gloo) writes the same store as one process."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from deepclust import runtime
from deepclust.encoders import ImageTransform
from deepclust.encoders.checkpoint import ConvNet, save_checkpoint
from deepclust.store import open_store


def test_helpers_act_as_a_single_process_without_torchrun():
    di = runtime.info()
    assert (di.rank, di.world_size, di.is_main, di.distributed) == (0, 1, True, False)
    assert runtime.broadcast_object({"x": 1}) == {"x": 1}
    assert runtime.all_gather_object(5) == [5]
    assert runtime.split_work(list(range(5)), runtime.DistInfo(1, 2)) == [1, 3]
    runtime.barrier()  # returns at once


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")
def test_torchrun_two_processes_same_rows_as_one(tmp_path):
    torch.manual_seed(0)
    t = ImageTransform(crop_size=16, resize="exact", mean=(0.5,) * 3, std=(0.5,) * 3)
    ckpt = save_checkpoint(tmp_path / "ckpt", ConvNet(widths=(4, 8)), "convnet", t,
                           arch_kwargs={"widths": [4, 8]})
    src = tmp_path / "imgs"
    for k in range(13):
        (src / f"c{k % 3}").mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(k)
        Image.fromarray(rng.integers(0, 255, (12, 18, 3), dtype=np.uint8)).save(src / f"c{k % 3}" / f"{k}.png")
    (src / "c0" / "broken.png").write_bytes(b"not a png")

    common = [str(src), "--encoder", f"checkpoint:{ckpt}", "--shard-size", "3", "--batch-size", "2",
              "--workers", "0", "--no-progress"]
    # Same thread count in both runs: torchrun gives each worker one OpenMP thread.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "deepclust", "embed", *common, "--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "deepclust", "embed", *common, "--out", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=240)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("embeddings of dim 8") == 1  # only rank 0 reports

    a, b = open_store(tmp_path / "one"), open_store(tmp_path / "two")
    assert b.meta["last_run"]["parameters"]["world_size"] == 2
    assert a.n_shards == b.n_shards == 5
    assert np.array_equal(a.X, b.X)
    assert a.ids.tolist() == b.ids.tolist() and a.labels.tolist() == b.labels.tolist()
    assert a.failed == b.failed and len(a.failed) == 1
    assert a.index.to_pydict() == b.index.to_pydict()
