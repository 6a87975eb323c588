"""CPU inference engine: an encoder exported once to ONNX and run by OpenVINO.

torch eager runs EfficientNet-Lite's depthwise convolutions poorly on the CPU; OpenVINO
fuses them and, on a CPU with native bf16 (AVX-512 BF16 / AMX), runs them in bf16 by its
own rule. The numbers that chose this engine (and not ONNX Runtime, which ran fp32 only
and about half as fast on this project's CPU) are in ``docs/embedding.md``.

The rule of ``engine="auto"`` (:func:`resolve_engine`), one line each:

- a GPU device -> ``torch`` (the GPU path is unchanged);
- the encoder does not declare itself exportable (:attr:`Encoder.exportable`) -> ``torch``;
- OpenVINO is not installed -> ``torch``;
- otherwise -> ``openvino``; if the export or the compilation fails, a warning and ``torch``.

``engine="openvino"`` asks for it outright and fails with a one-line message where it cannot
run; ``engine="torch"`` is today's path (autocast + channels-last).

The export (``torch.onnx.export``, TorchScript tracer) is cached as
``cache_dir()/onnx/<encoder>-<fingerprint>-<H>x<W>.onnx``; the fingerprint hashes the
weights and the encoder's description (preprocessing, options), so changing either exports
again. The file is written with :func:`deepclust.runinfo.atomic_write`, so concurrent
exports (``torchrun`` ranks) never leave half a file.

Precision: ``bf16`` -> OpenVINO's ``INFERENCE_PRECISION_HINT=bf16``, ``fp32`` -> ``f32``
(the precision that :func:`deepclust.runtime.resolve_precision` chose for ``embed``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from deepclust.encoders.base import Encoder
from deepclust.errors import InputError

ENGINES = ("auto", "torch", "openvino")
#: ONNX opset of the export (supported by OpenVINO 2023.1 and later).
OPSET = 17
ENGINE_HELP = (
    "inference engine: auto (OpenVINO on the CPU when installed and the encoder exports, "
    "else torch), torch, openvino"
)


def openvino_available() -> bool:
    """Whether the ``openvino`` package is importable."""
    return importlib.util.find_spec("openvino") is not None


def resolve_engine(engine: str, encoder: Encoder, device: torch.device) -> str:
    """The engine that runs ``encoder`` on ``device``: ``"torch"`` or ``"openvino"``.

    See the module docstring for the rule of ``"auto"``. An explicit ``"openvino"`` that
    cannot run raises :class:`~deepclust.errors.InputError`.
    """
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "torch":
        return "torch"
    device = torch.device(device)
    reasons = []
    if device.type != "cpu":
        reasons.append(f"it runs on the CPU only and the device is {device}")
    if not getattr(encoder, "exportable", False):
        reasons.append(f"encoder {encoder.name} is not marked exportable")
    if not openvino_available():
        reasons.append("openvino is not installed (pip install openvino)")
    if not reasons:
        return "openvino"
    if engine == "openvino":
        raise InputError(f"engine openvino cannot run: {'; '.join(reasons)}; use --engine torch")
    return "torch"


def weights_fingerprint(encoder: Encoder) -> str:
    """SHA-256 (first 16 hex digits) of the encoder's weights and description."""
    h = hashlib.sha256(json.dumps(encoder.describe(), sort_keys=True, default=str).encode())
    for name, t in encoder.model.state_dict().items():
        t = t.detach().cpu().contiguous().reshape(-1)  # 1-D: 0-d tensors cannot be viewed as bytes
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def onnx_path(encoder: Encoder) -> Path:
    """Where the ONNX export of ``encoder`` is cached."""
    from deepclust.data.builtin import cache_dir

    h, w = encoder.transform.output_size
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder.name).strip("_")[-80:]
    return cache_dir() / "onnx" / f"{slug}-{weights_fingerprint(encoder)}-{h}x{w}.onnx"


class _Forward(torch.nn.Module):
    """``encoder.forward`` as a module, for the tracer."""

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.model = encoder.model
        self.encoder_forward = encoder.forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder_forward(x).float()


def export_onnx(encoder: Encoder, path: str | os.PathLike | None = None) -> Path:
    """Export ``encoder`` (batch dimension dynamic) to ONNX once; returns the file's path.

    An existing file at the cached path is reused: its name carries the weights fingerprint
    and the input size.
    """
    from deepclust.runinfo import atomic_write

    path = Path(path) if path is not None else onnx_path(encoder)
    if path.is_file() and path.stat().st_size > 0:
        return path
    h, w = encoder.transform.output_size
    encoder.to("cpu").set_channels_last(False)
    example = torch.zeros(2, 3, h, w)
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape inference
        torch.onnx.export(
            _Forward(encoder), (example,), buf, input_names=["images"], output_names=["embeddings"],
            dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
            opset_version=OPSET, dynamo=False,
        )
    data = buf.getvalue()
    atomic_write(path, lambda f: f.write(data))
    return path


class OpenVINOEncoder(Encoder):
    """``encoder`` run by OpenVINO on the CPU: same name, dim, transform and description.

    Parameters
    ----------
    encoder : Encoder
        An exportable encoder (its torch model is exported once and kept for :meth:`describe`).
    precision : {"bf16", "fp32"}
        OpenVINO's inference precision.
    threads : int, optional
        OpenVINO's CPU threads; default: ``OMP_NUM_THREADS`` when set (``torchrun``), else
        every core this process may use.
    """

    def __init__(self, encoder: Encoder, *, precision: str = "fp32", threads: int | None = None):
        super().__init__()
        import openvino as ov

        if precision not in ("bf16", "fp32"):
            raise InputError(f"precision must be bf16 or fp32, not {precision!r}")
        self.inner = encoder
        self.name, self.dim, self.transform = encoder.name, encoder.dim, encoder.transform
        self.model, self.config = encoder.model, encoder.config
        self.precision = precision
        self.threads = threads or default_engine_threads()
        self.onnx_file = export_onnx(encoder)
        core = ov.Core()
        self.compiled = core.compile_model(str(self.onnx_file), "CPU", {
            "INFERENCE_NUM_THREADS": int(self.threads),
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "CPU_DENORMALS_OPTIMIZATION": True,
        })
        self.request = self.compiled.create_infer_request()

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(batch.detach().cpu().float().numpy())
        self.request.infer({0: x})
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())

    def to(self, device) -> OpenVINOEncoder:
        if torch.device(device).type != "cpu":
            raise InputError("the OpenVINO engine runs on the CPU only; use engine torch on a GPU")
        return self

    def set_channels_last(self, enabled: bool = True) -> OpenVINOEncoder:
        return self  # OpenVINO chooses its own layouts

    def describe(self) -> dict:
        return self.inner.describe()


def default_engine_threads() -> int:
    """``OMP_NUM_THREADS`` when set (as ``torchrun`` does), else the cores this process may use."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def with_engine(encoder: Encoder, engine: str, device: torch.device, precision: str,
                threads: int | None = None) -> tuple[Encoder, str]:
    """``encoder`` wrapped for the engine that :func:`resolve_engine` picks; returns it and
    the engine's name. Under ``"auto"`` an export or compilation failure falls back to torch
    with a warning."""
    chosen = resolve_engine(engine, encoder, device)
    if chosen == "torch":
        return encoder, "torch"
    try:
        return OpenVINOEncoder(encoder, precision=precision, threads=threads), "openvino"
    except InputError:
        raise
    except Exception as exc:
        if engine == "openvino":
            raise InputError(f"engine openvino failed for {encoder.name}: "
                             f"{type(exc).__name__}: {exc}; use --engine torch") from None
        warnings.warn(f"OpenVINO could not run {encoder.name} ({type(exc).__name__}: {exc}); "
                      "using torch", RuntimeWarning, stacklevel=2)
        return encoder, "torch"
