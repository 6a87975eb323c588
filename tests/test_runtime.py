"""Tests of deepclust.runtime: the precision rule table, devices, single-process ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepclust import runtime
from deepclust.errors import InputError
from deepclust.runtime import resolve_precision

# what "auto" gives, per use: (CPU with native bf16, CPU without, GPU with bf16, GPU without)
TABLE = {
    "embed": ("bf16", "fp32", "bf16", "fp32"),
    "embed-engine": ("fp32", "fp32", "fp32", "fp32"),  # the engine runs on CPUs only
    "deepcluster": ("bf16", "fp32", "bf16", "fp32"),
    "heads": ("bf16", "fp32", "bf16", "fp32"),
    "neighbors": ("bf16", "fp32", "bf16", "fp32"),
    "kmeans": ("bf16", "fp32", "bf16", "fp32"),  # on a GPU at k >= 64
}


@pytest.fixture
def hardware(monkeypatch):
    """Set what the probes report: ``hardware(cpu_bf16, gpu_bf16)``."""
    def set_(cpu: bool, gpu: bool) -> None:
        monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: cpu)
        monkeypatch.setattr(runtime, "cuda_lacks_bf16", lambda: not gpu)
    return set_


def test_table_covers_every_use():
    assert set(TABLE) == set(runtime.USES)


@pytest.mark.parametrize("use", sorted(TABLE))
@pytest.mark.parametrize("column, device, cpu_bf16, gpu_bf16", [
    (0, "cpu", True, False),
    (1, "cpu", False, False),
    (2, "cuda", False, True),  # a device string: no GPU needed to evaluate the rule
    (3, torch.device("cuda", 1), True, False),
])
def test_auto_follows_the_table(hardware, use, column, device, cpu_bf16, gpu_bf16):
    hardware(cpu_bf16, gpu_bf16)
    assert resolve_precision(use, "auto", device, n_clusters=1000) == TABLE[use][column]


def test_kmeans_takes_bf16_on_a_gpu_only_from_64_clusters(hardware):
    hardware(True, True)
    k = runtime.BF16_MIN_CLUSTERS
    assert resolve_precision("kmeans", "auto", "cuda", n_clusters=k) == "bf16"
    assert resolve_precision("kmeans", "auto", "cuda", n_clusters=k - 1) == "fp32"
    assert resolve_precision("embed", "auto", "cuda", n_clusters=2) == "bf16"  # k is kmeans's
    assert resolve_precision("kmeans", "auto", "cpu", n_clusters=k - 1) == "bf16"  # GPU only
    with pytest.raises(ValueError, match="n_clusters"):
        resolve_precision("kmeans", "auto", "cuda")


@pytest.mark.parametrize("use", sorted(TABLE))
def test_explicit_precision_passes_through(hardware, use):
    hardware(False, True)
    for device in ("cpu", "cuda"):
        for precision in ("bf16", "fp32"):
            assert resolve_precision(use, precision, device, n_clusters=2) == precision


@pytest.mark.parametrize("use", sorted(TABLE))
def test_bf16_refused_on_a_gpu_without_it(hardware, use):
    hardware(True, False)
    with pytest.raises(InputError, match="bfloat16"):
        resolve_precision(use, "bf16", "cuda", n_clusters=100)
    assert resolve_precision(use, "fp32", "cuda", n_clusters=100) == "fp32"


def test_bad_precision_and_use():
    with pytest.raises(InputError, match="precision"):
        resolve_precision("embed", "fp8", "cpu")
    with pytest.raises(ValueError, match="use"):
        resolve_precision("umap", "auto", "cpu")


def test_help_text_names_the_exception():
    assert "k-means" in runtime.PRECISION_HELP and "64" in runtime.PRECISION_HELP


def test_probes_answer():
    assert isinstance(runtime.cpu_has_native_bf16(), bool)
    if not torch.cuda.is_available():  # a named GPU is judged as a usual one
        assert runtime.cuda_lacks_bf16() is False
        assert resolve_precision("embed", "auto", "cuda") == "bf16"


def test_resolve_device():
    assert runtime.resolve_device("cpu") == torch.device("cpu")
    assert runtime.resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert runtime.resolve_device(None) == runtime.resolve_device("auto")
    with pytest.raises(InputError, match="device"):
        runtime.resolve_device("tpu:x")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA"):
            runtime.resolve_device("cuda")
        assert runtime.resolve_device("auto") == torch.device("cpu")


def test_single_process_collectives_are_the_identity():
    di = runtime.info()
    assert (di.rank, di.world_size, di.is_main, di.distributed) == (0, 1, True, False)
    assert runtime.rank() == 0 and runtime.world_size() == 1 and runtime.is_main()
    a = np.arange(6.0).reshape(2, 3)
    assert runtime.sum_over_ranks(a) is a
    assert runtime.sum_over_ranks(2.5) == 2.5 and runtime.sum_over_ranks(7) == 7
    assert runtime.sum_over_ranks(a, runtime.DistInfo()) is a
    assert runtime.mean_over_ranks(6.0, 3) == 2.0
    assert np.isnan(runtime.mean_over_ranks(0.0, 0))
    t = torch.ones(3)
    assert runtime.all_reduce_sum_(t) is t and runtime.all_reduce_mean_(t) is t
    assert torch.equal(t, torch.ones(3))
    assert runtime.gather_rows(t) is t
    assert runtime.broadcast_array(a) is a
    runtime.broadcast_([t])
    runtime.barrier()


def test_shares_of_work():
    assert runtime.chunk(10, 0, 3) == slice(0, 3)
    assert [runtime.chunk(10, r, 3) for r in range(3)] == [slice(0, 3), slice(3, 7), slice(7, 10)]
    assert [runtime.chunk(8, r, 2) for r in range(2)] == [slice(0, 4), slice(4, 8)]
    assert runtime.local_slice(5) == slice(0, 5)
    assert runtime.local_slice(6, even=True) == slice(0, 6)
    assert runtime.split_work(list(range(5)), runtime.DistInfo(1, 2)) == [1, 3]
