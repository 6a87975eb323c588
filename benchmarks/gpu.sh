#!/usr/bin/env bash
# The GPU check of issue 16: k-means at 1 M x 768 with k = 10 000 (deepclust on CUDA against
# faiss-gpu, or a plain torch Lloyd loop where faiss has no GPU), TEMI steps/s at 1 M rows,
# embedding images/s, and a 1-process nccl torchrun k-means. At most 8 minutes on one
# H100/H200; exits non-zero at the first failure.
#
#   bash benchmarks/gpu.sh             # on the GPU machine
#   bash benchmarks/gpu.sh --dry-run   # small sizes, device cpu, gloo: proves the script here
#
# Python: $PYTHON if set, else .venv/bin/python if present, else python3 with the wheels in .whl/ installed into /tmp/deepclust-site
# (preparation: docs/scale.md, "GPU check").
set -euo pipefail

DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown argument $arg (use --dry-run)" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ -n "${PYTHON:-}" ]]; then
  PY="$PYTHON"
elif [[ -x .venv/bin/python ]]; then
  PY=.venv/bin/python
else
  PY=python3
  if [[ -d .whl ]] && ls .whl/*.whl >/dev/null 2>&1; then
    echo "# installing $(ls .whl/*.whl | wc -l) wheels from .whl/ into /tmp/deepclust-site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/deepclust-site .whl/*.whl
    export PYTHONPATH="/tmp/deepclust-site${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

if [[ $DRY == 1 ]]; then
  DEV=cpu
  KM=(--rows 20000 --dim 64 --clusters 100 --iters 3)
  TE=(--rows 20000 --dim 64 --clusters 100 --steps 20 --heads 4 --batch 256)
  EM=(--rows 64)
  KD=(--rows 5000 --dim 32 --clusters 20 --iters 3)
else
  DEV=cuda
  KM=(--rows 1000000 --dim 768 --clusters 10000 --iters 10)
  TE=(--rows 1000000 --dim 768 --clusters 1000 --steps 300 --heads 16 --batch 4096)
  EM=(--rows 8192)
  KD=(--rows 1000000 --dim 768 --clusters 1000 --iters 5)
fi

START=$SECONDS
echo "# deepclust GPU check ($([[ $DRY == 1 ]] && echo dry run, sizes shrunk || echo full sizes)), $(date -u +%FT%TZ)"
"$PY" - <<'EOF'
import platform, torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
try:
    import faiss
    fa = f"faiss {faiss.__version__}, GPUs seen by faiss: {faiss.get_num_gpus() if hasattr(faiss, 'get_num_gpus') else 0}"
except ImportError:
    fa = "faiss missing"
print(f"# python {platform.python_version()}, torch {torch.__version__}, GPU {gpu}, {fa}")
EOF
if [[ $DRY == 0 ]]; then
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: run with --dry-run on a CPU')"
fi

echo
echo "| what | result | | | |"
echo "|---|---|---|---|---|"
"$PY" benchmarks/gpu_check.py kmeans --device "$DEV" "${KM[@]}"
"$PY" benchmarks/gpu_check.py temi --device "$DEV" "${TE[@]}"
"$PY" benchmarks/gpu_check.py embed --device "$DEV" "${EM[@]}"
"$PY" -m torch.distributed.run --standalone --nproc_per_node=1 \
  benchmarks/gpu_check.py kmeans-dist --device "$DEV" "${KD[@]}"
echo
echo "# all checks passed in $((SECONDS - START)) s"
