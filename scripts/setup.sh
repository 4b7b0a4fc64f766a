#!/usr/bin/env bash
# Prepares this checkout to build: a project virtual environment with PyPI's torch==2.11.0 wheel
# (the libtorch that tch 0.24 expects), linked where .cargo/config.toml looks for it.
# Idempotent: a second run checks the version and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.11.0
PYTHON=${PYTHON:-python3}

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo is not on PATH; install Rust from https://rustup.rs first" >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv .venv
fi

installed=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)
if [ "${installed%%+*}" != "$TORCH_VERSION" ]; then
    echo "setup: installing torch==$TORCH_VERSION into .venv (about 4.6 GB with its CUDA libraries; once)"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
fi

site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ln -sfn "$site/torch" .venv/libtorch

# cudarc looks NCCL up as `libnccl.so`; the wheel ships only the versioned `libnccl.so.2`.
nccl_dir="$site/nvidia/nccl/lib"
if [ -e "$nccl_dir/libnccl.so.2" ] && [ ! -e "$nccl_dir/libnccl.so" ]; then
    ln -s libnccl.so.2 "$nccl_dir/libnccl.so"
fi

echo "setup: libtorch $TORCH_VERSION ready at .venv/libtorch"
