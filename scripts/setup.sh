#!/usr/bin/env bash
# Set up deepclust in ./.venv: torch 2.13.0 (CPU build where a local wheel exists) with the
# package and its dependencies (uv, else pip), the install-time preparation (bytecode, UMAP's
# numba kernels: deepclust/prepare.py), then Fashion-MNIST from Debian when running as root.
#   bash scripts/setup.sh          # the package
#   bash scripts/setup.sh --dev    # the package and the test tools
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[ "${1:-}" = "--dev" ] && extras="[test]"
python=$(command -v "${PYTHON:-python3}")  # the base interpreter (its pip too), by path

if [ ! -x .venv/bin/python ]; then
    # pip is added later, beside the preparation: ensurepip costs 7 s of a new environment here
    "$python" -m venv --without-pip .venv
fi
. .venv/bin/activate

# torch pinned: a bare 'torch' requirement would pull the newest (multi-GB CUDA) build. One
# install for torch and the package (one resolution), without bytecode compilation (that would
# compile every file of torch): `deepclust.prepare` compiles what deepclust imports, below.
torch_req=()
python -c "import torch" 2>/dev/null || torch_req=("torch==2.13.0")

# The installer: uv where it can be had (the same resolution as pip, 10.5 s against 55 s for a
# new environment here, docs/demo.md), else pip. uv does not read pip's configuration, so the
# indexes, find-links, constraints and certificate that pip is configured with are passed on.
uv_args=()
while IFS= read -r line; do
    key=${line%%=*}; value=${line#*=}; value=${value#\'}; value=${value%\'}
    case "${key##*.}" in
        index-url) uv_args+=(--index-url "$value") ;;
        extra-index-url) for v in $value; do uv_args+=(--extra-index-url "$v"); done ;;
        find-links) for v in $value; do uv_args+=(--find-links "$v"); done ;;
        constraint) for v in $value; do uv_args+=(--constraint "$v"); done ;;
        cert) export SSL_CERT_FILE="$value" ;;
    esac
done < <("$python" -m pip config list 2>/dev/null || true)
has_pip() { python -m pip --version >/dev/null 2>&1; }
get_uv() {
    command -v uv >/dev/null && return 0
    if has_pip; then python -m pip install -q --disable-pip-version-check uv
    else "$python" -m pip --python "$VIRTUAL_ENV/bin/python" install -q --disable-pip-version-check uv
    fi >/dev/null 2>&1
}
installed=""
if [ -z "${DEEPCLUST_SETUP_PIP:-}" ] && get_uv; then
    if uv pip install -q --index-strategy unsafe-best-match "${uv_args[@]}" "${torch_req[@]}" -e ".${extras}"; then
        installed=uv
    else
        echo "setup: uv could not install; trying pip" >&2
    fi
fi
if [ -z "$installed" ]; then
    has_pip || python -m ensurepip >/dev/null
    python -m pip install -q --no-compile "${torch_req[@]}" -e ".${extras}"
fi
# Bytecode of the modules deepclust imports and UMAP's numba kernels, two processes side by
# side; pip, where the environment has none yet, on the core they leave idle.
pip_job=""
if ! has_pip; then python -m ensurepip >/dev/null 2>&1 & pip_job=$!; fi
python -m deepclust.prepare || true
[ -z "$pip_job" ] || wait "$pip_job" || echo "setup: could not add pip to .venv (uv pip works)" >&2

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
echo "setup: done ($(python -c 'from importlib.metadata import version as v; print("deepclust", v("deepclust"), "torch", v("torch"))'))"
