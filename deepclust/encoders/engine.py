"""CPU inference engines: an encoder exported once to ONNX and run by ONNX Runtime or OpenVINO.

torch eager runs EfficientNet-Lite's depthwise convolutions poorly on the CPU; both engines
fuse them. In fp32 (what ``precision="auto"`` gives an engine on every CPU) ONNX Runtime was
the faster of the two on both CPUs measured (AMD EPYC with AVX2: 77.5 against 71.6 images/s;
Intel with AVX-512: 50 against 52, a tie); OpenVINO alone runs bf16, on CPUs with native
bf16 (AVX-512 BF16 / AMX). The numbers are in ``docs/embedding.md``.

The rule of ``engine="auto"`` (:func:`resolve_engine`), one line each:

- a GPU device -> ``torch`` (the GPU path is unchanged);
- the encoder does not declare itself exportable (:attr:`Encoder.exportable`) -> ``torch``;
- ``precision="bf16"`` asked for -> ``openvino`` (the engine with bf16 kernels);
- otherwise the first of ``onnxruntime``, ``openvino`` that is installed, else ``torch``;
- if the export or the engine's compilation fails, a warning and ``torch``.

``engine="onnxruntime"`` / ``"openvino"`` ask for one outright and fail with a one-line
message where it cannot run; ``engine="torch"`` is the torch path (autocast + channels-last).

The export (``torch.onnx.export``, TorchScript tracer) is cached as
``cache_dir()/onnx/<encoder>-<fingerprint>-<H>x<W>.onnx``; the fingerprint hashes the
weights and the encoder's description (preprocessing, options), so changing either exports
again. The file is written with :func:`deepclust.runinfo.atomic_write`, so concurrent
exports (``torchrun`` ranks) never leave half a file.

Precision: ``fp32`` on both engines; ``bf16`` -> OpenVINO's ``INFERENCE_PRECISION_HINT=bf16``
(ONNX Runtime refuses it). The precision is the one that
:func:`deepclust.runtime.resolve_precision` chose for ``embed-engine``.
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

ENGINES = ("auto", "torch", "onnxruntime", "openvino")
#: The engines ``auto`` tries on the CPU in fp32, in order.
FP32_ENGINES = ("onnxruntime", "openvino")
#: ONNX opset of the export (supported by OpenVINO 2023.1 and later).
OPSET = 17
ENGINE_HELP = (
    "inference engine: auto (on the CPU, for an encoder that exports: ONNX Runtime, or "
    "OpenVINO for bf16 or where ONNX Runtime is not installed; else torch), torch, "
    "onnxruntime, openvino"
)


def engine_available(engine: str) -> bool:
    """Whether the package of ``engine`` (``"onnxruntime"``, ``"openvino"``) is importable."""
    return importlib.util.find_spec(engine) is not None


def resolve_engine(engine: str, encoder: Encoder, device: torch.device,
                   precision: str = "auto") -> str:
    """The engine that runs ``encoder`` on ``device``: ``"torch"``, ``"onnxruntime"`` or
    ``"openvino"``.

    See the module docstring for the rule of ``"auto"``. An explicit engine that cannot run
    raises :class:`~deepclust.errors.InputError`.
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
    if engine == "auto":
        wanted = ("openvino",) if precision == "bf16" else FP32_ENGINES
        installed = [e for e in wanted if engine_available(e)]
        return installed[0] if installed and not reasons else "torch"
    if not engine_available(engine):
        reasons.append(f"{engine} is not installed (pip install {engine})")
    if engine == "onnxruntime" and precision == "bf16":
        reasons.append("ONNX Runtime has no bf16 kernels on the CPU (use --engine openvino)")
    if reasons:
        raise InputError(f"engine {engine} cannot run: {'; '.join(reasons)}; use --engine torch")
    return engine


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


class ExportedEncoder(Encoder):
    """``encoder`` exported to ONNX and run by an engine on the CPU: same name, dim,
    transform and description. Subclasses implement :meth:`_run` on a float32 array."""

    engine = ""

    def __init__(self, encoder: Encoder, *, precision: str = "fp32", threads: int | None = None):
        super().__init__()
        if precision not in ("bf16", "fp32"):
            raise InputError(f"precision must be bf16 or fp32, not {precision!r}")
        self.inner = encoder
        self.name, self.dim, self.transform = encoder.name, encoder.dim, encoder.transform
        self.model, self.config = encoder.model, encoder.config
        self.precision = precision
        self.threads = threads or default_engine_threads()
        self.onnx_file = export_onnx(encoder)

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(batch.detach().cpu().float().numpy())
        return torch.from_numpy(np.array(self._run(x), dtype=np.float32))

    def to(self, device) -> ExportedEncoder:
        if torch.device(device).type != "cpu":
            raise InputError(f"the {self.engine} engine runs on the CPU only; use engine torch "
                             "on a GPU")
        return self

    def set_channels_last(self, enabled: bool = True) -> ExportedEncoder:
        return self  # the engines choose their own layouts

    def describe(self) -> dict:
        return self.inner.describe()


class ONNXRuntimeEncoder(ExportedEncoder):
    """``encoder`` run by ONNX Runtime's CPU provider (fp32, all graph optimisations).

    Parameters
    ----------
    encoder : Encoder
        An exportable encoder (its torch model is exported once and kept for :meth:`describe`).
    precision : {"fp32"}
        ONNX Runtime has no bf16 kernels for these networks on the CPU.
    threads : int, optional
        Intra-op threads; default: ``OMP_NUM_THREADS`` when set (``torchrun``), else every
        core this process may use.
    """

    engine = "onnxruntime"

    def __init__(self, encoder: Encoder, *, precision: str = "fp32", threads: int | None = None):
        if precision != "fp32":
            raise InputError("ONNX Runtime runs fp32 only on the CPU; use --engine openvino "
                             "for bf16")
        super().__init__(encoder, precision=precision, threads=threads)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(self.threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: no notes about the graph on stderr
        self.session = ort.InferenceSession(str(self.onnx_file), options,
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]


class OpenVINOEncoder(ExportedEncoder):
    """``encoder`` run by OpenVINO on the CPU.

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

    engine = "openvino"

    def __init__(self, encoder: Encoder, *, precision: str = "fp32", threads: int | None = None):
        super().__init__(encoder, precision=precision, threads=threads)
        import openvino as ov

        core = ov.Core()
        self.compiled = core.compile_model(str(self.onnx_file), "CPU", {
            "INFERENCE_NUM_THREADS": int(self.threads),
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "CPU_DENORMALS_OPTIMIZATION": True,
        })
        self.request = self.compiled.create_infer_request()

    def _run(self, x: np.ndarray) -> np.ndarray:
        self.request.infer({0: x})
        return self.request.get_output_tensor(0).data


#: The engine classes by name.
ENGINE_CLASSES = {"onnxruntime": ONNXRuntimeEncoder, "openvino": OpenVINOEncoder}


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
    chosen = resolve_engine(engine, encoder, device, precision)
    if chosen == "torch":
        return encoder, "torch"
    try:
        return ENGINE_CLASSES[chosen](encoder, precision=precision, threads=threads), chosen
    except InputError:
        raise
    except Exception as exc:
        if engine != "auto":
            raise InputError(f"engine {chosen} failed for {encoder.name}: "
                             f"{type(exc).__name__}: {exc}; use --engine torch") from None
        warnings.warn(f"{chosen} could not run {encoder.name} ({type(exc).__name__}: {exc}); "
                      "using torch", RuntimeWarning, stacklevel=2)
        return encoder, "torch"
