#!/usr/bin/env bash
# Set up deepclust in ./.venv: torch 2.13.0 (CPU build where a local wheel exists) first, then
# the package and its dependencies, then Fashion-MNIST from Debian when running as root.
#   bash scripts/setup.sh          # the package
#   bash scripts/setup.sh --dev    # the package and the test tools
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[ "${1:-}" = "--dev" ] && extras="[test]"
python=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
. .venv/bin/activate

# torch pinned: a bare 'torch' requirement would pull the newest (multi-GB CUDA) build. One pip
# run for torch and the package (one resolution); --no-compile: Python compiles the modules it
# imports on first use instead of all of torch's files now.
torch_req=()
python -c "import torch" 2>/dev/null || torch_req=("torch==2.13.0")
python -m pip install -q --no-compile "${torch_req[@]}" -e ".${extras}"

# Fashion-MNIST: Debian ships it; elsewhere deepclust downloads it on first use.
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
        || echo "setup: could not install dataset-fashion-mnist; the demo falls back to digits" >&2
fi
# Chromium: the report's browser test (tests/test_report.py) opens reports in it, headless.
if [ -n "$extras" ] && ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 \
        || echo "setup: could not install chromium; the report's browser test will be skipped" >&2
fi
echo "setup: done ($(python -c 'import deepclust, torch; print("deepclust", deepclust.__version__, "torch", torch.__version__)'))"
