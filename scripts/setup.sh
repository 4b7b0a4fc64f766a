#!/usr/bin/env bash
# Prepares this checkout to build: a project virtual environment with PyPI's torch==2.11.0 wheel
# (the libtorch that tch 0.24 expects), linked where .cargo/config.toml looks for it.
# Idempotent: a second run checks the version and returns in about a second.
#
#   scripts/setup.sh                # to build and run
#   scripts/setup.sh --test-tools   # and what the tests read their outputs with: tensorboard and
#                                   # prometheus-client in .venv (about 160 MB), and it says whether
#                                   # chromium and chromedriver are here (the browser test needs them)
set -euo pipefail
cd "$(dirname "$0")/.."

test_tools=0
case "${1:-}" in
    "") ;;
    --test-tools) test_tools=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup: unknown argument '$1' (scripts/setup.sh [--test-tools])" >&2; exit 2 ;;
esac

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

if [ "$test_tools" = 1 ]; then
    # The versions the TensorBoard export and /metrics were checked against.
    if ! .venv/bin/python -c 'import tensorboard, prometheus_client' 2>/dev/null; then
        echo "setup: installing tensorboard and prometheus-client into .venv (about 160 MB; once)"
        .venv/bin/python -m pip install --quiet --disable-pip-version-check tensorboard==2.21.0 prometheus-client==0.26.0
    fi
    if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
        echo "setup: chromium and chromedriver found (the dashboard's browser test)"
    else
        echo "setup: no chromium/chromedriver: the dashboard's browser test will say SKIPPED (apt install chromium chromium-driver)"
    fi
fi
