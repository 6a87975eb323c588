"""Install-time preparation: the work every new environment would otherwise do on its first run.

``scripts/setup.sh`` installs with bytecode compilation off (pip or uv would compile every
file of torch, scipy and the rest: about 30 s on two cores, most of it for modules never
imported) and then runs ``python -m deepclust.prepare``, which does two jobs side by side,
each in its own process:

- **bytecode**: imports every module of deepclust and the modules its functions import when
  first called (:data:`LAZY_IMPORTS`; torch builds its optimisers and the ONNX exporter on
  first use, so a two-step AdamW and a tiny export run too), so Python writes the ``.pyc``
  of exactly the modules deepclust uses (about 2 500 files). Without them each new process
  compiles those sources again: ``deepclust --help`` took 12 s, and 5-6 s once they were
  written (docs/demo.md).
- **numba**: :func:`deepclust.reduce.warm_umap`, which compiles pynndescent's and
  umap-learn's kernels into numba's disk cache (about 25 s of one core on a fresh
  environment).

Both write bytecode even where ``PYTHONDONTWRITEBYTECODE`` is set: this is the install
step's compilation, the same files pip writes when it is not told ``--no-compile``. Best
effort: a job that fails is reported in one line and the first run compiles instead.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
import time

__all__ = ["JOBS", "LAZY_IMPORTS", "deepclust_modules", "import_modules", "main"]

#: Modules that deepclust imports inside functions (not umap-learn and pynndescent: the
#: numba job imports those, and importing them compiles their kernels).
LAZY_IMPORTS = (
    "PIL.Image", "efficientnet_lite_pytorch", "faiss", "hdbscan.validity", "jinja2",
    "matplotlib.pyplot", "onnxruntime", "openvino", "pyarrow.compute", "pyarrow.csv",
    "pyarrow.parquet", "safetensors.torch", "scipy.cluster.hierarchy", "scipy.sparse.csgraph", "scipy.stats",
    "sklearn.cluster", "sklearn.decomposition", "sklearn.linear_model", "sklearn.metrics",
    "sklearn.mixture", "sklearn.neighbors", "sklearn.preprocessing", "torch.onnx",
    "tqdm.auto", "yaml",
)

#: The jobs, each run as ``python -c CODE`` in its own process.
JOBS = {
    "bytecode": "from deepclust.prepare import import_modules; import_modules()",
    "numba": "from deepclust.reduce import warm_umap; warm_umap()",
}


def deepclust_modules() -> list[str]:
    """The names of deepclust's modules (every package and module, ``__main__`` left out)."""
    import deepclust

    return [info.name for info in pkgutil.walk_packages(deepclust.__path__, "deepclust.")
            if not info.name.endswith("__main__")]


def import_modules() -> list[str]:
    """Import :func:`deepclust_modules` and :data:`LAZY_IMPORTS`, build an optimiser and
    export a tiny model as deepclust's code does; returns the names that could not be
    imported (a module of an optional dependency that is not installed)."""
    failed = []
    for name in deepclust_modules() + list(LAZY_IMPORTS):
        try:
            importlib.import_module(name)
        except Exception:  # an optional dependency (transformers, open_clip, timm) missing
            failed.append(name)
    _first_use()
    return failed


def _first_use() -> None:
    """What torch imports on first use: the optimiser (torch._dynamo) and the ONNX exporter."""
    import io
    import warnings

    import torch

    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(3, 4)).sum().backward()
    optimizer.step()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.ones(2, 4),), io.BytesIO(), dynamo=False)


def main(argv: list[str] | None = None) -> int:
    """Run :data:`JOBS` side by side; print one line; 0 when every job succeeded."""
    names = list(JOBS if not argv else argv)
    unknown = [n for n in names if n not in JOBS]
    if unknown:
        print(f"prepare: unknown job {unknown[0]!r}; jobs: {', '.join(JOBS)}", file=sys.stderr)
        return 2
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    start = time.perf_counter()
    procs = {n: subprocess.Popen([sys.executable, "-c", JOBS[n]], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for n in names}
    done, failed = [], []
    for name, proc in procs.items():
        _, err = proc.communicate()
        seconds = time.perf_counter() - start
        if proc.returncode == 0:
            done.append(f"{name} {seconds:.0f} s")
        else:
            last = (err or "").strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
            failed.append(f"{name} failed ({last[0]})")
    print("prepare: " + ", ".join(done + failed)
          + ("; the first run compiles what failed instead" if failed else ""),
          file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
