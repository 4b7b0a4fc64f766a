#!/usr/bin/env bash
# Validates deploy/k8s against the Kubernetes schemas, offline: kubernetes-validate ships them.
# The venv (in target/, git-ignored) is made once; later runs take about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=1.37.0
VENV=target/ci/k8s-venv
if ! "$VENV/bin/python" -c "import kubernetes_validate, sys; sys.exit(kubernetes_validate.__version__ != '$VERSION')" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$VERSION"
fi
# The oldest Kubernetes these manifests promise to work on: gRPC probes are stable since 1.27.
exec "$VENV/bin/python" .ci/validate_k8s.py deploy/k8s "${K8S_VERSION:-1.30.0}"
