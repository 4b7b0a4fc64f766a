#!/usr/bin/env bash
# Checks the ResNet50V2 weight converter and our resnet50_v2 against Keras itself: a Keras
# ResNet50V2 trunk with random weights is saved (.keras, .h5, and weights alone in the legacy .h5
# layout of Keras' ImageNet files), converted by
# scripts/convert_keras_resnet50v2.py, loaded by the worker's strict loader, and both networks run
# on the same random images (64 and 224 px); their feature maps must agree within 1e-4.
#
#   scripts/check_keras_resnet50v2.sh
#
# TensorFlow comes from PyPI into a venv of its own (TF_VENV, default .tf-venv/, git-ignored; about
# 600 MB to download, once). Needs scripts/setup.sh to have run (libtorch for the Rust side).
set -euo pipefail
cd "$(dirname "$0")/.."

TF_VERSION=2.21.0
TF_VENV=${TF_VENV:-.tf-venv}
PYTHON=${PYTHON:-python3}

# What imports, not what pip's metadata says: an install cut short (a full disk) leaves the
# metadata of a TensorFlow that does not import. Such a venv is made anew.
installed=$("$TF_VENV/bin/python" -c 'import tensorflow as tf, h5py; print(tf.__version__)' 2>/dev/null || true)
if [ -d "$TF_VENV" ] && [ "$installed" != "$TF_VERSION" ]; then
    echo "check: $TF_VENV has no working tensorflow $TF_VERSION; making it anew"
    rm -rf "$TF_VENV"
fi
if [ ! -x "$TF_VENV/bin/python" ]; then
    echo "check: creating $TF_VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$TF_VENV"
fi
if [ "$installed" != "$TF_VERSION" ]; then
    echo "check: installing tensorflow-cpu==$TF_VERSION into $TF_VENV (once)"
    "$TF_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "tensorflow-cpu==$TF_VERSION" h5py
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/keras-resnet50v2.XXXXXX")
trap 'rm -rf "$work"' EXIT
export TF_CPP_MIN_LOG_LEVEL=2 TF_ENABLE_ONEDNN_OPTS=0   # quiet start-up; no oneDNN re-ordering of sums

cargo build --quiet -p worker --example trunk_features
"$TF_VENV/bin/python" scripts/keras_resnet50v2_reference.py make "$work"
for source in random.keras random.h5 random_weights.h5; do
    echo "== $source"
    "$TF_VENV/bin/python" scripts/convert_keras_resnet50v2.py "$work/$source" "$work/converted.safetensors"
    target/debug/examples/trunk_features resnet50_v2 "$work/converted.safetensors" \
        "$work/inputs.safetensors" "$work/ours.safetensors" >/dev/null
    "$TF_VENV/bin/python" scripts/keras_resnet50v2_reference.py compare "$work/keras.safetensors" "$work/ours.safetensors"
done
